"""Making a file's existence durable: after a file is created or renamed in a directory,
the directory itself must be fsynced, or a power cut can lose the entry (the journal of
calls while PostgreSQL is away; a recording moved into a directory store)."""

from __future__ import annotations

import os
from pathlib import Path


def fsync_directory(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
