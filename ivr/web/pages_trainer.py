"""The trainer's page: sales recordings within retention, played in the page; every play
is logged with purpose training (rule 7). Consent-based recordings are never offered."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated

from fastapi import APIRouter, HTTPException, Request
from fastapi.responses import FileResponse, Response
from sqlalchemy import select

from ivr.policy.purposes import allowed
from ivr.store.models import Recording
from ivr.web.app import console_of, role
from ivr.web.auth import SessionInfo

router = APIRouter(prefix="/trainer")
Trainer = Annotated[SessionInfo, role("trainer")]


@router.get("")
async def recordings(request: Request, me: Trainer) -> Response:
    console = console_of(request)
    async with console.db.session() as session:
        rows = (await session.execute(select(Recording).where(
            Recording.basis == "legal_basis", Recording.deleted_at.is_(None),
            Recording.expires_at > datetime.now(UTC)).order_by(
            Recording.started_at.desc()).limit(100))).scalars().all()
    return console.render(request, "trainer.html", me, recordings=[
        {"id": str(r.id), "file_name": r.file_name, "started_local": console.local(r.started_at)}
        for r in rows])


@router.get("/recordings/{recording_id}/audio")
async def audio(request: Request, recording_id: uuid.UUID, me: Trainer) -> Response:
    console = console_of(request)
    async with console.db.session() as session, session.begin():
        recording = await session.get(Recording, recording_id)
        if (recording is None or not allowed(recording.basis, "training")
                or recording.deleted_at is not None
                or recording.expires_at <= datetime.now(UTC)):
            raise HTTPException(404, "no such recording for training")
        path = Path(console.settings.recordings.local_dir) / recording.file_name
        if not path.is_file():
            raise HTTPException(404, "the file is missing")
        await console.audit.append(session, me.username, "recording_accessed", "recording",
                                   str(recording.id), {"purpose": "training",
                                                       "via": "console"})
    return FileResponse(path, media_type="audio/wav")
