"""Missed calls and their callback tasks in the real PostgreSQL (POLICY.md rules 4, 5, 8, 9).

``Callbacks`` opens its own sessions and commits, so these tests use the shared migrated
``database`` and keep apart by giving every test its own caller numbers.
"""

from __future__ import annotations

import asyncio
import secrets
import uuid
from datetime import UTC, date, datetime, timedelta

import pytest
from sqlalchemy import event, func, select

from ivr.store.callbacks import CallbackError, Callbacks, Missed
from ivr.store.database import Database
from ivr.store.models import Call, Callback, CallbackAttempt, Decision, MissedCall, Revocation

pytestmark = pytest.mark.db

WINDOW = 60
T0 = datetime(2026, 11, 23, 9, 0, tzinfo=UTC)
DIALLED = {"sales": "+38640404045", "service": "+38640404040"}

_used: set[str] = set()


def new_caller() -> str:
    """A caller number no other test in this session uses."""
    while True:
        number = f"+38631{secrets.randbelow(10**6):06d}"
        if number not in _used:
            _used.add(number)
            return number


@pytest.fixture
def callbacks(database: Database) -> Callbacks:
    return Callbacks(database, WINDOW)


async def closed_call(database: Database, caller: str | None, line_kind: str,
                      decision: str | None, notice_completed: bool | None = True,
                      at: datetime = T0) -> uuid.UUID:
    """An inbound call nobody answered, closed, with its consent receipt if it has one."""
    call = Call(channel_id=f"{at.timestamp():.0f}.{uuid.uuid4().hex}", linkedid="1.1",
                direction="inbound", dialled=DIALLED[line_kind], caller=caller,
                caller_withheld=caller is None, caller_raw=caller or "anonymous",
                line_name=line_kind, line_kind=line_kind, started_at=at,
                answered_at=at, ended_at=at + timedelta(seconds=40), end_reason="caller",
                notice_completed=notice_completed, agent_answered=False, state="ended")
    async with database.session() as session, session.begin():
        session.add(call)
        await session.flush()
        if decision is not None:
            started = at + timedelta(seconds=1)
            digit = {"consent": "1", "refusal": "2"}.get(decision)
            session.add(Decision(
                call_id=call.id, decision=decision, line_kind=line_kind, digit=digit,
                digit_at=started + timedelta(seconds=10) if digit else None,
                prompts_played=[], notice_started_at=started,
                notice_ended_at=started + timedelta(seconds=18) if notice_completed else None,
                decided_at=started + timedelta(seconds=10)))
        return call.id


async def missed(callbacks: Callbacks, caller: str | None, line_kind: str,
                 decision: str | None, notice_completed: bool | None = True,
                 at: datetime = T0, overloaded: bool = False) -> tuple[uuid.UUID, uuid.UUID | None]:
    """A missed call stored through the store; returns (call id, callback id)."""
    call_id = await closed_call(callbacks.db, caller, line_kind, decision, notice_completed, at)
    callback_id = await callbacks.record_missed(Missed(
        call_id=call_id, caller=caller, caller_withheld=caller is None, reason="abandoned",
        overloaded=overloaded, missed_at=at + timedelta(seconds=40)))
    return call_id, callback_id


async def open_callbacks(database: Database, caller: str) -> int:
    async with database.session() as session:
        return (await session.execute(select(func.count()).select_from(Callback).where(
            Callback.caller == caller, Callback.status == "open"))).scalar_one()


async def revoke(database: Database, caller: str, received_at: datetime) -> None:
    async with database.session() as session, session.begin():
        session.add(Revocation(caller=caller, via="phone", received_at=received_at,
                               recorded_by="agent-7", deadline=date(2026, 12, 1)))


# Rule 4: a missed call is returned within the window ------------------------------------

async def test_rule_4_a_missed_call_opens_one_callback_due_within_the_window(
        callbacks: Callbacks) -> None:
    caller = new_caller()
    call_id, callback_id = await missed(callbacks, caller, "sales", "legal_basis")
    assert callback_id is not None
    view = await callbacks.get(callback_id)
    missed_at = T0 + timedelta(seconds=40)
    assert view.caller == caller
    assert view.status == "open"
    assert view.due_at == missed_at + timedelta(minutes=WINDOW)
    assert view.calls == [call_id]
    assert view.lines == ["sales"]
    assert (view.record, view.notice_required, view.overload) == (True, False, False)
    assert view.attempts == 0
    assert view.closed_at is None
    assert await open_callbacks(callbacks.db, caller) == 1


