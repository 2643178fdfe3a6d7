"""ivr.flow.inbound: the inbound call as a pure state machine, against POLICY.md rules 1-3.

1. The table: every (phase, event type) pair is either in ``TRANSITIONS`` and runs, or raises
   ``IllegalTransition``. Each call is driven to its phase by real events, never built by hand.
2. Scenarios: one per path the rules care about, asserting the exact commands.
3. Hypothesis: random event sequences on fresh sales and service calls, the rules' invariants
   checked over the whole trace.
"""

from __future__ import annotations

import typing
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

import hypothesis
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

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
from ivr.flow.inbound import (
    TRANSITIONS,
    Consent,
    IllegalTransition,
    InboundCall,
    Phase,
    Segment,
    end,
    new_inbound_call,
    step,
)
from ivr.policy.lines import LineKind

SALES = LineKind.SALES
SERVICE = LineKind.SERVICE
CALL_ID = "call-1"
QUEUES = {SALES: "sales-queue", SERVICE: "service-queue"}
SEGMENTS = {
    SALES: (Segment("sales-notice"),),
    SERVICE: (
        Segment("service-information"),
        Segment("service-question", question=True),
        Segment("service-closing"),
    ),
}
T0 = datetime(2025, 3, 3, 9, 0, tzinfo=UTC)
HANG_UP = "caller hung up"  # HungUp's default cause
EVENT_TYPES: tuple[type, ...] = (
    Answered, PlaybackStarted, PlaybackContinued, PlaybackFinished, PlaybackFailed, Digit,
    TimerFired,
    DecisionStored, DecisionNotStored, RecordingStarted, RecordingFailed, Continued,
    AgentAnswered, HungUp,
)
PLAYBACK_EVENTS = (PlaybackStarted, PlaybackContinued, PlaybackFinished, PlaybackFailed)
DEFAULT_CONSENT = Consent()  # answer in 5 s, the question repeated once
CURRENT = "<the call's own playback>"  # a playback id resolved against the call when sent


def at(seconds: float) -> datetime:
    return T0 + timedelta(seconds=seconds)


def own_playback_id(call: InboundCall) -> str:
    """The playback the call waits for; once none is playing, the last one it started."""
    return call.playback_id or f"{call.call_id}-{call.playbacks}"


# Every event type from its one free argument (a playback id, a digit, a reason) and a time.
BUILD: dict[type, Callable[[str, datetime], FlowEvent]] = {
    Answered: lambda _, t: Answered(t),
    PlaybackStarted: PlaybackStarted,
    PlaybackContinued: PlaybackContinued,
    PlaybackFinished: PlaybackFinished,
    PlaybackFailed: PlaybackFailed,
    Digit: Digit,
    TimerFired: lambda _, t: TimerFired(t),
    DecisionStored: lambda _, t: DecisionStored(t),
    DecisionNotStored: DecisionNotStored,
    RecordingStarted: RecordingStarted,
    RecordingFailed: RecordingFailed,
    Continued: lambda _, t: Continued(t),
    AgentAnswered: AgentAnswered,
    HungUp: lambda cause, t: HungUp(t, cause or HANG_UP),
}


def make_event(event_type: type, arg: str, call: InboundCall, when: datetime) -> FlowEvent:
    if event_type in PLAYBACK_EVENTS and arg == CURRENT:
        arg = own_playback_id(call)
    return BUILD[event_type](arg, when)


class Driver:
    """A call moved on by real events through ``step``, one second apart."""

    def __init__(self, kind: LineKind, consent: Consent = DEFAULT_CONSENT) -> None:
        self.kind = kind
        self.call, first = new_inbound_call(CALL_ID, kind, QUEUES[kind], SEGMENTS[kind], consent)
        self.commands: list[Command] = list(first)
        self.clock = 0

    def phase(self) -> Phase:
        """A method, not a property: mypy would keep an asserted phase narrowed."""
        return self.call.phase

    @property
    def now(self) -> datetime:
        """When the last event happened."""
        return at(self.clock)

    def send(self, event: FlowEvent) -> list[Command]:
        self.call, commands = step(self.call, event)
        self.commands.extend(commands)
        return commands

    def _next(self, event_type: type, arg: str = "") -> list[Command]:
        self.clock += 1
        return self.send(make_event(event_type, arg, self.call, self.now))

    def answered(self) -> list[Command]:
        return self._next(Answered)

    def started(self, playback_id: str = CURRENT) -> list[Command]:
        return self._next(PlaybackStarted, playback_id)

    def finished(self, playback_id: str = CURRENT) -> list[Command]:
        """The current segment's end: the playback goes on with the next segment of its
        list (continued), or ends with it (finished)."""
        if playback_id == CURRENT and self.call.playing < self.call.playlist_last:
            return self._next(PlaybackContinued, playback_id)
        return self._next(PlaybackFinished, playback_id)

    def ended(self, playback_id: str = CURRENT) -> list[Command]:
        """The playback ends, whatever segment of its list plays (stopped)."""
        return self._next(PlaybackFinished, playback_id)

    def failed(self, playback_id: str = CURRENT) -> list[Command]:
        return self._next(PlaybackFailed, playback_id)

    def play(self) -> list[Command]:
        """The current segment plays to its end; what finishing it asks for."""
        assert self.started() == []
        return self.finished()

    def digit(self, digit: str) -> list[Command]:
        return self._next(Digit, digit)

    def timer(self) -> list[Command]:
        return self._next(TimerFired)

    def stored(self) -> list[Command]:
        return self._next(DecisionStored)

    def not_stored(self) -> list[Command]:
        return self._next(DecisionNotStored, "database down")

    def recording_started(self) -> list[Command]:
        return self._next(RecordingStarted, "mixmonitor-1")

    def recording_failed(self) -> list[Command]:
        return self._next(RecordingFailed, "no disk")

    def continued(self) -> list[Command]:
        return self._next(Continued)

    def agent(self) -> list[Command]:
        return self._next(AgentAnswered, "agent-7")

    def hang_up(self) -> list[Command]:
        return self._next(HungUp)


