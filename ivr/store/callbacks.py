"""Missed calls and the callback tasks that return them (rules 4, 5, 9).

One open callback per caller: a further missed call while it is open is merged into it
(the partial unique index makes a second open task impossible, also across instances).
Each merge recomputes what the callback inherits from all the calls it returns.
"""

from __future__ import annotations

import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, cast

from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncSession

from ivr.policy.callbacks import Inheritance, ReturnedCall, due_at, inherit
from ivr.policy.lines import LineKind
from ivr.store.database import Database
from ivr.store.models import Call, Callback, CallbackAttempt, MissedCall

# The statements below take a batch of missed calls at once: a fixed number of statements
# whatever its size (one missed call is a batch of one).
KNOWN_MISSED = """
SELECT call_id, callback_id FROM missed_calls WHERE call_id = ANY(%(call_ids)s::uuid[])
"""

# Each caller's open callback: opened now if there is none. The partial unique index's
# predicate is written out: a bound parameter there would stop PostgreSQL from matching
# the index once psycopg prepares the statement (from its fifth run on a connection), and
# every missed call after that would fail.
OPEN_CALLBACKS = """
INSERT INTO callbacks (id, caller, status, due_at, record, notice_required, overload)
SELECT id, caller, 'open', due_at, false, false, overload
FROM unnest(%(ids)s::uuid[], %(callers)s::text[], %(due_at)s::timestamptz[],
            %(overload)s::boolean[]) AS t(id, caller, due_at, overload)
ORDER BY caller
ON CONFLICT (caller) WHERE status = 'open' DO NOTHING
"""
# ... then each locked, in the callers' order (so that instances merge one by one, and two
# batches lock in the same order and cannot deadlock), until its missed calls are in and
# its inheritance recomputed. A caller missing here had an open callback closed in between
# (an agent just returned the call): that one is opened alone.
LOCK_OPEN_CALLBACKS = """
SELECT id, caller FROM callbacks
WHERE caller = ANY(%(callers)s::text[]) AND status = 'open'
ORDER BY caller FOR UPDATE
"""
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
SELECT * FROM unnest(%(ids)s::uuid[], %(call_ids)s::uuid[], %(callback_ids)s::uuid[],
                     %(callers)s::text[], %(withheld)s::boolean[], %(reasons)s::text[],
                     %(overloaded)s::boolean[], %(missed_at)s::timestamptz[])
"""

# Every call the callbacks return, with its decision; on every row, its caller's first
# revocation since the earliest of its callback's calls (rule 8) and whether any of them
# was missed in overload.
RETURNED_CALLS = """
WITH returned AS (
    SELECT m.callback_id, m.call_id, m.missed_at, m.overloaded, c.line_kind,
           c.notice_completed, d.decision, d.notice_ended_at
    FROM missed_calls m JOIN calls c ON c.id = m.call_id
    LEFT JOIN decisions d ON d.call_id = m.call_id
    WHERE m.callback_id = ANY(%(callback_ids)s::uuid[])
), each_callback AS (
    SELECT r.callback_id, cb.caller, min(r.missed_at) AS since,
           bool_or(r.overloaded) AS any_overloaded
    FROM returned r JOIN callbacks cb ON cb.id = r.callback_id
    GROUP BY r.callback_id, cb.caller
)
SELECT returned.*, e.any_overloaded,
       (SELECT min(v.received_at) FROM revocations v
        WHERE v.caller = e.caller AND v.received_at >= e.since) AS revoked_at
FROM returned JOIN each_callback e USING (callback_id)
"""

REFRESH_CALLBACKS = """
UPDATE callbacks SET record = t.record, notice_required = t.notice_required,
                     overload = t.overload
FROM unnest(%(ids)s::uuid[], %(record)s::boolean[], %(notice_required)s::boolean[],
            %(overload)s::boolean[]) AS t(id, record, notice_required, overload)
WHERE callbacks.id = t.id
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


# What a missed call is written after, in its transaction (given the connection).
Closing = Callable[[AsyncConnection], Awaitable[None]]


class CallbackError(Exception):
    """A callback that does not exist or cannot be placed now; the message says why."""


