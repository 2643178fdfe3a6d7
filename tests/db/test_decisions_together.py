"""Decisions committed together (``DecisionQueue``), against a real PostgreSQL: many
decisions at once are stored in fewer commits, each exactly as it is stored alone (the
call, its receipt, the recording its consent allows), the ARI flow's (calls opened before)
beside the dialplan flow's (calls opened with their decision); a call stored already, or
a decision stored already, gets nothing; PostgreSQL unreachable sends them all to the
journal, and one that PostgreSQL refuses costs the others nothing. Rule 1's safe side: a
decision the store did not take is never told to the dialplan as stored."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from dataclasses import replace
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import func, select

from ivr.calls.dialplan_notice import decide
from ivr.calls.inbound import CallDeps
from ivr.flow.commands import Decision as Decided
from ivr.store.audit import AuditLog
from ivr.store.database import Database
from ivr.store.decisions_together import DecisionQueue, decide_many
from ivr.store.durable import DurableRecords
from ivr.store.journal import DecisionEntry, Journal
from ivr.store.models import Call, Decision, Recording
from ivr.store.receipts import CallRecords, OpenedCall, PlannedRecording

from .conftest import OwnDatabase
from .test_dialplan_calls import (
    CONSENT,
    REFUSAL,
    SALES,
    Scene,
    call_id,
    caller,
    channel,
    deps_for,
    stored,
    unreachable_database,
)
from .test_journal import T0, a_call
from .test_journal import consent as journal_consent


@pytest.fixture(scope="module")
async def database(own_database: OwnDatabase) -> AsyncIterator[Database]:
    async with own_database(4) as db:
        yield db


@pytest.fixture
def deps(database: Database, tmp_path: Path, isolated: None) -> CallDeps:
    return deps_for(database, tmp_path)


async def with_queue(deps: CallDeps, work: Any) -> tuple[Any, DecisionQueue]:
    """``work(deps)`` with the decisions committed together, as the service runs them."""
    queue = DecisionQueue(deps.records.store_decisions)
    runner = asyncio.create_task(queue.run())
    try:
        return await work(replace(deps, decisions=queue)), queue
    finally:
        runner.cancel()
        await asyncio.gather(runner, return_exceptions=True)


def decision_row(rows: Any) -> tuple[Any, ...]:
    """What a decision stores, less its ids and the moment the service took it."""
    d = rows.decisions[0]
    return (rows.call.state, rows.call.notice_completed, rows.call.line_name, rows.call.caller,
            d.decision, d.line_kind, d.digit, d.digit_at, d.notice_started_at,
            d.notice_ended_at, d.question_started_at, d.prompts_played,
            [(r.basis, r.file_name == f"{rows.call.id}.wav", r.expires_at - r.started_at)
             for r in rows.recordings])


async def test_decisions_that_arrive_together_are_committed_together_each_as_alone(
        deps: CallDeps, database: Database) -> None:
    """Thirty reports at once (consents, refusals, sales): fewer commits than decisions,
    and each call's rows are those its decision stores when it is committed alone."""
    kinds = [n % 3 for n in range(30)]  # consent, refusal, sales
    scenes = [replace((CONSENT, REFUSAL, SALES)[kind], caller=caller()) for kind in kinds]
    channels = [channel() for _ in scenes]

    async def decide_all(queued: CallDeps) -> list[Any]:
        return await asyncio.gather(*(decide(queued, c, s.report())
                                      for c, s in zip(channels, scenes, strict=True)))

    answers, queue = await with_queue(deps, decide_all)
    assert queue.committed == 30 and queue.commits < 30
    expected = (Decided.CONSENT, Decided.REFUSAL, Decided.LEGAL_BASIS)
    for channel_id, scene, kind, answer in zip(channels, scenes, kinds, answers, strict=True):
        alone = channel()
        assert await decide(deps, alone, scene.report()) is not None
        together_rows = await stored(database, channel_id)
        assert decision_row(together_rows) == decision_row(await stored(database, alone))
        assert answer == (expected[kind],
                          None if kind == 1 else f"{call_id(channel_id)}.wav")