def commands_of(commands: Sequence[Command], kind: type) -> list[Command]:
    return [c for c in commands if isinstance(c, kind)]


# Happy paths that pass through every phase; ``drive`` walks them until the phase is reached.
Script = list[Callable[[Driver], object]]
SALES_PATH: Script = [
    Driver.answered, Driver.play, Driver.stored, Driver.recording_started, Driver.continued,
    Driver.agent, Driver.hang_up,
]
SERVICE_CONSENT_PATH: Script = [
    Driver.answered, Driver.play, Driver.started, lambda d: d.digit("1"), Driver.finished,
    Driver.play, Driver.stored, Driver.recording_started, Driver.continued, Driver.agent,
    Driver.hang_up,
]
SERVICE_SILENT_PATH: Script = [
    Driver.answered, Driver.play, Driver.play, Driver.play, Driver.timer, Driver.play,
    Driver.timer, Driver.stored, Driver.continued, Driver.hang_up,
]
PATHS = {SALES: [SALES_PATH], SERVICE: [SERVICE_CONSENT_PATH, SERVICE_SILENT_PATH]}


def drive(kind: LineKind, phase: Phase) -> Driver | None:
    """A call of this kind in this phase, reached by real events; None if the kind never is."""
    for path in PATHS[kind]:
        d = Driver(kind)
        for move in [None, *path]:
            if move is not None:
                move(d)
            if d.phase() is phase:
                return d
    return None


# 1. the table ----------------------------------------------------------------------------
def test_event_types_are_exactly_flow_event() -> None:
    assert set(EVENT_TYPES) == set(typing.get_args(FlowEvent))
    assert {t for _, t in TRANSITIONS} <= set(EVENT_TYPES)


@pytest.mark.parametrize("phase", list(Phase), ids=str)
def test_every_phase_is_reached_by_real_events(phase: Phase) -> None:
    assert any(drive(kind, phase) is not None for kind in LineKind)


@pytest.mark.parametrize("event_type", EVENT_TYPES, ids=lambda t: t.__name__)
@pytest.mark.parametrize("phase", list(Phase), ids=str)
def test_phase_event_pair(phase: Phase, event_type: type) -> None:
    drivers = [d for kind in LineKind if (d := drive(kind, phase)) is not None]
    assert drivers
    arg = "1" if event_type is Digit else CURRENT
    for d in drivers:
        event = make_event(event_type, arg, d.call, at(1000))
        if (phase, event_type) in TRANSITIONS:
            step(d.call, event)
        else:
            with pytest.raises(IllegalTransition) as raised:
                step(d.call, event)
            assert raised.value.phase is phase
            assert raised.value.event is event


# 2. scenarios ----------------------------------------------------------------------------
def service_until_question() -> Driver:
    """Answered at 1s; the information segment plays 2s-3s; the question starts at 4s."""
    d = Driver(SERVICE)
    assert d.answered() == [Play("service-information", "call-1-1",
                                 ("service-question", "service-closing"))]
    assert d.play() == []  # one playback: the question follows with no request
    assert d.started() == []
    assert d.call.question_started_at == at(4)
    return d


def service_after_notice() -> Driver:
    """The whole service notice, nothing pressed: information 2-3s, question 4-5s, closing
    6-7s; the call waits for a digit."""
    d = service_until_question()
    assert d.finished() == []
    assert d.play() == [StartTimer(5.0)]
    assert d.phase() is Phase.AWAITING_DIGIT
    return d


SERVICE_PLAYED = (
    PlayedSegment("service-information", at(2), at(3)),
    PlayedSegment("service-question", at(4), at(5)),
    PlayedSegment("service-closing", at(6), at(7)),
)


