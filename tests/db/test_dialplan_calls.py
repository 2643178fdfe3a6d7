"""The inbound call when the dialplan plays the notice (``inbound_flow = "dialplan"``),
against a real PostgreSQL and no PBX: the reports and notes are built as
``[ivr-notice-<name>]`` and ``[ivr-notice-end]`` write them.

The decision: a caller who pressed 1 after the notice gets a stored consent receipt
(rules 2 and 3: what was played, its version and hash, when, the digit) and the recording
it allows, kept 6 months (rule 6), before the dialplan is told the file to record into;
a refusal, silence, a sales caller not told or anything that is not a report is never
recorded (rule 1). The end: the call is closed with the recording MixMonitor started (and
its audit entry), a recording allowed but never started says so, a caller who hung up
during the notice has no consent, and a call nobody answered is a missed call with an
open callback (rule 4). Every report and note handled twice changes nothing.
"""

from __future__ import annotations

import hashlib
import itertools
import os
import re
import time
import uuid
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import quote
from zoneinfo import ZoneInfo

import pytest
from pydantic import SecretStr
from sqlalchemy import select

from ivr.asterisk.notice_dialplan import notices_dialplan
from ivr.calls.dialplan_notice import (
    DIALPLAN_CALLS,
    collect_ended,
    decide,
    parse_end,
    record_end,
    record_ends,
)
from ivr.calls.inbound import CallDeps
from ivr.calls.recovery import close_ended
from ivr.flow.commands import Decision as Decided
from ivr.notices.catalogue import BuiltSegment, Manifest, load_catalogue
from ivr.policy.retention import add_months
from ivr.settings import DatabaseSettings, Settings, UnattendedSettings
from ivr.store.audit import AuditLog, NewEntry
from ivr.store.callbacks import Callbacks
from ivr.store.database import Database
from ivr.store.durable import DurableRecords
from ivr.store.journal import CloseOrphanEntry, Journal
from ivr.store.models import AuditEntry, Call, Callback, Decision, MissedCall, Recording
from ivr.store.receipts import CallRecords

# tests/db/conftest.py's ``own_database``: a fresh, migrated database of the module's own.
OwnDatabase = Callable[[int], AbstractAsyncContextManager[Database]]
NODE = "node-d"
# When the caller entered the notice (epoch seconds, as the dialplan writes them); every
# other time of a report is an offset from it, in seconds.
ENTERED = 1_795_404_928.120
_numbers = itertools.count(1)


@pytest.fixture(scope="module")
async def database(own_database: OwnDatabase) -> AsyncIterator[Database]:
    async with own_database(2) as db:
        yield db


# what the dialplan writes --------------------------------------------------------------
def stamp(offset: float) -> str:
    """``STRFTIME(,UTC,%s.%3q)`` at ``offset`` seconds after the caller entered."""
    return f"{ENTERED + offset:.3f}"


def moment(offset: float) -> datetime:
    """The instant the service reads from ``stamp(offset)``."""
    return datetime.fromtimestamp(float(stamp(offset)), UTC)


def segment(segment_id: str, start: float, end: float | None) -> str:
    """One entry of ``IVR_PLAYED``: a segment cut by the hang-up has no end."""
    return f"{segment_id}@{stamp(start)}@{'' if end is None else stamp(end)}~"


def channel() -> str:
    """A fresh UNIQUEID."""
    return f"{int(ENTERED)}.{next(_numbers)}"


def caller() -> str:
    """A caller of the test's own (one open callback per caller)."""
    return f"0310{next(_numbers):05d}"


@dataclass(frozen=True)
class Scene:
    """What the caller heard and pressed, as the notice's context collects it."""

    dialled: str = "040404040"
    caller: str = "031000951"
    played: str = ""
    digit: str = ""
    digit_at: float | None = None
    notice_end: float | None = None

    def _heard(self) -> str:
        return (f"dialled={quote(self.dialled, safe='')}&caller={quote(self.caller, safe='')}"
                f"&played={self.played}&digit={self.digit}"
                f"&digit_at={'' if self.digit_at is None else stamp(self.digit_at)}"
                f"&notice_end={'' if self.notice_end is None else stamp(self.notice_end)}")

    def report(self) -> str:
        """The argument of ``AGI(agi://.../notice-decision,...)``."""
        return f"v=1&entered={stamp(0)}&{self._heard()}"

    def note(self, channel_id: str, *, ended: float = 95.0, decision: str = "",
             recording: str = "no", recording_at: float | None = None, mixmonitor: str = "",
             agent: str = "", queue_status: str = "", queued: bool = True,
             cause: str = "16", waiting: str = "0", available: str = "1") -> str:
        """The line ``[ivr-notice-end]`` writes into ``<UNIQUEID>.notice``."""
        return (f"v=1&channel={quote(channel_id, safe='')}&entered={stamp(0)}"
                f"&ended={stamp(ended)}&{self._heard()}&decision={decision}"
                f"&recording={recording}"
                f"&recording_at={'' if recording_at is None else stamp(recording_at)}"
                f"&mixmonitor={quote(mixmonitor, safe='')}&agent={quote(agent, safe='')}"
                f"&queue_status={queue_status}&queued={'1' if queued else ''}&cause={cause}"
                f"&waiting={waiting}&available={available}\n")


INFORMATION = segment("service-information", 0.5, 8.0)
# 1 pressed during the question: the question is cut there and the notice ends with it.
CONSENT = Scene(played=INFORMATION + segment("service-question", 8.0, 10.0), digit="1",
                digit_at=10.0, notice_end=10.0)
