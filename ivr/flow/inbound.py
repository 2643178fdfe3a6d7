"""The inbound call: answer, the line's notice, the consent question (service lines), the
decision, the recording, the queue. Rules 1-3 of POLICY.md.

``step(call, event)`` returns the next call and the commands to carry out. The table
``TRANSITIONS`` lists every phase and the events it accepts; any other pair raises
:class:`IllegalTransition`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import datetime
from enum import StrEnum
from typing import Any

from ivr.flow.commands import (
    Answer,
    CloseCall,
    Command,
    ContinueToQueue,
    Decision,
    Play,
    PlayedSegment,
    Receipt,
    StartRecording,
    StartTimer,
    StopPlayback,
    StoreDecision,
)
from ivr.flow.events import (
    AgentAnswered,
    Answered,
    Continued,
    DecisionNotStored,
    DecisionStored,
    Digit,
    FlowEvent,
    HungUp,
    PlaybackContinued,
    PlaybackFailed,
    PlaybackFinished,
    PlaybackStarted,
    RecordingFailed,
    RecordingStarted,
    TimerFired,
)
from ivr.policy.lines import LineKind

CONSENT_DIGITS = {"1": Decision.CONSENT, "2": Decision.REFUSAL}


class Phase(StrEnum):
    ANSWERING = "answering"
    NOTICE = "notice"  # the notice's segments are playing, in order, as one playback
    AWAITING_DIGIT = "awaiting_digit"  # notice over, the question waits for 1 or 2
    REPEATING_QUESTION = "repeating_question"
    STORING_DECISION = "storing_decision"
    STARTING_RECORDING = "starting_recording"
    CONTINUING = "continuing"
    IN_QUEUE = "in_queue"
    ENDED = "ended"


class IllegalTransition(RuntimeError):
    def __init__(self, phase: Phase, event: FlowEvent) -> None:
        super().__init__(f"{type(event).__name__} is not allowed in phase {phase}")
        self.phase = phase
        self.event = event


@dataclass(frozen=True, slots=True)
class Segment:
    segment_id: str
    question: bool = False


@dataclass(frozen=True, slots=True)
class Consent:
    """The consent settings the flow needs (rule 2)."""

    answer_timeout: float = 5.0
    question_repeats: int = 1


@dataclass(frozen=True, slots=True)
class InboundCall:
    call_id: str
    kind: LineKind
    queue: str
    segments: tuple[Segment, ...]
    consent: Consent = Consent()
    phase: Phase = Phase.ANSWERING
    playing: int = -1  # index into segments, -1 before the notice
    playlist_last: int = -1  # index of the playback's last segment
    playback_id: str | None = None
    playback_started: bool = False
    playbacks: int = 0
    played: tuple[PlayedSegment, ...] = ()
    notice_started_at: datetime | None = None
    notice_ended_at: datetime | None = None
    question_started_at: datetime | None = None
    question_repeats_done: int = 0
    digit: str | None = None
    digit_at: datetime | None = None
    decision: Decision | None = None
    decision_stored: bool = False
    recording: bool = False
    agent_answered: bool = False

    @property
    def notice_completed(self) -> bool:
        return self.notice_ended_at is not None

    @property
    def question_index(self) -> int | None:
        for i, s in enumerate(self.segments):
            if s.question:
                return i
        return None


def new_inbound_call(call_id: str, kind: LineKind, queue: str, segments: tuple[Segment, ...],
                     consent: Consent = Consent()) -> tuple[InboundCall, list[Command]]:
    """A call that has just entered the application: answer it first."""
    if not segments:
        raise ValueError("a notice needs at least one segment")
    if kind is LineKind.SERVICE and sum(s.question for s in segments) != 1:
        raise ValueError("a service line's notice needs exactly one question segment")
    return InboundCall(call_id, kind, queue, segments, consent), [Answer()]


# helpers ----------------------------------------------------------------------------------
Result = tuple[InboundCall, list[Command]]


def _play(call: InboundCall, index: int, last: int | None = None) -> Result:
    """One playback of the segments ``index`` to ``last`` (just ``index`` by default):
    Asterisk plays them back to back, so that no round trip to the service comes between
    two segments of the notice, however late its events arrive."""
    last = index if last is None else last
    n = call.playbacks + 1
    playback_id = f"{call.call_id}-{n}"
    following = tuple(s.segment_id for s in call.segments[index + 1:last + 1])
    return (replace(call, playing=index, playlist_last=last, playback_id=playback_id,
                    playbacks=n, playback_started=False),
            [Play(call.segments[index].segment_id, playback_id, following)])


def _receipt(call: InboundCall, decision: Decision, at: datetime) -> Receipt:
    return Receipt(
        decision=decision, digit=call.digit, digit_at=call.digit_at,
        notice_started_at=call.notice_started_at, notice_ended_at=call.notice_ended_at,
        question_started_at=call.question_started_at, decided_at=at, played=call.played,
        record=decision.records and call.notice_completed,
    )


def _decide(call: InboundCall, at: datetime) -> Result:
    """The notice is over (or the question timed out): store the decision."""
    if call.kind is LineKind.SALES:
        decision = Decision.LEGAL_BASIS
    else:
        decision = CONSENT_DIGITS.get(call.digit or "", Decision.NO_CONSENT)
    receipt = _receipt(call, decision, at)
    return (replace(call, phase=Phase.STORING_DECISION, decision=decision),
            [StoreDecision(receipt)])


def _continue(call: InboundCall) -> Result:
    return (replace(call, phase=Phase.CONTINUING),
            [ContinueToQueue(call.queue, call.decision, call.recording)])


def _close(call: InboundCall, at: datetime, reason: str) -> Result:
    """The call is over. A service call whose caller left undecided is ``no_consent``
    (rule 2: a hang-up is no consent); what was decided is stored before closing."""
    commands: list[Command] = []
    undecided = call.decision is None  # set only where a StoreDecision was already emitted
    if undecided and call.kind is LineKind.SERVICE:
        decision = CONSENT_DIGITS.get(call.digit or "", Decision.NO_CONSENT)
        commands.append(StoreDecision(replace(_receipt(call, decision, at), record=False)))
        call = replace(call, decision=decision)
    commands.append(CloseCall(ended_at=at, end_reason=reason,
                              notice_completed=call.notice_completed,
                              agent_answered=call.agent_answered))
    return replace(call, phase=Phase.ENDED, playback_id=None), commands


def _mark_segment_started(call: InboundCall, at: datetime) -> InboundCall:
    segment = call.segments[call.playing]
    played = (*call.played, PlayedSegment(segment.segment_id, at, None))
    call = replace(call, played=played)
    if call.notice_started_at is None:
        call = replace(call, notice_started_at=at)
    if segment.question and call.question_started_at is None:
        call = replace(call, question_started_at=at)
    return call


def _mark_segment_ended(call: InboundCall, at: datetime) -> InboundCall:
    if call.played and call.played[-1].ended_at is None:
        last = call.played[-1]
        call = replace(call, played=(*call.played[:-1], replace(last, ended_at=at)))
    return call


def _mine(call: InboundCall, playback_id: str, segment_id: str | None = None) -> bool:
    """The event is of the playback the call waits for (and of the segment it plays, where
    the event names one): not a repeated, late or foreign one."""
    return playback_id == call.playback_id and (
        segment_id is None or segment_id == call.segments[call.playing].segment_id)


# transitions -------------------------------------------------------------------------------
def answered(call: InboundCall, event: Answered) -> Result:
    call, commands = _play(call, 0, len(call.segments) - 1)
    return replace(call, phase=Phase.NOTICE), commands


def ignore(call: InboundCall, event: FlowEvent) -> Result:
    return call, []


def playback_started(call: InboundCall, event: PlaybackStarted) -> Result:
    if not _mine(call, event.playback_id, event.segment_id) or call.playback_started:
        return call, []  # a foreign or repeated event
    return replace(_mark_segment_started(call, event.at), playback_started=True), []


def notice_playback_finished(call: InboundCall, event: PlaybackFinished) -> Result:
    if not _mine(call, event.playback_id):
        return call, []
    if not call.playback_started or call.playing < call.playlist_last:
        # Rule 3 needs to prove what was played and when: a segment whose start was never
        # reported cannot count as heard, nor can those of a list stopped before its end.
        return playback_failed(call, PlaybackFailed(event.playback_id, event.at))
    call = replace(_mark_segment_ended(call, event.at), notice_ended_at=event.at,
                   playback_id=None)
    if call.kind is LineKind.SALES or call.digit in CONSENT_DIGITS:
        return _decide(call, event.at)
    return replace(call, phase=Phase.AWAITING_DIGIT), [StartTimer(call.consent.answer_timeout)]


def playback_continued(call: InboundCall, event: PlaybackContinued) -> Result:
    """The playback's segment ended and the next of its list begins (its start is
    reported on its own, as every segment's is)."""
    if not _mine(call, event.playback_id, event.segment_id):
        return call, []  # a foreign or repeated event
    if not call.playback_started or call.playing >= call.playlist_last:
        return playback_failed(call, PlaybackFailed(event.playback_id, event.at))
    call = _mark_segment_ended(call, event.at)
    return replace(call, playing=call.playing + 1, playback_started=False), []