def test_sales_recorded_after_notice_on_legal_basis() -> None:
    """Rule 1 (notice before recording) and rule 3 (the receipt), sales line."""
    d = Driver(SALES)
    assert d.commands == [Answer()]
    assert d.answered() == [Play("sales-notice", "call-1-1")]
    assert d.phase() is Phase.NOTICE
    assert d.started() == []
    assert d.finished() == [StoreDecision(Receipt(
        decision=Decision.LEGAL_BASIS, digit=None, digit_at=None,
        notice_started_at=at(2), notice_ended_at=at(3), question_started_at=None,
        decided_at=at(3), played=(PlayedSegment("sales-notice", at(2), at(3)),), record=True,
    ))]
    assert d.phase() is Phase.STORING_DECISION
    assert d.stored() == [StartRecording()]
    assert d.phase() is Phase.STARTING_RECORDING
    assert d.recording_started() == [ContinueToQueue("sales-queue", Decision.LEGAL_BASIS, True)]
    assert d.phase() is Phase.CONTINUING
    assert d.continued() == []
    assert d.phase() is Phase.IN_QUEUE
    assert d.agent() == []
    assert d.hang_up() == [CloseCall(at(8), HANG_UP, notice_completed=True, agent_answered=True)]
    assert d.phase() is Phase.ENDED


def test_service_one_during_question_waits_for_notice_end() -> None:
    """Rules 1 and 2: 1 during the question is consent, but the notice still plays to its end
    and the recording starts only after it."""
    d = service_until_question()
    assert d.digit("1") == []  # 5s
    assert d.phase() is Phase.NOTICE
    assert d.finished() == []  # 6s: the closing still plays
    assert d.started() == []  # 7s
    assert commands_of(d.commands, StoreDecision) == []
    assert d.finished() == [StoreDecision(Receipt(  # 8s: the notice's end
        decision=Decision.CONSENT, digit="1", digit_at=at(5),
        notice_started_at=at(2), notice_ended_at=at(8), question_started_at=at(4),
        decided_at=at(8),
        played=(
            PlayedSegment("service-information", at(2), at(3)),
            PlayedSegment("service-question", at(4), at(6)),
            PlayedSegment("service-closing", at(7), at(8)),
        ),
        record=True,
    ))]
    assert commands_of(d.commands, StartRecording) == []
    assert d.stored() == [StartRecording()]
    assert d.recording_started() == [ContinueToQueue("service-queue", Decision.CONSENT, True)]
    assert d.continued() == []
    assert d.phase() is Phase.IN_QUEUE


def test_service_one_before_question_is_ignored_then_silence_is_no_consent() -> None:
    """Rule 2: a digit before the question is not consent; silence is no consent."""
    d = Driver(SERVICE)
    d.answered()  # 1s
    d.started()  # 2s: the information segment
    before = d.call
    assert d.digit("1") == []  # 3s
    assert d.call == before
    assert d.finished() == []  # 4s
    assert d.play() == []  # 5-6s
    assert d.play() == [StartTimer(5.0)]  # 7-8s
    assert d.phase() is Phase.AWAITING_DIGIT
    assert d.timer() == [Play("service-question", "call-1-2")]  # 9s: the question again
    assert d.phase() is Phase.REPEATING_QUESTION
    assert d.play() == [StartTimer(5.0)]  # 10-11s
    assert d.phase() is Phase.AWAITING_DIGIT
    assert d.timer() == [StoreDecision(Receipt(  # 12s
        decision=Decision.NO_CONSENT, digit=None, digit_at=None,
        notice_started_at=at(2), notice_ended_at=at(8), question_started_at=at(5),
        decided_at=at(12),
        played=(
            PlayedSegment("service-information", at(2), at(4)),
            PlayedSegment("service-question", at(5), at(6)),
            PlayedSegment("service-closing", at(7), at(8)),
            PlayedSegment("service-question", at(10), at(11)),
        ),
        record=False,
    ))]
    assert d.stored() == [ContinueToQueue("service-queue", Decision.NO_CONSENT, False)]
    assert d.continued() == []
    assert commands_of(d.commands, StartRecording) == []


def test_service_two_is_refusal_not_recorded() -> None:
    """Rule 2: 2 is refusal."""
    d = service_until_question()
    assert d.digit("2") == []  # 5s
    d.finished()  # 6s
    d.started()  # 7s
    [store] = d.finished()  # 8s
    assert isinstance(store, StoreDecision)
    assert store.receipt.decision is Decision.REFUSAL
    assert (store.receipt.digit, store.receipt.digit_at) == ("2", at(5))
    assert store.receipt.record is False
    assert d.stored() == [ContinueToQueue("service-queue", Decision.REFUSAL, False)]
    assert commands_of(d.commands, StartRecording) == []


def test_service_other_keys_then_one_after_notice_is_consent() -> None:
    """Rule 2: only 1 is consent; other keys change nothing; 1 after the notice counts."""
    d = service_after_notice()
    assert d.digit("5") == []  # 8s
    assert d.digit("#") == []  # 9s
    assert d.phase() is Phase.AWAITING_DIGIT
    assert d.digit("1") == [StoreDecision(Receipt(  # 10s
        decision=Decision.CONSENT, digit="1", digit_at=at(10),
        notice_started_at=at(2), notice_ended_at=at(7), question_started_at=at(4),
        decided_at=at(10), played=SERVICE_PLAYED, record=True,
    ))]
    assert d.stored() == [StartRecording()]
    assert d.recording_started() == [ContinueToQueue("service-queue", Decision.CONSENT, True)]


