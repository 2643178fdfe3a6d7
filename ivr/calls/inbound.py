"""The shell around the inbound call flow: turns a call's ARI/AMI events into flow events,
carries out the flow's commands against ARI, AMI and PostgreSQL, and reports each outcome
back to the flow. All decisions are the flow's (``ivr/flow/inbound.py``).
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections import deque
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import PurePosixPath
from typing import Any
from zoneinfo import ZoneInfo

from ivr import faults
from ivr.asterisk.ami import AgentConnected, AmiClient, AmiError, AmiNoReply
from ivr.asterisk.ari import AriClient, AriError, ChannelGone
from ivr.asterisk.ari_events import (
    Channel,
    ChannelDestroyed,
    ChannelDtmfReceived,
    ChannelHangupRequest,
    ChannelUserevent,
    StasisStart,
)
from ivr.asterisk.ari_events import PlaybackContinuing as AriPlaybackContinuing
from ivr.asterisk.ari_events import PlaybackFinished as AriPlaybackFinished
from ivr.asterisk.ari_events import PlaybackStarted as AriPlaybackStarted
from ivr.calls.caller import describe_caller
from ivr.calls.router import CallItem, ChannelVanished
from ivr.flow import commands as cmd
from ivr.flow import events as ev
from ivr.flow.inbound import (
    Consent,
    IllegalTransition,
    InboundCall,
    Phase,
    Segment,
    end,
    new_inbound_call,
    step,
)
from ivr.metrics.in_process import Metrics, Step
from ivr.notices.catalogue import BuiltSegment, Manifest
from ivr.policy.callbacks import overloaded as is_overloaded
from ivr.policy.lines import LineRef
from ivr.policy.retention import expires_at
from ivr.settings import Settings
from ivr.store.callbacks import Callbacks, Missed
from ivr.store.closes_together import CloseQueue
from ivr.store.decisions_together import DecisionQueue
from ivr.store.durable import DurableRecords
from ivr.store.journal import CloseEntry, DecisionEntry, OpenEntry
from ivr.store.opens_together import OpenQueue
from ivr.store.receipts import ClosedCall, OpenedCall, PlannedRecording, StartedRecording

log = logging.getLogger(__name__)

# A playback that ends more than this before its audio's length was cut short (hang-up).
CUT_SHORT_MS = 400
# Why a call whose flow failed unexpectedly ended (the caller went on to the queue).
RESCUED = "service error: handed to the queue"
# A playback not finished this long after its audio's length never will be (lost events).
PLAYBACK_GRACE_S = 15.0
WATCHED_PHASES = (Phase.NOTICE, Phase.REPEATING_QUESTION)



@dataclass
class CallDeps:
    """What a call needs from the service; built once by the composition root."""

    settings: Settings
    ari: AriClient
    ami: AmiClient
    records: DurableRecords
    manifest: Manifest
    callbacks: Callbacks
    metrics: Metrics = field(default_factory=Metrics)
    # The decisions, committed together (run by the service); without it, each is
    # committed alone.
    decisions: DecisionQueue | None = None
    # The ARI flow's closes, committed together (run by the service); without it, each is
    # written alone.
    closes: CloseQueue | None = None
    # The ARI flow's calls opened together (run by the service); without it, each alone.
    opens: OpenQueue | None = None


def now() -> datetime:
    return datetime.now(UTC)


def opened_call(settings: Settings, call_id: uuid.UUID, channel: Channel,
                started_at: datetime) -> tuple[OpenedCall, LineRef | None]:
    """What is known of a call when it enters the application, and its line."""
    caller = describe_caller(channel.caller_number, settings.region)
    dialled = describe_caller(channel.exten, settings.region).e164
    line = settings.line_for(dialled) if dialled else None
    return OpenedCall(
        id=call_id, channel_id=channel.id, linkedid=channel.linkedid, dialled=dialled,
        caller=caller.e164, caller_withheld=caller.withheld, caller_raw=caller.raw,
        line_name=line.name if line else None, line_kind=line.kind.value if line else None,
        started_at=started_at), line


def plan_recording(settings: Settings, call_id: uuid.UUID, basis: str) -> PlannedRecording:
    """The recording a stored decision allows: named from the call's id, kept for the
    months of its basis (rule 6), counted in the call centre's time zone."""
    started = now()
    months = (settings.retention.legal_basis_months if basis == "legal_basis"
              else settings.retention.consent_months)
    local = started.astimezone(ZoneInfo(settings.timezone))
    return PlannedRecording(f"{call_id}.{settings.recordings.format}", basis, started,
                            expires_at(local, months))