async def test_rule_4_three_missed_calls_from_one_number_make_one_callback(
        callbacks: Callbacks) -> None:
    caller = new_caller()
    results = [await missed(callbacks, caller, "sales", "legal_basis",
                            at=T0 + timedelta(minutes=m)) for m in (0, 10, 25)]
    callback_ids = {cb for _, cb in results}
    assert len(callback_ids) == 1
    (callback_id,) = callback_ids
    assert callback_id is not None
    view = await callbacks.get(callback_id)
    assert view.calls == [call_id for call_id, _ in results]  # in the order missed
    assert view.due_at == T0 + timedelta(seconds=40) + timedelta(minutes=WINDOW)  # the first
    assert await open_callbacks(callbacks.db, caller) == 1


async def test_rule_4_a_withheld_caller_is_kept_as_missed_with_no_callback(
        callbacks: Callbacks) -> None:
    call_id, callback_id = await missed(callbacks, None, "service", "consent")
    assert callback_id is None
    async with callbacks.db.session() as session:
        row = (await session.execute(
            select(MissedCall).where(MissedCall.call_id == call_id))).scalar_one()
    assert row.caller is None
    assert row.caller_withheld is True
    assert row.callback_id is None


async def test_rule_4_overload_is_kept_if_any_merged_missed_call_was_overloaded(
        callbacks: Callbacks) -> None:
    caller = new_caller()
    _, first = await missed(callbacks, caller, "sales", "legal_basis", overloaded=True)
    _, second = await missed(callbacks, caller, "sales", "legal_basis",
                             at=T0 + timedelta(minutes=5), overloaded=False)
    assert first == second and first is not None
    assert (await callbacks.get(first)).overload is True


async def test_rule_4_not_overloaded_when_no_merged_call_was(callbacks: Callbacks) -> None:
    caller = new_caller()
    _, callback_id = await missed(callbacks, caller, "sales", "legal_basis")
    await missed(callbacks, caller, "service", "consent", at=T0 + timedelta(minutes=5))
    assert callback_id is not None
    assert (await callbacks.get(callback_id)).overload is False


async def test_rule_4_concurrent_missed_calls_of_a_new_caller_give_one_open_callback(
        callbacks: Callbacks) -> None:
    caller = new_caller()
    call_ids = [await closed_call(callbacks.db, caller, "sales", "legal_basis",
                                  at=T0 + timedelta(seconds=s)) for s in (0, 1)]
    got = await asyncio.gather(*(callbacks.record_missed(Missed(
        call_id=c, caller=caller, caller_withheld=False, reason="timeout", overloaded=False,
        missed_at=T0 + timedelta(minutes=1, seconds=i))) for i, c in enumerate(call_ids)))
    assert got[0] is not None and got[0] == got[1]
    assert await open_callbacks(callbacks.db, caller) == 1
    assert sorted((await callbacks.get(got[0])).calls) == sorted(call_ids)


# Rules 5 and 9: the callback inherits the decision; recomputed on every merge -----------

async def test_rule_9_service_callback_with_consent_is_recorded(callbacks: Callbacks) -> None:
    _, callback_id = await missed(callbacks, new_caller(), "service", "consent")
    assert callback_id is not None
    view = await callbacks.get(callback_id)
    assert (view.record, view.notice_required) == (True, False)
    assert view.inheritance.basis == "consent"


async def test_rule_5_merge_recomputes_consent_then_refusal_is_not_recorded(
        callbacks: Callbacks) -> None:
    caller = new_caller()
    _, callback_id = await missed(callbacks, caller, "service", "consent")
    assert callback_id is not None
    assert (await callbacks.get(callback_id)).record is True
    await missed(callbacks, caller, "service", "refusal", at=T0 + timedelta(minutes=3))
    view = await callbacks.get(callback_id)
    assert (view.record, view.notice_required) == (False, False)
    async with callbacks.db.session() as session:
        stored = await session.get(Callback, callback_id)
    assert stored is not None and stored.record is False


async def test_rule_1_merge_with_a_call_left_during_the_notice_requires_the_notice(
        callbacks: Callbacks) -> None:
    caller = new_caller()
    _, callback_id = await missed(callbacks, caller, "sales", "legal_basis")
    await missed(callbacks, caller, "service", None, notice_completed=False,
                 at=T0 + timedelta(minutes=3))
    assert callback_id is not None
    view = await callbacks.get(callback_id)
    assert (view.record, view.notice_required) == (False, True)
    assert view.lines == ["sales", "service"]
    assert view.inheritance.notice_line == "service"