@pytest.mark.parametrize(
    ("digits", "decision"),
    [("12", Decision.REFUSAL), ("21", Decision.CONSENT), ("1#5", Decision.CONSENT),
     ("2*", Decision.REFUSAL), ("121", Decision.CONSENT)],
)
def test_service_last_one_or_two_during_notice_wins(digits: str, decision: Decision) -> None:
    """Rule 2: during the notice the last 1 or 2 pressed is the answer."""
    d = service_until_question()
    for key in digits[:1]:
        d.digit(key)  # during the question
    d.finished()
    d.started()  # the closing segment
    for key in digits[1:]:
        d.digit(key)
    last = d.call.digit_at
    [store] = d.finished()
    assert isinstance(store, StoreDecision)
    assert store.receipt.decision is decision
    assert store.receipt.digit == decision_digit(decision)
    assert store.receipt.digit_at == last
    assert store.receipt.record is (decision is Decision.CONSENT)
    expected = [StartRecording()] if decision is Decision.CONSENT else [
        ContinueToQueue("service-queue", decision, False)]
    assert d.stored() == expected


def decision_digit(decision: Decision) -> str:
    return {Decision.CONSENT: "1", Decision.REFUSAL: "2"}[decision]


@pytest.mark.parametrize("repeats", [0, 1, 2, 3])
def test_question_repeats_is_a_setting(repeats: int) -> None:
    """Rule 2: how many times the question is repeated is a setting."""
    d = Driver(SERVICE, Consent(answer_timeout=8.0, question_repeats=repeats))
    d.answered()
    d.play()
    d.play()
    assert d.play() == [StartTimer(8.0)]
    for n in range(repeats):
        assert d.timer() == [Play("service-question", f"call-1-{2 + n}")]
        assert d.phase() is Phase.REPEATING_QUESTION
        assert d.play() == [StartTimer(8.0)]
        assert d.phase() is Phase.AWAITING_DIGIT
    [store] = d.timer()
    assert isinstance(store, StoreDecision)
    assert store.receipt.decision is Decision.NO_CONSENT
    assert store.receipt.record is False
    assert len(commands_of(d.commands, Play)) == 1 + repeats  # the notice, one playback
    assert d.call.question_repeats_done == repeats


def test_one_during_repeated_question_is_consent_at_its_end() -> None:
    """Rule 2: the repeated question is still the question."""
    d = service_after_notice()
    d.timer()  # 8s
    d.started()  # 9s
    assert d.digit("1") == []  # 10s
    [store] = d.finished()  # 11s
    assert isinstance(store, StoreDecision)
    assert store.receipt.decision is Decision.CONSENT
    assert (store.receipt.digit, store.receipt.digit_at, store.receipt.record) == (
        "1", at(10), True)
    assert d.stored() == [StartRecording()]


def test_sales_hang_up_during_notice_closes_without_decision() -> None:
    """Rule 1: a caller who hangs up during the notice was not informed."""
    d = Driver(SALES)
    d.answered()
    d.started()
    assert d.hang_up() == [CloseCall(at(3), HANG_UP, notice_completed=False,
                                     agent_answered=False)]
    assert d.phase() is Phase.ENDED


def test_service_hang_up_during_notice_is_no_consent() -> None:
    """Rule 2: a hang-up is no consent; rule 3: the decision is still kept."""
    d = Driver(SERVICE)
    d.answered()
    d.started()
    assert d.hang_up() == [
        StoreDecision(Receipt(
            decision=Decision.NO_CONSENT, digit=None, digit_at=None,
            notice_started_at=at(2), notice_ended_at=None, question_started_at=None,
            decided_at=at(3), played=(PlayedSegment("service-information", at(2), None),),
            record=False,
        )),
        CloseCall(at(3), HANG_UP, notice_completed=False, agent_answered=False),
    ]


def test_service_one_then_hang_up_before_notice_end_is_not_recorded() -> None:
    """Rule 1: consent given, but the notice did not play to its end: never recorded."""
    d = service_until_question()
    d.digit("1")  # 5s
    d.finished()  # 6s
    d.started()  # 7s
    assert d.hang_up() == [  # 8s
        StoreDecision(Receipt(
            decision=Decision.CONSENT, digit="1", digit_at=at(5),
            notice_started_at=at(2), notice_ended_at=None, question_started_at=at(4),
            decided_at=at(8),
            played=(
                PlayedSegment("service-information", at(2), at(3)),
                PlayedSegment("service-question", at(4), at(6)),
                PlayedSegment("service-closing", at(7), None),
            ),
            record=False,
        )),
        CloseCall(at(8), HANG_UP, notice_completed=False, agent_answered=False),
    ]
    assert commands_of(d.commands, StartRecording) == []


