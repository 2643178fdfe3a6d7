"""Calls and their consent receipts in PostgreSQL: a call is opened when it enters the
application, its decision (with the recording it allows) is committed in one transaction
before any recording starts, and the call is closed with what happened.

A fixed number of round trips per call: open, decision, recording started, close. The
writes every call makes are SQL sent as it is; open, decision and close are one statement
each (a statement with data-modifying parts is one transaction). Building them with
SQLAlchemy's expression language cost more CPU than the rest of the call, make bench showed.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncConnection

from ivr.flow.commands import Receipt
from ivr.store.audit import RECORDING_CREATED, RECORDING_NOT_STARTED, AuditLog, NewEntry
from ivr.store.database import Database
from ivr.store.models import Call, Recording

OPEN_CALL = """
INSERT INTO calls (id, channel_id, linkedid, direction, dialled, caller, caller_withheld,
                   caller_raw, line_name, line_kind, started_at, state, node)
VALUES (%(id)s, %(channel_id)s, %(linkedid)s, %(direction)s, %(dialled)s, %(caller)s,
        %(caller_withheld)s, %(caller_raw)s, %(line_name)s, %(line_kind)s, %(started_at)s,
        'answering', %(node)s)
ON CONFLICT (channel_id) DO NOTHING
"""

# The ARI flow's calls of a moment, opened in one statement: the ids of those it stored (a
# channel PostgreSQL holds already, a replayed StasisStart, is not among them).
OPEN_CALLS = """
INSERT INTO calls (id, channel_id, linkedid, direction, dialled, caller, caller_withheld,
                   caller_raw, line_name, line_kind, started_at, state, node)
SELECT id, channel_id, linkedid, 'inbound', dialled, caller, caller_withheld, caller_raw,
       line_name, line_kind, started_at, 'answering', %(node)s
FROM jsonb_to_recordset(%(calls)s::jsonb)
AS v(id uuid, channel_id text, linkedid text, dialled text, caller text,
     caller_withheld boolean, caller_raw text, line_name text, line_kind text,
     started_at timestamptz)