def playback_failed(call: InboundCall, event: PlaybackFailed) -> Result:
    """The caller cannot be told: rule 1 forbids recording. What is left of the playback
    is stopped (a list would go on playing and hold the caller here), and the call is
    handed on unrecorded."""
    if not _mine(call, event.playback_id):
        return call, []
    stop = StopPlayback(event.playback_id)
    decision = None if call.kind is LineKind.SALES else Decision.NO_CONSENT
    if decision is None:
        call, commands = _continue(replace(call, playback_id=None))
        return call, [stop, *commands]
    receipt = replace(_receipt(call, decision, event.at), record=False)
    return (replace(call, phase=Phase.STORING_DECISION, decision=decision, playback_id=None),
            [stop, StoreDecision(receipt)])


def notice_digit(call: InboundCall, event: Digit) -> Result:
    """A digit during the notice counts once the question segment has started (rule 2);
    the last 1 or 2 before the notice ends is the answer. The notice still plays to its end."""
    if call.question_started_at is None or event.digit not in CONSENT_DIGITS:
        return call, []
    return replace(call, digit=event.digit, digit_at=event.at), []


def awaiting_digit(call: InboundCall, event: Digit) -> Result:
    if event.digit not in CONSENT_DIGITS:
        return call, []
    call = replace(call, digit=event.digit, digit_at=event.at)
    return _decide(call, event.at)


