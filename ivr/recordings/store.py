"""What a recording store does, whatever it is (a directory, an S3 bucket). Its methods
block: callers run them in a thread (``asyncio.to_thread``)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Protocol


class StoreError(OSError):
    """The store refused or could not be reached; the message says what and where. An
    ``OSError``, so that the jobs treat it like a file that cannot be written or deleted:
    logged, counted, retried at the next run."""


@dataclass(frozen=True, slots=True)
class StoredCopy:
    """A file written to the store: where, and the SHA-256 and size of the bytes read
    from the source while writing."""

    location: str
    sha256: str
    size: int


class Readable(Protocol):
    def read(self, size: int = -1, /) -> bytes: ...

    def close(self) -> None: ...


class RecordingStore(Protocol):
    """Where finished recordings are kept. Locations are the strings of
    :mod:`ivr.recordings.location`."""

    kind: str

    def location(self, key: str) -> str:
        """The location a file stored under ``key`` has (whether or not it is there)."""
        ...

    def put(self, source: Path, key: str) -> StoredCopy:
        """Write ``source`` under ``key``, hashing it while reading; replaces a copy
        already there (a retried move)."""
        ...

    def checksum(self, location: str) -> str | None:
        """The SHA-256 (hex) of the copy as the store holds it, or ``None`` if absent."""
        ...

    def open(self, location: str) -> Readable:
        """A reader of the stored copy; ``FileNotFoundError`` when it is absent."""
        ...

    def delete(self, location: str) -> str | None:
        """Delete the copy (every version of it); the SHA-256 it had, ``None`` when there
        was nothing to delete."""
        ...