async def test_a_call_stored_already_is_not_decided_again_together(
        deps: CallDeps, database: Database) -> None:
    """A report again (here: the same call twice in one batch, and a call PostgreSQL holds
    from before) allows nothing; the stored decision stays as it was."""
    before = channel()
    first = await decide(deps, before, CONSENT.report())
    again = channel()
    scene = replace(REFUSAL, caller=caller())

    async def twice(queued: CallDeps) -> list[Any]:
        return list(await asyncio.gather(decide(queued, before, REFUSAL.report()),
                                         decide(queued, again, scene.report()),
                                         decide(queued, again, scene.report())))

    answers, _ = await with_queue(deps, twice)
    assert first is not None
    assert answers[0] is None  # stored before: nothing on this report
    assert sorted(answers[1:], key=str) == sorted([(Decided.REFUSAL, None), None], key=str)
    assert [d.decision for d in (await stored(database, before)).decisions] == ["consent"]
    assert len((await stored(database, again)).decisions) == 1


async def test_the_statement_returns_only_the_calls_it_stored(
        deps: CallDeps, database: Database) -> None:
    entries = [await entry_of(deps, channel(), replace(CONSENT, caller=caller()))
               for _ in range(3)]
    records = deps.records.records
    assert await decide_many(records, entries[:2]) == {e.call_id for e in entries[:2]}
    assert await decide_many(records, entries) == {entries[2].call_id}
    assert await decide_many(records, []) == set()
    async with database.session() as session:
        ids = [e.call_id for e in entries]
        assert (await session.execute(select(func.count()).select_from(Recording).where(
            Recording.call_id.in_(ids)))).scalar_one() == 3


async def entry_of(deps: CallDeps, channel_id: str, scene: Scene) -> DecisionEntry:
    """The entry ``decide`` commits for this report (taken from a queue that only listens)."""
    taken: list[DecisionEntry] = []

    async def take(entries: list[DecisionEntry]) -> list[Any]:
        taken.extend(entries)
        return [RuntimeError("only listening")] * len(entries)

    queue = DecisionQueue(take)
    runner = asyncio.create_task(queue.run())
    try:
        assert await decide(replace(deps, decisions=queue), channel_id, scene.report()) is None
    finally:
        runner.cancel()
        await asyncio.gather(runner, return_exceptions=True)
    return taken[0]


async def test_a_decision_the_store_refuses_is_not_recorded_and_the_rest_are(
        deps: CallDeps, database: Database) -> None:
    """One decision PostgreSQL refuses (its call's id taken by another channel): that caller
    is not recorded, the others in its batch are stored one by one."""
    good = [await entry_of(deps, channel(), replace(CONSENT, caller=caller()))
            for _ in range(3)]
    bad = await entry_of(deps, channel(), replace(CONSENT, caller=caller()))
    assert bad.call is not None and good[0].call is not None
    taken = replace(good[0].call, id=bad.call_id, channel_id=f"taken-{uuid.uuid4().hex[:8]}")
    assert await deps.records.records.open(taken)
    outcomes = await deps.records.store_decisions([*good, bad])
    assert outcomes[:3] == [True, True, True]
    assert isinstance(outcomes[3], Exception)
    async with database.session() as session:
        assert (await session.execute(select(func.count()).select_from(Decision).where(
            Decision.call_id == bad.call_id))).scalar_one() == 0
        assert (await session.execute(select(func.count()).select_from(Call).where(
            Call.id.in_([g.call_id for g in good])))).scalar_one() == 3


async def test_postgresql_unreachable_sends_the_decisions_to_the_journal(
        deps: CallDeps, tmp_path: Path) -> None:
    """An outage: each decision of the batch is in the journal (fsynced), in order, and
    the dialplan is told it is stored (the journal is the store then)."""
    down = unreachable_database()
    journal = Journal(tmp_path / "journal")
    records = DurableRecords(replace_db(deps.records, down), deps.records.callbacks,
                             journal, 2.0)
    entries = [await entry_of(deps, channel(), replace(CONSENT, caller=caller()))
               for _ in range(4)]
    try:
        assert await records.store_decisions(entries) == [None] * 4
    finally:
        await down.dispose()
    batch = await journal.take()
    assert batch is not None
    assert [e.call_id for e in batch.entries if isinstance(e, DecisionEntry)] == [
        e.call_id for e in entries]