REFUSAL = replace(CONSENT, digit="2")
# The whole notice, then silence: the question asked once more, then no consent.
SILENCE = Scene(played=INFORMATION + segment("service-question", 8.0, 11.0)
                + segment("service-closing", 11.0, 20.0)
                + segment("service-question", 25.0, 28.0), notice_end=20.0)
SALES = Scene(dialled="040404045", played=segment("sales-notice", 0.5, 12.0), notice_end=12.0)
# Playback failed (the caller was not told): the dialplan asks with nothing played.
SALES_NOT_TOLD = Scene(dialled="040404045")
# The caller hung up during the first segment: the hang-up handler notes it cut short.
HUNG_UP = Scene(played=segment("service-information", 0.5, None))


# the service around the shell ----------------------------------------------------------
def digest(segment_id: str) -> str:
    return hashlib.sha256(f"audio of {segment_id}".encode()).hexdigest()


def manifest() -> Manifest:
    """The built notices of the real catalogue (the dialplan plays the same ids)."""
    catalogue = load_catalogue()
    return Manifest(
        segments=[BuiltSegment(**s.model_dump(), file=f"{s.id}.wav", sha256=digest(s.id),
                               duration_ms=5000) for s in catalogue.segment],
        notices=dict(catalogue.notice))


def deps_for(db: Database, notes: Path) -> CallDeps:
    settings = Settings(mode="test", node=NODE,
                        unattended=UnattendedSettings(asterisk_dir=notes, local_dir=notes))
    callbacks = Callbacks(db, 60)
    records = DurableRecords(CallRecords(db, AuditLog(db), NODE), callbacks, None, 2.0)
    none: Any = None
    return CallDeps(settings, none, none, records, manifest(), callbacks)


@pytest.fixture
def deps(database: Database, tmp_path: Path, isolated: None) -> CallDeps:
    return deps_for(database, tmp_path)


def unreachable_database() -> Database:
    """A PostgreSQL nobody listens for (the port is closed)."""
    url = "postgresql+psycopg://ivr:ivr-test-db@127.0.0.1:1/ivr?connect_timeout=2"
    return Database(DatabaseSettings(url=SecretStr(url), pool_size=1))


def call_id(channel_id: str) -> uuid.UUID:
    return uuid.uuid5(DIALPLAN_CALLS, f"{NODE}/{channel_id}")


@dataclass
class Stored:
    """Every row the call left."""

    calls: list[Call]
    decisions: list[Decision]
    recordings: list[Recording]
    missed: list[MissedCall]
    audit: list[AuditEntry]

    @property
    def call(self) -> Call:
        assert len(self.calls) == 1, self.calls
        return self.calls[0]


async def stored(db: Database, channel_id: str) -> Stored:
    async with db.session() as session:
        calls = list((await session.execute(
            select(Call).where(Call.channel_id == channel_id))).scalars())
        ids = [c.id for c in calls]
        decisions = list((await session.execute(
            select(Decision).where(Decision.call_id.in_(ids)))).scalars())
        recordings = list((await session.execute(
            select(Recording).where(Recording.call_id.in_(ids)))).scalars())
        missed = list((await session.execute(
            select(MissedCall).where(MissedCall.call_id.in_(ids)))).scalars())
        audit = list((await session.execute(
            select(AuditEntry).where(
                AuditEntry.subject_type == "recording",
                AuditEntry.subject_id.in_([str(r.id) for r in recordings]))
            .order_by(AuditEntry.id))).scalars())
    return Stored(calls, decisions, recordings, missed, audit)


async def callbacks_of(db: Database, number: str) -> list[Callback]:
    async with db.session() as session:
        return list((await session.execute(
            select(Callback).where(Callback.caller == number))).scalars())


def e164(national: str) -> str:
    return "+386" + national[1:]


def played_entry(segment_id: str, start: float, end: float | None) -> dict[str, Any]:
    """A segment of the receipt: id, version, audio hash, when (rule 3)."""
    return {"id": segment_id, "version": 1, "sha256": digest(segment_id),
            "started_at": moment(start).isoformat(),
            "ended_at": None if end is None else moment(end).isoformat()}


# the decision ---------------------------------------------------------------------------
async def test_consent_is_stored_with_its_proof_before_the_file_is_named(
        deps: CallDeps, database: Database) -> None:
    """Rules 2, 3 and 6: 1 pressed during the question opens the call, stores the receipt
    (what was played, its version and hash, when, the digit) and plans the recording the
    consent allows, named from the call and kept 6 months; only then is the file named."""
    channel_id = channel()
    before = datetime.now(UTC)
    assert await decide(deps, channel_id, CONSENT.report()) == (
        Decided.CONSENT, f"{call_id(channel_id)}.wav")
    after = datetime.now(UTC)

    rows = await stored(database, channel_id)
    call = rows.call
    assert (call.id, call.linkedid, call.direction, call.node) == (
        call_id(channel_id), channel_id, "inbound", NODE)
    assert (call.line_name, call.line_kind, call.dialled, call.caller, call.caller_raw,
            call.caller_withheld) == ("service", "service", "+38640404040", "+38631000951",
                                      "031000951", False)
    assert (call.started_at, call.state, call.notice_completed, call.ended_at) == (
        moment(0), "decided", True, None)

    [decision] = rows.decisions
    assert (decision.decision, decision.line_kind, decision.digit, decision.digit_at) == (
        "consent", "service", "1", moment(10.0))
    assert (decision.notice_started_at, decision.question_started_at,
            decision.notice_ended_at) == (moment(0.5), moment(8.0), moment(10.0))
    assert before <= decision.decided_at <= after
    assert decision.inherited_from_call_id is None
    assert decision.prompts_played == [played_entry("service-information", 0.5, 8.0),
                                       played_entry("service-question", 8.0, 10.0)]

    [recording] = rows.recordings
    assert (recording.file_name, recording.basis, recording.mixmonitor_id,
            recording.stopped_at, recording.not_started_at) == (
        f"{call.id}.wav", "consent", None, None, None)
    assert before <= recording.started_at <= after
    local = recording.started_at.astimezone(ZoneInfo("Europe/Ljubljana"))
    assert recording.expires_at == add_months(local, 6)
    assert timedelta(days=180) <= recording.expires_at - recording.started_at \
        <= timedelta(days=185)
    assert rows.missed == [] and rows.audit == []


