"""What the recording store's tests share: a database of their own, a node's spool and a
store directory in ``tmp_path``, and calls with a finished recording on a given node."""

from __future__ import annotations

import hashlib
import os
import time
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from sqlalchemy import select

from ivr.jobs.deletion import DeletionJob
from ivr.jobs.recording_moves import RecordingMoveJob
from ivr.recordings.files import RecordingFiles, build_store
from ivr.recordings.store import RecordingStore
from ivr.settings import Settings
from ivr.store.audit import AuditLog
from ivr.store.database import Database
from ivr.store.models import AuditEntry, Call, Decision, DeletionCertificate, Recording

from .conftest import OwnDatabase

CALLER = "+38631111111"
DIALLED = {"sales": "+38640404045", "service": "+38640404040"}
HOUR_AGO = time.time() - 3600


@dataclass
class Node:
    """One service instance: its name, its spool, its settings and database pool."""

    name: str
    spool: Path
    settings: Settings
    db: Database

    def files(self, store: RecordingStore | None = None) -> RecordingFiles:
        return RecordingFiles(self.spool, store or build_store(self.settings.recordings))

    def move_job(self, store: RecordingStore | None = None) -> RecordingMoveJob:
        return RecordingMoveJob(self.db, self.settings, AuditLog(self.db), self.files(store))

    def deletion_job(self, store: RecordingStore | None = None) -> DeletionJob:
        return DeletionJob(self.db, self.settings, AuditLog(self.db), self.files(store))


@asynccontextmanager
async def node(url: str, name: str, spool: Path, store: dict[str, Any],
               settle_seconds: int = 0) -> AsyncIterator[Node]:
    spool.mkdir(mode=0o750, parents=True, exist_ok=True)
    settings = Settings(mode="test", node=name, database={"url": url, "pool_size": 5},
                        recordings={"local_dir": spool, "asterisk_dir": spool,
                                    "store": store, "settle_seconds": settle_seconds})
    db = Database(settings.database)
    try:
        yield Node(name, spool, settings, db)
    finally:
        await db.dispose()


@asynccontextmanager
async def migrated(own_database: OwnDatabase) -> AsyncIterator[str]:
    async with own_database(2) as database:
        yield database.url.render_as_string(hide_password=False)


@dataclass(frozen=True)
class Made:
    id: uuid.UUID
    call_id: uuid.UUID
    file_name: str
    path: Path
    data: bytes
    started_at: datetime

    @property
    def sha256(self) -> str:
        return hashlib.sha256(self.data).hexdigest()


async def add_recording(on: Node, basis: str = "legal_basis", *,
                        ended: datetime | None = None, write: bool = True,
                        data: bytes | None = None, call_node: str | None = "same",
                        started: datetime | None = None, expires: datetime | None = None,
                        caller: str = CALLER, not_started: bool = False) -> Made:
    """A closed call of ``on``'s node (or ``call_node``) with its decision and a recording
    MixMonitor wrote to the spool (mode 0640, last written an hour ago)."""
    now = datetime.now(UTC)
    started = started or now - timedelta(minutes=20)
    line_kind = "sales" if basis == "legal_basis" else "service"
    call_id = uuid.uuid4()
    file_name = f"{call_id}.wav"  # named from the call's id, as the service names them
    call = Call(id=call_id, channel_id=f"test-{uuid.uuid4().hex}", linkedid="1.1",
                direction="inbound", dialled=DIALLED[line_kind], caller=caller, caller_raw=caller,
                line_name=line_kind, line_kind=line_kind,
                started_at=started - timedelta(seconds=20), answered_at=started,
                ended_at=ended, end_reason="caller" if ended else None,
                notice_completed=True, agent_answered=True, agent="agent-7",
                state="ended" if ended else "decided",
                node=on.name if call_node == "same" else call_node)
    data = data if data is not None else b"RIFF" + os.urandom(20_000) + b"WAVE"
    async with on.db.session() as session, session.begin():
        session.add(call)
        await session.flush()
        consent = line_kind == "service"
        session.add(Decision(
            call_id=call.id, decision="consent" if consent else "legal_basis",
            line_kind=line_kind, digit="1" if consent else None,
            digit_at=started - timedelta(seconds=2) if consent else None,
            prompts_played=[{"id": line_kind, "version": "1", "sha256": "0" * 64}],
            notice_started_at=started - timedelta(seconds=18),
            notice_ended_at=started - timedelta(seconds=1), decided_at=started))
        recording = Recording(
            call_id=call.id, basis=basis, file_name=file_name,
            mixmonitor_id=None if not_started else "mm-1",
            not_started_at=started if not_started else None, started_at=started,
            stopped_at=ended, expires_at=expires or started + timedelta(days=182))
        session.add(recording)
    path = on.spool / file_name
    if write:
        path.write_bytes(data)
        path.chmod(0o640)
        os.utime(path, (HOUR_AGO, HOUR_AGO))
    return Made(recording.id, call_id, file_name, path, data, started)


async def row(on: Node, made: Made) -> Recording:
    async with on.db.session() as session:
        found = await session.get(Recording, made.id)
        assert found is not None
        return found


async def audit_entries(on: Node, action: str) -> list[AuditEntry]:
    async with on.db.session() as session:
        return list((await session.execute(select(AuditEntry).where(
            AuditEntry.action == action).order_by(AuditEntry.id))).scalars())


async def certificates(on: Node) -> list[DeletionCertificate]:
    async with on.db.session() as session:
        return list((await session.execute(select(DeletionCertificate))).scalars())


async def assert_audit_intact(on: Node) -> None:
    result = await AuditLog(on.db).verify()
    assert result.ok, result.problem