def replace_db(records: DurableRecords, db: Database) -> CallRecords:
    return CallRecords(db, AuditLog(db), records.records.node)


@pytest.mark.parametrize("odd", ['0"31\\000', "031 žš 'ć'", "031\x00001", "\u202e031", ""])
async def test_an_odd_caller_id_is_stored_together_as_alone(
        deps: CallDeps, database: Database, odd: str) -> None:
    """Caller IDs as they arrive (quotes, backslashes, letters, control characters, none)
    travel as JSON in the statement for many: stored as the statement for one stores them."""
    scenes = [replace(CONSENT, caller=odd), replace(CONSENT, caller=caller())]
    channels = [channel() for _ in scenes]

    async def both(queued: CallDeps) -> list[Any]:
        return await asyncio.gather(*(decide(queued, c, s.report())
                                      for c, s in zip(channels, scenes, strict=True)))

    answers, queue = await with_queue(deps, both)
    assert (queue.commits, queue.committed) == (1, 2)  # the statement for many
    assert all(a is not None for a in answers)
    alone = channel()
    assert await decide(deps, alone, scenes[0].report()) is not None
    together, by_itself = await stored(database, channels[0]), await stored(database, alone)
    assert decision_row(together) == decision_row(by_itself)
    assert (together.call.caller_raw, together.call.caller_withheld) == (
        by_itself.call.caller_raw, by_itself.call.caller_withheld)


def ari_entry(call: OpenedCall, recorded: bool) -> DecisionEntry:
    """An ARI-flow decision: its call was opened before, as the flow opens it."""
    receipt = journal_consent() if recorded else replace(
        journal_consent(), decision=Decided.REFUSAL, digit="2", record=False)
    planned = (PlannedRecording(f"{call.id}.wav", "consent", T0, T0 + timedelta(days=181))
               if recorded else None)
    return DecisionEntry(call_id=call.id, line_kind="service", receipt=receipt,
                         prompts_played=[{"id": "service-notice"}], recording=planned,
                         inherited_from=None)


async def test_the_ari_flows_decisions_go_together_with_the_dialplans_each_as_alone(
        deps: CallDeps, database: Database) -> None:
    """Decisions of calls opened before (the ARI flow) and of calls they open (the dialplan
    flow) in one statement: each call decided, its receipt, the recording consent allows;
    the same decisions again (a replay) store nothing more and are told so."""
    records = deps.records
    opened = [a_call("+386" + caller()[1:]) for _ in range(2)]
    for call in opened:
        assert await records.open(call)
    entries = [ari_entry(opened[0], True), ari_entry(opened[1], False),
               await entry_of(deps, channel(), replace(CONSENT, caller=caller()))]
    assert entries[2].call is not None
    channels = [opened[0].channel_id, opened[1].channel_id, entries[2].call.channel_id]
    assert await records.store_decisions(entries) == [True, True, True]
    assert await records.store_decisions(entries) == [False, False, False]
    for channel_id, decision, files in zip(channels, ["consent", "refusal", "consent"],
                                           [1, 0, 1], strict=True):
        rows = await stored(database, channel_id)
        assert rows.call.state == "decided" and rows.call.notice_completed is True
        assert [d.decision for d in rows.decisions] == [decision]
        assert len(rows.recordings) == files


async def test_an_ari_decision_of_a_call_never_stored_costs_the_others_nothing(
        deps: CallDeps, database: Database) -> None:
    """A decision whose call PostgreSQL does not hold fails the statement: the batch is
    stored one by one, that caller gets an error (nothing recorded), the others their
    decision."""
    records = deps.records
    opened = [a_call("+386" + caller()[1:]) for _ in range(2)]
    for call in opened:
        assert await records.open(call)
    entries = [ari_entry(opened[0], True), ari_entry(a_call("+386" + caller()[1:]), True),
               ari_entry(opened[1], True)]
    outcomes = await records.store_decisions(entries)
    assert outcomes[0] is True and outcomes[2] is True
    assert isinstance(outcomes[1], Exception)
    assert [len((await stored(database, c.channel_id)).recordings) for c in opened] == [1, 1]
    async with database.session() as session:
        assert (await session.execute(select(func.count()).select_from(Decision).where(
            Decision.call_id == entries[1].call_id))).scalar_one() == 0