async def test_the_same_report_twice_is_one_call_one_decision_one_file(
        deps: CallDeps, database: Database) -> None:
    """A report handled twice stores nothing more (the call's id comes from the node and
    the channel), and the second answer allows nothing: what is stored is the first
    report's decision, not this one's."""
    channel_id = channel()
    first = await decide(deps, channel_id, CONSENT.report())
    rows = await stored(database, channel_id)
    assert await decide(deps, channel_id, CONSENT.report()) is None
    again = await stored(database, channel_id)
    assert first is not None and first[1] == f"{rows.call.id}.wav"
    assert [c.id for c in again.calls] == [rows.call.id]
    assert [(d.id, d.decided_at) for d in again.decisions] == [
        (d.id, d.decided_at) for d in rows.decisions]
    assert [(r.id, r.file_name, r.started_at) for r in again.recordings] == [
        (r.id, r.file_name, r.started_at) for r in rows.recordings]


@pytest.mark.parametrize(("scene", "decided", "digit"), [
    (REFUSAL, Decided.REFUSAL, "2"),
    (SILENCE, Decided.NO_CONSENT, None),
])
async def test_refusal_and_silence_are_stored_and_never_recorded(
        deps: CallDeps, database: Database, scene: Scene, decided: Decided,
        digit: str | None) -> None:
    """Rule 2: 2 is refusal; silence after the question asked again is no consent. Both
    are stored as receipts (rule 3); the dialplan is given no file."""
    channel_id = channel()
    assert await decide(deps, channel_id, scene.report()) == (decided, None)
    rows = await stored(database, channel_id)
    assert (rows.call.state, rows.call.notice_completed) == ("decided", True)
    [decision] = rows.decisions
    assert (decision.decision, decision.digit) == (decided.value, digit)
    assert rows.recordings == []
    if scene is SILENCE:
        assert decision.prompts_played == [
            played_entry("service-information", 0.5, 8.0),
            played_entry("service-question", 8.0, 11.0),
            played_entry("service-closing", 11.0, 20.0),
            played_entry("service-question", 25.0, 28.0)]
        assert (decision.notice_ended_at, decision.question_started_at) == (
            moment(20.0), moment(8.0))


async def test_a_sales_caller_told_is_recorded_on_the_legal_basis(
        deps: CallDeps, database: Database) -> None:
    """Sales: once the notice played to its end, the call is recorded on the legal basis
    (no question), kept 6 months."""
    channel_id = channel()
    assert await decide(deps, channel_id, SALES.report()) == (
        Decided.LEGAL_BASIS, f"{call_id(channel_id)}.wav")
    rows = await stored(database, channel_id)
    assert (rows.call.line_name, rows.call.dialled) == ("sales", "+38640404045")
    [decision] = rows.decisions
    assert (decision.decision, decision.line_kind, decision.digit,
            decision.notice_ended_at) == ("legal_basis", "sales", None, moment(12.0))
    assert decision.prompts_played == [played_entry("sales-notice", 0.5, 12.0)]
    [recording] = rows.recordings
    assert (recording.basis, recording.file_name) == ("legal_basis", f"{rows.call.id}.wav")
    local = recording.started_at.astimezone(ZoneInfo("Europe/Ljubljana"))
    assert recording.expires_at == add_months(local, 6)


async def test_a_sales_caller_not_told_is_decided_nothing(
        deps: CallDeps, database: Database) -> None:
    """Rule 1: a sales caller who was not told is not recorded: the call is opened, no
    decision, no file."""
    channel_id = channel()
    assert await decide(deps, channel_id, SALES_NOT_TOLD.report()) is None
    rows = await stored(database, channel_id)
    assert (rows.call.line_name, rows.call.state, rows.call.notice_completed) == (
        "sales", "answering", None)
    assert rows.decisions == [] and rows.recordings == []


@pytest.mark.parametrize(("channel_id", "argument"), [
    ("1795404928.9001", CONSENT.report().replace("v=1", "v=2")),
    ("1795404928.9002", CONSENT.report().replace("&digit_at=", "&digit_when=")),
    ("1795404928.9003", CONSENT.report() + "&digit=1"),
    ("1795404928.9004", CONSENT.report().replace("digit=1", "digit=12")),
    ("1795404928.9005", CONSENT.report().replace("service-question@", "service question@")),
    ("1795404928.9006", CONSENT.report().replace(f"entered={stamp(0)}", "entered=yesterday")),
    ("1795404928.9007", ""),
    ("bad channel/1", CONSENT.report()),
    ("", CONSENT.report()),
], ids=["version", "field-renamed", "field-twice", "two-digits", "segment-id", "entered",
        "empty", "channel-id", "no-channel"])
