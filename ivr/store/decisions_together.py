"""Decisions committed together (the dialplan flow). Each call's decision is committed
before the dialplan may start its recording; under load many arrive within one commit's
time. ``DecisionQueue`` commits the ones that arrived while the previous commits ran in a
single statement and transaction (``OPEN_AND_DECIDE_MANY``): one round trip and one commit
for all of them, so that PostgreSQL and the service spend less on each decision the busier
the PBX is, and a decision waits for at most one commit before its own. With one
decision at a time (a quiet line), it is the single statement it always was.

What each caller is told is what PostgreSQL did with its own decision: stored, found
already stored (a report again: nothing allowed), journalled (``DurableRecords``: the
outage journal holds it, fsynced) or an error (nothing stored, nothing recorded).
"""

from __future__ import annotations

import asyncio
import json
import logging
import uuid
from collections.abc import Awaitable, Callable
from datetime import datetime
from typing import Any

from ivr.store.journal import DecisionEntry
from ivr.store.receipts import CallRecords

log = logging.getLogger(__name__)

# The dialplan flow's calls, opened already decided, each with its decision and the
# recording it allows, in one statement (as OPEN_AND_DECIDE for one). A call already in
# PostgreSQL (a replay) inserts nothing, and its id is not returned.
OPEN_AND_DECIDE_MANY = """
WITH v AS (
    SELECT * FROM jsonb_to_recordset(%(calls)s::jsonb)
    AS v(call_id uuid, channel_id text, linkedid text, dialled text, caller text,
         caller_withheld boolean, caller_raw text, line_name text, call_line_kind text,
         started_at timestamptz, decision_id uuid, decision text, line_kind text, digit text,
         digit_at timestamptz, prompts_played jsonb, notice_started_at timestamptz,
         notice_ended_at timestamptz, question_started_at timestamptz,
         decided_at timestamptz, inherited_from uuid, recording_id uuid, basis text,
         file_name text, recording_started_at timestamptz, expires_at timestamptz)
), call AS (
    INSERT INTO calls (id, channel_id, linkedid, direction, dialled, caller, caller_withheld,
                       caller_raw, line_name, line_kind, started_at, state, node,
                       notice_completed)
    SELECT call_id, channel_id, linkedid, 'inbound', dialled, caller, caller_withheld,
           caller_raw, line_name, call_line_kind, started_at, 'decided', %(node)s,
           notice_ended_at IS NOT NULL
    FROM v
    ON CONFLICT (channel_id) DO NOTHING
    RETURNING id
), decision AS (
    INSERT INTO decisions (id, call_id, decision, line_kind, digit, digit_at, prompts_played,
                           notice_started_at, notice_ended_at, question_started_at,
                           decided_at, inherited_from_call_id)
    SELECT v.decision_id, v.call_id, v.decision, v.line_kind, v.digit, v.digit_at,
           v.prompts_played, v.notice_started_at, v.notice_ended_at, v.question_started_at,
           v.decided_at, v.inherited_from
    FROM v JOIN call ON call.id = v.call_id
    RETURNING call_id
), recording AS (
    INSERT INTO recordings (id, call_id, basis, file_name, started_at, expires_at)
    SELECT v.recording_id, v.call_id, v.basis, v.file_name, v.recording_started_at,
           v.expires_at
    FROM v JOIN decision ON decision.call_id = v.call_id
    WHERE v.file_name IS NOT NULL
)
SELECT call_id FROM decision
"""

# Most decisions one statement carries; the rest go in the next.
MAX_TOGETHER = 100
# Commits at once: while one runs, the next decisions need not wait for it.
WORKERS = 2


def _rows(entries: list[DecisionEntry]) -> str:
    """The decisions as one JSON array (one parameter, however many they are)."""
    rows: list[dict[str, Any]] = []
    for entry in entries:
        call, receipt, recording = entry.call, entry.receipt, entry.recording
        if call is None or call.id != entry.call_id:
            raise ValueError("a decision committed together opens its own call")
        rows.append({
            "call_id": call.id, "channel_id": call.channel_id, "linkedid": call.linkedid,
            "dialled": call.dialled, "caller": call.caller,
            "caller_withheld": call.caller_withheld, "caller_raw": call.caller_raw,
            "line_name": call.line_name, "call_line_kind": call.line_kind,
            "started_at": call.started_at, "decision_id": uuid.uuid4(),
            "decision": receipt.decision.value, "line_kind": entry.line_kind,
            "digit": receipt.digit, "digit_at": receipt.digit_at,
            "prompts_played": entry.prompts_played,
            "notice_started_at": receipt.notice_started_at,
            "notice_ended_at": receipt.notice_ended_at,
            "question_started_at": receipt.question_started_at,
            "decided_at": receipt.decided_at, "inherited_from": entry.inherited_from,
            "recording_id": uuid.uuid4(),
            "basis": recording.basis if recording else None,
            "file_name": recording.file_name if recording else None,
            "recording_started_at": recording.started_at if recording else None,
            "expires_at": recording.expires_at if recording else None})
    return json.dumps(rows, default=_json_value)