def test_service_hang_up_while_awaiting_digit_is_no_consent() -> None:
    """Rule 2: silence and a hang-up are no consent."""
    d = service_after_notice()
    assert d.hang_up() == [  # 8s
        StoreDecision(Receipt(
            decision=Decision.NO_CONSENT, digit=None, digit_at=None,
            notice_started_at=at(2), notice_ended_at=at(7), question_started_at=at(4),
            decided_at=at(8), played=SERVICE_PLAYED, record=False,
        )),
        CloseCall(at(8), HANG_UP, notice_completed=True, agent_answered=False),
    ]


# Every phase but NOTICE (above) and ENDED, with each kind of line that reaches it.
LATER = [pytest.param(phase, kind, id=f"{kind}-{phase}")
         for phase in Phase if phase not in (Phase.NOTICE, Phase.ENDED)
         for kind in LineKind if drive(kind, phase) is not None]


@pytest.mark.parametrize(("phase", "kind"), LATER)
def test_hang_up_in_any_phase_closes_the_call(phase: Phase, kind: LineKind) -> None:
    """Rules 2-3: a service call's decision is stored exactly once, hang-up or not."""
    d = drive(kind, phase)
    assert d is not None
    stores_before = len(commands_of(d.commands, StoreDecision))
    commands = d.hang_up()
    notice_completed = phase is not Phase.ANSWERING
    assert commands[-1] == CloseCall(d.now, HANG_UP, notice_completed=notice_completed,
                                     agent_answered=False)
    assert d.phase() is Phase.ENDED
    stores = commands_of(commands, StoreDecision)
    if stores_before:
        assert stores == []  # in STORING_DECISION and after: no second StoreDecision
    elif kind is SERVICE:
        [store] = stores
        assert isinstance(store, StoreDecision)
        assert store.receipt.decision is Decision.NO_CONSENT
        assert store.receipt.record is False
    else:
        assert stores == []
    assert len(commands_of(d.commands, StoreDecision)) <= 1
    assert commands_of(commands, StartRecording) == []


def test_service_one_during_repeat_then_hang_up_is_not_recorded() -> None:
    """Rules 1-3: consent kept in the receipt, but the call ended before any recording, so
    the receipt does not claim one."""
    d = service_after_notice()
    d.timer()  # 8s: the question again
    d.started()  # 9s
    d.digit("1")  # 10s
    [store, close] = d.hang_up()  # 11s
    assert isinstance(store, StoreDecision)
    assert (store.receipt.decision, store.receipt.digit, store.receipt.digit_at) == (
        Decision.CONSENT, "1", at(10))
    assert store.receipt.record is False
    assert close == CloseCall(at(11), HANG_UP, notice_completed=True, agent_answered=False)


def test_hang_up_after_agent_answered_says_so() -> None:
    d = drive(SALES, Phase.IN_QUEUE)
    assert d is not None
    d.agent()
    assert d.hang_up() == [CloseCall(d.now, HANG_UP, notice_completed=True,
                                     agent_answered=True)]


def test_hang_up_cause_is_the_end_reason() -> None:
    d = drive(SALES, Phase.IN_QUEUE)
    assert d is not None
    assert d.send(HungUp(at(99), "agent hung up")) == [
        CloseCall(at(99), "agent hung up", notice_completed=True, agent_answered=False)]


def test_sales_playback_failed_continues_unrecorded_without_decision() -> None:
    """Rule 1: the caller cannot be told, so the call is not recorded."""
    d = Driver(SALES)
    d.answered()
    d.started()
    assert d.failed() == [StopPlayback("call-1-1"), ContinueToQueue("sales-queue", None, False)]
    assert d.phase() is Phase.CONTINUING
    assert d.continued() == []
    assert d.hang_up() == [CloseCall(d.now, HANG_UP, notice_completed=False,
                                     agent_answered=False)]
    assert commands_of(d.commands, StoreDecision) == []
    assert commands_of(d.commands, StartRecording) == []


@pytest.mark.parametrize("pressed", ["", "1"])
def test_service_playback_failed_is_no_consent(pressed: str) -> None:
    """Rules 1-2: the notice never reached its end; whatever was pressed, no consent."""
    d = service_until_question()
    for key in pressed:
        d.digit(key)
    [stop, store] = d.failed()
    assert stop == StopPlayback("call-1-1")  # the rest of the notice is not played
    assert isinstance(store, StoreDecision)
    assert store.receipt.decision is Decision.NO_CONSENT
    assert store.receipt.record is False
    assert store.receipt.notice_ended_at is None
    assert d.phase() is Phase.STORING_DECISION
    assert d.stored() == [ContinueToQueue("service-queue", Decision.NO_CONSENT, False)]
    assert commands_of(d.commands, StartRecording) == []


def test_service_playback_failed_on_repeat_is_no_consent() -> None:
    d = service_after_notice()
    d.timer()
    [stop, store] = d.failed()
    assert stop == StopPlayback("call-1-2")
    assert isinstance(store, StoreDecision)
    assert (store.receipt.decision, store.receipt.record) == (Decision.NO_CONSENT, False)
    assert d.stored() == [ContinueToQueue("service-queue", Decision.NO_CONSENT, False)]