class Callbacks:
    def __init__(self, db: Database, window_minutes: int) -> None:
        self.db = db
        self.window_minutes = window_minutes

    # missed calls ------------------------------------------------------------------------
    async def record_missed(self, missed: Missed, after: Closing | None = None
                            ) -> uuid.UUID | None:
        """Store the missed call; open (or merge into) its caller's callback. Returns the
        callback's id, or ``None`` when the caller withheld the number. A missed call
        stored again (a journal replay) changes nothing. ``after``: what is written first,
        in the same transaction (the call's close: never a closed call whose missed call
        a crash lost)."""
        async with self.db.engine.begin() as connection:
            if after is not None:
                await after(connection)
            return (await self._record_missed(connection, [missed])).get(missed.call_id)

    async def record_missed_many(self, missed: list[Missed]) -> None:
        """Many missed calls in one transaction, as ``record_missed`` would store each, in
        the same few statements as one. (Statements sent as they are: every missed call
        runs them, and building them cost more CPU than running them.)"""
        if missed:
            async with self.db.engine.begin() as connection:
                await self._record_missed(connection, missed)

    async def record_missed_on(self, connection: AsyncConnection, missed: list[Missed]
                               ) -> dict[uuid.UUID, uuid.UUID | None]:
        """``record_missed_many`` on ``connection``, in the caller's transaction: call id ->
        the callback it opened or joined (``None``: withheld)."""
        return await self._record_missed(connection, missed) if missed else {}

    async def _record_missed(self, connection: AsyncConnection,
                             missed: list[Missed]) -> dict[uuid.UUID, uuid.UUID | None]:
        """call id -> the callback it opened or joined (``None``: withheld)."""
        known: dict[uuid.UUID, uuid.UUID | None] = {
            row.call_id: row.callback_id for row in await connection.exec_driver_sql(
                KNOWN_MISSED, {"call_ids": [m.call_id for m in missed]})}
        fresh: dict[uuid.UUID, Missed] = {}
        for one in missed:  # a call twice in the batch counts once
            if one.call_id not in known:
                fresh.setdefault(one.call_id, one)
        batch = list(fresh.values())
        callbacks = await self._open_callbacks(connection, batch)
        if batch:
            await connection.exec_driver_sql(INSERT_MISSED, {
                "ids": [uuid.uuid4() for _ in batch], "call_ids": [m.call_id for m in batch],
                "callback_ids": [callbacks.get(m.caller) if m.caller is not None else None
                                 for m in batch],
                "callers": [m.caller for m in batch],
                "withheld": [m.caller_withheld for m in batch],
                "reasons": [m.reason for m in batch],
                "overloaded": [m.overloaded for m in batch],
                "missed_at": [m.missed_at for m in batch]})
            await self._refresh(connection, list(callbacks.values()))
        return known | {m.call_id: callbacks.get(m.caller) if m.caller is not None else None
                        for m in batch}

    async def _open_callbacks(self, connection: AsyncConnection,
                              missed: list[Missed]) -> dict[str, uuid.UUID]:
        """caller -> the caller's open callback, opened now if there was none (due from
        the caller's first missed call of the batch), locked."""
        first: dict[str, Missed] = {}
        for one in sorted(missed, key=lambda m: m.missed_at):
            if one.caller is not None:
                first.setdefault(one.caller, one)
        if not first:
            return {}
        callers = sorted(first)
        await connection.exec_driver_sql(OPEN_CALLBACKS, {
            "ids": [uuid.uuid4() for _ in callers], "callers": callers,
            "due_at": [due_at(first[c].missed_at, self.window_minutes) for c in callers],
            "overload": [first[c].overloaded for c in callers]})
        opened = {row.caller: row.id for row in await connection.exec_driver_sql(
            LOCK_OPEN_CALLBACKS, {"callers": callers})}
        for caller in callers:
            if caller not in opened:
                opened[caller] = await self._open_callback(connection, first[caller])
        return opened

    async def _open_callback(self, connection: AsyncConnection, missed: Missed) -> uuid.UUID:
        """The caller's open callback, opened now if there is none, locked. An open one
        found by the insert may be closed before it is locked: then a new one is opened."""
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

    async def _refresh(self, executor: AsyncSession | AsyncConnection,
                       callback_ids: list[uuid.UUID]) -> None:
        """Recompute what each callback inherits from every call it returns."""
        if not callback_ids:
            return
        connection = await _connection(executor)
        inherited = await self._inherited(connection, callback_ids)
        ids = list(inherited)
        await connection.exec_driver_sql(REFRESH_CALLBACKS, {
            "ids": ids, "record": [inherited[i][0].record for i in ids],
            "notice_required": [inherited[i][0].notice_required for i in ids],
            "overload": [inherited[i][1] for i in ids]})

    async def inheritance(self, executor: AsyncSession | AsyncConnection,
                          callback_id: uuid.UUID) -> Inheritance:
        return (await self._inherited(executor, [callback_id]))[callback_id][0]

    async def _inherited(self, executor: AsyncSession | AsyncConnection,
                         callback_ids: list[uuid.UUID]
                         ) -> dict[uuid.UUID, tuple[Inheritance, bool]]:
        """What each callback inherits (rules 5, 8, 9), and whether any of its calls was
        missed while the centre was overloaded, in one query."""
        connection = await _connection(executor)
        rows = (await connection.exec_driver_sql(
            RETURNED_CALLS, {"callback_ids": callback_ids})).all()
        by_callback: dict[uuid.UUID, list[Any]] = {}
        for row in rows:
            by_callback.setdefault(row.callback_id, []).append(row)
        return {
            callback_id: (inherit([ReturnedCall(str(r.call_id), LineKind(r.line_kind),
                                                r.decision, bool(r.notice_completed),
                                                r.missed_at, r.notice_ended_at)
                                   for r in returned], returned[0].revoked_at),
                          bool(returned[0].any_overloaded))
            for callback_id, returned in by_callback.items()}

    # reading -----------------------------------------------------------------------------
    async def view(self, session: AsyncSession, callback: Callback) -> CallbackView:
        rows = (await session.execute(
            select(MissedCall.call_id, Call.line_name)
            .join(Call, Call.id == MissedCall.call_id)
            .where(MissedCall.callback_id == callback.id)
            .order_by(MissedCall.missed_at))).all()
        # Recomputed, not the stored flags: a revocation received since the last merge
        # withdraws consent now (rule 8), and the flags must agree with the reason.
        inheritance = await self.inheritance(session, callback.id)
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
            await self._refresh(session, [callback.id])
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
