"""Where a recording is now, and reading or deleting it there: on its node's spool until
it was moved (``settings.recordings.local_dir``), then in the recording store
(``recordings.stored_location``). Methods block: call them in a thread."""

from __future__ import annotations

from pathlib import Path

from ivr.recordings.directory import DirectoryStore
from ivr.recordings.local import LocalFiles
from ivr.recordings.location import FileLocation, file_location, parse
from ivr.recordings.store import Readable, RecordingStore, StoreError
from ivr.settings import RecordingSettings, S3StoreSettings
from ivr.store.models import Recording


def build_store(settings: RecordingSettings) -> RecordingStore:
    """The configured store; nothing is connected until it is first used."""
    store = settings.store
    if isinstance(store, S3StoreSettings):
        from ivr.recordings.s3 import S3Store

        return S3Store(store)
    return DirectoryStore(store.path)


class RecordingFiles:
    def __init__(self, spool: Path, store: RecordingStore) -> None:
        self.spool = spool
        self.store = store
        self.local = LocalFiles()

    @classmethod
    def from_settings(cls, settings: RecordingSettings) -> RecordingFiles:
        return cls(Path(settings.local_dir), build_store(settings))

    def spool_path(self, file_name: str) -> Path:
        return self.spool / file_name

    def spool_location(self, file_name: str) -> str:
        return file_location(self.spool_path(file_name).absolute())

    def location(self, recording: Recording) -> str:
        """Where the recording's file is: the store once moved, else this node's spool."""
        return recording.stored_location or self.spool_location(recording.file_name)

    def _at(self, location: str) -> LocalFiles | RecordingStore:
        if isinstance(parse(location), FileLocation):
            return self.local
        if self.store.kind == "s3":
            return self.store
        raise StoreError(f"{location[:120]} is in an S3 bucket, but the recording store "
                         "configured ([recordings.store]) is not: configure kind = \"s3\"")

    def open(self, location: str) -> Readable:
        return self._at(location).open(location)

    def checksum(self, location: str) -> str | None:
        return self._at(location).checksum(location)

    def delete(self, location: str) -> str | None:
        return self._at(location).delete(location)
