"""The inbound call when the dialplan plays the notice (``[dialplan] inbound_flow =
"dialplan"``): two inputs, one module.

1. **The decision** (``notice-decision``: an HTTP request by ``CURL()``, or FastAGI, as
   ``[dialplan] decision_request`` says). When the notice is over and the caller
   has answered (or not), ``[ivr-notice-<name>]`` reports what was played and pressed. The
   service decides (``ivr/flow/dialplan_notice.py``), opens the call's record and commits
   the decision with the recording it allows, and only then starts the recording over AMI
   (``[dialplan] recording_start``) and tells the dialplan the decision
   (``IVR_DECISION``) and the file (``IVR_RECORD``; ``no`` unless told otherwise, so
   nothing is recorded when the service is away, slow or in doubt), and whether it started
   the recording; if it did not, the dialplan starts it.
2. **The end** (a note ``<channel>.notice`` in ``unattended.asterisk_dir``, written by the
   hangup handler ``[ivr-notice-end]``). The call's record is closed with when it ended,
   whether and when MixMonitor started and who answered; a caller who left during the
   notice, or whose decision the service never took, gets the decision the report allows
   (stored, never recorded); nobody answered: the missed call (rule 4), marked overloaded
   by the queue's load the note carries.

Both are idempotent: the call's id comes from the node and the channel, so a report
handled twice changes nothing.
"""

from __future__ import annotations

import asyncio
import logging
import re
import time
import uuid
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path, PurePosixPath

from ivr.asterisk.agi import AgiRequest
from ivr.asterisk.ami import AmiError, AmiNoReply
from ivr.asterisk.fastagi import AgiSession, Handler
from ivr.asterisk.report_http import ReportRequest
from ivr.asterisk.report_server import ReportHandler
from ivr.calls import notes
from ivr.calls.caller import describe_caller, printable
from ivr.calls.inbound import CallDeps, now, opened_call, plan_recording, prompts_played
from ivr.calls.notes import NoteError, instant, optional_instant
from ivr.calls.unattended import queue_status
from ivr.flow.commands import Decision, PlayedSegment, Receipt
from ivr.flow.dialplan_notice import Heard, receipt
from ivr.flow.inbound import Segment
from ivr.policy.callbacks import overloaded as is_overloaded
from ivr.policy.lines import LineRef
from ivr.store.callbacks import Missed
from ivr.store.journal import DecisionEntry
from ivr.store.receipts import ClosedCall, EndedCall, OpenedCall, StartedRecording

log = logging.getLogger(__name__)

SCRIPT = "notice-decision"
NOTE_SUFFIX = ".notice"
# Ids of the calls the dialplan plays the notice to: the same channel, the same call.
DIALPLAN_CALLS = uuid.UUID("0b6f3f5e-8c2d-4f7a-b1e9-3d5a7c9e2f41")
HEARD_FIELDS = ("v", "entered", "dialled", "caller", "played", "digit", "digit_at",
                "notice_end")
END_FIELDS = (*HEARD_FIELDS, "channel", "ended", "decision", "recording", "recording_at",
              "mixmonitor", "agent", "queue_status", "queued", "cause", "waiting",
              "available")
MAX_PLAYED = 16
# Closing many calls at once yields to the event loop this often, so that a decision the
# dialplan waits for is not held up behind a sweep's preparations.
YIELD_EVERY = 4
_PLAYED = re.compile(r"^([a-z0-9][a-z0-9_-]{0,63})@([0-9.]{1,20})@([0-9.]{0,20})$")
_DIGIT = re.compile(r"^[0-9*#]?$")
_FILE = re.compile(r"^[0-9a-f-]{36}\.[a-z0-9]{1,8}$")
_MIXMONITOR = re.compile(r"^[A-Za-z0-9/._-]{0,128}$")
_CAUSE = re.compile(r"^[0-9]{0,3}$")
_COUNT = re.compile(r"^[0-9]{0,6}$")
# AMI takes one action at a time on each of the service's connections: past this many
# recordings being started at once on each, a further one would wait behind them, and the
# dialplan's own start is sooner (measured: bench/ami-recording-start/).
AMI_STARTS_AT_ONCE = 2