async def test_rule_1_notice_completed_unknown_counts_as_not_heard(callbacks: Callbacks) -> None:
    _, callback_id = await missed(callbacks, new_caller(), "sales", None,
                                  notice_completed=None)
    assert callback_id is not None
    view = await callbacks.get(callback_id)
    assert (view.record, view.notice_required) == (False, True)


# Rule 8: a revocation withdraws consent, not the legal basis ----------------------------

async def test_rule_8_revocation_received_after_the_missed_call_withdraws_consent(
        callbacks: Callbacks) -> None:
    caller = new_caller()
    _, callback_id = await missed(callbacks, caller, "service", "consent")
    assert callback_id is not None
    await revoke(callbacks.db, caller, T0 + timedelta(minutes=20))
    view = await callbacks.get(callback_id)
    assert view.record is False
    assert "revoked" in view.inheritance.reason
    assert view.as_json()["record"] is False
    placed, _ = await callbacks.begin_attempt(callback_id, "agent-7", T0 + timedelta(minutes=30))
    assert placed.record is False
    async with callbacks.db.session() as session:
        stored = await session.get(Callback, callback_id)
    assert stored is not None and stored.record is False


async def test_rule_8_revocation_received_before_a_merge_withdraws_consent(
        callbacks: Callbacks) -> None:
    caller = new_caller()
    await revoke(callbacks.db, caller, T0 + timedelta(minutes=2))
    _, callback_id = await missed(callbacks, caller, "service", "consent")
    assert callback_id is not None
    assert (await callbacks.get(callback_id)).record is False


async def test_rule_8_revocation_before_the_call_does_not_withdraw_its_new_consent(
        callbacks: Callbacks) -> None:
    caller = new_caller()
    await revoke(callbacks.db, caller, T0 - timedelta(days=1))
    _, callback_id = await missed(callbacks, caller, "service", "consent")
    assert callback_id is not None
    assert (await callbacks.get(callback_id)).record is True


async def test_rule_8_revocation_does_not_touch_a_sales_callback(callbacks: Callbacks) -> None:
    caller = new_caller()
    _, callback_id = await missed(callbacks, caller, "sales", "legal_basis")
    assert callback_id is not None
    await revoke(callbacks.db, caller, T0 + timedelta(minutes=20))
    view = await callbacks.get(callback_id)
    assert view.record is True
    assert view.inheritance.basis == "legal_basis"


# Reading --------------------------------------------------------------------------------

async def test_listing_overdue_only_returns_open_callbacks_past_due(
        callbacks: Callbacks) -> None:
    late, early, done = new_caller(), new_caller(), new_caller()
    _, late_id = await missed(callbacks, late, "sales", "legal_basis")  # due T0+1h
    _, early_id = await missed(callbacks, early, "sales", "legal_basis",
                               at=T0 + timedelta(minutes=50))  # due T0+1h50
    _, done_id = await missed(callbacks, done, "sales", "legal_basis")
    assert done_id is not None
    _, attempt = await callbacks.begin_attempt(done_id, "agent-7", T0 + timedelta(minutes=5))
    await callbacks.end_attempt(done_id, attempt, None, "answered", True,
                                T0 + timedelta(minutes=6), 3, 10)
    now = T0 + timedelta(minutes=90)
    ours = {late, early, done}
    overdue = [v for v in await callbacks.listing(now, overdue_only=True) if v.caller in ours]
    assert [v.id for v in overdue] == [late_id]
    listed = [v for v in await callbacks.listing(now) if v.caller in ours]
    assert {v.id for v in listed} == {late_id, early_id}
    everything = [v for v in await callbacks.listing(now, include_closed=True)
                  if v.caller in ours]
    assert {v.id for v in everything} == {late_id, early_id, done_id}


async def test_get_of_an_unknown_callback_raises(callbacks: Callbacks) -> None:
    with pytest.raises(CallbackError, match="no callback"):
        await callbacks.get(uuid.uuid4())


async def test_callback_view_as_json(callbacks: Callbacks) -> None:
    caller = new_caller()
    call_id, callback_id = await missed(callbacks, caller, "service", "consent")
    assert callback_id is not None
    data = (await callbacks.get(callback_id)).as_json()
    assert {"id", "caller", "due_at", "calls", "record", "notice_required", "overload",
            "status", "attempts"} <= data.keys()
    assert data["id"] == str(callback_id)
    assert data["caller"] == caller
    assert data["calls"] == [str(call_id)]
    assert data["due_at"] == (T0 + timedelta(seconds=40, minutes=WINDOW)).isoformat()
    assert (data["record"], data["notice_required"], data["overload"]) == (True, False, False)
    assert (data["status"], data["attempts"]) == ("open", 0)


