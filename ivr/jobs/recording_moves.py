"""Moving finished recordings from this node's spool into the recording store.

A recording is finished once its call has ended and MixMonitor has closed the file. The
rows say when the call ended (``calls.ended_at``) and when the recording stopped
(``recordings.stopped_at``), not when MixMonitor closed the file, so a file is taken only
``recordings.settle_seconds`` after both, and only if it has not been written to for as
long (its mtime).

Each file is read once, hashing it as it is written to the store; the stored copy is then
verified (read back, or the object store's own SHA-256 checksum). Only when both hashes
agree is the row updated (where the file is now, its hash and size) and committed, and
only then is the spool copy deleted. A mismatch keeps the spool copy, removes the bad
copy, is logged and counted, and the next run tries again.

Several instances share one database: rows are claimed with ``FOR UPDATE SKIP LOCKED``,
and each node moves only the files of its own calls (``calls.node``) from its own spool.
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

from sqlalchemy import ColumnElement, or_, select
from sqlalchemy.ext.asyncio import AsyncSession

from ivr.recordings.files import RecordingFiles
from ivr.recordings.location import store_key
from ivr.recordings.store import StoredCopy
from ivr.settings import Settings
from ivr.store.audit import AuditLog
from ivr.store.database import Database
from ivr.store.models import Call, Recording

log = logging.getLogger(__name__)

# Rows are locked while their files are copied (an upload can take seconds): small
# batches keep the locks and the pooled connection, shared with the calls, short.
BATCH = 5
ACTOR = "recording-store-job"
RECORDING_STORED = "recording_stored"


@dataclass
class MoveReport:
    moved: int = 0
    waiting: int = 0  # still written to within the settle time: next run
    missing: int = 0  # not on this node's spool
    failed: int = 0  # not stored (an error, or the stored copy's hash differed)
    leftovers_removed: int = 0  # spool copies of recordings already stored or deleted
    errors: list[str] = field(default_factory=list)

    def as_json(self) -> dict[str, object]:
        return {"moved": self.moved, "waiting": self.waiting, "missing": self.missing,
                "failed": self.failed, "leftovers_removed": self.leftovers_removed,
                "errors": self.errors}


@dataclass(frozen=True, slots=True)
class Moved:
    copy: StoredCopy


@dataclass(frozen=True, slots=True)
class NotMoved:
    kind: str  # "waiting", "missing" or "failed"
    error: str | None = None


class RecordingMoveJob:
    def __init__(self, db: Database, settings: Settings, audit: AuditLog,
                 files: RecordingFiles) -> None:
        self.db = db
        self.settings = settings
        self.audit = audit
        self.files = files

    async def run_once(self, now: datetime | None = None, settled: bool = False
                       ) -> MoveReport:
        """``settled``: nothing writes to the spool any more (the node's Asterisk is
        stopped or idle), so a recording need not have been quiet for the settle time."""
        now = now or datetime.now(UTC)
        settle = 0 if settled else self.settings.recordings.settle_seconds
        cutoff = now - timedelta(seconds=settle)
        report = MoveReport()
        passed: set[uuid.UUID] = set()
        while await self._batch(now, cutoff, passed, report):
            pass
        await self._remove_leftovers(report)
        return report

    def _finished(self, now: datetime, cutoff: datetime) -> tuple[ColumnElement[bool], ...]:
        return (Call.node == self.settings.node, Call.ended_at <= cutoff,
                Recording.mixmonitor_id.is_not(None), Recording.not_started_at.is_(None),
                Recording.stored_at.is_(None), Recording.deleted_at.is_(None),
                Recording.expires_at > now,
                or_(Recording.stopped_at.is_(None), Recording.stopped_at <= cutoff))

    async def _batch(self, now: datetime, cutoff: datetime, passed: set[uuid.UUID],
                     report: MoveReport) -> bool:
        """Claim, move and record one batch; ``False`` when there was nothing left."""
        moved: list[Recording] = []
        async with self.db.session() as session, session.begin():
            query = (select(Recording).join(Call, Call.id == Recording.call_id)
                     .where(*self._finished(now, cutoff))
                     .order_by(Recording.started_at).limit(BATCH)
                     .with_for_update(of=Recording, skip_locked=True))
            if passed:
                query = query.where(Recording.id.not_in(passed))
            recordings = (await session.execute(query)).scalars().all()
            for recording in recordings:
                result = await asyncio.to_thread(self._move, recording, cutoff)
                if isinstance(result, Moved):
                    self._stored(recording, result.copy, now)
                    moved.append(recording)
                else:
                    passed.add(recording.id)
                    self._not_moved(recording, result, report)
            await self._audit(session, moved)
        for recording in moved:  # committed: only now may the spool copy go
            report.moved += 1
            await self._delete_spool_copy(recording.file_name)
        return bool(recordings)

    def _move(self, recording: Recording, cutoff: datetime) -> Moved | NotMoved:
        """Copy one file into the store and verify the copy (blocking: runs in a thread)."""
        path = self.files.spool_path(recording.file_name)
        try:
            modified = path.stat().st_mtime
        except FileNotFoundError:
            return NotMoved("missing", f"not in this node's spool ({self.files.spool})")
        except OSError as exc:  # one file that cannot be read must not stop the others
            return NotMoved("failed", f"{type(exc).__name__}: {exc.strerror or exc}")
        if modified > cutoff.timestamp():
            return NotMoved("waiting")
        store = self.files.store
        try:
            copy = store.put(path, store_key(recording.file_name, recording.started_at))
            stored = store.checksum(copy.location)
        except (OSError, ValueError) as exc:  # ValueError: a key the store cannot take
            return NotMoved("failed", f"{type(exc).__name__}: "
                            f"{getattr(exc, 'strerror', None) or exc}")
        problem = None
        if stored != copy.sha256:
            problem = (f"hash mismatch: spool {copy.sha256}, store "
                       f"{stored or 'nothing'} at {copy.location}")
        elif recording.sha256 is not None and recording.sha256 != copy.sha256:
            problem = (f"hash mismatch: the spool file ({copy.sha256}) is not the file "
                       f"recorded ({recording.sha256})")
        if problem is None:
            return Moved(copy)
        try:
            store.delete(copy.location)  # a bad copy must not outlive the recording
        except OSError as exc:
            problem += f"; the bad copy could not be removed: {exc}"
        return NotMoved("failed", problem)

    def _stored(self, recording: Recording, copy: StoredCopy, now: datetime) -> None:
        recording.stored_location = copy.location
        recording.stored_at = now
        recording.sha256 = copy.sha256
        recording.size_bytes = copy.size
        recording.store_error = None

    def _not_moved(self, recording: Recording, result: NotMoved, report: MoveReport) -> None:
        if result.kind == "waiting":
            report.waiting += 1
            return
        recording.store_attempts += 1
        recording.store_error = (result.error or result.kind)[:300]
        extra = {"recording": str(recording.id), "error": recording.store_error,
                 "attempts": recording.store_attempts}
        if result.kind == "missing":
            report.missing += 1
            log.warning("recording file not found in the spool; looked for again next run",
                        extra=extra)
            return
        report.failed += 1
        report.errors.append(f"{recording.file_name}: {recording.store_error}")
        log.error("recording not moved to the store; the spool copy is kept and the move "
                  "retried next run", extra=extra)

    async def _audit(self, session: AsyncSession, moved: list[Recording]) -> None:
        """Last in the transaction: the entries commit with the rows they record."""
        for recording in moved:
            await self.audit.append(session, ACTOR, RECORDING_STORED, "recording",
                                    str(recording.id),
                                    {"location": recording.stored_location,
                                     "sha256": recording.sha256,
                                     "size": recording.size_bytes,
                                     "node": self.settings.node})

    async def _delete_spool_copy(self, file_name: str) -> None:
        path = self.files.spool_path(file_name)
        try:
            await asyncio.to_thread(path.unlink, missing_ok=True)
        except OSError as exc:
            log.error("spool copy of a stored recording not deleted; removed next run",
                      extra={"file": file_name, "error": str(exc)})

    async def _remove_leftovers(self, report: MoveReport) -> None:
        """Spool copies of recordings already stored (a run stopped between its commit and
        the deletion) or deleted: a stored one goes once its hash matches the stored hash;
        a deleted one goes at once (the recording must not outlive its deletion)."""
        names = await asyncio.to_thread(self._spool_files)
        for start in range(0, len(names), 500):
            chunk = names[start:start + 500]
            async with self.db.session() as session:
                rows = (await session.execute(
                    select(Recording.file_name, Recording.sha256, Recording.deleted_at)
                    .where(Recording.file_name.in_(chunk),
                           or_(Recording.stored_at.is_not(None),
                               Recording.deleted_at.is_not(None))))).all()
            for file_name, sha256, deleted_at in rows:
                if await asyncio.to_thread(self._remove_leftover, file_name, sha256,
                                           deleted_at is not None):
                    report.leftovers_removed += 1

    def _spool_files(self) -> list[str]:
        try:
            return sorted(p.name for p in self.files.spool.iterdir()
                          if p.is_file() and not p.name.startswith("."))
        except FileNotFoundError:
            return []

    def _remove_leftover(self, file_name: str, sha256: str | None, deleted: bool) -> bool:
        location = self.files.spool_location(file_name)
        try:
            if not deleted and self.files.checksum(location) != sha256:
                log.warning("a spool file differs from its stored copy; kept",
                            extra={"file": file_name})
                return False
            return self.files.delete(location) is not None
        except OSError as exc:
            log.error("spool leftover not removed", extra={"file": file_name,
                                                           "error": str(exc)})
            return False