@dataclass(frozen=True, slots=True)
class Report:
    """What the dialplan reports when the notice is over."""

    entered_at: datetime
    dialled: str  # as dialled (raw)
    caller: str  # as the caller ID arrived (raw; describe_caller reads it)
    heard: Heard


@dataclass(frozen=True, slots=True)
class Ended:
    """What the hangup handler notes when the call ends."""

    channel_id: str
    report: Report
    ended_at: datetime
    decision: Decision | None  # what the service told the dialplan, if it did
    recording: str | None  # the file MixMonitor records into, if it started
    recording_at: datetime | None
    mixmonitor_id: str | None
    agent: str | None
    queue_status: str
    queued: bool  # the caller reached the queue
    cause: str  # HANGUPCAUSE
    # The queue's load when the call ended (QUEUE_WAITING_COUNT, QUEUE_MEMBER free), if known.
    waiting: int | None = None
    available: int | None = None


def _played(value: str) -> tuple[PlayedSegment, ...]:
    items = [item for item in value.split("~") if item]
    if len(items) > MAX_PLAYED:
        raise NoteError(f"more than {MAX_PLAYED} segments played")
    played = []
    for item in items:
        match = _PLAYED.match(item)
        if match is None:
            raise NoteError(f"not a played segment: {item[:60]!r}")
        played.append(PlayedSegment(match.group(1), instant(match.group(2), "segment start"),
                                    optional_instant(match.group(3), "segment end")))
    return tuple(played)


def _report(fields: dict[str, str]) -> Report:
    if not _DIGIT.match(fields["digit"]):
        raise NoteError(f"digit {fields['digit'][:10]!r} is not one")
    heard = Heard(played=_played(fields["played"]), digit=fields["digit"] or None,
                  digit_at=optional_instant(fields["digit_at"], "digit_at"),
                  notice_ended_at=optional_instant(fields["notice_end"], "notice_end"))
    return Report(entered_at=instant(fields["entered"], "entered"),
                  dialled=fields["dialled"][:64], caller=fields["caller"][:1024], heard=heard)


def parse_report(text: str) -> Report:
    """The FastAGI argument of ``notice-decision``."""
    return _report(notes.fields_of(text, HEARD_FIELDS))


def parse_end(text: str) -> Ended:
    """A note of ``[ivr-notice-end]``."""
    fields = notes.fields_of(text, END_FIELDS)
    report = _report(fields)
    ended = instant(fields["ended"], "ended")
    if ended < report.entered_at:
        raise NoteError("the call ended before it entered")
    try:
        decision = Decision(fields["decision"]) if fields["decision"] else None
    except ValueError:
        raise NoteError(f"decision {fields['decision'][:20]!r} is not one") from None
    recording = fields["recording"] if fields["recording"] not in ("", "no") else None
    if recording is not None and not _FILE.match(recording):
        raise NoteError(f"recording {recording[:60]!r} is not a file the service names")
    if not _MIXMONITOR.match(fields["mixmonitor"]):
        raise NoteError(f"MixMonitor id {fields['mixmonitor'][:40]!r} is not one")
    if fields["queued"] not in ("", "1"):
        raise NoteError(f"queued {fields['queued'][:10]!r} is not 1 or empty")
    if not _CAUSE.match(fields["cause"]):
        raise NoteError(f"hangup cause {fields['cause'][:10]!r} is not one")
    for name in ("waiting", "available"):
        if not _COUNT.match(fields[name]):
            raise NoteError(f"{name} {fields[name][:10]!r} is not a count")
    return Ended(
        channel_id=notes.channel_id(fields["channel"]), report=report, ended_at=ended,
        decision=decision, recording=recording,
        recording_at=optional_instant(fields["recording_at"], "recording_at"),
        mixmonitor_id=fields["mixmonitor"] or None,
        agent=printable(fields["agent"], 128) or None,
        queue_status=queue_status(fields["queue_status"]), queued=fields["queued"] == "1",
        cause=fields["cause"],
        waiting=int(fields["waiting"]) if fields["waiting"] else None,
        available=int(fields["available"]) if fields["available"] else None)


