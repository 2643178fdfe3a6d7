"""What arrived as a caller ID (or a dialled number), made safe to store and log."""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

from ivr.policy.numbers import InvalidNumber, caller_e164
from ivr.store.models import CALLER_RAW_MAX


@dataclass(frozen=True, slots=True)
class CallerId:
    e164: str | None  # None: withheld or not a number
    withheld: bool
    raw: str  # printable, at most CALLER_RAW_MAX characters
    valid: bool


def printable(raw: str, limit: int = CALLER_RAW_MAX) -> str:
    """Control characters (a NUL cannot even be stored) become ``?``; cut to ``limit``."""
    cleaned = "".join(ch if ch.isprintable() else "?" for ch in raw[: limit * 4])
    return cleaned[:limit]


# Pure, and asked about the same numbers more than once (a call's decision and its end;
# the few numbers of the lines): remembered, for the CPU a number's parse costs.
@lru_cache(maxsize=8192)
def describe_caller(raw: str, region: str) -> CallerId:
    try:
        e164 = caller_e164(raw, region)
    except InvalidNumber:
        return CallerId(None, False, printable(raw), False)
    return CallerId(e164, e164 is None, printable(raw), True)