def prompts_played(manifest: Manifest, receipt: cmd.Receipt) -> list[dict[str, Any]]:
    """Rule 3: each segment played, with the version and hash of its audio, and when."""
    played = []
    for segment in receipt.played:
        built = manifest.segment(segment.segment_id)
        played.append({
            "id": built.id, "version": built.version, "sha256": built.sha256,
            "started_at": segment.started_at.isoformat() if segment.started_at else None,
            "ended_at": segment.ended_at.isoformat() if segment.ended_at else None,
        })
    return played


# MixMonitor's id when only its file shows that it started (AMI never answered, or the
# service restarted before it could store the id).
FOUND_ON_DISK = "unknown (file on disk)"
# The user event the queue's dialplan raises when Queue() returns with the caller still on
# the line (asterisk-conf/extensions.conf): ``status`` is QUEUESTATUS (rule 4's reason).
QUEUE_EVENT = "ivr-queue"


class InboundCallRunner:
    def __init__(self, deps: CallDeps, start: StasisStart,
                 items: asyncio.Queue[CallItem]) -> None:
        self.deps = deps
        self.start = start
        self.items = items
        self.channel_id = start.channel.id
        self.call_uuid = uuid.uuid4()
        self.entered = asyncio.get_running_loop().time()
        self.deadline: float | None = None
        # each playback's segments, in the order Asterisk plays them
        self.playbacks: dict[str, tuple[BuiltSegment, ...]] = {}
        # each playback's segment under way (its media URI) and when it started
        self.playback_started: dict[str, tuple[str, datetime]] = {}
        # the segments played, by the media URI their events name
        self.media: dict[str, BuiltSegment] = {}
        self.playback_issued: dict[str, float] = {}
        self.answered_at: datetime | None = None
        self.agent: str | None = None
        self.recording_file: str | None = None
        # MixMonitor asked of AMI, which never answered: settled when the call ends
        self.recording_asked_at: datetime | None = None
        # MixMonitor's id and start, stored with the call's close (one write fewer a call;
        # a restart finds the id on the channel or the file on disk: ivr/calls/recovery.py)
        self.started: StartedRecording | None = None
        self.line: LineRef | None = None
        # The call's opening, written while the call goes on (not before its answer): its
        # decision and its close wait for it. None: opened by whoever started the runner.
        self.opening: asyncio.Task[bool] | None = None
        # The flow's state as the last step left it (what a rescue decides from).
        self.flow: InboundCall | None = None
        self.hung_up = False
        self.reached_queue = False
        self.direction = "inbound"
        self.queue_status: str | None = None

    @property
    def log_extra(self) -> dict[str, str]:
        return {"call": self.channel_id, "call_id": str(self.call_uuid)}

    # the call's life ---------------------------------------------------------------------
    async def run(self) -> None:
        settings = self.deps.settings
        opened, self.line = opened_call(settings, self.call_uuid, self.start.channel,
                                        self.start.timestamp or now())
        log.info("call entered the application", extra={
            **self.log_extra, "dialled": opened.dialled, "caller": opened.caller or "withheld",
            "line": self.line.name if self.line else None})
        async with asyncio.TaskGroup() as tasks:
            self.opening = tasks.create_task(self.open_call(opened),
                                             name=f"open-{self.channel_id}")
            await self.take()

    async def open_call(self, opened: OpenedCall) -> bool:
        """Store the call; ``False`` if its channel was stored already (a replayed
        StasisStart the router did not know): nothing of this call is then written."""
        entry = OpenEntry(call=opened, direction="inbound")
        try:
            if self.deps.opens is not None:
                stored = await self.deps.opens.open(entry)
            else:
                stored = await self.deps.records.open(opened)
        except Exception:
            log.exception("could not store the call; it goes on unrecorded",
                          extra=self.log_extra)
            return True  # its decision's write then fails on its own: nothing recorded
        if not stored:
            log.error("call already recorded: nothing of this one is stored or recorded",
                      extra=self.log_extra)
        return stored

    async def call_stored(self) -> bool:
        return True if self.opening is None else await self.opening

    async def take(self) -> None:
        """The call, from its answer to its close."""
        settings = self.deps.settings
        if self.line is None:
            await self.unconfigured()
            return
        segments = tuple(Segment(s.id, s.question)
                         for s in self.deps.manifest.notice_segments(self.line.notice))
        consent = Consent(settings.consent.answer_timeout, settings.consent.question_repeats)
        call, commands = new_inbound_call(str(self.call_uuid), self.line.kind, self.line.queue,
                                          segments, consent)
        try:
            await self.drive(call, commands)
        except Exception:
            log.exception("call flow failed; the caller goes on to the queue",
                          extra=self.log_extra)
            await self.rescue()

    async def follow_handed_on(self, line: LineRef | None = None) -> ev.HungUp | None:
        """A caller an earlier instance left in the application, handed to the queue by
        this one, or left in the queue (``ivr/calls/recovery.py``), is followed there as
        any call handed on: if nobody in the call centre answers, the call is to be
        returned (rule 4), and its missed call is stored on its own. Its line is
        ``line``, else the number the channel dialled. The caller's hang-up, or ``None``
        once an agent answered."""
        if line is None:
            _, line = opened_call(self.deps.settings, self.call_uuid, self.start.channel,
                                  now())
        self.line = line
        self.reached_queue = True
        while True:
            event = self.translate(await self.items.get())
            if isinstance(event, ev.AgentAnswered):
                log.info("agent answered a call handed on after a restart",
                         extra={**self.log_extra, "agent": event.agent})
                return None
            if isinstance(event, ev.HungUp):
                break
        if self.line is not None:
            await self.record_missed(await self.missed(event.at))
        return event

    async def rescue(self) -> None:
        """An error the flow did not expect (ARI or the database failing mid-call): the
        caller is not left in the application. They go on to their queue; no recording
        is started for them here (one already running keeps its stored basis). The flow
        then ends as at a hang-up: a service caller with no decision yet gets no consent
        stored (rule 2), so that no call of a service line is left without its receipt."""
        assert self.line is not None
        settings = self.deps.settings
        try:
            await self.deps.ari.continue_in_dialplan(
                self.channel_id, settings.dialplan.queue_context, self.line.queue)
            self.reached_queue = True
        except AriError as exc:
            log.error("could not hand the caller on after the failure: %s", exc,
                      extra=self.log_extra)
        flow = self.flow
        if flow is None or flow.phase is Phase.ENDED:  # failed closing: close again
            await self.close(cmd.CloseCall(now(), RESCUED, False, False), "ended")
            return
        flow, commands = end(flow, now(), RESCUED)
        for command in commands:
            await self.perform(flow, command)

    async def drive(self, call: InboundCall, commands: list[cmd.Command]) -> None:
        pending: deque[ev.FlowEvent] = deque()
        self.flow = call
        while True:
            for command in commands:
                outcome = await self.perform(call, command)
                if outcome is not None:
                    pending.append(outcome)
            if call.phase is Phase.ENDED:
                return
            commands = []
            event = pending.popleft() if pending else await self.receive(call)
            if event is None:
                continue
            before = call.phase
            try:
                call, commands = step(call, event)
                self.flow = call
            except IllegalTransition as exc:
                # A late or foreign event (e.g. a playback event after the call moved on)
                # never breaks a call: it is logged and dropped.
                log.warning("event dropped: %s", exc, extra=self.log_extra)
                continue
            if call.phase is not before:
                self.deadline = None
            if log.isEnabledFor(logging.DEBUG):
                log.debug("flow step", extra={**self.log_extra, "event": type(event).__name__,
                                              "phase": call.phase.value})

    async def unconfigured(self) -> None:
        """A number no line has: never recorded, handed to the configured context."""
        settings = self.deps.settings
        log.warning("number is on no configured line", extra=self.log_extra)
        try:
            await self.deps.ari.continue_in_dialplan(
                self.channel_id, settings.dialplan.unconfigured_context, self.start.channel.exten)
            reason = "unconfigured number"
        except AriError as exc:
            reason = f"unconfigured number; continue failed: {exc}"
        await self.close(cmd.CloseCall(now(), reason, False, False), "unconfigured")

    # events in ---------------------------------------------------------------------------
    async def receive(self, call: InboundCall) -> ev.FlowEvent | None:
        loop = asyncio.get_running_loop()
        watched = self.watched_playback(call)
        deadline = self.deadline
        if watched is not None:
            deadline = watched[1]
        timeout = None if deadline is None else max(0.0, deadline - loop.time())
        try:
            # not asyncio.wait_for: on Python 3.11 it can return an event that arrived as
            # the task was cancelled and drop the cancellation (the service's stop): the
            # call would then wait for events that no longer come
            async with asyncio.timeout(timeout):
                item = await self.items.get()
        except TimeoutError:
            if watched is not None:
                log.error("playback never finished; treated as not heard",
                          extra={**self.log_extra, "playback": watched[0]})
                return ev.PlaybackFailed(watched[0], now())
            self.deadline = None
            return ev.TimerFired(now())
        event = self.translate(item)
        if isinstance(item, AriPlaybackStarted) and self.asks(item.media_uri):
            await faults.reached(self.deps.settings, "question", self.log_extra)
        return event

    def segment_id(self, media_uri: str) -> str | None:
        segment = self.media.get(media_uri)
        return None if segment is None else segment.id

    def asks(self, media_uri: str) -> bool:
        segment = self.media.get(media_uri)
        return segment is not None and segment.question

    def watched_playback(self, call: InboundCall) -> tuple[str, float] | None:
        """A playback whose end must come within its length plus a grace period; events
        lost with the connection must not leave a caller in the application."""
        if call.playback_id is None or call.phase not in WATCHED_PHASES:
            return None
        segments = self.playbacks.get(call.playback_id)
        issued = self.playback_issued.get(call.playback_id)
        if segments is None or issued is None:
            return None
        length_s = sum(s.duration_ms for s in segments) / 1000
        return call.playback_id, issued + length_s + PLAYBACK_GRACE_S

    def translate(self, item: CallItem) -> ev.FlowEvent | None:
        if isinstance(item, AgentConnected):
            self.agent = item.agent
            return ev.AgentAnswered(item.agent, now())
        if isinstance(item, ChannelUserevent):
            if item.eventname == QUEUE_EVENT:
                self.queue_status = item.body.get("status") or None
            return None
        if isinstance(item, ChannelVanished):
            if self.hung_up:
                return None
            self.hung_up = True
            return ev.HungUp(now(), "channel gone while the events connection was down")
        at = item.timestamp or now()
        if isinstance(item, ChannelDtmfReceived):
            return ev.Digit(item.digit, at)
        if isinstance(item, AriPlaybackStarted):
            self.playback_started[item.playback_id] = item.media_uri, at
            return ev.PlaybackStarted(item.playback_id, at, self.segment_id(item.media_uri))
        if isinstance(item, (AriPlaybackContinuing, AriPlaybackFinished)):
            return self.segment_ended(item, at)
        if isinstance(item, (ChannelHangupRequest, ChannelDestroyed)):
            if self.hung_up:
                return None
            self.hung_up = True
            return ev.HungUp(at)
        return None

    def segment_ended(self, item: AriPlaybackContinuing | AriPlaybackFinished,
                      at: datetime) -> ev.FlowEvent:
        """A playback's segment ended: the list goes on (continuing) or the playback is
        over. A segment that stopped well before its audio's end was cut short (the caller
        hung up, Asterisk failed it or found no file, the playback was stopped): the caller
        did not hear it all (rule 1)."""
        if isinstance(item, AriPlaybackFinished) and item.state == "failed":
            return ev.PlaybackFailed(item.playback_id, at)
        segment = self.media.get(item.media_uri)
        uri, started = self.playback_started.get(item.playback_id, ("", None))
        if segment is not None and started is not None and uri == item.media_uri:
            heard_ms = (at - started).total_seconds() * 1000
            if heard_ms < segment.duration_ms - CUT_SHORT_MS:
                log.info("playback cut short", extra={**self.log_extra,
                         "segment": segment.id, "heard_ms": int(heard_ms)})
                return ev.PlaybackFailed(item.playback_id, at)
        if isinstance(item, AriPlaybackContinuing):
            return ev.PlaybackContinued(item.playback_id, at, self.segment_id(item.media_uri))
        return ev.PlaybackFinished(item.playback_id, at)

    # commands out ------------------------------------------------------------------------
    async def perform(self, call: InboundCall, command: cmd.Command) -> ev.FlowEvent | None:
        timed = log.isEnabledFor(logging.DEBUG)  # not built for every command otherwise
        started = asyncio.get_running_loop().time() if timed else 0.0
        try:
            return await self._perform(call, command)
        except ChannelGone:
            if self.hung_up:
                return None
            self.hung_up = True
            return ev.HungUp(now(), "channel gone")
        finally:
            if timed:
                log.debug("command done", extra={
                    **self.log_extra, "command": type(command).__name__,
                    "ms": round((asyncio.get_running_loop().time() - started) * 1000, 1)})

    async def _perform(self, call: InboundCall, command: cmd.Command) -> ev.FlowEvent | None:
        ari = self.deps.ari
        match command:
            case cmd.Answer():
                await ari.answer(self.channel_id)
                self.answered_at = now()
                self.deps.metrics.observe_step(
                    Step.ANSWER, asyncio.get_running_loop().time() - self.entered)
                return ev.Answered(self.answered_at)
            case cmd.Play(segment_id=segment_id, playback_id=playback_id, following=following):
                return await self.play(playback_id, (segment_id, *following))
            case cmd.StopPlayback(playback_id=playback_id):
                try:
                    await ari.stop_playback(playback_id)
                except AriError as exc:
                    if exc.status != 404:  # 404: it had ended
                        log.warning("could not stop the playback: %s", exc,
                                    extra=self.log_extra)
                return None
            case cmd.StartTimer(seconds=seconds):
                self.deadline = asyncio.get_running_loop().time() + seconds
                return None
            case cmd.StoreDecision(receipt=receipt):
                return await self.store_decision(call, receipt)
            case cmd.StartRecording():
                return await self.start_recording(call)
            case cmd.ContinueToQueue(queue=queue, decision=decision, recorded=recorded):
                return await self.continue_to_queue(queue, decision, recorded)
            case cmd.CloseCall():
                await self.close(command, "ended")
                return None
        raise AssertionError(f"unknown command {command!r}")

    async def play(self, playback_id: str, segment_ids: tuple[str, ...]) -> ev.FlowEvent | None:
        """One playback of the segments, in order (a list of media: Asterisk starts each
        as the one before ends, and reports each start and end)."""
        segments = tuple(self.deps.manifest.segment(i) for i in segment_ids)
        uris = [f"sound:{self.deps.settings.prompts.sound_prefix}/{i}" for i in segment_ids]
        self.media.update(zip(uris, segments, strict=True))
        self.playbacks[playback_id] = segments
        self.playback_issued[playback_id] = asyncio.get_running_loop().time()
        try:
            await self.deps.ari.play(self.channel_id, ",".join(uris), playback_id)
        except ChannelGone:
            raise
        except AriError as exc:
            log.error("cannot play %s: %s", ", ".join(segment_ids), exc, extra=self.log_extra)
            return ev.PlaybackFailed(playback_id, now())
        return None

    async def continue_to_queue(self, queue: str, decision: cmd.Decision | None,
                                recorded: bool) -> ev.FlowEvent:
        """Hand the call to its queue with the decision on the channel (for the agent's
        phone and the queue), still following it to learn whether an agent answered."""
        ari, settings = self.deps.ari, self.deps.settings
        await ari.set_variable(self.channel_id, "IVR_DECISION",
                               decision.value if decision else "none")
        await ari.set_variable(self.channel_id, "IVR_RECORDED", "yes" if recorded else "no")
        try:
            await ari.subscribe_channel(self.channel_id)
        except AriError as exc:
            raise ChannelGone(str(exc)) from None  # 422: the channel no longer exists
        try:
            await ari.continue_in_dialplan(self.channel_id, settings.dialplan.queue_context,
                                           queue)
        except ChannelGone:
            raise
        except AriError as exc:
            log.error("could not hand the call to its queue: %s", exc, extra=self.log_extra)
        log.info("call handed to the queue", extra={**self.log_extra, "queue": queue,
                                                    "recorded": recorded})
        self.reached_queue = True
        return ev.Continued(now())

    async def store_decision(self, call: InboundCall, receipt: cmd.Receipt) -> ev.FlowEvent:
        assert self.line is not None
        planned = None
        if not await self.call_stored():
            return ev.DecisionNotStored("call already recorded", now())
        if receipt.record:
            planned = plan_recording(self.deps.settings, self.call_uuid,
                                     receipt.decision.value)
            self.recording_file = planned.file_name
        entry = DecisionEntry(call_id=self.call_uuid, line_kind=self.line.kind.value,
                              receipt=receipt,
                              prompts_played=prompts_played(self.deps.manifest, receipt),
                              recording=planned, inherited_from=None)
        try:
            stored = await (self.deps.decisions or self.deps.records).commit_decision(entry)
        except Exception as exc:
            log.exception("decision not stored: nothing will be recorded", extra=self.log_extra)
            self.recording_file = None
            return ev.DecisionNotStored(str(exc)[:200], now())
        if stored is False:
            # A decision of this call was stored before: not this one, which allows nothing.
            log.error("the call was already decided: nothing recorded", extra=self.log_extra)
            self.recording_file = None
            return ev.DecisionNotStored("call already decided", now())
        log.info("decision stored", extra={**self.log_extra, "decision": receipt.decision.value,
                                           "digit": receipt.digit, "record": receipt.record})
        return ev.DecisionStored(now())

    async def start_recording(self, call: InboundCall) -> ev.FlowEvent:
        assert self.recording_file is not None
        await faults.reached(self.deps.settings, "before_recording", self.log_extra)
        path = PurePosixPath(self.deps.settings.recordings.asterisk_dir) / self.recording_file
        asked = now()
        try:
            mixmonitor_id = await self.deps.ami.mix_monitor(self.channel_id, path,
                                                            self.start.channel.name)
        except AmiNoReply as exc:
            # Taken but not answered: it may still start. Never asked twice; the file
            # tells at the call's end (settle_recording).
            log.error("recording asked of AMI, no answer: whether it started is settled "
                      "when the call ends: %s", exc, extra=self.log_extra)
            self.recording_asked_at = asked
            return ev.RecordingFailed(str(exc), now())
        except AmiError as exc:
            log.error("recording did not start: %s", exc, extra=self.log_extra)
            await self.not_started(now())
            return ev.RecordingFailed(str(exc), now())
        started = now()
        self.deps.metrics.observe_recording_start(call.notice_ended_at, call.digit_at, started)
        log.info("recording started", extra={**self.log_extra, "file": self.recording_file})
        self.started = StartedRecording(self.recording_file, mixmonitor_id, started)
        return ev.RecordingStarted(mixmonitor_id, started)

    async def not_started(self, at: datetime) -> None:
        """The recording the decision allowed never started: its row says so (there is no
        file to delete), and the call's close stops no recording."""
        assert self.recording_file is not None
        file_name, self.recording_file = self.recording_file, None
        try:
            await self.deps.records.recording_not_started(file_name, at)
        except Exception as exc:  # PostgreSQL only: the row stays planned
            log.warning("recording not marked as not started: %s", str(exc)[:200],
                        extra={**self.log_extra, "file": file_name})

    async def settle_recording(self, at: datetime) -> None:
        """AMI never answered the MixMonitor action: its file, once the call is over,
        tells whether it started (as after a restart: ivr/calls/recovery.py)."""
        assert self.recording_file is not None and self.recording_asked_at is not None
        if not (self.deps.settings.recordings.local_dir / self.recording_file).exists():
            log.warning("recording asked of AMI with no answer never started: no file",
                        extra={**self.log_extra, "file": self.recording_file})
            return await self.not_started(at)
        self.started = StartedRecording(self.recording_file, FOUND_ON_DISK,
                                        self.recording_asked_at)
        log.warning("recording asked of AMI with no answer started: its file is on disk",
                    extra={**self.log_extra, "file": self.recording_file})

    async def close(self, command: cmd.CloseCall, state: str) -> None:
        """Close the call's record; when nobody in the call centre answered, with its
        missed call in the same write (a service stopped between the two would leave a
        closed call that no callback returns: the restart recovers only open calls)."""
        closed = ClosedCall(
            answered_at=self.answered_at, ended_at=command.ended_at,
            end_reason=command.end_reason,
            notice_completed=command.notice_completed if self.line else None,
            agent_answered=command.agent_answered, agent=self.agent, state=state)
        if self.recording_asked_at is not None and self.recording_file is not None:
            await self.settle_recording(command.ended_at)
        if not await self.call_stored():
            return
        missed = None
        if self.direction == "inbound" and self.line is not None and not command.agent_answered:
            missed = await self.missed(command.ended_at)
        try:
            callback = await self.write_close(closed, missed)
        except Exception:
            log.exception("could not close the call record", extra=self.log_extra)
            # the close may be what failed: the recording's start and the missed call on
            # their own, as they would be
            await self.store_started()
            if missed is None:
                return
            return await self.record_missed(missed)
        log.info("call closed", extra={**self.log_extra, "reason": command.end_reason,
                                       "notice_completed": command.notice_completed,
                                       "agent_answered": command.agent_answered})
        if missed is not None:
            self.log_missed(missed, callback)

    async def write_close(self, closed: ClosedCall, missed: Missed | None) -> uuid.UUID | None:
        if self.deps.closes is None:
            return await self.deps.records.close(self.call_uuid, closed, self.recording_file,
                                                 missed, self.started)
        return await self.deps.closes.close(CloseEntry(
            call_id=self.call_uuid, closed=closed, recording_file=self.recording_file,
            missed=missed, started=self.started))

    async def store_started(self) -> None:
        if self.started is None:
            return
        started, self.started = self.started, None
        try:
            await self.deps.records.recording_started(started.file_name, started.mixmonitor_id,
                                                      started.started_at)
        except Exception:
            log.exception("could not store the MixMonitor id", extra=self.log_extra)

    async def missed(self, at: datetime) -> Missed:
        """Rule 4: nobody in the call centre answered; the call is to be returned."""
        assert self.line is not None
        reason = ("ivr_hangup" if not self.reached_queue else
                  "timeout" if self.queue_status == "TIMEOUT" else "abandoned")
        overloaded = False
        try:
            callers, available = await self.deps.ami.queue_load(self.line.queue)
            overloaded = is_overloaded(callers, available,
                                       self.deps.settings.callbacks.overload_callers_per_agent)
        except AmiError as exc:
            log.warning("queue load unknown: %s", exc, extra=self.log_extra)
        caller = describe_caller(self.start.channel.caller_number, self.deps.settings.region)
        return Missed(call_id=self.call_uuid, caller=caller.e164,
                      caller_withheld=caller.withheld, reason=reason, overloaded=overloaded,
                      missed_at=at)

    async def record_missed(self, missed: Missed) -> None:
        try:
            callback = await self.deps.records.record_missed(missed)
        except Exception:
            log.exception("could not store the missed call", extra=self.log_extra)
            return
        self.log_missed(missed, callback)

    def log_missed(self, missed: Missed, callback: uuid.UUID | None) -> None:
        log.info("missed call", extra={**self.log_extra, "reason": missed.reason,
                                       "callback": str(callback) if callback else None,
                                       "overloaded": missed.overloaded})


