"""Handing out a recording, for a purpose its basis allows (rule 7), within retention
(rule 6), every access audited."""

from __future__ import annotations

import asyncio
import os
import shutil
import uuid
from datetime import datetime
from pathlib import Path

from sqlalchemy import select

from ivr.policy.purposes import ALLOWED, allowed
from ivr.settings import Settings
from ivr.store.audit import AuditLog
from ivr.store.database import Database
from ivr.store.models import Recording


class AccessRefused(Exception):
    """The recording may not be handed out; the message says why. Nothing was written."""


class RecordingAccess:
    def __init__(self, db: Database, settings: Settings, audit: AuditLog) -> None:
        self.db = db
        self.settings = settings
        self.audit = audit

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
            source = Path(self.settings.recordings.local_dir) / recording.file_name
            # Audited in the same transaction: a failed copy rolls the entry back.
            await self.audit.append(session, by, "recording_accessed", "recording",
                                    str(recording.id), {"purpose": purpose, "out": str(out)})
            await asyncio.to_thread(_copy_out, source, out)
            return recording


def _copy_out(source: Path, out: Path) -> None:
    """Copy ``source`` to a new file ``out`` (0600); never overwrite; nothing left on error."""
    if not source.is_file():
        raise AccessRefused(f"the file {source.name} is missing")
    try:
        fd = os.open(out, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        raise AccessRefused(f"{out} exists already: nothing overwritten") from None
    try:
        with os.fdopen(fd, "wb") as target, source.open("rb") as f:
            shutil.copyfileobj(f, target)
    except BaseException:
        out.unlink(missing_ok=True)
        raise
