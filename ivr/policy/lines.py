"""Lines of the call centre and what the policy says about each kind (POLICY.md, table)."""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum


class LineKind(StrEnum):
    """The two kinds of line the policy knows."""

    SALES = "sales"  # recorded always: evidence of a market transaction (ZEKom-2 art. 214(7))
    SERVICE = "service"  # recorded only with the caller's consent (digit 1)


@dataclass(frozen=True, slots=True)
class LineRef:
    """A configured line as the call flow sees it: which line a dialled number belongs to."""

    name: str
    kind: LineKind
    queue: str
    notice: str
