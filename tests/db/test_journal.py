"""The outage journal on real PostgreSQL: while the database is unreachable each call's
writes go to a fsynced local file; replayed, they land once, in order, and a replay run
twice (a crash in the middle) duplicates nothing."""

from __future__ import annotations

import dataclasses
import os
import stat
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from pydantic import SecretStr
from sqlalchemy import func, select

from ivr.flow.commands import Decision, PlayedSegment, Receipt
from ivr.settings import DatabaseSettings
from ivr.store.audit import AuditLog
from ivr.store.callbacks import Callbacks, Missed
from ivr.store.database import Database
from ivr.store.durable import DurableRecords
from ivr.store.journal import ENTRY, CloseEntry, Journal, OpenEntry
from ivr.store.models import AuditEntry, Call, MissedCall, Recording
from ivr.store.models import Decision as DecisionRow
from ivr.store.receipts import (
    CallRecords,
    ClosedCall,
    OpenedCall,
    PlannedRecording,
    StartedRecording,
)

from .conftest import OwnDatabase

T0 = datetime(2026, 11, 23, 9, 0, tzinfo=UTC)
UNREACHABLE = "postgresql+psycopg://ivr:x@127.0.0.1:1/ivr"


@pytest.fixture(scope="module")
async def database(own_database: OwnDatabase) -> AsyncIterator[Database]:
    """A migrated database of this module's own: replays commit audit entries."""
    async with own_database(2) as db:
        yield db


@pytest.fixture
async def down() -> AsyncIterator[Database]:
    """A database that cannot be reached: nothing listens on port 1."""
    db = Database(DatabaseSettings(url=SecretStr(UNREACHABLE), pool_size=1))
    yield db
    await db.dispose()


def records_on(db: Database, journal: Journal | None) -> DurableRecords:
    return DurableRecords(CallRecords(db, AuditLog(db)), Callbacks(db, 60), journal, 2.0)


def a_call(caller: str = "+38631000801") -> OpenedCall:
    call_id = uuid.uuid4()
    return OpenedCall(id=call_id, channel_id=f"outage-{call_id.hex[:12]}",
                      linkedid="x", dialled="+38640404040", caller=caller,
                      caller_withheld=False, caller_raw=caller, line_name="service",
                      line_kind="service", started_at=T0)


def consent() -> Receipt:
    return Receipt(Decision.CONSENT, "1", T0 + timedelta(seconds=5), T0,
                   T0 + timedelta(seconds=4), T0 + timedelta(seconds=3), T0 + timedelta(seconds=5),
                   (PlayedSegment("service-notice", T0, T0 + timedelta(seconds=4)),), True)


async def one_consented_call(records: DurableRecords, call: OpenedCall, missed: bool) -> str:
    """What the inbound flow writes for a consenting caller nobody answered: the
    recording's start (MixMonitor's id) goes with the close."""
    file_name = f"{call.id}.wav"
    assert await records.open(call)
    planned = PlannedRecording(file_name, "consent", T0, T0 + timedelta(days=181))
    await records.store_decision(call.id, "service", consent(), [{"id": "service-notice"}],
                                 planned)
    await records.close(call.id, ClosedCall(T0, T0 + timedelta(seconds=30), "caller hung up",
                                            True, False, None, "ended"), file_name,
                        a_missed(call) if missed else None,
                        StartedRecording(file_name, "0xMIX", T0 + timedelta(seconds=6)))
    return file_name


def a_missed(call: OpenedCall) -> Missed:
    return Missed(call.id, call.caller, False, "abandoned", False, T0 + timedelta(seconds=30))


async def counts(db: Database, call: OpenedCall) -> dict[str, object]:
    async with db.session() as session:
        stored = (await session.execute(select(Call).where(Call.id == call.id))).scalar_one()
        recording = (await session.execute(
            select(Recording).where(Recording.call_id == call.id))).scalar_one()
        audits = (await session.execute(select(func.count()).select_from(AuditEntry).where(
            AuditEntry.subject_id == str(recording.id)))).scalar_one()
        decisions = (await session.execute(select(func.count()).select_from(DecisionRow)
                                           .where(DecisionRow.call_id == call.id))).scalar_one()
        missed = (await session.execute(select(func.count()).select_from(MissedCall)
                                        .where(MissedCall.call_id == call.id))).scalar_one()
    return {"ended": stored.ended_at is not None, "state": stored.state,
            "mixmonitor": recording.mixmonitor_id, "stopped": recording.stopped_at is not None,
            "audits": audits, "decisions": decisions, "missed": missed}