def question_timed_out(call: InboundCall, event: TimerFired) -> Result:
    if call.question_repeats_done < call.consent.question_repeats:
        index = call.question_index
        assert index is not None
        call = replace(call, question_repeats_done=call.question_repeats_done + 1)
        call, commands = _play(call, index)
        return replace(call, phase=Phase.REPEATING_QUESTION), commands
    return _decide(call, event.at)


def repeat_finished(call: InboundCall, event: PlaybackFinished) -> Result:
    if not _mine(call, event.playback_id):
        return call, []
    if not call.playback_started:
        return playback_failed(call, PlaybackFailed(event.playback_id, event.at))
    call = replace(_mark_segment_ended(call, event.at), playback_id=None)
    if call.digit in CONSENT_DIGITS:
        return _decide(call, event.at)
    return replace(call, phase=Phase.AWAITING_DIGIT), [StartTimer(call.consent.answer_timeout)]


def decision_stored(call: InboundCall, event: DecisionStored) -> Result:
    call = replace(call, decision_stored=True)
    if call.decision is not None and call.decision.records and call.notice_completed:
        return replace(call, phase=Phase.STARTING_RECORDING), [StartRecording()]
    return _continue(call)


def decision_not_stored(call: InboundCall, event: DecisionNotStored) -> Result:
    """No stored decision, no recording: the caller still reaches the queue."""
    return _continue(call)


