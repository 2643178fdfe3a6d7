"""Handing out a recording, for a purpose its basis allows (rule 7), within retention
(rule 6), every access audited."""

from __future__ import annotations

import asyncio
import os
import uuid
from datetime import datetime
from pathlib import Path

from sqlalchemy import select

from ivr.policy.purposes import ALLOWED, allowed
from ivr.recordings.files import RecordingFiles
from ivr.recordings.local import CHUNK
from ivr.settings import Settings
from ivr.store.audit import AuditLog
from ivr.store.database import Database
from ivr.store.models import Recording


class AccessRefused(Exception):
    """The recording may not be handed out; the message says why. Nothing was written."""


class RecordingAccess:
    def __init__(self, db: Database, settings: Settings, audit: AuditLog,
                 files: RecordingFiles | None = None) -> None:
        self.db = db
        self.settings = settings
        self.audit = audit
        self.files = files or RecordingFiles.from_settings(settings.recordings)

    async def get(self, recording_id: uuid.UUID, purpose: str, by: str, out: Path,
                  now: datetime) -> Recording:
        async with self.db.session() as session, session.begin():
            recording = (await session.execute(select(Recording).where(
                Recording.id == recording_id))).scalar_one_or_none()
            if recording is None:
                raise AccessRefused(f"no recording {recording_id}")
            if not allowed(recording.basis, purpose):
                allowed_for = ", ".join(sorted(ALLOWED.get(recording.basis, ())))
                raise AccessRefused(f"a {recording.basis} recording may not be used for "
                                    f"{purpose} (allowed: {allowed_for})")
            if recording.deleted_at is not None or recording.expires_at <= now:
                raise AccessRefused("the recording is past its retention or deleted")
            # Where it is now: the recording store once moved, else the node's spool.
            location = self.files.location(recording)
            # Audited in the same transaction: a failed copy rolls the entry back.
            await self.audit.append(session, by, "recording_accessed", "recording",
                                    str(recording.id), {"purpose": purpose, "out": str(out)})
            await asyncio.to_thread(_copy_out, self.files, location, recording.file_name, out)
            return recording


def _copy_out(files: RecordingFiles, location: str, name: str, out: Path) -> None:
    """Copy the file at ``location`` to a new file ``out`` (0600); never overwrite; nothing
    left on error."""
    try:
        source = files.open(location)
    except (FileNotFoundError, IsADirectoryError):
        raise AccessRefused(f"the file {name} is missing") from None
    try:
        try:
            fd = os.open(out, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        except FileExistsError:
            raise AccessRefused(f"{out} exists already: nothing overwritten") from None
        try:
            with os.fdopen(fd, "wb") as target:
                for block in iter(lambda: source.read(CHUNK), b""):
                    target.write(block)
        except BaseException:
            out.unlink(missing_ok=True)
            raise
    finally:
        source.close()