@pytest.mark.parametrize("kind", list(LineKind), ids=str)
def test_decision_not_stored_means_not_recorded(kind: LineKind) -> None:
    """Rule 3: never a recording without a stored decision; and the decision is not stored a
    second time when the call ends."""
    d = drive(kind, Phase.STORING_DECISION)  # sales: legal basis; service: consent
    assert d is not None
    [store] = commands_of(d.commands, StoreDecision)
    assert isinstance(store, StoreDecision)
    assert store.receipt.record is True
    decision = store.receipt.decision
    assert d.not_stored() == [ContinueToQueue(QUEUES[kind], decision, False)]
    assert d.phase() is Phase.CONTINUING
    assert d.continued() == []
    assert d.hang_up() == [CloseCall(d.now, HANG_UP, notice_completed=True,
                                     agent_answered=False)]
    assert commands_of(d.commands, StartRecording) == []
    assert len(commands_of(d.commands, StoreDecision)) == 1


@pytest.mark.parametrize("kind", list(LineKind), ids=str)
def test_recording_failed_continues_unrecorded(kind: LineKind) -> None:
    d = drive(kind, Phase.STARTING_RECORDING)
    assert d is not None
    decision = Decision.LEGAL_BASIS if kind is SALES else Decision.CONSENT
    assert d.recording_failed() == [ContinueToQueue(QUEUES[kind], decision, False)]
    assert d.phase() is Phase.CONTINUING


@pytest.mark.parametrize("event_type", PLAYBACK_EVENTS, ids=lambda t: t.__name__)
@pytest.mark.parametrize("phase", [Phase.NOTICE, Phase.REPEATING_QUESTION], ids=str)
@pytest.mark.parametrize("foreign", ["call-1-9", "call-2-1", "", "call-1-1 "])
def test_foreign_playback_is_ignored(phase: Phase, event_type: type, foreign: str) -> None:
    d = drive(SERVICE, phase)
    assert d is not None
    d.started()
    before = d.call
    assert d.send(make_event(event_type, foreign, d.call, at(500))) == []
    assert d.call == before


def test_notice_stopped_before_its_last_segment_is_no_consent() -> None:
    """Rules 1-2: the notice's playback ends while the question plays (stopped, or cut
    short): the closing was never heard, so a 1 pressed meanwhile is not consent."""
    d = service_until_question()
    assert d.digit("1") == []  # 5s
    [stop, store] = d.ended()  # 6s: the playback ends with the question
    assert stop == StopPlayback("call-1-1")
    assert isinstance(store, StoreDecision)
    assert (store.receipt.decision, store.receipt.record) == (Decision.NO_CONSENT, False)
    assert store.receipt.notice_ended_at is None
    assert [p.segment_id for p in store.receipt.played] == ["service-information",
                                                            "service-question"]
    assert d.stored() == [ContinueToQueue("service-queue", Decision.NO_CONSENT, False)]
    assert commands_of(d.commands, StartRecording) == []


def test_segment_that_never_started_is_not_heard() -> None:
    """Rule 3: a segment of the list whose start was never reported cannot count as heard,
    even when its end is."""
    d = service_until_question()
    d.finished()  # 5s: the question ends; the closing's start never comes
    [stop, store] = d.send(PlaybackContinued("call-1-1", at(6)))
    assert stop == StopPlayback("call-1-1")
    assert isinstance(store, StoreDecision)
    assert store.receipt.decision is Decision.NO_CONSENT


def test_playback_continuing_past_its_last_segment_is_not_heard() -> None:
    """A playback that says it goes on after its last segment is not the notice this
    call asked for: the call is handed on unrecorded."""
    d = Driver(SALES)
    d.answered()
    d.started()
    assert d.send(PlaybackContinued("call-1-1", at(5))) == [
        StopPlayback("call-1-1"), ContinueToQueue("sales-queue", None, False)]


@pytest.mark.parametrize("kind", list(LineKind), ids=str)
def test_a_flow_ended_by_the_shell_before_a_decision_is_closed_as_a_hang_up(
        kind: LineKind) -> None:
    """The shell gives up on the flow (a failure it did not expect) during the notice: a
    service caller is stored as no consent, never recorded (rule 2); a sales call, whose
    notice was not heard, has no decision. Either way the call is closed once."""
    d = Driver(kind)
    d.answered()
    d.started()
    call, commands = end(d.call, at(9), "service error")
    stores = commands_of(commands, StoreDecision)
    if kind is SERVICE:
        [store] = stores
        assert isinstance(store, StoreDecision)
        assert (store.receipt.decision, store.receipt.record) == (Decision.NO_CONSENT, False)
    else:
        assert stores == []
    assert commands[-1] == CloseCall(at(9), "service error", notice_completed=False,
                                     agent_answered=False)
    assert call.phase is Phase.ENDED
    assert end(call, at(10), "again") == (call, [])


def test_a_flow_ended_by_the_shell_after_its_decision_stores_none_again() -> None:
    d = drive(SERVICE, Phase.STORING_DECISION)
    assert d is not None
    _, commands = end(d.call, at(50), "service error")
    assert commands == [CloseCall(at(50), "service error", notice_completed=True,
                                  agent_answered=False)]


