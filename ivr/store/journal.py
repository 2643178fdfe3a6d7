"""The outage journal: what the service must keep about a call while PostgreSQL cannot take
it is appended to a local file and fsynced before the call goes on, then replayed into
PostgreSQL, in order, once it answers again.

A decision counts as stored (rule 3) once it is in PostgreSQL or fsynced here: only then
may a recording start. Each entry is replayed idempotently, so a crash in the middle of a
replay replays it again without duplicates.

Two files in the journal directory: ``journal.jsonl`` takes new entries; a replay first
renames it to ``replaying.jsonl`` (new entries go to a fresh ``journal.jsonl``) and
removes that file once every entry in it is in PostgreSQL. An entry PostgreSQL refuses
for good (not for being unreachable) goes to ``rejected.jsonl`` for an operator; nothing
is dropped. The files hold caller numbers: the directory is 0700, the files 0600.
"""

from __future__ import annotations

import asyncio
import logging
import os
import uuid
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, TypeAdapter, ValidationError

from ivr.disk import fsync_directory
from ivr.flow.commands import Receipt
from ivr.store.callbacks import Missed
from ivr.store.receipts import ClosedCall, OpenedCall, PlannedRecording, StartedRecording

log = logging.getLogger(__name__)


class _Entry(BaseModel):
    model_config = ConfigDict(frozen=True)


class OpenEntry(_Entry):
    op: Literal["open"] = "open"
    call: OpenedCall
    direction: str

    @property
    def call_id(self) -> uuid.UUID:
        return self.call.id


class DecisionEntry(_Entry):
    op: Literal["decision"] = "decision"
    call_id: uuid.UUID
    line_kind: str
    receipt: Receipt
    prompts_played: list[dict[str, Any]]
    recording: PlannedRecording | None
    inherited_from: uuid.UUID | None
    # The call, when it is opened with its decision (the dialplan flow: one statement).
    call: OpenedCall | None = None


class RecordingStartedEntry(_Entry):
    op: Literal["recording_started"] = "recording_started"
    file_name: str
    mixmonitor_id: str
    at: datetime


class CloseEntry(_Entry):
    op: Literal["close"] = "close"
    call_id: uuid.UUID
    closed: ClosedCall
    recording_file: str | None
    # the missed call it leaves (rule 4), written with the close: both or neither
    missed: Missed | None = None
    # the recording that ran in the call, written with the close (the ARI flow keeps
    # MixMonitor's id until then)
    started: StartedRecording | None = None


class CloseOrphanEntry(_Entry):
    op: Literal["close_orphan"] = "close_orphan"
    channel_id: str
    reason: str
    at: datetime


class MissedEntry(_Entry):
    op: Literal["missed"] = "missed"
    missed: Missed


Entry = Annotated[OpenEntry | DecisionEntry | RecordingStartedEntry | CloseEntry
                  | CloseOrphanEntry | MissedEntry, Field(discriminator="op")]
ENTRY: TypeAdapter[Entry] = TypeAdapter(Entry)


@dataclass(frozen=True, slots=True)
class Batch:
    """The entries of one replay, in the order they were written."""

    entries: list[Entry]
    unreadable: list[str]


class Journal:
    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self.current = directory / "journal.jsonl"
        self.replaying = directory / "replaying.jsonl"
        self.rejected = directory / "rejected.jsonl"
        self._lock = asyncio.Lock()
        # Whether entries wait, as last read from the disk (None: read it again). Only this
        # object writes the files (one instance per node), so it knows without asking the
        # disk at every write of every call.
        self._pending: bool | None = None

    def pending(self) -> bool:
        """Entries wait to be replayed: every new entry must queue behind them."""
        if self._pending is None:
            self._pending = _has_data(self.current) or _has_data(self.replaying)
        return self._pending

    async def append(self, entry: Entry) -> None:
        """Write ``entry`` and fsync it; when this returns, it survives a crash."""
        line = ENTRY.dump_json(entry) + b"\n"
        async with self._lock:
            try:
                await asyncio.to_thread(self._write, self.current, line)
            finally:
                self._pending = None  # a write cut short may have left part of a line

    async def take(self) -> Batch | None:
        """The entries to replay now (an unfinished replay's first), or ``None``."""
        async with self._lock:
            return await asyncio.to_thread(self._take)

    async def done(self) -> None:
        """Every entry of the batch from :meth:`take` is in PostgreSQL."""
        async with self._lock:
            try:
                await asyncio.to_thread(self._remove, self.replaying)
            finally:
                self._pending = None

    async def reject(self, entry: Entry, error: str) -> None:
        line = ENTRY.dump_json(entry)[:-1] + b', "error": ' + _json_text(error) + b"}\n"
        async with self._lock:
            await asyncio.to_thread(self._write, self.rejected, line)

    def _take(self) -> Batch | None:
        if not self.replaying.exists():
            if not _has_data(self.current):
                return None
            os.replace(self.current, self.replaying)
            fsync_directory(self.directory)
        entries: list[Entry] = []
        unreadable: list[str] = []
        for number, line in enumerate(self.replaying.read_bytes().splitlines(), 1):
            if not line.strip():
                continue
            try:
                entries.append(ENTRY.validate_json(line))
            except ValidationError as exc:
                # A line cut by a crash was never fsynced: no call went on because of it.
                unreadable.append(f"line {number}: {exc.errors()[0]['msg']}")
                self._write(self.rejected, line + b"\n")
        return Batch(entries, unreadable)

    def _write(self, path: Path, line: bytes) -> None:
        created = not self.directory.exists()
        self.directory.mkdir(mode=0o700, parents=True, exist_ok=True)
        new = not path.exists()
        fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
        try:
            os.write(fd, line)
            os.fsync(fd)
        finally:
            os.close(fd)
        if new:
            fsync_directory(self.directory)
        if created:
            fsync_directory(self.directory.parent)

    def _remove(self, path: Path) -> None:
        path.unlink(missing_ok=True)
        fsync_directory(self.directory)


def _has_data(path: Path) -> bool:
    try:
        return path.stat().st_size > 0
    except FileNotFoundError:
        return False


def _json_text(text: str) -> bytes:
    return TypeAdapter(str).dump_json(text)