def _json_value(value: object) -> str:
    if isinstance(value, datetime):
        return value.isoformat()  # with its offset: timestamptz reads it exactly
    if isinstance(value, uuid.UUID):
        return str(value)
    raise TypeError(f"not JSON: {type(value).__name__}")


async def open_and_decide_many(records: CallRecords,
                               entries: list[DecisionEntry]) -> set[uuid.UUID]:
    """Commit the calls and their decisions in one statement; the ids of the calls it
    stored (a call PostgreSQL held already is not among them). All or nothing."""
    if not entries:
        return set()
    parameters = {"calls": _rows(entries), "node": records.node}
    async with records.db.autocommit.connect() as connection:
        result: Any = await connection.exec_driver_sql(OPEN_AND_DECIDE_MANY, parameters)
        return {row[0] for row in result.all()}


Outcome = bool | None | BaseException
Store = Callable[[list[DecisionEntry]], Awaitable[list[Outcome]]]


class _Waiting:
    __slots__ = ("entry", "told")

    def __init__(self, entry: DecisionEntry, told: asyncio.Future[bool | None]) -> None:
        self.entry = entry
        self.told = told


class DecisionQueue:
    """The dialplan flow's decisions, committed by ``run`` (a task of the service's
    TaskGroup): those that arrive while a commit runs go in the next one, together."""

    def __init__(self, store: Store, max_together: int = MAX_TOGETHER,
                 workers: int = WORKERS) -> None:
        """``store``: ``DurableRecords.store_decisions`` (PostgreSQL, else the journal)."""
        self._store = store
        self._max = max_together
        self._workers = workers
        self._waiting: list[_Waiting] = []
        self._arrived = asyncio.Event()
        self.commits = 0
        self.committed = 0

    async def commit_decision(self, entry: DecisionEntry) -> bool | None:
        """What became of this decision: ``True`` stored, ``False`` the call was stored
        already (nothing of this decision is), ``None`` journalled; raises when nothing was
        stored. Cancelled, the decision may still be committed (the end note finds it)."""
        told: asyncio.Future[bool | None] = asyncio.get_running_loop().create_future()
        self._waiting.append(_Waiting(entry, told))
        self._arrived.set()
        return await told

    async def run(self) -> None:
        """Commit until cancelled, ``workers`` commits at most at once (so that one slow
        commit does not hold up the decisions that arrive meanwhile)."""
        try:
            async with asyncio.TaskGroup() as workers:
                for n in range(self._workers):
                    workers.create_task(self._worker(), name=f"decisions-{n}")
        finally:  # stopped: whoever still waits is cancelled (nothing is told as stored)
            for waiting in self._waiting:
                waiting.told.cancel()

    async def _worker(self) -> None:
        batch: list[_Waiting] = []
        try:
            while True:
                while not (batch := self._next()):
                    self._arrived.clear()
                    await self._arrived.wait()
                await self._commit(batch)
        finally:
            for waiting in batch:
                waiting.told.cancel()

    def _next(self) -> list[_Waiting]:
        """The oldest waiting decisions, at most one per call (a second report of the same
        call waits for the next commit, which finds the first)."""
        batch: list[_Waiting] = []
        calls: set[uuid.UUID] = set()
        rest: list[_Waiting] = []
        for waiting in self._waiting:
            if waiting.told.done():
                continue  # its caller gave up before the commit: nothing to tell
            if len(batch) < self._max and waiting.entry.call_id not in calls:
                calls.add(waiting.entry.call_id)
                batch.append(waiting)
            else:
                rest.append(waiting)
        self._waiting = rest
        return batch

    async def _commit(self, batch: list[_Waiting]) -> None:
        try:
            outcomes: list[Outcome] = await self._store([w.entry for w in batch])
        except Exception as exc:  # a fault of the store itself: each caller is told
            log.exception("decisions not committed")
            outcomes = [exc] * len(batch)
        self.commits += 1
        self.committed += len(batch)
        for waiting, outcome in zip(batch, outcomes, strict=True):
            if waiting.told.done():
                continue
            if isinstance(outcome, BaseException):
                waiting.told.set_exception(outcome)
            else:
                waiting.told.set_result(outcome)