def test_stale_playback_finished_after_notice_is_ignored() -> None:
    d = service_after_notice()
    before = d.call
    assert d.send(PlaybackFinished("call-1-3", at(8))) == []
    assert d.call == before


@pytest.mark.parametrize(
    ("kind", "segments"),
    [
        (SERVICE, ()),
        (SALES, ()),
        (SERVICE, (Segment("a"), Segment("b"))),
        (SERVICE, (Segment("a", question=True), Segment("b", question=True))),
        (SERVICE, (Segment("a"),)),
    ],
    ids=["service-empty", "sales-empty", "service-no-question", "service-two-questions",
         "service-one-segment-no-question"],
)
def test_new_inbound_call_refuses_a_bad_notice(
        kind: LineKind, segments: tuple[Segment, ...]) -> None:
    with pytest.raises(ValueError, match="segment"):
        new_inbound_call(CALL_ID, kind, QUEUES[kind], segments)


def test_nothing_is_accepted_after_the_call_ended() -> None:
    assert not [pair for pair in TRANSITIONS if pair[0] is Phase.ENDED]


# 3. properties ---------------------------------------------------------------------------
@dataclass(frozen=True)
class Spec:
    """One random event: its type, its free argument, the seconds since the previous one."""

    event_type: type
    arg: str
    delay: float


@dataclass
class Step:
    event: FlowEvent
    before: InboundCall
    after: InboundCall
    commands: list[Command]


@dataclass
class Run:
    call: InboundCall
    clock: float = 0.0
    trace: list[Step] = field(default_factory=list)
    refused: int = 0

    def feed(self, spec: Spec) -> None:
        self.clock += spec.delay
        event = make_event(spec.event_type, spec.arg, self.call, at(self.clock))
        try:
            after, commands = step(self.call, event)
        except IllegalTransition:
            self.refused += 1
            return
        self.trace.append(Step(event, self.call, after, commands))
        self.call = after


DIGITS = st.one_of(st.sampled_from(["1", "2"]),
                   st.sampled_from(["0", "3", "5", "9", "#", "*", "11", "12", " 1", "", "A", "１"]),
                   st.text(max_size=3))
PLAYBACK_IDS = st.one_of(st.just(CURRENT), st.just(CURRENT), st.just(CURRENT),
                         st.sampled_from([f"{CALL_ID}-{n}" for n in range(7)]),
                         st.text(max_size=4))
DELAYS = st.one_of(st.just(0.0), st.floats(min_value=0.0, max_value=40.0))
CONSENTS = st.builds(Consent, answer_timeout=st.floats(min_value=0.1, max_value=30.0),
                     question_repeats=st.integers(min_value=0, max_value=3))


def args_for(event_type: type) -> st.SearchStrategy[str]:
    if event_type is Digit:
        return DIGITS
    if event_type in PLAYBACK_EVENTS:
        return PLAYBACK_IDS
    return st.text(max_size=3)


# A hang-up or a failure ends the interesting part of a call; drawn as often as the others,
# they would end nearly every call before its recording.
RARE = (HungUp, PlaybackFailed, DecisionNotStored, RecordingFailed)


def weighted(event_types: Sequence[type]) -> list[type]:
    return [t for t in event_types for _ in range(1 if t in RARE else 4)]


def specs(event_types: Sequence[type]) -> st.SearchStrategy[Spec]:
    return st.sampled_from(event_types).flatmap(
        lambda t: st.builds(Spec, st.just(t), args_for(t), DELAYS))