# the decision ----------------------------------------------------------------------------
def _call(deps: CallDeps, channel_id: str, report: Report) -> tuple[OpenedCall,
                                                                     LineRef | None]:
    call_id = uuid.uuid5(DIALPLAN_CALLS, f"{deps.settings.node}/{channel_id}")
    return opened_call(deps.settings, call_id,
                       notes.channel_of(channel_id, report.caller, report.dialled),
                       report.entered_at)


def _receipt(deps: CallDeps, line: LineRef, report: Report, at: datetime,
             call_over: bool) -> Receipt | None:
    notice = [Segment(s.id, s.question) for s in deps.manifest.notice_segments(line.notice)]
    return receipt(line.kind, notice, report.heard, at, call_over)


async def decide(deps: CallDeps, channel_id: str, argument: str, header_ms: float = 0.0
                 ) -> tuple[Decision, str | None] | None:
    """Store the decision the report allows; the decision and the file to record into,
    or ``None`` when nothing was stored (nothing is recorded then)."""
    began = time.monotonic()
    extra: dict[str, object] = {"call": channel_id}
    try:
        report = parse_report(argument)
        notes.channel_id(channel_id)
    except NoteError as exc:
        log.error("the dialplan's report is not one: nothing recorded: %s", exc, extra=extra)
        return None
    opened, line = _call(deps, channel_id, report)
    extra["call_id"] = str(opened.id)
    if line is None:
        log.error("the dialplan played a notice for a number on no line: nothing recorded",
                  extra={**extra, "dialled": opened.dialled})
        return None
    decided = _receipt(deps, line, report, now(), call_over=False)
    planned = None
    if decided is not None and decided.record:
        planned = plan_recording(deps.settings, opened.id, decided.decision.value)
    try:
        if decided is None:
            await deps.records.open(opened)
            return None  # a sales caller who was not told: no decision, no recording
        entry = DecisionEntry(call_id=opened.id, line_kind=line.kind.value, receipt=decided,
                              prompts_played=prompts_played(deps.manifest, decided),
                              recording=planned, inherited_from=None, call=opened)
        stored = await (deps.decisions or deps.records).commit_decision(entry)
    except Exception:
        log.exception("decision not stored: nothing will be recorded", extra=extra)
        return None
    if stored is False:
        # The call was decided before (a report again, or not the dialplan's): what is
        # stored is not this decision, so this answer allows nothing.
        log.error("the call was already decided: nothing recorded on this report",
                  extra=extra)
        return None
    log.info("decision stored", extra={**extra, "decision": decided.decision.value,
                                       "digit": decided.digit, "record": decided.record,
                                       "ms": round((time.monotonic() - began) * 1000, 1),
                                       "header_ms": header_ms})
    return decided.decision, planned.file_name if planned else None


class RecordingStart:
    """The one answer to the dialplan, ``<decision>:<file or no>[:<when it started>]``
    (``IVR_DECIDED``: the HTTP answer's body, or one FastAGI command), and who starts the
    recording the stored decision allows.

    With ``recording_start = "ami"`` the service starts it over AMI before it answers:
    the answer then says when, and the dialplan starts nothing. AMI takes one action at a
    time on each of the service's connections for recordings, so past ``at_once`` starts
    under way on each, a further one is left to the dialplan (the file alone), as it is
    when AMI is away or refuses. AMI silent: whether it started is not known, so the
    dialplan is told ``no`` (never two MixMonitors into one file); if it did start,
    MixMonitor's id on the channel says so in the end note."""

    def __init__(self, deps: CallDeps, at_once: int = AMI_STARTS_AT_ONCE) -> None:
        self.deps = deps
        self.at_once = at_once * max(1, deps.settings.ami.recording_connections)
        self.under_way = 0

    async def answer(self, channel_id: str, channel_name: str, decision: Decision,
                     file_name: str | None) -> str:
        if file_name is None:
            return f"{decision.value}:no"
        if (self.deps.settings.dialplan.recording_start != "ami"
                or self.under_way >= self.at_once):
            return f"{decision.value}:{file_name}"
        path = PurePosixPath(self.deps.settings.recordings.asterisk_dir) / file_name
        extra = {"call": channel_id, "file": file_name}
        self.under_way += 1
        try:
            await self.deps.ami.mix_monitor(channel_id, path, channel_name)
        except AmiNoReply as exc:
            log.error("recording asked of AMI, no answer: the dialplan starts none; the "
                      "end note says whether it started: %s", exc, extra=extra)
            return f"{decision.value}:no"
        except AmiError as exc:
            log.warning("recording not started over AMI, the dialplan starts it: %s", exc,
                        extra=extra)
            return f"{decision.value}:{file_name}"
        finally:
            self.under_way -= 1
        log.info("recording started over AMI", extra=extra)
        # to the millisecond, cut as the dialplan's own times are
        return f"{decision.value}:{file_name}:{int(now().timestamp() * 1000) / 1000:.3f}"


