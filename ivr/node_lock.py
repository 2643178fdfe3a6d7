"""One ``ivr serve`` a node. Only a node reads its own notes and spool and closes its own
calls: two instances of the service on one node would each take the other's live calls
for ones left open by a dead instance. So ``ivr serve`` holds an exclusive lock on
``serve.lock`` in the node's journal directory for as long as it runs; the kernel lets go
of it when the process ends, however it ends (a killed service leaves nothing stale).

A second ``ivr serve`` for the same node refuses to start, and ``ivr jobs retire-node``
refuses while the node's service runs (it holds the lock itself while it works, so a
service started meanwhile refuses in turn). The file holds the holder's process id, for
the message only.
"""

from __future__ import annotations

import fcntl
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

LOCK_NAME = "serve.lock"


class NodeBusy(RuntimeError):
    """Another process (``ivr serve`` or ``ivr jobs retire-node``) holds this node, or its
    lock cannot be made (the journal directory is not writable)."""


@contextmanager
def node_held(directory: Path, holder: str) -> Iterator[None]:
    """Hold the node's lock in ``directory`` (the journal's) for the ``with`` block;
    :class:`NodeBusy` at once if another process holds it."""
    path = directory / LOCK_NAME
    try:
        directory.mkdir(mode=0o700, parents=True, exist_ok=True)
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
    except OSError as exc:
        raise NodeBusy(f"the node's lock {path} cannot be made: {exc.strerror} (set "
                       "journal.directory to a directory this user may write)") from None
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            other = os.read(fd, 200).decode(errors="replace").strip() or "unknown"
            raise NodeBusy(f"{other} holds this node (lock {path}): stop it first"
                           ) from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{holder}, pid {os.getpid()}\n".encode(), 0)
        yield
    finally:
        os.close(fd)
