"""Where a recording file is, as one string stored in PostgreSQL: ``file:///abs/path`` (a
node's spool, or a directory store) or ``s3://bucket/key`` (an object store). Pure.

>>> parse(file_location(Path("/var/lib/ivr/recordings/2026/11/23/a.wav")))
FileLocation(path=PosixPath('/var/lib/ivr/recordings/2026/11/23/a.wav'))
>>> parse(s3_location("ivr-recordings", "calls/2026/11/23/a.wav"))
S3Location(bucket='ivr-recordings', key='calls/2026/11/23/a.wav')
>>> store_key("a.wav", datetime(2026, 11, 23, 23, 30, tzinfo=UTC))
'2026/11/23/a.wav'
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from urllib.parse import quote, unquote

FILE_SCHEME = "file://"
S3_SCHEME = "s3://"
_FILE_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*$")


class BadLocation(ValueError):
    """A stored location this service cannot read."""


@dataclass(frozen=True, slots=True)
class FileLocation:
    path: Path


@dataclass(frozen=True, slots=True)
class S3Location:
    bucket: str
    key: str


def file_location(path: Path) -> str:
    if not path.is_absolute():
        raise BadLocation(f"a file location needs an absolute path, not {str(path)[:80]!r}")
    return FILE_SCHEME + quote(str(path))


def s3_location(bucket: str, key: str) -> str:
    return f"{S3_SCHEME}{bucket}/{key}"


def parse(location: str) -> FileLocation | S3Location:
    if location.startswith(FILE_SCHEME):
        path = Path(unquote(location.removeprefix(FILE_SCHEME)))
        if not path.is_absolute() or ".." in path.parts:
            raise BadLocation(f"not an absolute file location: {location[:120]!r}")
        return FileLocation(path)
    if location.startswith(S3_SCHEME):
        bucket, _, key = location.removeprefix(S3_SCHEME).partition("/")
        if not bucket or not key:
            raise BadLocation(f"an s3 location is s3://bucket/key, not {location[:120]!r}")
        return S3Location(bucket, key)
    raise BadLocation(f"unknown recording location {location[:120]!r}")


def store_key(file_name: str, started_at: datetime) -> str:
    """The file's name in the store: under the UTC day the recording started, so that no
    directory grows without end and operators can find a day's recordings."""
    if not _FILE_NAME.fullmatch(file_name):
        raise BadLocation(f"not a recording file name: {file_name[:80]!r}")
    return f"{started_at.astimezone(UTC):%Y/%m/%d}/{file_name}"
