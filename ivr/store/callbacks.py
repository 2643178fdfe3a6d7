"""Missed calls and the callback tasks that return them (rules 4, 5, 9).

One open callback per caller: a further missed call while it is open is merged into it
(the partial unique index makes a second open task impossible, also across instances).
Each merge recomputes what the callback inherits from all the calls it returns.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import cast

from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncSession

from ivr.policy.callbacks import Inheritance, ReturnedCall, due_at, inherit
from ivr.policy.lines import LineKind
from ivr.store.database import Database
from ivr.store.models import Call, Callback, CallbackAttempt, MissedCall

KNOWN_MISSED = "SELECT callback_id FROM missed_calls WHERE call_id = %(call_id)s"

# The caller's open callback: opened now, or (there is one already) locked until the missed
# call is in and the callback's inheritance recomputed, so that instances merge one by one.
# The partial unique index's predicate is written out: a bound parameter there would stop
# PostgreSQL from matching the index once psycopg prepares the statement (from its fifth
# run on a connection), and every missed call after that would fail.
OPEN_CALLBACK = """
INSERT INTO callbacks (id, caller, status, due_at, record, notice_required, overload)
VALUES (%(id)s, %(caller)s, 'open', %(due_at)s, false, false, %(overload)s)
ON CONFLICT (caller) WHERE status = 'open' DO NOTHING
RETURNING id
"""
LOCK_OPEN_CALLBACK = """
SELECT id FROM callbacks WHERE caller = %(caller)s AND status = 'open' FOR UPDATE
"""

INSERT_MISSED = """
INSERT INTO missed_calls (id, call_id, callback_id, caller, caller_withheld, reason,
                          overloaded, missed_at)
VALUES (%(id)s, %(call_id)s, %(callback_id)s, %(caller)s, %(caller_withheld)s, %(reason)s,
        %(overloaded)s, %(missed_at)s)
"""

# Every call the callback returns, with its decision; on every row, the caller's first
# revocation since the earliest of them (rule 8) and whether any was missed in overload.
RETURNED_CALLS = """
WITH returned AS (
    SELECT m.call_id, m.missed_at, m.overloaded, c.line_kind, c.notice_completed,
           d.decision, d.notice_ended_at
    FROM missed_calls m JOIN calls c ON c.id = m.call_id
    LEFT JOIN decisions d ON d.call_id = m.call_id
    WHERE m.callback_id = %(callback_id)s
)
SELECT returned.*, bool_or(overloaded) OVER () AS any_overloaded,
       (SELECT min(r.received_at) FROM revocations r
        WHERE r.caller = %(caller)s
          AND r.received_at >= (SELECT min(missed_at) FROM returned)) AS revoked_at
FROM returned
"""

REFRESH_CALLBACK = """
UPDATE callbacks SET record = %(record)s, notice_required = %(notice_required)s,
                     overload = %(overload)s