async def test_writes_during_an_outage_are_journalled_then_replayed_once(
        down: Database, database: Database, tmp_path: Path) -> None:
    journal = Journal(tmp_path / "journal")
    call = a_call()
    await one_consented_call(records_on(down, journal), call, missed=True)
    assert journal.pending()
    lines = journal.current.read_text().splitlines()
    assert [line.split('"op":"')[1].split('"')[0] for line in lines] == [
        "open", "decision", "close"]
    # the missed call and the recording's start ride with the close
    assert '"missed":{' in lines[-1] and '"mixmonitor_id":"0xMIX"' in lines[-1]

    back = records_on(database, journal)
    assert await back.replay() == 3
    assert not journal.pending()
    assert await counts(database, call) == {
        "ended": True, "state": "ended", "mixmonitor": "0xMIX", "stopped": True,
        "audits": 1, "decisions": 1, "missed": 1}


async def test_a_replay_cut_short_replays_again_without_duplicates(
        down: Database, database: Database, tmp_path: Path) -> None:
    """The service dies after writing some entries of a replay: the next replay starts
    from the file again, and every entry lands once."""
    journal = Journal(tmp_path / "journal")
    call = a_call("+38631000802")
    await one_consented_call(records_on(down, journal), call, missed=True)
    back = records_on(database, journal)
    batch = await journal.take()
    assert batch is not None
    for entry in batch.entries:  # the crash: the replay never reached done()
        await back.apply(entry)
    assert journal.replaying.exists()
    assert await back.replay() == 3
    assert await counts(database, call) == {
        "ended": True, "state": "ended", "mixmonitor": "0xMIX", "stopped": True,
        "audits": 1, "decisions": 1, "missed": 1}


async def test_once_the_journal_holds_entries_new_writes_queue_behind_them(
        down: Database, database: Database, tmp_path: Path) -> None:
    """A call opened during the outage and closed after it: its close must not reach
    PostgreSQL before its open, so it goes to the journal too until the replay."""
    journal = Journal(tmp_path / "journal")
    call = a_call("+38631000803")
    assert await records_on(down, journal).open(call)
    back = records_on(database, journal)
    await back.close(call.id, ClosedCall(None, T0, "hung up", False, False, None, "ended"),
                     None)
    assert len(journal.current.read_text().splitlines()) == 2
    assert await back.replay() == 2
    async with database.session() as session:
        stored = (await session.execute(select(Call).where(Call.id == call.id))).scalar_one()
    assert stored.end_reason == "hung up"
    # drained: the next write goes straight to PostgreSQL
    await back.close(call.id, ClosedCall(None, T0, "hung up again", False, False, None,
                                         "ended"), None)
    assert not journal.pending()


async def test_the_journal_is_private_and_fsynced_to_a_file(down: Database,
                                                            tmp_path: Path) -> None:
    journal = Journal(tmp_path / "state" / "journal")
    await records_on(down, journal).open(a_call())
    assert stat.S_IMODE(os.stat(journal.directory).st_mode) == 0o700
    assert stat.S_IMODE(os.stat(journal.current).st_mode) == 0o600


async def test_a_cut_last_line_is_kept_aside_and_the_rest_replayed(
        down: Database, database: Database, tmp_path: Path) -> None:
    journal = Journal(tmp_path / "journal")
    call = a_call("+38631000804")
    await records_on(down, journal).open(call)
    with journal.current.open("ab") as out:
        out.write(b'{"op":"close","call_id":"')  # the crash cut this write
    assert await records_on(database, journal).replay() == 1
    assert journal.rejected.read_bytes().startswith(b'{"op":"close"')
    assert not journal.pending()


async def test_an_entry_postgresql_refuses_for_good_is_rejected_not_retried(
        down: Database, database: Database, tmp_path: Path) -> None:
    """A decision whose call never reached the journal (foreign key): kept for an
    operator in rejected.jsonl, the replay goes on."""
    journal = Journal(tmp_path / "journal")
    orphan, call = uuid.uuid4(), a_call("+38631000805")
    offline = records_on(down, journal)
    await offline.store_decision(orphan, "service", consent(), [], None)
    await offline.open(call)
    assert await records_on(database, journal).replay() == 2
    assert str(orphan) in journal.rejected.read_text()
    async with database.session() as session:
        assert (await session.execute(select(Call).where(Call.id == call.id))).scalar_one()