ON CONFLICT (channel_id) DO NOTHING
RETURNING id
"""

# Decisions, each with the recording it allows, in one statement (one, or many committed
# together), all or nothing. A row with the call's own fields (the dialplan flow, whose
# call is first known with its decision) opens its call, already decided: the decision's
# row refers to a call inserted by the same statement (the foreign key is checked at its
# end); a call PostgreSQL holds already (a report again) stores nothing of that row. A row
# without them (the ARI flow, a callback) decides a call opened before, and moves it to
# ``decided``; a call whose decision is stored already (a replay) gets nothing more. The
# ids of the calls whose decision this statement stored.
DECIDE_MANY = """
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
    FROM v WHERE channel_id IS NOT NULL
    ON CONFLICT (channel_id) DO NOTHING
    RETURNING id
), decision AS (
    INSERT INTO decisions (id, call_id, decision, line_kind, digit, digit_at, prompts_played,
                           notice_started_at, notice_ended_at, question_started_at,
                           decided_at, inherited_from_call_id)
    SELECT v.decision_id, v.call_id, v.decision, v.line_kind, v.digit, v.digit_at,
           v.prompts_played, v.notice_started_at, v.notice_ended_at, v.question_started_at,
           v.decided_at, v.inherited_from
    FROM v LEFT JOIN call ON call.id = v.call_id
    WHERE v.channel_id IS NULL OR call.id IS NOT NULL
    ON CONFLICT (call_id) DO NOTHING
    RETURNING call_id, notice_ended_at
), recording AS (
    INSERT INTO recordings (id, call_id, basis, file_name, started_at, expires_at)
    SELECT v.recording_id, v.call_id, v.basis, v.file_name, v.recording_started_at,
           v.expires_at
    FROM v JOIN decision ON decision.call_id = v.call_id
    WHERE v.file_name IS NOT NULL
), decided AS (
    UPDATE calls SET state = 'decided', notice_completed = decision.notice_ended_at IS NOT NULL
    FROM decision JOIN v ON v.call_id = decision.call_id
    WHERE calls.id = decision.call_id AND v.channel_id IS NULL
)
SELECT call_id FROM decision
"""


def decision_row(call_id: uuid.UUID, line_kind: str, receipt: Receipt,
                 prompts_played: list[dict[str, Any]], recording: PlannedRecording | None,
                 inherited_from: uuid.UUID | None, call: OpenedCall | None = None
                 ) -> dict[str, Any]:
    """One decision's row of ``DECIDE_MANY`` (``json_value`` writes it); with ``call``,
    the fields that open it."""
    row: dict[str, Any] = {
        "call_id": call_id, "decision_id": uuid.uuid4(),
        "decision": receipt.decision.value, "line_kind": line_kind,
        "digit": receipt.digit, "digit_at": receipt.digit_at,
        "prompts_played": prompts_played,
        "notice_started_at": receipt.notice_started_at,
        "notice_ended_at": receipt.notice_ended_at,
        "question_started_at": receipt.question_started_at,
        "decided_at": receipt.decided_at, "inherited_from": inherited_from,
        "recording_id": uuid.uuid4(),
        "basis": recording.basis if recording else None,
        "file_name": recording.file_name if recording else None,
        "recording_started_at": recording.started_at if recording else None,
        "expires_at": recording.expires_at if recording else None}
    if call is not None:
        if call.id != call_id:
            raise ValueError("the call opened is not the call decided")
        row.update(channel_id=call.channel_id, linkedid=call.linkedid, dialled=call.dialled,
                   caller=call.caller, caller_withheld=call.caller_withheld,
                   caller_raw=call.caller_raw, line_name=call.line_name,
                   call_line_kind=call.line_kind, started_at=call.started_at)
    return row


def json_value(value: object) -> str:
    """``json.dumps``' default for a row: instants with their offset (timestamptz reads
    them exactly), ids as text."""
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, uuid.UUID):
        return str(value)
    raise TypeError(f"not JSON: {type(value).__name__}")

# A MixMonitor id already stored (a replay) changes nothing and is not audited again.
RECORDING_STARTED = """
UPDATE recordings SET mixmonitor_id = %(mixmonitor_id)s, started_at = %(at)s
WHERE file_name = %(file_name)s AND mixmonitor_id IS DISTINCT FROM %(mixmonitor_id)s
RETURNING id
"""

# The ends of many calls at once (the dialplan flow's notes): each recording that started,
# with when and its MixMonitor id, and when it stopped (``old`` is the row as it was: a
# MixMonitor id already stored is not audited again, a stop already stored is kept), and
# each call closed.
RECORDINGS_STARTED = """
UPDATE recordings r
SET mixmonitor_id = v.mixmonitor_id,
    started_at = CASE WHEN old.mixmonitor_id IS DISTINCT FROM v.mixmonitor_id THEN v.at
                      ELSE old.started_at END,
    stopped_at = COALESCE(old.stopped_at, v.stopped_at)
FROM unnest(%(file_name)s::text[], %(mixmonitor_id)s::text[], %(at)s::timestamptz[],
            %(stopped_at)s::timestamptz[]) AS v(file_name, mixmonitor_id, at, stopped_at),
     recordings old
WHERE old.id = r.id AND r.file_name = v.file_name
  AND (old.mixmonitor_id IS DISTINCT FROM v.mixmonitor_id OR old.stopped_at IS NULL)
RETURNING r.id, r.file_name, old.mixmonitor_id IS DISTINCT FROM v.mixmonitor_id
"""

CLOSE_CALLS = """
UPDATE calls c SET answered_at = v.answered_at, ended_at = v.ended_at,
                   end_reason = v.end_reason, notice_completed = v.notice_completed,
                   agent_answered = v.agent_answered, agent = v.agent, state = 'ended'