async def test_what_is_not_a_report_stores_nothing_and_records_nothing(
        deps: CallDeps, database: Database, channel_id: str, argument: str) -> None:
    """A report that is not what the dialplan writes, or a channel that is not one, is
    never guessed at: nothing is stored and the dialplan is given no file."""
    assert await decide(deps, channel_id, argument) is None
    async with database.session() as session:
        assert (await session.execute(
            select(Call).where(Call.channel_id == channel_id))).first() is None
        assert (await session.execute(
            select(Call).where(Call.id == call_id(channel_id)))).first() is None


async def test_a_number_on_no_line_stores_nothing(deps: CallDeps, database: Database) -> None:
    """A notice played for a number no line has: no decision can be taken, nothing is
    stored, nothing recorded."""
    channel_id = channel()
    assert await decide(deps, channel_id, replace(CONSENT, dialled="040999999").report()) \
        is None
    assert (await stored(database, channel_id)).calls == []


# the end --------------------------------------------------------------------------------
async def test_the_end_closes_the_call_with_the_recording_mixmonitor_started(
        deps: CallDeps, database: Database) -> None:
    """Consent, MixMonitor started, an agent answered: the recording row has MixMonitor's
    id, start and stop, the audit log has its creation, the call is closed as told; an
    answered call is no missed call."""
    channel_id, number = channel(), caller()
    scene = replace(CONSENT, caller=number)
    decided = await decide(deps, channel_id, scene.report())
    assert decided is not None and decided[1] is not None
    file_name = decided[1]
    note = scene.note(channel_id, decision="consent", recording=file_name,
                      recording_at=10.2, mixmonitor="0x7f3a5c001e40", agent="PJSIP/agent1",
                      queue_status="", queued=True, cause="16")
    steps = "ivr_step_seconds_count"
    label = {"step": "notice_end_to_recording"}
    observed = deps.metrics.registry.get_sample_value(steps, label)
    await record_end(deps, parse_end(note))

    rows = await stored(database, channel_id)
    call = rows.call
    assert (call.ended_at, call.answered_at, call.end_reason, call.state) == (
        moment(95.0), moment(0), "ended in the dialplan (cause 16)", "ended")
    assert (call.notice_completed, call.agent_answered, call.agent) == (
        True, True, "PJSIP/agent1")
    [decision] = rows.decisions
    assert decision.decision == "consent"
    [recording] = rows.recordings
    assert (recording.file_name, recording.mixmonitor_id, recording.started_at,
            recording.stopped_at, recording.not_started_at) == (
        file_name, "0x7f3a5c001e40", moment(10.2), moment(95.0), None)
    assert [(a.action, a.actor, a.details) for a in rows.audit] == [
        ("recording_created", "service", {"file": file_name})]
    assert rows.missed == []
    assert await callbacks_of(database, e164(number)) == []
    # From the notice's end (the digit) to MixMonitor's start, as the ARI flow measures.
    assert deps.metrics.registry.get_sample_value(steps, label) == (observed or 0) + 1


@pytest.mark.parametrize(("queued", "queue_status", "reason"), [
    (False, "", "ivr_hangup"),
    (True, "TIMEOUT", "timeout"),
    (True, "", "abandoned"),
    (True, "LEAVEEMPTY", "abandoned"),
])
async def test_nobody_answered_is_a_missed_call_returned_within_the_hour(
        deps: CallDeps, database: Database, queued: bool, queue_status: str,
        reason: str) -> None:
    """Rule 4: a call no agent answered is a missed call with an open callback for the
    caller; why it was missed comes from the note. A refusal is inherited (rule 5): the
    callback is not recorded and the notice not repeated."""
    channel_id, number = channel(), caller()
    scene = replace(REFUSAL, caller=number)
    assert await decide(deps, channel_id, scene.report()) == (Decided.REFUSAL, None)
    await record_end(deps, parse_end(scene.note(
        channel_id, decision="refusal", queued=queued, queue_status=queue_status)))

    rows = await stored(database, channel_id)
    assert (rows.call.agent_answered, rows.call.agent, rows.call.notice_completed) == (
        False, None, True)
    [missed] = rows.missed
    assert (missed.reason, missed.caller, missed.caller_withheld, missed.overloaded,
            missed.missed_at) == (reason, e164(number), False, False, moment(95.0))
    [callback] = await callbacks_of(database, e164(number))
    assert (callback.id, callback.status, callback.record, callback.notice_required) == (
        missed.callback_id, "open", False, False)
    assert callback.due_at == moment(95.0) + timedelta(hours=1)


@pytest.mark.parametrize(("waiting", "available", "overloaded"), [
    ("7", "2", True),  # 3.5 callers per free agent: more than the 3 the settings allow
    ("6", "2", False),
    ("1", "0", True),  # callers waiting and no agent free
    ("0", "0", False),
    ("", "", False),  # the load unknown: returned within the hour as any other
])
async def test_a_call_missed_in_overload_says_so(
        deps: CallDeps, database: Database, waiting: str, available: str,
        overloaded: bool) -> None:
    """Rule 4's exception: a call missed while the centre was substantially overloaded
    (by the queue's load the note carries) is marked so, and so is its callback."""
    channel_id, number = channel(), caller()
    scene = replace(SILENCE, caller=number)
    assert await decide(deps, channel_id, scene.report()) == (Decided.NO_CONSENT, None)
    await record_end(deps, parse_end(scene.note(
        channel_id, decision="no_consent", queue_status="TIMEOUT", waiting=waiting,
        available=available)))
    [missed] = (await stored(database, channel_id)).missed
    assert (missed.reason, missed.overloaded) == ("timeout", overloaded)
    [callback] = await callbacks_of(database, e164(number))
    assert callback.overload is overloaded