class NoticeDecisions:
    """The notice's decision, asked for over HTTP (``CURL()``, the report in the request's
    body) or over FastAGI (the report as the script's argument), whichever the dialplan
    was rendered with (``[dialplan] decision_request``): stored, then answered. One
    ``RecordingStart`` for both, so that AMI never has more than its few starts at once."""

    def __init__(self, deps: CallDeps) -> None:
        self.deps = deps
        self.starts = RecordingStart(deps)

    async def answer(self, channel_id: str, channel_name: str, report: str,
                     header_ms: float) -> str | None:
        """The dialplan's ``IVR_DECIDED``, or ``None`` when nothing was stored."""
        decided = await decide(self.deps, channel_id, report, header_ms)
        if decided is None:
            return None
        return await self.starts.answer(channel_id, channel_name, *decided)

    async def over_http(self, request: ReportRequest, body: str, header_ms: float) -> str:
        # CURL() sets IVR_DECIDED to the answer's body: empty, no decision.
        return await self.answer(request.get("channel") or "", request.get("name") or "",
                                 body, header_ms) or ""

    async def over_fastagi(self, request: AgiRequest, agi: AgiSession) -> None:
        answered = await self.answer(request.get("uniqueid") or "",
                                     request.get("channel") or "",
                                     request.get("arg_1") or "", agi.header_ms)
        if answered is not None:
            await agi.set("IVR_DECIDED", answered)

    def http_handlers(self) -> dict[str, ReportHandler]:
        return {f"/{SCRIPT}": self.over_http}

    def fastagi_handlers(self) -> dict[str, Handler]:
        return {SCRIPT: self.over_fastagi}


# the end ---------------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class _Closing:
    """What an end note gives for the call's record."""

    opened: OpenedCall
    line: LineRef | None
    report: Receipt | None  # the decision the report allows (never recorded: the call is over)
    closed: ClosedCall
    started: StartedRecording | None


def _closing(deps: CallDeps, call: Ended) -> _Closing:
    opened, line = _call(deps, call.channel_id, call.report)
    report = None if line is None else _receipt(deps, line, call.report, call.ended_at,
                                                call_over=True)
    started = None
    if call.mixmonitor_id is not None:
        # MixMonitor's id is the proof it started (set by MixMonitor itself, even when the
        # caller leaves at once); the time was taken just before it (by the dialplan) or
        # just after (by the service, over AMI). Without the file: started over AMI, but
        # the answer that names it did not reach the dialplan (or said no, AMI silent);
        # the file is the one the service names for the call.
        started = StartedRecording(_file_of(deps, call, opened), call.mixmonitor_id,
                                   call.recording_at or call.ended_at)
    closed = ClosedCall(
        answered_at=call.report.entered_at, ended_at=call.ended_at,
        end_reason=f"ended in the dialplan (cause {call.cause or 'unknown'})",
        notice_completed=None if line is None else (report is not None
                                                    and report.notice_ended_at is not None),
        agent_answered=call.agent is not None, agent=call.agent, state="ended")
    return _Closing(opened, line, report, closed, started)


def _file_of(deps: CallDeps, call: Ended, opened: OpenedCall) -> str:
    """The call's recording file: as the note names it, else as the service names it
    (``plan_recording``: from the call's id)."""
    return call.recording or f"{opened.id}.{deps.settings.recordings.format}"


