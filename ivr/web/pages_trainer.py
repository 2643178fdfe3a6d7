"""The trainer's page: sales recordings within retention, played in the page; every play
is logged with purpose training (rule 7). Consent-based recordings are never offered."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import Annotated

from fastapi import APIRouter, HTTPException, Request
from fastapi.responses import FileResponse, Response, StreamingResponse
from sqlalchemy import select

from ivr.policy.purposes import allowed
from ivr.recordings.files import RecordingFiles
from ivr.recordings.local import CHUNK
from ivr.recordings.location import FileLocation, parse
from ivr.recordings.store import Readable
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
        # Where it is now: the recording store once moved, else this node's spool.
        files = console.files
        assert files is not None  # set by Console itself
        location = files.location(recording)
        where = parse(location)
        if isinstance(where, FileLocation) and not where.path.is_file():
            raise HTTPException(404, "the file is missing")
        await console.audit.append(session, me.username, "recording_accessed", "recording",
                                   str(recording.id), {"purpose": "training",
                                                       "via": "console"})
        if isinstance(where, FileLocation):
            return FileResponse(where.path, media_type="audio/wav")
        # In an object store: streamed. Opened last, so that a refusal rolls back the entry.
        reader = await _open(files, location)
    return StreamingResponse(_chunks(reader), media_type="audio/wav")


async def _open(files: RecordingFiles, location: str) -> Readable:
    try:
        return await asyncio.to_thread(files.open, location)
    except FileNotFoundError:
        raise HTTPException(404, "the file is missing") from None
    except OSError:
        raise HTTPException(503, "the recording store cannot be reached") from None


async def _chunks(reader: Readable) -> AsyncIterator[bytes]:
    """The stored object, read in a thread block by block."""
    try:
        while block := await asyncio.to_thread(reader.read, CHUNK):
            yield block
    finally:
        await asyncio.to_thread(reader.close)