WHERE id = %(id)s
"""


@dataclass(frozen=True, slots=True)
class Missed:
    call_id: uuid.UUID
    caller: str | None
    caller_withheld: bool
    reason: str  # abandoned | timeout | ivr_hangup | other
    overloaded: bool
    missed_at: datetime


@dataclass(frozen=True, slots=True)
class CallbackView:
    """A callback task as agents and the CLI see it."""

    id: uuid.UUID
    caller: str
    status: str
    due_at: datetime
    created_at: datetime
    calls: list[uuid.UUID]
    lines: list[str]
    record: bool
    notice_required: bool
    overload: bool
    attempts: int
    next_attempt_at: datetime | None
    closed_at: datetime | None
    outcome: str | None
    inheritance: Inheritance

    def as_json(self) -> dict[str, object]:
        return {
            "id": str(self.id), "caller": self.caller, "status": self.status,
            "due_at": self.due_at.isoformat(), "created_at": self.created_at.isoformat(),
            "calls": [str(c) for c in self.calls], "lines": self.lines,
            "record": self.record, "notice_required": self.notice_required,
            "overload": self.overload, "attempts": self.attempts,
            "next_attempt_at": self.next_attempt_at.isoformat() if self.next_attempt_at
            else None,
            "closed_at": self.closed_at.isoformat() if self.closed_at else None,
            "outcome": self.outcome, "decision": self.inheritance.reason,
        }


class CallbackError(Exception):
    """A callback that does not exist or cannot be placed now; the message says why."""


class Callbacks:
    def __init__(self, db: Database, window_minutes: int) -> None:
        self.db = db
        self.window_minutes = window_minutes

    # missed calls ------------------------------------------------------------------------
    async def record_missed(self, missed: Missed) -> uuid.UUID | None:
        """Store the missed call; open (or merge into) its caller's callback. Returns the
        callback's id, or ``None`` when the caller withheld the number. A missed call
        stored again (a journal replay) changes nothing. (Statements sent as they are:
        every missed call runs them, and building them cost more CPU than running them.)"""
        async with self.db.engine.begin() as connection:
            return await self._record_missed(connection, missed)

    async def record_missed_many(self, missed: list[Missed]) -> None:
        """Many missed calls in one transaction, as ``record_missed`` would store each (by
        caller, so that two such transactions lock callbacks in the same order)."""
        if not missed:
            return
        async with self.db.engine.begin() as connection:
            for one in sorted(missed, key=lambda m: (m.caller or "", str(m.call_id))):
                await self._record_missed(connection, one)

    async def _record_missed(self, connection: AsyncConnection,
                         missed: Missed) -> uuid.UUID | None:
        known = (await connection.exec_driver_sql(
            KNOWN_MISSED, {"call_id": missed.call_id})).first()
        if known is not None:
            return cast(uuid.UUID | None, known[0])
        callback_id: uuid.UUID | None = None
        if missed.caller is not None:
            callback_id = await self._open_callback(connection, missed)
        await connection.exec_driver_sql(INSERT_MISSED, {
            "id": uuid.uuid4(), "call_id": missed.call_id, "callback_id": callback_id,
            "caller": missed.caller, "caller_withheld": missed.caller_withheld,
            "reason": missed.reason, "overloaded": missed.overloaded,
            "missed_at": missed.missed_at})
        if missed.caller is None or callback_id is None:
            return None  # a withheld number cannot be called back: the row says so
        await self._refresh(connection, callback_id, missed.caller)
        return callback_id

    async def _open_callback(self, connection: AsyncConnection, missed: Missed) -> uuid.UUID:
        """The caller's open callback, opened now if there is none, locked. An open one
        found by the insert may be closed before it is locked (an agent just returned the
        call): then a new one is opened."""
        for _ in range(3):
            opened = (await connection.exec_driver_sql(OPEN_CALLBACK, {
                "id": uuid.uuid4(), "caller": missed.caller,
                "due_at": due_at(missed.missed_at, self.window_minutes),
                "overload": missed.overloaded})).scalar_one_or_none()
            if opened is None:
                opened = (await connection.exec_driver_sql(
                    LOCK_OPEN_CALLBACK, {"caller": missed.caller})).scalar_one_or_none()
            if opened is not None:
                return cast(uuid.UUID, opened)
        raise RuntimeError(f"no open callback could be made for {missed.caller}")

    async def _refresh(self, executor: AsyncSession | AsyncConnection, callback_id: uuid.UUID,
                       caller: str) -> Inheritance:
        """Recompute what the callback inherits from every call it returns."""
        connection = await _connection(executor)
        inheritance, overloaded = await self._inherited(connection, callback_id, caller)
        await connection.exec_driver_sql(REFRESH_CALLBACK, {
            "id": callback_id, "record": inheritance.record,
            "notice_required": inheritance.notice_required, "overload": overloaded})
        return inheritance

    async def inheritance(self, executor: AsyncSession | AsyncConnection,
                          callback_id: uuid.UUID, caller: str) -> Inheritance:
        return (await self._inherited(executor, callback_id, caller))[0]

    async def _inherited(self, executor: AsyncSession | AsyncConnection,
                         callback_id: uuid.UUID, caller: str) -> tuple[Inheritance, bool]:
        """What the callback inherits (rules 5, 8, 9), and whether any of its calls was
        missed while the centre was overloaded, in one query."""
        connection = await _connection(executor)
        rows = (await connection.exec_driver_sql(
            RETURNED_CALLS, {"callback_id": callback_id, "caller": caller})).all()
        calls = [ReturnedCall(str(r.call_id), LineKind(r.line_kind), r.decision,
                              bool(r.notice_completed), r.missed_at, r.notice_ended_at)
                 for r in rows]
        return inherit(calls, rows[0].revoked_at), bool(rows[0].any_overloaded)

    # reading -----------------------------------------------------------------------------
    async def view(self, session: AsyncSession, callback: Callback) -> CallbackView:
        rows = (await session.execute(
            select(MissedCall.call_id, Call.line_name)
            .join(Call, Call.id == MissedCall.call_id)
            .where(MissedCall.callback_id == callback.id)
            .order_by(MissedCall.missed_at))).all()
        # Recomputed, not the stored flags: a revocation received since the last merge
        # withdraws consent now (rule 8), and the flags must agree with the reason.
        inheritance = await self.inheritance(session, callback.id, callback.caller)
        return CallbackView(
            id=callback.id, caller=callback.caller, status=callback.status,
            due_at=callback.due_at, created_at=callback.created_at,
            calls=[r.call_id for r in rows], lines=sorted({r.line_name for r in rows}),
            record=inheritance.record, notice_required=inheritance.notice_required,
            overload=callback.overload, attempts=callback.attempts,
            next_attempt_at=callback.next_attempt_at, closed_at=callback.closed_at,
            outcome=callback.outcome, inheritance=inheritance)

    async def listing(self, now: datetime, overdue_only: bool = False,
                   include_closed: bool = False) -> list[CallbackView]:
        async with self.db.session() as session:
            query = select(Callback).order_by(Callback.due_at)
            if not include_closed:
                query = query.where(Callback.status == "open")
            if overdue_only:
                query = query.where(Callback.status == "open", Callback.due_at < now)
            callbacks = (await session.execute(query)).scalars().all()
            return [await self.view(session, c) for c in callbacks]

    async def get(self, callback_id: uuid.UUID) -> CallbackView:
        async with self.db.session() as session:
            callback = await session.get(Callback, callback_id)
            if callback is None:
                raise CallbackError(f"no callback {callback_id}")
            return await self.view(session, callback)

    async def attempts(self, callback_id: uuid.UUID) -> list[CallbackAttempt]:
        async with self.db.session() as session:
            return list((await session.execute(
                select(CallbackAttempt).where(CallbackAttempt.callback_id == callback_id)
                .order_by(CallbackAttempt.started_at))).scalars())

    async def open_for(self, caller: str) -> uuid.UUID | None:
        """The open callback for a caller, if there is one."""
        async with self.db.session() as session:
            return (await session.execute(select(Callback.id).where(
                Callback.caller == caller, Callback.status == "open"))).scalar_one_or_none()

    # attempts ----------------------------------------------------------------------------
    async def begin_attempt(self, callback_id: uuid.UUID, agent: str,
                            now: datetime) -> tuple[CallbackView, uuid.UUID]:
        """Take the callback for one attempt: it must be open and not already being
        placed. Returns the callback and the new attempt's id."""
        async with self.db.session() as session, session.begin():
            callback = (await session.execute(
                select(Callback).where(Callback.id == callback_id).with_for_update(
                    skip_locked=False))).scalar_one_or_none()
            if callback is None:
                raise CallbackError(f"no callback {callback_id}")
            if callback.status != "open":
                raise CallbackError(f"callback {callback_id} is {callback.status}, not open")
            busy = (await session.execute(select(CallbackAttempt.id).where(
                CallbackAttempt.callback_id == callback_id,
                CallbackAttempt.ended_at.is_(None)))).first()
            if busy is not None:
                raise CallbackError(f"callback {callback_id} is being placed already")
            await self._refresh(session, callback.id, callback.caller)
            attempt = CallbackAttempt(callback_id=callback_id, agent=agent, started_at=now)
            session.add(attempt)
            callback.attempts += 1
            await session.flush()
            return await self.view(session, callback), attempt.id

    async def link_attempt(self, attempt_id: uuid.UUID, call_id: uuid.UUID) -> None:
        """The attempt's call is stored: a restart that finds it open can end the attempt."""
        async with self.db.session() as session, session.begin():
            await session.execute(update(CallbackAttempt).where(
                CallbackAttempt.id == attempt_id).values(call_id=call_id))

    async def interrupt_attempt(self, call_id: uuid.UUID, now: datetime, retry_attempts: int,
                                retry_delay_minutes: int) -> str | None:
        """The service stopped while this call's attempt was under way: it ends as
        ``interrupted`` (not reached: the callback stays open with a retry). Returns the
        callback's status, or ``None`` if no attempt of this call was under way."""
        async with self.db.session() as session:
            row = (await session.execute(select(
                CallbackAttempt.id, CallbackAttempt.callback_id).where(
                CallbackAttempt.call_id == call_id, CallbackAttempt.ended_at.is_(None)))).first()
        if row is None:
            return None
        return await self.end_attempt(row.callback_id, row.id, call_id, "interrupted", False,
                                      now, retry_attempts, retry_delay_minutes)

    async def end_attempt(self, callback_id: uuid.UUID, attempt_id: uuid.UUID,
                          call_id: uuid.UUID | None, outcome: str, reached: bool,
                          now: datetime, retry_attempts: int,
                          retry_delay_minutes: int) -> str:
        """Store how the attempt ended. Reached: the callback is done. Not reached: it
        stays open with a retry, or fails after the last attempt. Returns its status."""
        async with self.db.session() as session, session.begin():
            callback = (await session.execute(select(Callback).where(
                Callback.id == callback_id).with_for_update())).scalar_one()
            await session.execute(update(CallbackAttempt).where(
                CallbackAttempt.id == attempt_id).values(ended_at=now, outcome=outcome,
                                                         call_id=call_id))
            if reached:
                callback.status, callback.closed_at, callback.outcome = "done", now, outcome
                callback.next_attempt_at = None
            elif callback.attempts >= retry_attempts:
                callback.status, callback.closed_at = "failed", now
                callback.outcome = f"{outcome} after {callback.attempts} attempts"
                callback.next_attempt_at = None
            else:
                callback.next_attempt_at = now + timedelta(minutes=retry_delay_minutes)
                callback.outcome = outcome
            return callback.status


async def _connection(executor: AsyncSession | AsyncConnection) -> AsyncConnection:
    """The connection under a session (its transaction), for SQL sent as it is."""
    return executor if isinstance(executor, AsyncConnection) else await executor.connection()