async def test_a_withheld_caller_is_a_missed_call_that_cannot_be_returned(
        deps: CallDeps, database: Database) -> None:
    """A caller who withheld the number and hung up during the notice: no consent, the
    missed call is stored as withheld, with no callback (there is no one to call)."""
    channel_id = channel()
    await record_end(deps, parse_end(replace(HUNG_UP, caller="anonymous").note(
        channel_id, ended=3.0, queued=False)))
    rows = await stored(database, channel_id)
    assert (rows.call.caller, rows.call.caller_withheld, rows.call.caller_raw) == (
        None, True, "anonymous")
    assert [d.decision for d in rows.decisions] == ["no_consent"]
    [missed] = rows.missed
    assert (missed.caller, missed.caller_withheld, missed.callback_id, missed.reason) == (
        None, True, None, "ivr_hangup")


async def test_consent_after_the_whole_notice_in_e164_form(
        deps: CallDeps, database: Database) -> None:
    """1 pressed while the dialplan waits after the notice (numbers in E.164 form, as
    URIENCODE writes them): consent, the notice ended with its last segment, and the
    wait for MixMonitor counted from the digit."""
    channel_id, number = channel(), caller()
    scene = replace(SILENCE, dialled="+38640404066", caller=e164(number), digit="1",
                    digit_at=22.0, played=SILENCE.played.rsplit("service-question", 1)[0])
    decided = await decide(deps, channel_id, scene.report())
    assert decided == (Decided.CONSENT, f"{call_id(channel_id)}.wav")
    rows = await stored(database, channel_id)
    assert (rows.call.dialled, rows.call.caller, rows.call.caller_raw) == (
        "+38640404066", e164(number), e164(number))
    [decision] = rows.decisions
    assert (decision.digit_at, decision.notice_ended_at) == (moment(22.0), moment(20.0))
    assert [p["id"] for p in decision.prompts_played] == [
        "service-information", "service-question", "service-closing"]

    label = {"step": "digit_to_recording"}
    before = deps.metrics.registry.get_sample_value("ivr_step_seconds_count", label) or 0
    await record_end(deps, parse_end(scene.note(
        channel_id, decision="consent", recording=decided[1], recording_at=22.3,
        mixmonitor="0x7f3a5c001e41", agent="PJSIP/agent3")))
    assert deps.metrics.registry.get_sample_value("ivr_step_seconds_count", label) == \
        before + 1
    [recording] = (await stored(database, channel_id)).recordings
    assert (recording.started_at, recording.stopped_at) == (moment(22.3), moment(95.0))


@pytest.mark.parametrize("told", ["all", "decision only", "nothing"])
async def test_a_recording_allowed_but_never_started_says_so(
        deps: CallDeps, database: Database, told: str) -> None:
    """The decision allowed a recording, but MixMonitor never started (the caller left
    first, or the service's answer never reached the dialplan, or reached it as the caller
    left: between the dialplan's taking the decision and the file): the row stays, marked
    not started (and audited), with no file to delete; the call is closed."""
    channel_id, number = channel(), caller()
    scene = replace(CONSENT, caller=number)
    decided = await decide(deps, channel_id, scene.report())
    assert decided is not None and decided[1] is not None
    if told == "all":
        note = scene.note(channel_id, ended=10.1, decision="consent", recording=decided[1],
                          queued=False)
    elif told == "decision only":
        note = scene.note(channel_id, ended=10.1, decision="consent", queued=False)
    else:
        note = scene.note(channel_id, ended=10.1, queued=False)
    await record_end(deps, parse_end(note))

    rows = await stored(database, channel_id)
    [recording] = rows.recordings
    assert (recording.file_name, recording.mixmonitor_id, recording.not_started_at,
            recording.stopped_at) == (decided[1], None, moment(10.1), None)
    assert [(a.action, a.details) for a in rows.audit] == [
        ("recording_not_started", {"file": decided[1]})]
    assert [d.decision for d in rows.decisions] == ["consent"]
    assert (rows.call.ended_at, rows.call.state, rows.call.notice_completed) == (
        moment(10.1), "ended", True)
    assert [m.reason for m in rows.missed] == ["ivr_hangup"]


async def test_a_recording_started_over_ami_whose_answer_was_lost_is_still_registered(
        deps: CallDeps, database: Database) -> None:
    """The service started the recording over AMI, but the dialplan never took the file
    from its answer (the caller left as it came, or AMI answered too late and the dialplan
    was told no): MixMonitor's id on the channel is in the end note. The file is the one
    the service names for the call, registered as started (so that its deletion is due),
    never marked as not started."""
    channel_id, number = channel(), caller()
    scene = replace(CONSENT, caller=number)
    decided = await decide(deps, channel_id, scene.report())
    assert decided is not None and decided[1] is not None
    note = scene.note(channel_id, ended=12.0, decision="consent", recording="no",
                      mixmonitor="0x7f3a5c001e41", queued=False)
    await record_end(deps, parse_end(note))

    rows = await stored(database, channel_id)
    [recording] = rows.recordings
    assert (recording.file_name, recording.mixmonitor_id, recording.started_at,
            recording.stopped_at, recording.not_started_at) == (
        decided[1], "0x7f3a5c001e41", moment(12.0), moment(12.0), None)
    assert [a.action for a in rows.audit] == ["recording_created"]


