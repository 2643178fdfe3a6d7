"""Deleting recordings on time (rules 6 and 8), safely with several instances at once.

Rows are claimed with ``FOR UPDATE SKIP LOCKED``: two runners never delete the same file
or certify it twice. A recording is deleted where it is now: in the recording store once
moved there (``stored_location``), else on its node's spool, which only that node's job
can reach (another node's job leaves it, and a revocation covering it stays open until
that node has deleted it). A copy left behind by an interrupted move (a spool copy of a
stored recording, a store copy of one never recorded as moved) goes with it. The
certificate names the location. A file already gone counts as deleted (its certificate says so); a
file that cannot be deleted is not marked deleted: its attempts and error are kept, it is
flagged for people at once, and every run tries again.
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import ColumnElement, or_, select
from sqlalchemy.ext.asyncio import AsyncSession

from ivr.policy.deadlines import deadline_end
from ivr.recordings.files import RecordingFiles
from ivr.recordings.location import store_key
from ivr.settings import Settings
from ivr.store.audit import AuditLog
from ivr.store.database import Database
from ivr.store.models import Call, DeletionCertificate, Recording, Revocation

log = logging.getLogger(__name__)

# Rows whose file may be on disk: not deleted yet, and not a recording that never started.
ON_DISK = (Recording.deleted_at.is_(None), Recording.not_started_at.is_(None))

BATCH = 200
ACTOR = "deletion-job"


@dataclass
class DeletionReport:
    deleted: int = 0
    already_gone: int = 0
    failed: int = 0
    revocations_fulfilled: int = 0
    errors: list[str] = field(default_factory=list)

    def as_json(self) -> dict[str, object]:
        return {"deleted": self.deleted, "already_gone": self.already_gone,
                "failed": self.failed, "revocations_fulfilled": self.revocations_fulfilled,
                "errors": self.errors}


class DeletionJob:
    def __init__(self, db: Database, settings: Settings, audit: AuditLog,
                 files: RecordingFiles | None = None) -> None:
        self.db = db
        self.settings = settings
        self.audit = audit
        self.files = files or RecordingFiles.from_settings(settings.recordings)

    def reachable(self) -> ColumnElement[bool]:
        """Rows whose file this job can reach: in the store, or on this node's spool
        (calls of no node predate nodes: this node's)."""
        return or_(Recording.stored_at.is_not(None), Call.node == self.settings.node,
                   Call.node.is_(None))

    def _delete_copies(self, recording: Recording) -> tuple[str, str | None, list[str]]:
        """Delete any copy an interrupted move left behind, then the file where it is
        (blocking: runs in a thread). Returns (location, sha256 or None if it was not
        there, other locations a copy was removed from)."""
        if recording.stored_location is not None:
            other = self.files.spool_location(recording.file_name)
        else:
            other = self.files.store.location(store_key(recording.file_name,
                                                        recording.started_at))
        removed = [other] if self.files.delete(other) is not None else []
        location = self.files.location(recording)
        return location, self.files.delete(location), removed

    async def run_once(self, now: datetime | None = None) -> DeletionReport:
        now = now or datetime.now(UTC)
        report = DeletionReport()
        await self.retention(now, report)
        await self.revocations(now, report)
        return report

    def retention_deadline(self, recording: Recording) -> datetime:
        """The end of the (local) day the retention ends on: the job selects a recording
        only once ``expires_at`` has passed, so that instant itself could never be met. A
        period of months ends with the last instant of its last day."""
        tz = self.settings.timezone
        return deadline_end(recording.expires_at.astimezone(ZoneInfo(tz)).date(), tz)

    # rule 6 ------------------------------------------------------------------------------
    async def retention(self, now: datetime, report: DeletionReport) -> None:
        failed: set[uuid.UUID] = set()
        while True:
            async with self.db.session() as session, session.begin():
                query = (select(Recording).join(Call, Call.id == Recording.call_id)
                         .where(*ON_DISK, self.reachable(), Recording.expires_at <= now)
                         .order_by(Recording.expires_at).limit(BATCH)
                         .with_for_update(of=Recording, skip_locked=True))
                if failed:
                    query = query.where(Recording.id.not_in(failed))
                recordings = (await session.execute(query)).scalars().all()
                for recording in recordings:
                    ok = await self._delete(session, recording, "retention", None,
                                            self.retention_deadline(recording), now, report)
                    if not ok:
                        failed.add(recording.id)
            if not recordings:
                return

    # rule 8 ------------------------------------------------------------------------------
    async def revocations(self, now: datetime, report: DeletionReport) -> None:
        async with self.db.session() as session:
            pending = (await session.execute(select(Revocation.id).where(
                Revocation.fulfilled_at.is_(None)).order_by(Revocation.deadline))).scalars().all()
        for revocation_id in pending:
            await self._revocation(revocation_id, now, report)

    async def _revocation(self, revocation_id: uuid.UUID, now: datetime,
                          report: DeletionReport) -> None:
        async with self.db.session() as session, session.begin():
            revocation = (await session.execute(select(Revocation).where(
                Revocation.id == revocation_id, Revocation.fulfilled_at.is_(None))
                .with_for_update(skip_locked=True))).scalar_one_or_none()
            if revocation is None:
                return  # fulfilled meanwhile, or another runner has it
            deadline = deadline_end(revocation.deadline, self.settings.timezone)
            covered = (await session.execute(
                select(Recording).join(Call, Call.id == Recording.call_id)
                .where(Call.caller == revocation.caller, Recording.basis == "consent",
                       *ON_DISK, self.reachable(),
                       Recording.started_at <= revocation.received_at)
                .with_for_update(of=Recording, skip_locked=True))).scalars().all()
            complete = True
            for recording in covered:
                complete &= await self._delete(session, recording, "revocation", revocation.id,
                                               deadline, now, report)
            left = (await session.execute(
                select(Recording.id).join(Call, Call.id == Recording.call_id)
                .where(Call.caller == revocation.caller, Recording.basis == "consent",
                       *ON_DISK,
                       Recording.started_at <= revocation.received_at).limit(1))).first()
            if complete and left is None:
                revocation.fulfilled_at = now
                report.revocations_fulfilled += 1
                await self.audit.append(session, ACTOR, "revocation_fulfilled", "revocation",
                                        str(revocation.id),
                                        {"deadline": revocation.deadline.isoformat(),
                                         "met": now <= deadline,
                                         "recordings": len(covered)})

    # one file ----------------------------------------------------------------------------
    async def _delete(self, session: AsyncSession, recording: Recording, reason: str,
                      revocation_id: uuid.UUID | None, deadline: datetime, now: datetime,
                      report: DeletionReport) -> bool:
        try:
            location, sha256, removed = await asyncio.to_thread(self._delete_copies, recording)
        except OSError as exc:
            recording.deletion_attempts += 1
            recording.deletion_error = f"{type(exc).__name__}: {exc.strerror or exc}"[:300]
            if recording.deletion_flagged_at is None:
                recording.deletion_flagged_at = now
            report.failed += 1
            report.errors.append(f"{recording.file_name}: {recording.deletion_error}")
            log.error("recording could not be deleted; retried on the next run",
                      extra={"recording": str(recording.id), "error": recording.deletion_error,
                             "deadline": deadline.isoformat()})
            return False
        existed = sha256 is not None
        sha256 = sha256 or recording.sha256
        recording.deleted_at = now
        recording.deleted_sha256 = sha256
        recording.deletion_reason = reason
        recording.deletion_error = None
        session.add(DeletionCertificate(
            recording_id=recording.id, revocation_id=revocation_id, reason=reason,
            file_name=recording.file_name, file_sha256=sha256, file_existed=existed,
            location=location, deleted_at=now, deadline=deadline, met=now <= deadline))
        details: dict[str, Any] = {"reason": reason, "sha256": sha256, "file_existed": existed,
                                   "met": now <= deadline, "location": location}
        if removed:
            details["copies_removed"] = removed
        await self.audit.append(session, ACTOR, "recording_deleted", "recording",
                                str(recording.id), details)
        if existed:
            report.deleted += 1
        else:
            report.already_gone += 1
        return True