async def record_end(deps: CallDeps, call: Ended) -> None:
    """Close the call's record with what the note says (see the module's text)."""
    end = _closing(deps, call)
    records = deps.records
    if call.decision is None:
        # The service never answered the dialplan (the caller left during the notice, or
        # the service was away): the call, and the decision the report allows, now.
        await records.open(end.opened)
        if end.line is not None and end.report is not None:
            await records.store_decision(end.opened.id, end.line.kind.value, end.report,
                                         prompts_played(deps.manifest, end.report), None)
    await _not_started(deps, call, end)
    # the recording's start and the missed call with the close, in one write (as the ARI
    # flow does)
    await records.close(end.opened.id, end.closed,
                        end.started.file_name if end.started else None,
                        _missed(deps, call, end), end.started)
    if end.started is not None:
        observe_recording_start(deps, call)


async def record_ends(deps: CallDeps, calls: list[Ended]) -> None:
    """Many notes at once. The calls whose decision the service stored are closed in one
    transaction (``CallRecords.end_many``: PostgreSQL only; if it fails, the caller records
    the notes one by one, through the outage journal); the others one by one."""
    decided = []
    for n, call in enumerate(c for c in calls if c.decision is not None):
        decided.append((call, _closing(deps, call)))
        if n % YIELD_EVERY == YIELD_EVERY - 1:
            await asyncio.sleep(0)  # decisions waiting on the event loop go first
    await deps.records.end_many([EndedCall(end.opened.id, end.closed, end.started)
                                 for _, end in decided])
    missed = []
    for n, (call, end) in enumerate(decided):
        await _not_started(deps, call, end)
        if (one := _missed(deps, call, end)) is not None:
            missed.append(one)
        if n % YIELD_EVERY == YIELD_EVERY - 1:
            await asyncio.sleep(0)
    await deps.records.record_missed_many(missed)
    for call, end in decided:  # once all is stored (a fallback would count them again)
        if end.started is not None:
            observe_recording_start(deps, call)
    for call in calls:
        if call.decision is None:
            await record_end(deps, call)


async def _not_started(deps: CallDeps, call: Ended, end: _Closing) -> None:
    """A recording the decision allowed that the dialplan never started (the caller left
    first, or the service's answer never reached the dialplan, or reached it just as the
    caller left: the note may then carry the decision but not the file): the row says so.
    (No row, no change.)"""
    if end.started is None and (call.recording is not None or (
            end.report is not None and end.report.decision.records)):
        file_name = _file_of(deps, call, end.opened)
        try:
            await deps.records.recording_not_started(file_name, call.ended_at)
        except Exception as exc:  # PostgreSQL only: the row stays planned, the call closes
            log.warning("recording not marked as not started: %s", str(exc)[:200],
                        extra={"file": file_name})


def _missed(deps: CallDeps, call: Ended, end: _Closing) -> Missed | None:
    """Rule 4: nobody in the call centre answered; the call is to be returned."""
    if end.line is None or call.agent is not None:
        return None
    reason = ("ivr_hangup" if not call.queued else
              "timeout" if call.queue_status == "TIMEOUT" else "abandoned")
    caller = describe_caller(call.report.caller, deps.settings.region)
    overloaded = (call.waiting is not None and call.available is not None and is_overloaded(
        call.waiting, call.available, deps.settings.callbacks.overload_callers_per_agent))
    return Missed(call_id=end.opened.id, caller=caller.e164, caller_withheld=caller.withheld,
                  reason=reason, overloaded=overloaded, missed_at=call.ended_at)


def observe_recording_start(deps: CallDeps, call: Ended) -> None:
    """As the ARI flow does, from the dialplan's own times."""
    if call.recording_at is not None:
        heard = call.report.heard
        deps.metrics.observe_recording_start(heard.notice_ended_at, heard.digit_at,
                                             call.recording_at)


async def collect_ended(deps: CallDeps, retries: notes.Retries | None = None) -> int:
    """Close the call of every end note in ``unattended.local_dir`` (``notes.collect``):
    together, else one by one. Returns how many calls were closed."""
    return await notes.collect(Path(deps.settings.unattended.local_dir), NOTE_SUFFIX,
                               parse_end, lambda call: record_end(deps, call),
                               lambda calls: record_ends(deps, calls), retries)