async def test_a_caller_who_hung_up_during_the_notice_has_no_consent(
        deps: CallDeps, database: Database) -> None:
    """Rule 1: the caller hung up during the notice, so the decision was never asked for:
    the end note opens the call and stores the receipt its report allows (no consent, with
    the segment as far as it played), nothing recorded, the notice not completed, and a
    missed call whose callback must play the notice first."""
    channel_id, number = channel(), caller()
    scene = replace(HUNG_UP, caller=number)
    await record_end(deps, parse_end(scene.note(channel_id, ended=3.0, queued=False,
                                                cause="16")))

    rows = await stored(database, channel_id)
    call = rows.call
    assert (call.id, call.line_name, call.caller, call.started_at, call.ended_at) == (
        call_id(channel_id), "service", e164(number), moment(0), moment(3.0))
    assert (call.notice_completed, call.agent_answered, call.state) == (False, False, "ended")
    [decision] = rows.decisions
    assert (decision.decision, decision.digit, decision.notice_started_at,
            decision.notice_ended_at, decision.question_started_at, decision.decided_at) == (
        "no_consent", None, moment(0.5), None, None, moment(3.0))
    assert decision.prompts_played == [played_entry("service-information", 0.5, None)]
    assert rows.recordings == [] and rows.audit == []
    [missed] = rows.missed
    assert missed.reason == "ivr_hangup"
    [callback] = await callbacks_of(database, e164(number))
    assert (callback.status, callback.record, callback.notice_required) == (
        "open", False, True)


async def test_the_same_note_twice_changes_nothing(deps: CallDeps,
                                                   database: Database) -> None:
    """A note recorded twice (the sweep ran again before the file was removed) adds no
    call, decision, recording, audit entry, missed call or callback."""
    recorded_channel, hung_up_channel, number = channel(), channel(), caller()
    scene = replace(CONSENT, caller=number)
    decided = await decide(deps, recorded_channel, scene.report())
    assert decided is not None and decided[1] is not None
    notes = [scene.note(recorded_channel, decision="consent", recording=decided[1],
                        recording_at=10.2, mixmonitor="0x7f3a5c001e40",
                        queue_status="TIMEOUT"),
             replace(HUNG_UP, caller=number).note(hung_up_channel, ended=3.0, queued=False)]
    for note in notes:
        await record_end(deps, parse_end(note))
    first = [await stored(database, c) for c in (recorded_channel, hung_up_channel)]
    callbacks = await callbacks_of(database, e164(number))
    for note in notes:
        await record_end(deps, parse_end(note))
    again = [await stored(database, c) for c in (recorded_channel, hung_up_channel)]

    def ids(rows: Stored) -> tuple[list[Any], ...]:
        return ([c.id for c in rows.calls], [d.id for d in rows.decisions],
                [(r.id, r.started_at, r.stopped_at) for r in rows.recordings],
                [m.id for m in rows.missed], [a.id for a in rows.audit])

    assert [ids(r) for r in again] == [ids(r) for r in first]
    assert [len(r.audit) for r in first] == [1, 0]
    assert [len(r.missed) for r in first] == [1, 1]
    # Both calls of the caller are returned by one callback.
    assert len(callbacks) == 1
    assert [c.id for c in await callbacks_of(database, e164(number))] == [callbacks[0].id]
    assert {m.callback_id for r in first for m in r.missed} == {callbacks[0].id}


# the sweep ------------------------------------------------------------------------------
def write_note(path: Path, text: str, age: float = 60.0) -> None:
    """A note as Asterisk left it ``age`` seconds ago."""
    path.write_text(text)
    os.utime(path, (time.time() - age, time.time() - age))


async def test_the_sweep_records_notes_removes_them_and_rejects_what_is_not_one(
        deps: CallDeps, database: Database, tmp_path: Path) -> None:
    """Every ``<channel>.notice`` in the spool closes its call and is removed; a file
    that is not a note goes to rejected/ (kept, never guessed at)."""
    assert deps.settings.unattended.local_dir == tmp_path
    answered, missed, number = channel(), channel(), caller()
    write_note(tmp_path / f"{answered}.notice", replace(SALES, caller=number).note(
        answered, agent="PJSIP/agent2"))
    write_note(tmp_path / f"{missed}.notice", replace(HUNG_UP, caller=number).note(
        missed, ended=2.0, queued=False))
    write_note(tmp_path / "1795404928.broken.notice", "v=1&channel=1795404928.broken\n")
    write_note(tmp_path / "other.call", "not a notice note")

    assert await collect_ended(deps) == 2
    assert sorted(p.name for p in tmp_path.iterdir()) == ["other.call", "rejected"]
    assert [p.name for p in (tmp_path / "rejected").iterdir()] == [
        "1795404928.broken.notice"]
    assert (tmp_path / "rejected" / "1795404928.broken.notice").read_text() == (
        "v=1&channel=1795404928.broken\n")

    sales = await stored(database, answered)
    assert (sales.call.line_name, sales.call.agent, sales.call.notice_completed) == (
        "sales", "PJSIP/agent2", True)
    # The decision was never asked for: stored from the note, never recorded.
    assert [d.decision for d in sales.decisions] == ["legal_basis"]
    assert sales.recordings == [] and sales.missed == []
    service = await stored(database, missed)
    assert [d.decision for d in service.decisions] == ["no_consent"]
    assert [m.reason for m in service.missed] == ["ivr_hangup"]
    assert await collect_ended(deps) == 0


async def test_a_note_still_being_written_waits(deps: CallDeps, database: Database,
                                                tmp_path: Path) -> None:
    """A note younger than the settle time may still be being written: it is left for a
    later sweep, then recorded."""
    channel_id = channel()
    note = tmp_path / f"{channel_id}.notice"
    write_note(note, HUNG_UP.note(channel_id, ended=2.0, queued=False), age=0.5)
    assert await collect_ended(deps) == 0
    assert note.exists()
    assert (await stored(database, channel_id)).calls == []
    old = time.time() - 5
    os.utime(note, (old, old))
    assert await collect_ended(deps) == 1
    assert not note.exists()
    assert len((await stored(database, channel_id)).calls) == 1