def recording_started(call: InboundCall, event: RecordingStarted) -> Result:
    return _continue(replace(call, recording=True))


def recording_failed(call: InboundCall, event: RecordingFailed) -> Result:
    return _continue(call)


def continued(call: InboundCall, event: Continued) -> Result:
    return replace(call, phase=Phase.IN_QUEUE), []


def agent_answered(call: InboundCall, event: AgentAnswered) -> Result:
    return replace(call, agent_answered=True), []


def hung_up(call: InboundCall, event: HungUp) -> Result:
    return _close(call, event.at, event.cause)


Transition = Callable[[InboundCall, Any], Result]
P = Phase
TRANSITIONS: dict[tuple[Phase, type], Transition] = {
    (P.ANSWERING, Answered): answered,
    (P.ANSWERING, Digit): ignore,
    (P.ANSWERING, HungUp): hung_up,
    (P.NOTICE, PlaybackStarted): playback_started,
    (P.NOTICE, PlaybackContinued): playback_continued,
    (P.NOTICE, PlaybackFinished): notice_playback_finished,
    (P.NOTICE, PlaybackFailed): playback_failed,
    (P.NOTICE, Digit): notice_digit,
    (P.NOTICE, HungUp): hung_up,
    (P.AWAITING_DIGIT, Digit): awaiting_digit,
    (P.AWAITING_DIGIT, TimerFired): question_timed_out,
    (P.AWAITING_DIGIT, PlaybackContinued): ignore,
    (P.AWAITING_DIGIT, PlaybackFinished): ignore,
    (P.AWAITING_DIGIT, HungUp): hung_up,
    (P.REPEATING_QUESTION, PlaybackStarted): playback_started,
    (P.REPEATING_QUESTION, PlaybackContinued): playback_continued,
    (P.REPEATING_QUESTION, PlaybackFinished): repeat_finished,
    (P.REPEATING_QUESTION, PlaybackFailed): playback_failed,
    (P.REPEATING_QUESTION, Digit): notice_digit,
    (P.REPEATING_QUESTION, HungUp): hung_up,
    (P.STORING_DECISION, DecisionStored): decision_stored,
    (P.STORING_DECISION, DecisionNotStored): decision_not_stored,
    (P.STORING_DECISION, Digit): ignore,
    (P.STORING_DECISION, PlaybackContinued): ignore,
    (P.STORING_DECISION, PlaybackFinished): ignore,
    (P.STORING_DECISION, HungUp): hung_up,
    (P.STARTING_RECORDING, RecordingStarted): recording_started,
    (P.STARTING_RECORDING, RecordingFailed): recording_failed,
    (P.STARTING_RECORDING, Digit): ignore,
    (P.STARTING_RECORDING, HungUp): hung_up,
    (P.CONTINUING, Continued): continued,
    (P.CONTINUING, Digit): ignore,
    (P.CONTINUING, HungUp): hung_up,
    (P.IN_QUEUE, AgentAnswered): agent_answered,
    (P.IN_QUEUE, Digit): ignore,
    (P.IN_QUEUE, HungUp): hung_up,
}


def end(call: InboundCall, at: datetime, reason: str) -> Result:
    """The shell ends the flow itself (a failure it did not expect; the caller goes on to
    the queue): as at a hang-up, a service caller left undecided is stored as no consent
    (rule 2) before the call is closed. Nothing, if the call had ended."""
    if call.phase is Phase.ENDED:
        return call, []
    return _close(call, at, reason)


def step(call: InboundCall, event: FlowEvent) -> Result:
    """Apply one event. Raises :class:`IllegalTransition` for a pair not in the table."""
    transition = TRANSITIONS.get((call.phase, type(event)))
    if transition is None:
        raise IllegalTransition(call.phase, event)
    return transition(call, event)