# Attempts -------------------------------------------------------------------------------

async def test_begin_attempt_on_an_unknown_callback_raises(callbacks: Callbacks) -> None:
    with pytest.raises(CallbackError, match="no callback"):
        await callbacks.begin_attempt(uuid.uuid4(), "agent-7", T0)


async def test_reached_attempt_closes_the_callback_and_a_done_callback_cannot_be_placed(
        callbacks: Callbacks) -> None:
    caller = new_caller()
    _, callback_id = await missed(callbacks, caller, "sales", "legal_basis")
    assert callback_id is not None
    view, attempt_id = await callbacks.begin_attempt(callback_id, "agent-7",
                                                     T0 + timedelta(minutes=5))
    assert view.attempts == 1
    returned = await closed_call(callbacks.db, caller, "sales", None,
                                 at=T0 + timedelta(minutes=5))
    ended = T0 + timedelta(minutes=8)
    status = await callbacks.end_attempt(callback_id, attempt_id, returned, "answered", True,
                                         ended, 3, 10)
    assert status == "done"
    view = await callbacks.get(callback_id)
    assert (view.status, view.closed_at, view.outcome) == ("done", ended, "answered")
    assert view.next_attempt_at is None
    (attempt,) = await callbacks.attempts(callback_id)
    assert (attempt.id, attempt.call_id, attempt.ended_at) == (attempt_id, returned, ended)
    assert await open_callbacks(callbacks.db, caller) == 0
    with pytest.raises(CallbackError, match="is done, not open"):
        await callbacks.begin_attempt(callback_id, "agent-8", T0 + timedelta(minutes=9))
    # a new missed call after that opens a new callback
    _, again = await missed(callbacks, caller, "sales", "legal_basis",
                            at=T0 + timedelta(minutes=30))
    assert again is not None and again != callback_id


async def test_a_second_attempt_while_the_first_is_under_way_raises(
        callbacks: Callbacks) -> None:
    _, callback_id = await missed(callbacks, new_caller(), "sales", "legal_basis")
    assert callback_id is not None
    await callbacks.begin_attempt(callback_id, "agent-7", T0 + timedelta(minutes=5))
    with pytest.raises(CallbackError, match="being placed already"):
        await callbacks.begin_attempt(callback_id, "agent-8", T0 + timedelta(minutes=6))
    assert (await callbacks.get(callback_id)).attempts == 1


async def test_two_concurrent_attempts_only_one_is_taken(callbacks: Callbacks) -> None:
    _, callback_id = await missed(callbacks, new_caller(), "sales", "legal_basis")
    assert callback_id is not None
    got = await asyncio.gather(
        *(callbacks.begin_attempt(callback_id, agent, T0 + timedelta(minutes=5))
          for agent in ("agent-7", "agent-8")), return_exceptions=True)
    errors = [g for g in got if isinstance(g, BaseException)]
    assert len(errors) == 1 and isinstance(errors[0], CallbackError)
    assert len(await callbacks.attempts(callback_id)) == 1


async def test_unreached_attempt_stays_open_with_a_retry_then_fails_after_the_last(
        callbacks: Callbacks) -> None:
    _, callback_id = await missed(callbacks, new_caller(), "service", "consent")
    assert callback_id is not None
    now = T0 + timedelta(minutes=5)
    for n in (1, 2):
        view, attempt_id = await callbacks.begin_attempt(callback_id, "agent-7", now)
        assert view.attempts == n
        status = await callbacks.end_attempt(callback_id, attempt_id, None, "no_answer",
                                             False, now + timedelta(minutes=1), 3, 10)
        assert status == "open"
        view = await callbacks.get(callback_id)
        assert view.status == "open"
        assert view.attempts == n
        assert view.next_attempt_at == now + timedelta(minutes=11)
        assert view.closed_at is None
        assert view.outcome == "no_answer"
        now += timedelta(minutes=15)
    _, attempt_id = await callbacks.begin_attempt(callback_id, "agent-7", now)
    status = await callbacks.end_attempt(callback_id, attempt_id, None, "busy", False,
                                         now + timedelta(minutes=1), 3, 10)
    assert status == "failed"
    view = await callbacks.get(callback_id)
    assert (view.status, view.attempts) == ("failed", 3)
    assert view.closed_at == now + timedelta(minutes=1)
    assert view.next_attempt_at is None
    assert view.outcome == "busy after 3 attempts"
    assert all(a.ended_at is not None for a in await callbacks.attempts(callback_id))
    with pytest.raises(CallbackError, match="is failed, not open"):
        await callbacks.begin_attempt(callback_id, "agent-7", now + timedelta(minutes=2))
    async with callbacks.db.session() as session:
        count = (await session.execute(select(func.count()).select_from(CallbackAttempt)
                 .where(CallbackAttempt.callback_id == callback_id))).scalar_one()
    assert count == 3


