"""Retiring a node for good (``ivr jobs retire-node``), against a real PostgreSQL: what only
the node can reach (its notes, its spool) is handed over, its calls left open are closed,
and nothing happens while its Asterisk still has calls."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from ivr.calls.dialplan_notice import decide
from ivr.calls.inbound import CallDeps
from ivr.jobs.node_retirement import NodeInUse, retire
from ivr.jobs.recording_moves import RecordingMoveJob
from ivr.recordings.files import RecordingFiles
from ivr.settings import Settings
from ivr.store.audit import AuditLog
from ivr.store.callbacks import Callbacks
from ivr.store.database import Database
from ivr.store.durable import DurableRecords
from ivr.store.journal import Journal
from ivr.store.receipts import CallRecords

from .conftest import OwnDatabase
from .test_dialplan_calls import CONSENT, NODE, caller, channel, manifest, stored, write_note


@pytest.fixture(scope="module")
async def database(own_database: OwnDatabase) -> AsyncIterator[Database]:
    async with own_database(2) as db:
        yield db


@pytest.fixture
def deps(database: Database, tmp_path: Path, isolated: None) -> CallDeps:
    for name in ("notes", "spool", "store", "journal"):
        (tmp_path / name).mkdir(mode=0o750)
    settings = Settings(
        mode="test", node=NODE,
        unattended={"asterisk_dir": tmp_path / "notes", "local_dir": tmp_path / "notes"},
        recordings={"local_dir": tmp_path / "spool", "asterisk_dir": tmp_path / "spool",
                    "store": {"kind": "directory", "path": tmp_path / "store"},
                    "settle_seconds": 600},
        journal={"directory": tmp_path / "journal"})
    callbacks = Callbacks(database, 60)
    records = DurableRecords(CallRecords(database, AuditLog(database), NODE), callbacks,
                             Journal(settings.journal.directory), 2.0)
    none: Any = None
    return CallDeps(settings, none, none, records, manifest(), callbacks)


def moves(deps: CallDeps, database: Database) -> RecordingMoveJob:
    return RecordingMoveJob(database, deps.settings, AuditLog(database),
                            RecordingFiles.from_settings(deps.settings.recordings))


async def pbx_with(channels: int | None) -> int | None:
    return channels


async def consented(deps: CallDeps) -> tuple[str, str, str]:
    """A call that consented; its channel, caller and the file it may be recorded into."""
    channel_id, number = channel(), caller()
    decided = await decide(deps, channel_id, replace(CONSENT, caller=number).report())
    assert decided is not None and decided[1] is not None
    return channel_id, number, decided[1]


async def test_a_retiring_node_hands_over_its_notes_calls_and_recordings(
        deps: CallDeps, database: Database, tmp_path: Path) -> None:
    """Three calls decided before the node's service stopped: one whose end the dialplan
    noted, one whose note was lost but whose file is on the spool, one that never reached
    MixMonitor. All three end closed; both recordings are in the store, none on the spool;
    the report says the node may go."""
    spool = tmp_path / "spool"
    noted, number, noted_file = await consented(deps)
    write_note(tmp_path / "notes" / f"{noted}.notice", replace(CONSENT, caller=number).note(
        noted, decision="consent", recording=noted_file, recording_at=10.2,
        mixmonitor="0x7f3a5c001e42", agent="PJSIP/agent1"))
    (spool / noted_file).write_bytes(b"RIFF noted call")
    unnoted, _, unnoted_file = await consented(deps)
    (spool / unnoted_file).write_bytes(b"RIFF call whose note was lost")
    never, _, never_file = await consented(deps)

    with pytest.raises(NodeInUse, match="still has 2 channel"):
        await retire(deps, moves(deps, database), lambda: pbx_with(2))
    assert (await stored(database, noted)).call.ended_at is None  # nothing was touched

    report = await retire(deps, moves(deps, database), lambda: pbx_with(0))

    assert report.as_json() | {"recordings": None} == {
        "node": NODE, "asterisk": "no channels", "journal_entries": 0, "notes_recorded": 1,
        "calls_closed": 2, "recordings": None, "ready_to_go": True, "left": []}
    assert report.recordings.moved == 2 and report.recordings.failed == 0
    assert sorted(p.name for p in spool.iterdir()) == []
    assert sorted(p.name for p in (tmp_path / "store").rglob("*.wav")) == sorted(
        [noted_file, unnoted_file])
    assert list((tmp_path / "notes").iterdir()) == []
    by_note = await stored(database, noted)
    assert (by_note.call.state, by_note.call.agent) == ("ended", "PJSIP/agent1")
    assert by_note.recordings[0].mixmonitor_id == "0x7f3a5c001e42"
    assert by_note.recordings[0].stored_at is not None
    by_spool = await stored(database, unnoted)
    assert by_spool.call.state == "recovered"
    assert by_spool.recordings[0].mixmonitor_id == "unknown (file on disk)"
    assert by_spool.recordings[0].stored_at is not None
    not_started = await stored(database, never)
    assert not_started.call.state == "recovered"
    assert not_started.recordings[0].not_started_at is not None
    assert not (spool / never_file).exists()

    again = await retire(deps, moves(deps, database), lambda: pbx_with(0))
    assert (again.notes_recorded, again.calls_closed, again.recordings.moved, again.left) == (
        0, 0, 0, [])


async def test_the_last_calls_note_written_a_moment_ago_is_read_once_it_settles(
        deps: CallDeps, database: Database, tmp_path: Path) -> None:
    """Asterisk has no channel left, but the last call's hangup handler wrote its note a
    moment ago: retiring waits for the note to settle (2 s) and records it in the same
    run, instead of asking to be run again."""
    channel_id, number, _ = await consented(deps)  # the dialplan never reached MixMonitor
    write_note(tmp_path / "notes" / f"{channel_id}.notice",
               replace(CONSENT, caller=number).note(channel_id, decision="consent",
                                                    agent="PJSIP/agent1"), age=0.2)
    report = await retire(deps, moves(deps, database), lambda: pbx_with(None))
    assert report.asterisk == "stopped (nothing listens at ARI's address)"
    assert (report.notes_recorded, report.calls_closed, report.left) == (1, 0, [])
    assert report.as_json()["ready_to_go"] is True
    assert list((tmp_path / "notes").iterdir()) == []
    assert (await stored(database, channel_id)).call.state == "ended"


async def test_a_note_still_being_written_keeps_the_node(
        deps: CallDeps, database: Database, tmp_path: Path) -> None:
    """A note that does not settle within the wait (still written to, or stamped ahead by
    a clock set back) is left, and the report says the node is not ready to go yet."""
    channel_id = channel()
    write_note(tmp_path / "notes" / f"{channel_id}.notice",
               CONSENT.note(channel_id, decision="consent"), age=-30)
    report = await retire(deps, moves(deps, database), lambda: pbx_with(None))
    assert report.as_json()["ready_to_go"] is False
    assert report.notes_recorded == 0
    assert report.left[0].startswith(f"1 note(s) not recorded yet in {tmp_path / 'notes'}")
