"""Where the test PBX keeps its things: the Asterisk root is cached outside the repository
(reused by every clone on the machine); run state (PIDs, logs, settings) stays in the
clone's ``var/``."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


@dataclass(frozen=True)
class Paths:
    cache: Path
    state: Path

    @property
    def root(self) -> Path:
        return self.cache / "root"

    @property
    def building(self) -> Path:
        return self.cache / "root.building"

    @property
    def logs(self) -> Path:
        return self.state / "log"

    @property
    def settings_file(self) -> Path:
        return self.state / "ivr.toml"

    def in_root(self, inside: str | Path) -> Path:
        """A path as Asterisk sees it, seen from the host."""
        return self.root / str(inside).lstrip("/")


def default_paths() -> Paths:
    cache = Path(os.environ.get("IVR_TESTPBX_CACHE", "/var/cache/ivr-testpbx"))
    state = Path(os.environ.get("IVR_STATE_DIR", REPO / "var" / "testpbx"))
    return Paths(cache=cache, state=state)