async def test_many_missed_calls_on_one_connection_all_open_their_callback(
        callbacks: Callbacks) -> None:
    """psycopg prepares a statement from its fifth run on a connection: the insert of a
    callback must still find the partial unique index then (it did not, once)."""
    for _ in range(14):  # a pool of two: each connection runs it at least six times
        _, callback = await missed(callbacks, new_caller(), "service", "consent")
        assert callback is not None


async def test_a_missed_call_stored_twice_is_stored_once(callbacks: Callbacks) -> None:
    """A journal replay stores a missed call again: same callback, one row."""
    caller = new_caller()
    call_id, first = await missed(callbacks, caller, "service", "consent")
    again = await callbacks.record_missed(Missed(call_id, caller, False, "abandoned", False, T0))
    assert again == first
    async with callbacks.db.session() as session:
        rows = (await session.execute(select(func.count()).select_from(MissedCall).where(
            MissedCall.call_id == call_id))).scalar_one()
    assert rows == 1


async def test_a_batch_of_missed_calls_stores_each_as_alone_in_a_fixed_number_of_statements(
        callbacks: Callbacks) -> None:
    """The dialplan flow stores the missed calls it collects together: every caller gets
    one open callback (due from their first call of the batch, overloaded if any was),
    joined to one they had open already; a withheld number is kept with none; a call
    stored before changes nothing; and the batch costs the same statements as one call."""
    merged, fresh, withheld = new_caller(), new_caller(), None
    _, earlier = await missed(callbacks, merged, "service", "consent")
    batch: list[Missed] = []
    for caller, line_kind, decision, minutes, overloaded in (
            (merged, "service", "refusal", 5, False), (fresh, "sales", "legal_basis", 9, False),
            (fresh, "sales", "legal_basis", 3, True), (withheld, "service", None, 4, False),
            *((new_caller(), "service", "consent", 6, False) for _ in range(20))):
        at = T0 + timedelta(minutes=minutes)
        call_id = await closed_call(callbacks.db, caller, line_kind, decision, True, at)
        batch.append(Missed(call_id, caller, caller is None, "abandoned", overloaded,
                            at + timedelta(seconds=40)))
    lone_caller = new_caller()
    lone_call = await closed_call(callbacks.db, lone_caller, "service", "consent")
    lone = Missed(lone_call, lone_caller, False, "abandoned", False, T0 + timedelta(minutes=1))
    statements: list[str] = []

    def count(*args: object) -> None:
        statements.append(str(args[2]))

    engine = callbacks.db.engine.sync_engine
    event.listen(engine, "before_cursor_execute", count)
    try:
        await callbacks.record_missed_many([*batch, batch[1]])  # a call twice: once
        in_batch = len(statements)
        statements.clear()
        await callbacks.record_missed_many([lone])
        alone = len(statements)
        statements.clear()
        await callbacks.record_missed_many(batch[:5])  # stored already: nothing more
        again = len(statements)
    finally:
        event.remove(engine, "before_cursor_execute", count)
    assert in_batch == alone == 6
    assert again == 1

    assert earlier is not None
    joined = await callbacks.get(earlier)
    assert joined.calls[1:] == [batch[0].call_id]
    assert (joined.record, joined.notice_required) == (False, False)  # the refusal wins
    assert await open_callbacks(callbacks.db, merged) == 1
    opened = await callbacks.open_for(fresh)
    assert opened is not None
    view = await callbacks.get(opened)
    assert view.calls == [batch[2].call_id, batch[1].call_id]  # in the order missed
    assert view.due_at == batch[2].missed_at + timedelta(minutes=WINDOW)
    assert (view.record, view.overload) == (True, True)
    for one in batch[4:]:
        assert one.caller is not None
        callback_id = await callbacks.open_for(one.caller)
        assert callback_id is not None and (await callbacks.get(callback_id)).record
    async with callbacks.db.session() as session:
        rows = (await session.execute(select(MissedCall.call_id, MissedCall.callback_id).where(
            MissedCall.call_id.in_([m.call_id for m in batch])))).all()
    assert len(rows) == len(batch)
    assert dict(rows)[batch[3].call_id] is None