async def test_without_a_journal_an_outage_is_an_error(down: Database) -> None:
    with pytest.raises(Exception, match=r"127\.0\.0\.1"):
        await records_on(down, None).open(a_call())


async def test_a_call_and_its_missed_call_are_closed_in_one_transaction(
        database: Database, monkeypatch: pytest.MonkeyPatch) -> None:
    """Rule 4: a closed call nobody answered is returned. The restart recovers only the
    calls left open, so a close stored without its missed call would be a callback lost:
    both are written together, or neither."""
    call = a_call("+38631000806")
    records = records_on(database, None)
    assert await records.open(call)
    closed = ClosedCall(None, T0 + timedelta(seconds=9), "caller hung up", False, False,
                        None, "ended")

    async def cut(self: Callbacks, *args: object) -> None:
        raise RuntimeError("the service stopped here")

    with monkeypatch.context() as patched:
        patched.setattr(Callbacks, "_record_missed", cut)
        with pytest.raises(RuntimeError):
            await records.close(call.id, closed, None, a_missed(call))
    async with database.session() as session:
        stored = (await session.execute(select(Call).where(Call.id == call.id))).scalar_one()
        assert stored.ended_at is None  # still open: the restart's recovery finds it

    callback = await records.close(call.id, closed, None, a_missed(call))
    async with database.session() as session:
        stored = (await session.execute(select(Call).where(Call.id == call.id))).scalar_one()
        missed = (await session.execute(
            select(MissedCall).where(MissedCall.call_id == call.id))).scalar_one()
    assert stored.ended_at is not None and stored.end_reason == "caller hung up"
    assert callback is not None and missed.callback_id == callback
    # again (a journal replay) changes nothing
    assert await records.close(call.id, closed, None, a_missed(call)) == callback


def test_a_close_journalled_before_missed_calls_rode_with_it_still_reads() -> None:
    line = ('{"op":"close","call_id":"5b0b7c0e-8f0e-4f47-9a53-0d3c1f3f1c11","closed":'
            '{"answered_at":null,"ended_at":"2026-11-23T09:00:09Z","end_reason":"hung up",'
            '"notice_completed":false,"agent_answered":false,"agent":null,"state":"ended"},'
            '"recording_file":null}')
    entry = ENTRY.validate_json(line)
    assert isinstance(entry, CloseEntry) and entry.missed is None and entry.started is None


async def test_a_recording_s_start_is_stored_with_its_call_s_close_or_not_at_all(
        database: Database, monkeypatch: pytest.MonkeyPatch) -> None:
    """The ARI flow keeps MixMonitor's id until the call ends and stores it with the
    close and the missed call, in one transaction: cut short, none of them is stored (the
    call stays open, and the restart's recovery settles its recording); again, nothing
    changes, and the recording's creation is audited once."""
    call = a_call("+38631000807")
    records = records_on(database, None)
    file_name = f"{call.id}.wav"
    assert await records.open(call)
    await records.store_decision(call.id, "service", consent(), [{"id": "service-notice"}],
                                 PlannedRecording(file_name, "consent", T0,
                                                  T0 + timedelta(days=181)))
    closed = ClosedCall(T0, T0 + timedelta(seconds=30), "caller hung up", True, False, None,
                        "ended")
    started = StartedRecording(file_name, "0xMIX", T0 + timedelta(seconds=6))

    async def cut(self: Callbacks, *args: object) -> None:
        raise RuntimeError("the service stopped here")

    with monkeypatch.context() as patched:
        patched.setattr(Callbacks, "_record_missed", cut)
        with pytest.raises(RuntimeError):
            await records.close(call.id, closed, file_name, a_missed(call), started)
    assert await counts(database, call) == {
        "ended": False, "state": "decided", "mixmonitor": None, "stopped": False,
        "audits": 0, "decisions": 1, "missed": 0}

    for _ in range(2):
        await records.close(call.id, closed, file_name, a_missed(call), started)
        assert await counts(database, call) == {
            "ended": True, "state": "ended", "mixmonitor": "0xMIX", "stopped": True,
            "audits": 1, "decisions": 1, "missed": 1}
    async with database.session() as session:
        recording = (await session.execute(
            select(Recording).where(Recording.call_id == call.id))).scalar_one()
    assert recording.started_at == started.started_at


