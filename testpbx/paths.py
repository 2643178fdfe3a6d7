"""Where the test PBX keeps its things: the Asterisk root is cached outside the repository
(reused by every clone on the machine); run state (PIDs, logs, settings) stays in the
clone's ``var/``. A further node (testpbx/node.py) shares the root and has a state
directory of its own."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from testpbx.node import Node

REPO = Path(__file__).resolve().parents[1]


@dataclass(frozen=True)
class Paths:
    cache: Path
    state: Path
    node: Node | None = None  # None: the first node, on the default ports and directories

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

    def asterisk_dir(self, directory: str) -> str:
        """One of Asterisk's directories (``/var/spool/asterisk``) as this node has it."""
        return self.node.inside(directory) if self.node else directory


def default_paths(node: Node | None = None) -> Paths:
    cache = Path(os.environ.get("IVR_TESTPBX_CACHE", "/var/cache/ivr-testpbx"))
    state = Path(os.environ.get("IVR_STATE_DIR", REPO / "var" / "testpbx"))
    if node is not None:
        state = state.with_name(f"{state.name}-{node.name}")
    return Paths(cache=cache, state=state, node=node)