FROM unnest(%(call_id)s::uuid[], %(answered_at)s::timestamptz[], %(ended_at)s::timestamptz[],
            %(end_reason)s::text[], %(notice_completed)s::boolean[],
            %(agent_answered)s::boolean[], %(agent)s::text[])
     AS v(call_id, answered_at, ended_at, end_reason, notice_completed, agent_answered, agent)
WHERE c.id = v.call_id
"""

CLOSE_CALL = """
WITH recording AS (
    UPDATE recordings SET stopped_at = %(ended_at)s
    WHERE file_name = %(recording_file)s AND stopped_at IS NULL
)
UPDATE calls SET answered_at = %(answered_at)s, ended_at = %(ended_at)s,
                 end_reason = %(end_reason)s, notice_completed = %(notice_completed)s,
                 agent_answered = %(agent_answered)s, agent = %(agent)s, state = %(state)s
WHERE id = %(call_id)s
"""


@dataclass(frozen=True, slots=True)
class OpenedCall:
    """What is known when a call enters the application."""

    id: uuid.UUID
    channel_id: str
    linkedid: str
    dialled: str | None
    caller: str | None
    caller_withheld: bool
    caller_raw: str
    line_name: str | None
    line_kind: str | None
    started_at: datetime


@dataclass(frozen=True, slots=True)
class PlannedRecording:
    """The recording a decision allows, written with the decision so that no file can exist
    without the row that says why."""

    file_name: str
    basis: str
    started_at: datetime
    expires_at: datetime


@dataclass(frozen=True, slots=True)
class ClosedCall:
    answered_at: datetime | None
    ended_at: datetime
    end_reason: str
    notice_completed: bool | None
    agent_answered: bool
    agent: str | None
    state: str


@dataclass(frozen=True, slots=True)
class StartedRecording:
    """A recording MixMonitor started, as the dialplan noted it when the call ended."""

    file_name: str
    mixmonitor_id: str
    started_at: datetime


@dataclass(frozen=True, slots=True)
class EndedCall:
    """A call that ended, with the recording that ran in it (if any)."""

    call_id: uuid.UUID
    closed: ClosedCall
    recording: StartedRecording | None


@dataclass(frozen=True, slots=True)
class StaleCall:
    """A call of this node still open in PostgreSQL that no running task follows."""

    id: uuid.UUID
    channel_id: str
    direction: str
    file_name: str | None
    mixmonitor_id: str | None


class CallRecords:
    def __init__(self, db: Database, audit: AuditLog | None = None,
                 node: str | None = None) -> None:
        self.db = db
        self.audit = audit
        self.node = node

    async def open(self, call: OpenedCall, direction: str = "inbound") -> bool:
        """Insert the call; ``False`` if its channel was already recorded (a replayed event)."""
        async with self.db.autocommit.connect() as connection:
            result = await connection.exec_driver_sql(
                OPEN_CALL, {"id": call.id, **self._call_parameters(call, direction)})
        return bool(result.rowcount)

    async def open_many(self, calls: list[OpenedCall]) -> set[uuid.UUID]:
        """Insert inbound calls in one statement; the ids of those stored (a channel
        already recorded is not among them). All or nothing."""
        rows = [{"id": c.id, **self._call_parameters(c, "inbound")} for c in calls]
        async with self.db.autocommit.connect() as connection:
            result: Any = await connection.exec_driver_sql(OPEN_CALLS, {
                "calls": json.dumps(rows, default=json_value), "node": self.node})
            return {row[0] for row in result.all()}

    async def store_decision(self, call_id: uuid.UUID, line_kind: str, receipt: Receipt,
                             prompts_played: list[dict[str, Any]],
                             recording: PlannedRecording | None,
                             inherited_from: uuid.UUID | None = None,
                             call: OpenedCall | None = None) -> bool:
        """Commit the receipt (and the recording it allows) in one statement, so in one
        transaction. A callback's receipt names the call whose decision it inherits (rule
        5). With ``call``: the call is opened by the same statement (the dialplan flow,
        whose call is first known with its decision). ``False``: nothing of this decision
        was stored (the call was there already, or its decision was: a replay)."""
        return bool(await self.decide([decision_row(
            call_id, line_kind, receipt, prompts_played, recording, inherited_from, call)]))

    async def decide(self, rows: list[dict[str, Any]]) -> set[uuid.UUID]:
        """Commit decisions (``decision_row``'s rows) in one statement, ``DECIDE_MANY``:
        the ids of the calls whose decision it stored. All or nothing."""
        async with self.db.autocommit.connect() as connection:
            result: Any = await connection.exec_driver_sql(DECIDE_MANY, {
                "calls": json.dumps(rows, default=json_value), "node": self.node})
            return {row[0] for row in result.all()}

    def _call_parameters(self, call: OpenedCall, direction: str) -> dict[str, Any]:
        return {"channel_id": call.channel_id, "linkedid": call.linkedid,
                "direction": direction, "dialled": call.dialled, "caller": call.caller,
                "caller_withheld": call.caller_withheld, "caller_raw": call.caller_raw,
                "line_name": call.line_name, "line_kind": call.line_kind,
                "started_at": call.started_at, "node": self.node}

    async def recording_started(self, file_name: str, mixmonitor_id: str,
                                at: datetime) -> None:
        async with self.db.engine.begin() as connection:
            await self.recording_started_on(
                connection, StartedRecording(file_name, mixmonitor_id, at))

    async def recording_started_on(self, connection: AsyncConnection,
                                   started: StartedRecording) -> None:
        """The recording's MixMonitor id and start (audited as ``recording_created``, once)
        on ``connection``, in the caller's transaction."""
        recording_id = (await connection.exec_driver_sql(RECORDING_STARTED, {
            "file_name": started.file_name, "mixmonitor_id": started.mixmonitor_id,
            "at": started.started_at})).scalar_one_or_none()
        if self.audit is not None and recording_id is not None:
            await self.audit.append(connection, "service", RECORDING_CREATED, "recording",
                                    str(recording_id), {"file": started.file_name})

    async def end_many(self, ended: list[EndedCall]) -> None:
        """Close many calls in one transaction: each recording started (audited as
        ``recording_created``, once) and stopped when its call ended, each call closed.
        Five statements whatever their number (two with the audit entries); all or
        nothing; again changes nothing. A call not in PostgreSQL fails it all."""
        if not ended:
            return
        async with self.db.engine.begin() as connection:
            await self.end_many_on(connection, ended)

    async def end_many_on(self, connection: AsyncConnection, ended: list[EndedCall]) -> None:
        """``end_many`` on ``connection``, in the caller's transaction."""
        started = [e for e in ended if e.recording is not None]
        recordings = [e.recording for e in started if e.recording is not None]
        result: Any = await connection.exec_driver_sql(RECORDINGS_STARTED, {
            "file_name": [r.file_name for r in recordings],
            "mixmonitor_id": [r.mixmonitor_id for r in recordings],
            "at": [r.started_at for r in recordings],
            "stopped_at": [e.closed.ended_at for e in started]})
        created = [(str(row[0]), str(row[1])) for row in result if row[2]]
        closed = await connection.exec_driver_sql(CLOSE_CALLS, {
            "call_id": [e.call_id for e in ended],
            "answered_at": [e.closed.answered_at for e in ended],
            "ended_at": [e.closed.ended_at for e in ended],
            "end_reason": [e.closed.end_reason for e in ended],
            "notice_completed": [e.closed.notice_completed for e in ended],
            "agent_answered": [e.closed.agent_answered for e in ended],
            "agent": [e.closed.agent for e in ended]})
        if closed.rowcount != len(ended):
            raise LookupError(f"{len(ended) - closed.rowcount} of {len(ended)} calls are "
                              "not in PostgreSQL")
        if self.audit is not None and created:
            await self.audit.append_many(connection, [
                NewEntry("service", RECORDING_CREATED, "recording", recording_id,
                         {"file": file_name}) for recording_id, file_name in created])

    async def close_orphan(self, channel_id: str, reason: str, at: datetime) -> None:
        """Close the record of a call that lost its task (the service restarted), with
        what is known; a closed record is left as it is. A recording that started is
        marked stopped (its file ends when the channel did)."""
        async with self.db.session() as session, session.begin():
            call_id = (await session.execute(
                update(Call).where(Call.channel_id == channel_id, Call.ended_at.is_(None))
                .values(ended_at=at, end_reason=reason, state="recovered")
                .returning(Call.id))).scalar_one_or_none()
            if call_id is not None:
                await session.execute(update(Recording).where(
                    Recording.call_id == call_id, Recording.mixmonitor_id.is_not(None),
                    Recording.stopped_at.is_(None)).values(stopped_at=at))

    async def stale_calls(self, before: datetime) -> list[StaleCall]:
        """This node's calls opened before ``before`` (by an earlier instance) and never
        closed, with the recording their decision allowed, if any."""
        query = (select(Call.id, Call.channel_id, Call.direction, Recording.file_name,
                        Recording.mixmonitor_id)
                 .outerjoin(Recording, Recording.call_id == Call.id)
                 .where(Call.node == self.node, Call.ended_at.is_(None),
                        Call.started_at < before))
        async with self.db.session() as session:
            return [StaleCall(*row) for row in (await session.execute(query)).all()]

    async def recording_not_started(self, file_name: str, at: datetime) -> None:
        """The decision allowed this recording, but MixMonitor never started (the service
        stopped first): the row stays, saying so; there is no file to delete."""
        async with self.db.session() as session, session.begin():
            recording_id = (await session.execute(
                update(Recording).where(Recording.file_name == file_name,
                                        Recording.mixmonitor_id.is_(None),
                                        Recording.not_started_at.is_(None))
                .values(not_started_at=at).returning(Recording.id))).scalar_one_or_none()
            if self.audit is not None and recording_id is not None:
                await self.audit.append(session, "service", RECORDING_NOT_STARTED,
                                        "recording", str(recording_id), {"file": file_name})

    async def close(self, call_id: uuid.UUID, closed: ClosedCall,
                    recording_file: str | None, started: StartedRecording | None = None
                    ) -> None:
        if started is None:
            async with self.db.autocommit.connect() as connection:
                await close_on(connection, call_id, closed, recording_file)
            return
        async with self.db.engine.begin() as connection:
            await self.closing(call_id, closed, recording_file, started)(connection)

    def closing(self, call_id: uuid.UUID, closed: ClosedCall, recording_file: str | None,
                started: StartedRecording | None) -> Callable[[AsyncConnection],
                                                              Awaitable[None]]:
        """The close as one step of a transaction: the recording that ran in the call
        (``started``: MixMonitor's id, kept until the end), then the call closed."""
        async def close(connection: AsyncConnection) -> None:
            if started is not None:
                await self.recording_started_on(connection, started)
            await close_on(connection, call_id, closed, recording_file)
        return close


async def close_on(connection: AsyncConnection, call_id: uuid.UUID, closed: ClosedCall,
                   recording_file: str | None) -> None:
    """Close the call's record (and stop its recording's row) on ``connection``, alone or
    in a transaction with what goes with it (its missed call: ``Callbacks.record_missed``)."""
    await connection.exec_driver_sql(CLOSE_CALL, {
        "call_id": call_id, "answered_at": closed.answered_at,
        "ended_at": closed.ended_at, "end_reason": closed.end_reason,
        "notice_completed": closed.notice_completed,
        "agent_answered": closed.agent_answered, "agent": closed.agent,
        "state": closed.state, "recording_file": recording_file})