async def test_a_note_that_cannot_be_recorded_stays_for_the_next_sweep(
        database: Database, tmp_path: Path, isolated: None) -> None:
    """PostgreSQL cannot be reached (and no outage journal): the note is not lost; the
    next sweep records it."""
    channel_id, number = channel(), caller()
    note = tmp_path / f"{channel_id}.notice"
    write_note(note, replace(HUNG_UP, caller=number).note(channel_id, ended=2.0,
                                                          queued=False))
    away = unreachable_database()
    try:
        assert await collect_ended(deps_for(away, tmp_path)) == 0
    finally:
        await away.dispose()
    assert note.exists()
    assert not (tmp_path / "rejected").exists()
    assert (await stored(database, channel_id)).calls == []

    assert await collect_ended(deps_for(database, tmp_path)) == 1
    assert not note.exists()
    rows = await stored(database, channel_id)
    assert [m.reason for m in rows.missed] == ["ivr_hangup"]


def field_names(fields: str) -> list[str]:
    return [pair.split("=", 1)[0] for pair in fields.split("&")]


def test_the_reports_here_are_the_ones_the_dialplan_writes() -> None:
    """The fields these tests write, in order, are the ones the generated dialplan writes
    (a field renamed or added there would make every test above test something else)."""
    dialplan = notices_dialplan(load_catalogue())
    reports = set(re.findall(r"CURL\(http://@@report_http@@/notice-decision\?[^,]*,(.*)\)\}\)$",
                             dialplan, re.MULTILINE))
    over_fastagi = notices_dialplan(load_catalogue(), "fastagi")
    assert reports == set(re.findall(r"AGI\(agi://@@fastagi@@/notice-decision,(.*)\)$",
                                     over_fastagi, re.MULTILINE))
    [ends] = re.findall(r"\.notice,,,a\)=(.*)\)$", dialplan, re.MULTILINE)
    assert [field_names(r) for r in reports] == [field_names(CONSENT.report())]
    assert field_names(ends) == field_names(CONSENT.note("1795404928.1"))
    parsed = parse_end(CONSENT.note("1795404928.1", decision="consent", recording="no"))
    assert (parsed.channel_id, parsed.decision, parsed.recording, parsed.queued) == (
        "1795404928.1", Decided.CONSENT, None, True)


# Many ends at once ---------------------------------------------------------------------------
async def test_a_call_decided_before_a_restart_is_closed_by_its_note_not_by_the_sweep(
        deps: CallDeps, database: Database, tmp_path: Path) -> None:
    """The service restarted while a caller who consented was in the queue. Once the call
    ends, the sweep of calls left open finds its channel gone; the dialplan's note of the
    end lies in the spool. The note closes the call (MixMonitor's id and times, who
    answered), not the sweep's guess ("never started", with no file to look at)."""
    channel_id, number = channel(), caller()
    scene = replace(CONSENT, caller=number)
    decided = await decide(deps, channel_id, scene.report())
    assert decided is not None and decided[1] is not None
    write_note(tmp_path / f"{channel_id}.notice", scene.note(
        channel_id, decision="consent", recording=decided[1], recording_at=10.2,
        mixmonitor="0x7f3a5c001e41", agent="PJSIP/agent1", queued=True, cause="16"))
    restarted = datetime.now(UTC) + timedelta(seconds=1)
    stale = [c for c in await deps.records.stale_calls(restarted)
             if c.channel_id == channel_id]
    assert len(stale) == 1

    assert await close_ended(deps, set(), stale) == 0  # the channel is gone
    assert await collect_ended(deps) == 1

    rows = await stored(database, channel_id)
    assert (rows.call.end_reason, rows.call.state, rows.call.agent) == (
        "ended in the dialplan (cause 16)", "ended", "PJSIP/agent1")
    [recording] = rows.recordings
    assert (recording.mixmonitor_id, recording.started_at, recording.not_started_at) == (
        "0x7f3a5c001e41", moment(10.2), None)
    assert [a.action for a in rows.audit] == ["recording_created"]
    # With no note, the sweep closes what an earlier instance left open, as before.
    other = channel()
    await decide(deps, other, replace(CONSENT, caller=caller()).report())
    stale = [c for c in await deps.records.stale_calls(restarted) if c.channel_id == other]
    assert await close_ended(deps, set(), stale) == 1
    left = await stored(database, other)
    assert left.call.state == "recovered"
    assert left.recordings[0].not_started_at is not None


