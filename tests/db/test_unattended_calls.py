"""Calls the dialplan took while no instance ran, recorded from its notes (rule 4): a call
with no decision and the notice not heard, a missed call that opens a callback with the
notice required, nothing for a call an agent answered, and a note read twice changes
nothing."""

from __future__ import annotations

import os
import time
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select

from ivr.calls.inbound import CallDeps
from ivr.calls.unattended import collect_unattended
from ivr.settings import Settings
from ivr.store.audit import AuditLog
from ivr.store.callbacks import Callbacks
from ivr.store.database import Database
from ivr.store.durable import DurableRecords
from ivr.store.models import Call, Callback, Decision, MissedCall
from ivr.store.receipts import CallRecords

from .conftest import OwnDatabase

NOTE = ("v=1&channel={channel}&entered=1795404928.120&ended=1795404961.905"
        "&dialled=040404040&caller={caller}&agent={agent}&queue_status=TIMEOUT\n")


@pytest.fixture(scope="module")
async def database(own_database: OwnDatabase) -> AsyncIterator[Database]:
    async with own_database(2) as db:
        yield db


def write_note(path: Path, text: str) -> None:
    """A note as Asterisk left it a minute ago (newer ones wait: it may be writing)."""
    path.write_text(text)
    os.utime(path, (time.time() - 60, time.time() - 60))


def deps_for(db: Database, notes: Path) -> CallDeps:
    settings = Settings(mode="test", node="node-u",
                        unattended={"asterisk_dir": notes, "local_dir": notes})
    callbacks = Callbacks(db, 60)
    records = DurableRecords(CallRecords(db, AuditLog(db), "node-u"), callbacks, None, 2.0)
    none: Any = None
    return CallDeps(settings, none, none, records, none, callbacks)


async def test_notes_become_calls_and_callbacks_once(database: Database,
                                                     tmp_path: Path) -> None:
    write_note(tmp_path / "a.call", NOTE.format(channel="u-1.1", caller="031000951",
                                                agent=""))
    write_note(tmp_path / "b.call", NOTE.format(channel="u-1.2", caller="031000952",
                                                agent="PJSIP%2Fagent1"))
    deps = deps_for(database, tmp_path)
    assert await collect_unattended(deps) == 2
    assert not list(tmp_path.glob("*.call"))  # read and removed
    write_note(tmp_path / "a.call", NOTE.format(channel="u-1.1", caller="031000951",
                                                agent=""))  # the same note again
    assert await collect_unattended(deps) == 1

    async with database.session() as session:
        calls = {c.channel_id: c for c in (await session.execute(
            select(Call).where(Call.node == "node-u"))).scalars()}
        assert set(calls) == {"u-1.1", "u-1.2"}
        missed = calls["u-1.1"]
        assert (missed.caller, missed.line_name, missed.end_reason, missed.notice_completed,
                missed.agent_answered) == ("+38631000951", "service", "service_unavailable",
                                           False, False)
        answered = calls["u-1.2"]
        assert (answered.agent_answered, answered.agent) == (True, "PJSIP/agent1")
        assert (await session.execute(select(Decision).where(
            Decision.call_id.in_([c.id for c in calls.values()])))).first() is None
        rows = (await session.execute(select(MissedCall.call_id, MissedCall.reason).where(
            MissedCall.caller.in_(["+38631000951", "+38631000952"])))).all()
        assert [(r.call_id, r.reason) for r in rows] == [(missed.id, "timeout")]
        callback = (await session.execute(select(Callback).where(
            Callback.caller == "+38631000951"))).scalar_one()
        assert (callback.status, callback.record, callback.notice_required) == (
            "open", False, True)
    assert isinstance(missed.id, uuid.UUID)
