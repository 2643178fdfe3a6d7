"""Recording files on a local file system: a node's spool, or a directory store. Files are
0640 in 0750 directories, as MixMonitor's are; a copy is written beside its target and
renamed into place once fsynced, so no half-written file ever has the final name."""

from __future__ import annotations

import contextlib
import hashlib
import os
import uuid
from pathlib import Path

from ivr.disk import fsync_directory
from ivr.recordings.location import FileLocation, parse
from ivr.recordings.store import Readable, StoreError

CHUNK = 1 << 16
FILE_MODE = 0o640
DIR_MODE = 0o750


def sha256_of(path: Path) -> tuple[str, int]:
    """SHA-256 (hex) and size of a file, read once; ``FileNotFoundError`` if it is absent."""
    digest = hashlib.sha256()
    size = 0
    with path.open("rb") as f:
        for block in iter(lambda: f.read(CHUNK), b""):
            digest.update(block)
            size += len(block)
    return digest.hexdigest(), size


def make_dirs(directory: Path) -> None:
    """Create ``directory`` and its missing parents, each 0750 (whatever the umask)."""
    missing = []
    current = directory
    while not current.exists():
        missing.append(current)
        current = current.parent
    for path in reversed(missing):
        with contextlib.suppress(FileExistsError):  # another runner made it meanwhile
            path.mkdir()
            os.chmod(path, DIR_MODE)


def copy_hashing(source: Path, target: Path) -> tuple[str, int]:
    """Copy ``source`` to ``target`` (replacing it), hashing the bytes as they are read;
    the copy is fsynced and renamed into place. Returns the SHA-256 and size read."""
    make_dirs(target.parent)
    partial = target.with_name(f".{target.name}.{uuid.uuid4().hex[:12]}.partial")
    digest = hashlib.sha256()
    size = 0
    try:
        fd = os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_EXCL, FILE_MODE)
        with os.fdopen(fd, "wb") as out, source.open("rb") as f:
            for block in iter(lambda: f.read(CHUNK), b""):
                digest.update(block)
                size += len(block)
                out.write(block)
            out.flush()
            os.fsync(out.fileno())
        os.chmod(partial, FILE_MODE)  # O_CREAT's mode is cut by the umask
        os.replace(partial, target)
    except BaseException:
        partial.unlink(missing_ok=True)
        raise
    fsync_directory(target.parent)
    return digest.hexdigest(), size


def sha256_and_delete(path: Path) -> str | None:
    """Hash, then delete ``path``; ``None`` if it was not there. An ``OSError`` when it
    cannot be read or deleted (it stays)."""
    try:
        sha256, _ = sha256_of(path)
    except FileNotFoundError:
        return None
    try:
        path.unlink()
    except FileNotFoundError:
        return None  # deleted meanwhile by someone else: not ours to certify
    return sha256


def local_path(location: str) -> Path:
    parsed = parse(location)
    if not isinstance(parsed, FileLocation):
        raise StoreError(f"{location[:120]} is not a local file")
    return parsed.path


class LocalFiles:
    """Reading, hashing and deleting files at ``file://`` locations."""

    def checksum(self, location: str) -> str | None:
        try:
            return sha256_of(local_path(location))[0]
        except FileNotFoundError:
            return None

    def open(self, location: str) -> Readable:
        return local_path(location).open("rb")

    def delete(self, location: str) -> str | None:
        return sha256_and_delete(local_path(location))