async def test_many_ends_together_are_the_same_records_as_one_by_one(
        deps: CallDeps, database: Database) -> None:
    """The sweep closes a tick's notes in one transaction: each call as ``record_end``
    would close it, one audit entry per recording that started, in the chain (which still
    verifies), missed calls for nobody answering; a call the service never decided is still
    decided from its note."""
    recorded, refused, lost = channel(), channel(), channel()
    numbers = caller(), caller(), caller()
    files = []
    for channel_id, scene, number in ((recorded, CONSENT, numbers[0]),
                                      (refused, REFUSAL, numbers[1])):
        decided = await decide(deps, channel_id, replace(scene, caller=number).report())
        assert decided is not None
        files.append(decided[1])
    notes = [
        replace(CONSENT, caller=numbers[0]).note(
            recorded, decision="consent", recording=str(files[0]), recording_at=10.2,
            mixmonitor="0x7f00aa", agent="PJSIP/agent1"),
        replace(REFUSAL, caller=numbers[1]).note(refused, decision="refusal", queued=True,
                                                 queue_status="TIMEOUT"),
        replace(HUNG_UP, caller=numbers[2]).note(lost, ended=3.0, queued=False),
    ]
    await record_ends(deps, [parse_end(n) for n in notes])
    await record_ends(deps, [parse_end(n) for n in notes])  # again: nothing changes

    first = await stored(database, recorded)
    [recording] = first.recordings
    assert (recording.mixmonitor_id, recording.started_at, recording.stopped_at) == (
        "0x7f00aa", moment(10.2), moment(95.0))
    assert [(a.action, a.details) for a in first.audit] == [
        ("recording_created", {"file": files[0]})]
    assert (first.call.state, first.call.agent, first.call.notice_completed) == (
        "ended", "PJSIP/agent1", True)
    assert first.missed == []
    second = await stored(database, refused)
    assert second.recordings == [] and second.call.state == "ended"
    assert [m.reason for m in second.missed] == ["timeout"]
    third = await stored(database, lost)
    assert [d.decision for d in third.decisions] == ["no_consent"]
    assert (third.call.notice_completed, [m.reason for m in third.missed]) == (
        False, ["ivr_hangup"])
    assert (await AuditLog(database).verify()).ok


async def test_entries_appended_together_chain_like_one_by_one(database: Database) -> None:
    """``append_many``: each entry follows the one before it, in the order given, and the
    whole chain verifies; none is a no-op."""
    audit = AuditLog(database)
    async with database.engine.begin() as connection:
        assert await audit.append_many(connection, []) == 0
        assert await audit.append_many(connection, [
            NewEntry("service", "recording_created", "recording", f"r-{n}", {"file": f"{n}"})
            for n in range(5)]) == 5
    async with database.session() as session:
        entries = list((await session.execute(
            select(AuditEntry).where(AuditEntry.subject_id.like("r-%"))
            .order_by(AuditEntry.id))).scalars())
    assert [e.subject_id for e in entries][-5:] == [f"r-{n}" for n in range(5)]
    tail = entries[-5:]
    assert all(later.prev_hash == earlier.hash for earlier, later in itertools.pairwise(tail))
    assert (await audit.verify()).ok


async def test_a_tick_that_cannot_be_closed_together_is_closed_one_by_one(
        deps: CallDeps, database: Database, tmp_path: Path,
        monkeypatch: pytest.MonkeyPatch) -> None:
    """If the one transaction fails, each note is recorded on its own (through the outage
    journal where PostgreSQL is away): nothing is lost, every note is removed."""
    first, second = channel(), channel()
    for channel_id in (first, second):
        write_note(tmp_path / f"{channel_id}.notice",
                   replace(HUNG_UP, caller=caller()).note(channel_id, ended=2.0))

    async def refuse(ended: object) -> None:
        raise RuntimeError("not together")

    monkeypatch.setattr(deps.records, "end_many", refuse)
    assert await collect_ended(deps) == 2
    assert sorted(p.name for p in tmp_path.iterdir()) == []
    for channel_id in (first, second):
        rows = await stored(database, channel_id)
        assert rows.call.state == "ended"
        assert [d.decision for d in rows.decisions] == ["no_consent"]


async def test_ends_wait_behind_the_journal_and_a_call_not_stored_fails_the_batch(
        deps: CallDeps, database: Database, tmp_path: Path) -> None:
    """While the outage journal holds entries, the calls they open may not be in PostgreSQL
    yet: closing together is refused (the notes go one by one, behind the journal). And a
    batch naming a call PostgreSQL does not hold is undone as a whole."""
    journal = Journal(tmp_path / "journal")
    records = DurableRecords(CallRecords(database, AuditLog(database), NODE),
                             Callbacks(database, 60), journal)
    await journal.append(CloseOrphanEntry(channel_id="gone", reason="test", at=moment(0)))
    with pytest.raises(RuntimeError, match="journal"):
        await records.end_many([])
    with pytest.raises(RuntimeError, match="journal"):
        await records.record_missed_many([])

    known, unknown = channel(), channel()
    decided = await decide(deps, known, CONSENT.report())
    assert decided is not None
    ends = [parse_end(CONSENT.note(known, decision="consent", recording=str(decided[1]),
                                   recording_at=10.2, mixmonitor="0x7f01", agent="a")),
            parse_end(CONSENT.note(unknown, decision="consent", agent="a"))]
    with pytest.raises(LookupError, match="1 of 2 calls"):
        await record_ends(deps, ends)
    rows = await stored(database, known)
    assert rows.call.ended_at is None and rows.recordings[0].mixmonitor_id is None
    assert rows.audit == []


async def test_a_recording_whose_start_was_stored_alone_gets_its_stop_together(
        deps: CallDeps, database: Database) -> None:
    """An earlier one-by-one attempt stored MixMonitor's id but not the close: closing
    together adds the stop, keeps the start and audits nothing again."""
    channel_id = channel()
    decided = await decide(deps, channel_id, CONSENT.report())
    assert decided is not None and decided[1] is not None
    await deps.records.recording_started(decided[1], "0x7f02", moment(10.2))
    note = CONSENT.note(channel_id, decision="consent", recording=decided[1],
                        recording_at=10.3, mixmonitor="0x7f02", agent="PJSIP/agent1")
    await record_ends(deps, [parse_end(note)])
    rows = await stored(database, channel_id)
    [recording] = rows.recordings
    assert (recording.mixmonitor_id, recording.started_at, recording.stopped_at) == (
        "0x7f02", moment(10.2), moment(95.0))
    assert [a.action for a in rows.audit] == ["recording_created"]
    assert rows.call.state == "ended"
