"""The recording store as a local directory (the default): ``<path>/<YYYY>/<MM>/<DD>/<file>``;
a copy is verified by reading it back."""

from __future__ import annotations

from pathlib import Path

from ivr.recordings.local import LocalFiles, copy_hashing, local_path
from ivr.recordings.location import file_location
from ivr.recordings.store import StoredCopy


class DirectoryStore(LocalFiles):
    kind = "directory"

    def __init__(self, root: Path) -> None:
        if not root.is_absolute():
            raise ValueError(f"the recording store directory must be absolute: {root}")
        self.root = root

    def location(self, key: str) -> str:
        return file_location(self.root / key)

    def put(self, source: Path, key: str) -> StoredCopy:
        location = self.location(key)
        sha256, size = copy_hashing(source, local_path(location))
        return StoredCopy(location, sha256, size)