def ari_close(call: OpenedCall, n: int, missed: bool = True) -> CloseEntry:
    """A consenting call's close as the ARI flow writes it, recording started."""
    file_name = f"{call.id}.wav"
    return CloseEntry(call_id=call.id, closed=ClosedCall(
        T0, T0 + timedelta(seconds=30), "caller hung up", True, False, None, "ended"),
        recording_file=file_name, missed=a_missed(call) if missed else None,
        started=StartedRecording(file_name, f"0xMIX{n}", T0 + timedelta(seconds=6)))


async def decided(records: DurableRecords, call: OpenedCall) -> None:
    assert await records.open(call)
    await records.store_decision(call.id, "service", consent(), [{"id": "service-notice"}],
                                 PlannedRecording(f"{call.id}.wav", "consent", T0,
                                                  T0 + timedelta(days=181)))


async def test_closes_together_store_each_as_alone_would_in_one_transaction(
        database: Database) -> None:
    """The ARI flow's closes of a moment (``CloseQueue``): each call closed, its recording
    started (audited once) and stopped, its missed call and callback; what each caller is
    told is its own callback. Again, nothing changes."""
    records = records_on(database, None)
    calls = [a_call(f"+3863100083{n}") for n in range(3)]
    for call in calls:
        await decided(records, call)
    entries = [ari_close(call, n, missed=n < 2) for n, call in enumerate(calls)]
    for _ in range(2):
        outcomes = await records.close_many(entries)
        assert all(isinstance(o, uuid.UUID) for o in outcomes[:2]) and outcomes[2] is None
        assert outcomes[0] != outcomes[1]  # two callers, two callbacks
        for n, call in enumerate(calls):
            assert await counts(database, call) == {
                "ended": True, "state": "ended", "mixmonitor": f"0xMIX{n}", "stopped": True,
                "audits": 1, "decisions": 1, "missed": 1 if n < 2 else 0}


async def test_closes_refused_together_are_stored_one_by_one(database: Database) -> None:
    """One close of a call PostgreSQL does not hold fails the transaction: the others are
    then stored one by one, and only that one is told of its error."""
    records = records_on(database, None)
    calls = [a_call(f"+3863100084{n}") for n in range(3)]
    for call in calls[:2]:
        await decided(records, call)
    outcomes = await records.close_many([ari_close(call, n) for n, call in enumerate(calls)])
    assert all(isinstance(o, uuid.UUID) for o in outcomes[:2])
    assert isinstance(outcomes[2], Exception)
    for n, call in enumerate(calls[:2]):
        assert (await counts(database, call))["mixmonitor"] == f"0xMIX{n}"


async def test_calls_opened_together_are_stored_as_each_alone_would_be(
        down: Database, database: Database, tmp_path: Path) -> None:
    """The ARI flow's openings of a moment (``OpenQueue``) in one statement: each told
    whether it stored its call (``False``: its channel was stored already). PostgreSQL
    unreachable: all of them to the journal, replayed once it is back."""
    records = records_on(database, None)
    calls = [a_call(f"+3863100086{n}") for n in range(3)]
    assert await records.open(calls[2])
    again = dataclasses.replace(calls[2], id=uuid.uuid4())
    entries = [OpenEntry(call=call, direction="inbound") for call in [*calls[:2], again]]
    assert await records.open_many(entries) == [True, True, False]
    for call in calls:
        async with database.session() as session:
            stored = (await session.execute(select(Call).where(Call.id == call.id))
                      ).scalar_one()
        assert (stored.channel_id, stored.state, stored.caller) == (
            call.channel_id, "answering", call.caller)

    journal = Journal(tmp_path / "journal")
    later = [a_call(f"+3863100087{n}") for n in range(2)]
    assert await records_on(down, journal).open_many(
        [OpenEntry(call=call, direction="inbound") for call in later]) == [True, True]
    assert await records_on(database, journal).replay() == 2
    async with database.session() as session:
        stored_ids = set((await session.execute(select(Call.id).where(
            Call.id.in_([call.id for call in later])))).scalars())
    assert stored_ids == {call.id for call in later}