def check_rules(kind: LineKind, run: Run) -> None:
    """POLICY.md rules 1-3 over one call's whole trace."""
    receipt: Receipt | None = None
    decision_acknowledged = False  # a DecisionStored arrived after the StoreDecision
    recording_asked = False
    recording_started = False
    continued_to_queue = False
    closed = False
    agent_answered = False
    answer: tuple[str, datetime] | None = None  # the last 1 or 2 in the window, before deciding
    for s in run.trace:
        event = s.event
        assert not closed, f"{event} accepted after CloseCall"
        if isinstance(event, DecisionStored) and receipt is not None:
            decision_acknowledged = True
        if isinstance(event, RecordingStarted) and recording_asked:
            recording_started = True
        if isinstance(event, AgentAnswered):
            agent_answered = True
        # A 1 or 2 counts once the question has started, or while the call waits for it after
        # the notice. (A question whose start was never reported is not counted during its
        # repetition either: stricter than rule 2, never looser.)
        counts = (s.before.question_started_at is not None
                  or s.before.phase is Phase.AWAITING_DIGIT)
        if isinstance(event, Digit) and counts and receipt is None and event.digit in ("1", "2"):
            answer = (event.digit, event.at)
        for c in s.commands:
            assert not closed, f"{c} after CloseCall"
            if isinstance(c, StoreDecision):
                assert receipt is None, "a second StoreDecision"
                receipt = c.receipt
                r = c.receipt
                # Rule 1: recorded only once the notice played to its end.
                if r.record:
                    assert r.notice_ended_at is not None
                    assert r.decision.records
                # Rule 2: the decision follows the counted digit; the digit counted is the
                # last 1 or 2 pressed after the question started (or the notice ended).
                if kind is SALES:
                    assert r.decision is Decision.LEGAL_BASIS
                else:
                    assert r.decision is not Decision.LEGAL_BASIS
                    if r.decision is Decision.CONSENT:
                        assert r.digit == "1"
                    if r.decision is Decision.REFUSAL:
                        assert r.digit == "2"
                    assert (r.digit, r.digit_at) == (answer or (None, None))
                if r.digit_at is not None:
                    assert (r.question_started_at is not None
                            and r.digit_at >= r.question_started_at) or (
                        r.notice_ended_at is not None and r.digit_at >= r.notice_ended_at)
                assert r.decided_at == event.at
            elif isinstance(c, StartRecording):
                assert receipt is not None, "StartRecording without a StoreDecision"
                assert receipt.record, "StartRecording though the receipt says record=False"
                assert decision_acknowledged, "StartRecording before DecisionStored"
                assert receipt.notice_ended_at is not None
                if kind is SERVICE:
                    assert receipt.decision is Decision.CONSENT
                    assert receipt.digit == "1"
                assert not recording_asked, "a second StartRecording"
                recording_asked = True
            elif isinstance(c, ContinueToQueue):
                assert not continued_to_queue, "a second ContinueToQueue"
                continued_to_queue = True
                assert c.recorded is recording_started
                assert c.decision is (receipt.decision if receipt else None)
            elif isinstance(c, CloseCall):
                closed = True
                # A decision stored as the call ends can never lead to a recording.
                if any(isinstance(x, StoreDecision) for x in s.commands):
                    assert receipt is not None and receipt.record is False
                assert c.ended_at == event.at
                assert c.agent_answered is agent_answered
                if c.notice_completed is False and receipt is not None:
                    assert receipt.record is False
    hypothesis.event(f"{kind}: ended in {run.call.phase}")
    hypothesis.event(f"{kind}: recording started" if recording_started else f"{kind}: unrecorded")
    if closed:
        assert run.call.phase is Phase.ENDED
        if kind is SERVICE:
            assert receipt is not None, "a service call ended without a decision"


# The unit tests' autouse fixture only isolates settings files, which this code never reads.
PROPERTY_SETTINGS = settings(max_examples=400, deadline=None,
                             suppress_health_check=[HealthCheck.function_scoped_fixture])


@PROPERTY_SETTINGS
@given(kind=st.sampled_from(list(LineKind)), consent=CONSENTS,
       events=st.lists(specs(weighted(EVENT_TYPES)), max_size=120))
def test_rules_hold_for_random_event_sequences(
        kind: LineKind, consent: Consent, events: list[Spec]) -> None:
    call, first = new_inbound_call(CALL_ID, kind, QUEUES[kind], SEGMENTS[kind], consent)
    assert first == [Answer()]
    run = Run(call)
    for spec in events:
        run.feed(spec)
    check_rules(kind, run)


@PROPERTY_SETTINGS
@given(kind=st.sampled_from(list(LineKind)), consent=CONSENTS, data=st.data())
def test_rules_hold_for_mostly_accepted_event_sequences(
        kind: LineKind, consent: Consent, data: st.DataObject) -> None:
    """As above, but most events are of a type the current phase accepts, and the caller hangs
    up (or not) only at the end, so the calls go deep: recordings, queues, and a hang-up in
    every phase, followed by more events that must all be refused."""
    call, _ = new_inbound_call(CALL_ID, kind, QUEUES[kind], SEGMENTS[kind], consent)
    run = Run(call)
    for _ in range(data.draw(st.integers(min_value=0, max_value=40), label="length")):
        accepted = [t for p, t in TRANSITIONS if p is run.call.phase and t is not HungUp]
        any_type = data.draw(st.integers(0, 4), label="any type?") == 0
        types = [t for t in EVENT_TYPES if t is not HungUp] if any_type else accepted
        run.feed(data.draw(specs(weighted(types)), label="event"))
    if data.draw(st.booleans(), label="hang up?"):
        run.feed(data.draw(specs([HungUp]), label="hang-up"))
    for spec in data.draw(st.lists(specs(EVENT_TYPES), max_size=5), label="after"):
        run.feed(spec)
    check_rules(kind, run)


def test_rule_3_a_segment_whose_start_was_never_reported_does_not_count_as_heard() -> None:
    """No proof of what was played, no recording: the sales notice is treated as not heard."""
    d = Driver(LineKind.SALES)
    d.answered()
    commands = d.finished()
    assert not any(isinstance(c, StoreDecision) for c in commands)
    assert any(isinstance(c, ContinueToQueue) and not c.recorded for c in commands)
    assert d.call.notice_completed is False


def test_rule_3_a_repeated_playback_start_is_kept_once() -> None:
    d = Driver(LineKind.SALES)
    d.answered()
    d.started()
    d.started()
    d.finished()
    assert [p.segment_id for p in d.call.played] == ["sales-notice"]
    assert all(p.ended_at is not None for p in d.call.played)
