"""ivr.flow.dialplan_notice: the decision taken once from what the dialplan reports the
caller heard and pressed (``inbound_flow = "dialplan"``), against POLICY.md rules 1-3.

1. Scenarios, one per path the rules care about, on the real notices of
   ``prompts/notices.toml``: the receipt's every field asserted.
2. Reports the dialplan cannot write (segments out of order, times running backwards, a
   segment of another notice) count as a notice not heard: nothing recorded, no consent.
3. Hypothesis: every report the dialplan can write gives the decision rules 1-2 say; and
   over arbitrary reports, nothing is ever recorded that the rules do not allow.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import hypothesis
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ivr.flow.commands import Decision, PlayedSegment, Receipt
from ivr.flow.dialplan_notice import Heard, answered, completed, in_order, receipt
from ivr.flow.inbound import Segment
from ivr.notices.catalogue import load_catalogue
from ivr.policy.lines import LineKind

SALES = LineKind.SALES
SERVICE = LineKind.SERVICE
T0 = datetime(2025, 3, 3, 9, 0, tzinfo=UTC)
DECIDED = T0 + timedelta(minutes=5)
INFORMATION, QUESTION, CLOSING = "service-information", "service-question", "service-closing"


def _notice(name: str) -> tuple[Segment, ...]:
    catalogue = load_catalogue()
    return tuple(Segment(s, catalogue.by_id(s).question)
                 for s in catalogue.notice[name].segments)


NOTICES = {SALES: _notice("sales"), SERVICE: _notice("service")}


def test_the_notices_are_the_catalogues() -> None:
    """The scenarios below play the segments ``prompts/notices.toml`` names, in its order."""
    assert NOTICES[SALES] == (Segment("sales-notice"),)
    assert NOTICES[SERVICE] == (Segment(INFORMATION), Segment(QUESTION, question=True),
                                Segment(CLOSING))


def at(seconds: float | None) -> datetime | None:
    return None if seconds is None else T0 + timedelta(seconds=seconds)


def t(seconds: float) -> datetime:
    return T0 + timedelta(seconds=seconds)


def seg(segment_id: str, start: float, end: float | None) -> PlayedSegment:
    return PlayedSegment(segment_id, t(start), at(end))


def heard(*played: PlayedSegment, digit: str | None = None, digit_at: float | None = None,
          notice_end: float | None = None) -> Heard:
    return Heard(played=played, digit=digit, digit_at=at(digit_at),
                 notice_ended_at=at(notice_end))


def decide(kind: LineKind, report: Heard, call_over: bool = False) -> Receipt | None:
    return receipt(kind, NOTICES[kind], report, DECIDED, call_over)


def decided(kind: LineKind, report: Heard, call_over: bool = False) -> Receipt:
    r = decide(kind, report, call_over)
    assert r is not None
    return r


# The service notice as the dialplan plays it: information 0-10 s, question 10-14 s,
# closing 14-24 s.
WHOLE = (seg(INFORMATION, 0, 10), seg(QUESTION, 10, 14), seg(CLOSING, 14, 24))


# 1. Service line: consent, refusal, no consent ------------------------------------------
def test_rule_2_a_1_during_the_question_is_consent_and_the_notice_counts_as_told() -> None:
    """Rule 1: "or the caller answered the question": the 1 cuts the question short, the
    closing is never played, and the caller still counts as told; recorded."""
    played = (seg(INFORMATION, 0, 10), seg(QUESTION, 10, 12.5))
    r = decided(SERVICE, heard(*played, digit="1", digit_at=12.5, notice_end=12.5))
    assert r == Receipt(
        decision=Decision.CONSENT, digit="1", digit_at=t(12.5), notice_started_at=t(0),
        notice_ended_at=t(12.5), question_started_at=t(10), decided_at=DECIDED,
        played=played, record=True)


def test_rule_2_a_1_during_the_closing_is_consent() -> None:
    played = (*WHOLE[:2], seg(CLOSING, 14, 16))
    r = decided(SERVICE, heard(*played, digit="1", digit_at=16, notice_end=16))
    assert (r.decision, r.record, r.notice_ended_at, r.digit_at) == (
        Decision.CONSENT, True, t(16), t(16))
    assert r.played == played


def test_rule_2_a_1_after_the_notice_is_consent() -> None:
    r = decided(SERVICE, heard(*WHOLE, digit="1", digit_at=26.2, notice_end=24))
    assert r == Receipt(
        decision=Decision.CONSENT, digit="1", digit_at=t(26.2), notice_started_at=t(0),
        notice_ended_at=t(24), question_started_at=t(10), decided_at=DECIDED,
        played=WHOLE, record=True)


def test_rule_2_a_1_pressed_as_the_question_starts_counts() -> None:
    played = (seg(INFORMATION, 0, 10), seg(QUESTION, 10, 10))
    r = decided(SERVICE, heard(*played, digit="1", digit_at=10, notice_end=10))
    assert (r.decision, r.record) == (Decision.CONSENT, True)


@pytest.mark.parametrize("report", [
    heard(seg(INFORMATION, 0, 10), seg(QUESTION, 10, 11), digit="2", digit_at=11,
          notice_end=11),
    heard(*WHOLE, digit="2", digit_at=25, notice_end=24),
], ids=["during the question", "after the notice"])
def test_rule_2_a_2_is_refusal_and_nothing_is_recorded(report: Heard) -> None:
    r = decided(SERVICE, report)
    assert (r.decision, r.record, r.digit) == (Decision.REFUSAL, False, "2")
    assert r.notice_ended_at is not None  # told, and refused
    assert r.question_started_at == t(10)


def test_rule_2_silence_after_the_whole_notice_is_no_consent() -> None:
    r = decided(SERVICE, heard(*WHOLE, notice_end=24))
    assert r == Receipt(
        decision=Decision.NO_CONSENT, digit=None, digit_at=None, notice_started_at=t(0),
        notice_ended_at=t(24), question_started_at=t(10), decided_at=DECIDED,
        played=WHOLE, record=False)


@pytest.mark.parametrize("digit", ["0", "3", "9", "*", "#"])
def test_rule_2_any_other_digit_is_no_consent(digit: str) -> None:
    r = decided(SERVICE, heard(*WHOLE, digit=digit, digit_at=25, notice_end=24))
    assert (r.decision, r.record) == (Decision.NO_CONSENT, False)


def test_rule_2_a_1_without_its_time_is_not_consent() -> None:
    r = decided(SERVICE, heard(*WHOLE, digit="1", notice_end=24))
    assert (r.decision, r.record) == (Decision.NO_CONSENT, False)


@pytest.mark.parametrize("report", [
    # pressed during the information (the whole notice then played): times run backwards
    heard(*WHOLE, digit="1", digit_at=5, notice_end=24),
    # pressed during the information, then the caller left before the question
    heard(seg(INFORMATION, 0, 10), digit="1", digit_at=5),
    # pressed as the information ended, the question never started
    heard(seg(INFORMATION, 0, 10), digit="1", digit_at=10),
    heard(seg(INFORMATION, 0, None), digit="1", digit_at=3),
], ids=["notice played", "left after information", "at information end", "mid information"])
def test_rule_2_a_1_before_the_question_started_is_not_counted(report: Heard) -> None:
    r = decided(SERVICE, report)
    assert (r.decision, r.record) == (Decision.NO_CONSENT, False)
    assert not answered(NOTICES[SERVICE], report) or not in_order(NOTICES[SERVICE], report)


def test_rule_2_the_question_may_be_asked_again_after_the_notice() -> None:
    """Silence: the question again (as often as the settings say); a 1 during a repetition
    is consent, its first start is the one kept."""
    played = (*WHOLE, seg(QUESTION, 29, 33), seg(QUESTION, 38, 40))
    r = decided(SERVICE, heard(*played, digit="1", digit_at=40, notice_end=24))
    assert (r.decision, r.record, r.question_started_at, r.notice_ended_at) == (
        Decision.CONSENT, True, t(10), t(24))
    assert r.played == played


def test_rule_2_silence_after_every_repetition_is_no_consent() -> None:
    played = (*WHOLE, seg(QUESTION, 29, 33), seg(QUESTION, 38, 42))
    r = decided(SERVICE, heard(*played, notice_end=24))
    assert (r.decision, r.record, r.notice_ended_at) == (Decision.NO_CONSENT, False, t(24))


def test_a_hang_up_during_a_repetition_still_leaves_the_caller_told() -> None:
    played = (*WHOLE, seg(QUESTION, 29, None))
    r = decided(SERVICE, heard(*played, notice_end=24), call_over=True)
    assert (r.decision, r.record, r.notice_ended_at) == (Decision.NO_CONSENT, False, t(24))


def test_rule_3_without_the_notice_end_the_last_segment_ends_it() -> None:
    """The notice's end is the report's; failing that its last segment's end (not a
    repetition's); failing that the answer."""
    played = (*WHOLE, seg(QUESTION, 29, 33))
    r = decided(SERVICE, heard(*played, digit="2", digit_at=34))
    assert r.notice_ended_at == t(24)
    answered_early = (seg(INFORMATION, 0, 10), seg(QUESTION, 10, None))
    r = decided(SERVICE, heard(*answered_early, digit="1", digit_at=11))
    assert (r.decision, r.notice_ended_at) == (Decision.CONSENT, t(11))


# 2. Rule 1: a notice not completed ------------------------------------------------------
@pytest.mark.parametrize("report", [
    heard(),
    heard(seg(INFORMATION, 0, None)),
    heard(seg(INFORMATION, 0, 10)),  # the question failed to play: not in the report
    heard(seg(INFORMATION, 0, 10), seg(QUESTION, 10, None)),
    heard(*WHOLE[:2]),
    heard(*WHOLE[:2], seg(CLOSING, 14, None)),
], ids=["nothing", "mid information", "after information", "mid question",
        "closing never started", "mid closing"])
@pytest.mark.parametrize("call_over", [False, True])
def test_rule_1_a_caller_who_left_during_the_notice_was_not_told(report: Heard,
                                                                  call_over: bool) -> None:
    r = decided(SERVICE, report, call_over)
    assert not completed(NOTICES[SERVICE], report)
    assert (r.decision, r.record, r.notice_ended_at) == (Decision.NO_CONSENT, False, None)
    assert r.notice_started_at == (t(0) if report.played else None)
    assert r.question_started_at == (t(10) if len(report.played) > 1 else None)
    assert r.played == report.played and r.decided_at == DECIDED


# 3. What the dialplan cannot report: not told ---------------------------------------------
IMPOSSIBLE = {
    "question first": heard(seg(QUESTION, 0, 4), seg(INFORMATION, 4, 14),
                            seg(CLOSING, 14, 24), digit="1", digit_at=25),
    "closing before question": heard(seg(INFORMATION, 0, 10), seg(CLOSING, 10, 20),
                                     seg(QUESTION, 20, 24), digit="1", digit_at=25),
    "information twice": heard(seg(INFORMATION, 0, 10), seg(INFORMATION, 10, 20),
                               seg(QUESTION, 20, 24), digit="1", digit_at=24),
    "closing repeated": heard(*WHOLE, seg(CLOSING, 24, 34), digit="1", digit_at=35),
    "another notice's segment": heard(seg("sales-notice", 0, 10), seg(QUESTION, 10, 14),
                                      seg(CLOSING, 14, 24), digit="1", digit_at=25),
    "unknown segment": heard(*WHOLE, seg("service-bonus", 24, 30), digit="1", digit_at=31),
    "segment ends before it starts": heard(seg(INFORMATION, 0, 10), seg(QUESTION, 14, 10),
                                           seg(CLOSING, 14, 24), digit="1", digit_at=25),
    "segment starts before the last ended": heard(seg(INFORMATION, 0, 10),
                                                  seg(QUESTION, 8, 14), seg(CLOSING, 14, 24),
                                                  digit="1", digit_at=25),
    "digit before the last segment ended": heard(*WHOLE, digit="1", digit_at=20,
                                                 notice_end=24),
    "an unfinished segment before others": heard(seg(INFORMATION, 0, None),
                                                 seg(QUESTION, 10, 14), seg(CLOSING, 14, 24),
                                                 digit="1", digit_at=25),
}


@pytest.mark.parametrize("report", IMPOSSIBLE.values(), ids=IMPOSSIBLE.keys())
def test_a_report_the_dialplan_cannot_write_is_a_notice_not_heard(report: Heard) -> None:
    assert not in_order(NOTICES[SERVICE], report)
    r = decided(SERVICE, report)
    assert (r.decision, r.record, r.notice_ended_at) == (Decision.NO_CONSENT, False, None)
    assert r.digit == "1"  # kept as reported (rule 3), not counted


@pytest.mark.parametrize(("kind", "report"), [
    (SERVICE, heard(*WHOLE, digit="1", digit_at=25, notice_end=-100)),
    (SERVICE, heard(*WHOLE, digit="1", digit_at=25, notice_end=12)),
    (SALES, heard(seg("sales-notice", 0, 20), notice_end=5)),
], ids=["service: before the notice started", "service: before its last segment ended",
        "sales: before its segment ended"])
def test_a_notice_end_running_backwards_is_a_notice_not_heard(kind: LineKind,
                                                              report: Heard) -> None:
    """The dialplan notes the notice's end after its last segment ended (or at the answer
    that cut it short): a report whose notice ended before that cannot be its report, and
    the receipt would prove a notice that ended before it was played (rule 3)."""
    r = decide(kind, report)
    assert r is None or (r.record, r.notice_ended_at) == (False, None)


def test_a_sales_report_the_dialplan_cannot_write_decides_nothing() -> None:
    assert decide(SALES, heard(seg(INFORMATION, 0, 10))) is None
    assert decide(SALES, heard(seg("sales-notice", 10, 0))) is None
    assert decide(SALES, heard(seg("sales-notice", 0, 10), seg("sales-notice", 10, 20))) is None


# 4. call_over: stored, never recorded ------------------------------------------------------
@pytest.mark.parametrize(("kind", "report", "decision"), [
    (SERVICE, heard(*WHOLE, digit="1", digit_at=25, notice_end=24), Decision.CONSENT),
    (SERVICE, heard(seg(INFORMATION, 0, 10), seg(QUESTION, 10, 11), digit="1",
                    digit_at=11, notice_end=11), Decision.CONSENT),
    (SALES, heard(seg("sales-notice", 0, 20), notice_end=20), Decision.LEGAL_BASIS),
])
def test_a_decision_taken_after_the_call_ended_is_never_recorded(
        kind: LineKind, report: Heard, decision: Decision) -> None:
    live = decided(kind, report)
    late = decided(kind, report, call_over=True)
    assert live.record is True
    assert (late.decision, late.record) == (decision, False)
    assert late.notice_ended_at == live.notice_ended_at is not None


# 5. Sales line ---------------------------------------------------------------------------
def test_sales_told_is_recorded_on_the_legal_basis() -> None:
    played = (seg("sales-notice", 0, 20),)
    r = decided(SALES, heard(*played, notice_end=20))
    assert r == Receipt(
        decision=Decision.LEGAL_BASIS, digit=None, digit_at=None, notice_started_at=t(0),
        notice_ended_at=t(20), question_started_at=None, decided_at=DECIDED,
        played=played, record=True)


def test_sales_a_digit_changes_nothing() -> None:
    r = decided(SALES, heard(seg("sales-notice", 0, 20), digit="2", digit_at=21,
                             notice_end=20))
    assert (r.decision, r.record, r.digit) == (Decision.LEGAL_BASIS, True, "2")


@pytest.mark.parametrize("report", [
    heard(), heard(seg("sales-notice", 0, None)),
    heard(seg("sales-notice", 0, None), digit="1", digit_at=5),
], ids=["nothing played", "hung up mid notice", "digit mid notice"])
@pytest.mark.parametrize("call_over", [False, True])
def test_sales_not_told_decides_nothing(report: Heard, call_over: bool) -> None:
    """Rule 1: no recording without the notice; a sales call has no decision to store."""
    assert decide(SALES, report, call_over) is None


def test_a_notice_without_segments_is_an_error() -> None:
    with pytest.raises(ValueError, match="at least one segment"):
        receipt(SERVICE, (), heard(*WHOLE), DECIDED)


# 6. Hypothesis: the reports the dialplan writes --------------------------------------------
@dataclass(frozen=True)
class Caller:
    """What a caller does while the dialplan plays the notice: ``leaves_at`` the index of
    the segment (of the notice, then of the repetitions) during which they hang up,
    ``presses`` a digit 1 or 2 at such an index (``None``: in a wait, after it)."""

    kind: LineKind
    durations: tuple[float, ...]
    repeats: int  # the question_repeats setting
    action: str  # "silence" | "leave" | "press"
    at_index: int
    in_wait: bool
    digit: str


def _dialplan(caller: Caller) -> tuple[Heard, bool]:
    """The report ``[ivr-notice-<name>]`` writes for this caller, and whether the call was
    over before the service was asked (the hangup handler's note)."""
    notice = NOTICES[caller.kind]
    question = next((s.segment_id for s in notice if s.question), None)
    order = [s.segment_id for s in notice]
    first_answerable = next((i for i, s in enumerate(notice) if s.question), len(order))
    if question is not None:
        order += [question] * caller.repeats
    clock, played = 0.0, []
    notice_end: float | None = None
    for index, segment_id in enumerate(order):
        if index == len(notice):
            notice_end = clock
        if index >= len(notice):
            clock += 5.0  # WaitExten before the question again
        start, clock = clock, clock + caller.durations[index % len(caller.durations)]
        if caller.action == "leave" and index == caller.at_index:
            played.append(PlayedSegment(segment_id, t(start), None))
            return Heard(tuple(played), notice_ended_at=at(notice_end)), True
        can_press = question is not None and index >= first_answerable
        if caller.action == "press" and index == caller.at_index and can_press:
            # A wait follows only the notice's last segment and each repetition.
            if caller.in_wait and index >= len(notice) - 1:
                played.append(PlayedSegment(segment_id, t(start), t(clock)))
                if index == len(notice) - 1:
                    notice_end = clock
                pressed = clock + 1.0
            else:
                pressed = (start + clock) / 2
                played.append(PlayedSegment(segment_id, t(start), t(pressed)))
                if notice_end is None:
                    notice_end = pressed
            return Heard(tuple(played), caller.digit, t(pressed), at(notice_end)), False
        played.append(PlayedSegment(segment_id, t(start), t(clock)))
    if notice_end is None:
        notice_end = clock if len(order) == len(notice) else notice_end
    return Heard(tuple(played), notice_ended_at=at(notice_end)), False


@st.composite
def callers(draw: st.DrawFn) -> Caller:
    kind = draw(st.sampled_from(list(LineKind)))
    repeats = draw(st.integers(0, 5))
    total = len(NOTICES[kind]) + (repeats if kind is SERVICE else 0)
    return Caller(
        kind=kind,
        durations=tuple(draw(st.lists(st.floats(0.5, 30), min_size=1, max_size=4))),
        repeats=repeats,
        action=draw(st.sampled_from(["silence", "leave", "press"])),
        at_index=draw(st.integers(0, total - 1)),
        in_wait=draw(st.booleans()),
        digit=draw(st.sampled_from(["1", "2"])),
    )


PROPERTY_SETTINGS = settings(max_examples=500, deadline=None)


@PROPERTY_SETTINGS
@given(caller=callers())
def test_rules_1_and_2_for_every_report_the_dialplan_writes(caller: Caller) -> None:
    """Told: the notice played to its end, or the caller answered the question. Recorded:
    told, sales or a 1, and the service still had the call."""
    report, call_over = _dialplan(caller)
    notice = NOTICES[caller.kind]
    assert in_order(notice, report), report
    pressed = report.digit is not None
    left_during_notice = caller.action == "leave" and caller.at_index < len(notice)
    told = not left_during_notice
    assert completed(notice, report) is told
    r = receipt(caller.kind, notice, report, DECIDED, call_over)
    hypothesis.event(f"{caller.kind} {caller.action}: told={told}, digit {report.digit}")
    if caller.kind is SALES:
        assert (r is None) is not told
        if r is not None:
            assert (r.decision, r.record) == (Decision.LEGAL_BASIS, True)
        return
    assert r is not None
    expected = ({"1": Decision.CONSENT, "2": Decision.REFUSAL}[caller.digit] if pressed
                else Decision.NO_CONSENT)
    assert r.decision is expected
    assert r.record is (expected is Decision.CONSENT and not call_over)
    assert (r.notice_ended_at is not None) is told
    assert r.notice_started_at == t(0)


# 7. Hypothesis: arbitrary reports --------------------------------------------------------
SEGMENT_IDS = ["sales-notice", INFORMATION, QUESTION, CLOSING, "service-bonus"]


@st.composite
def reports(draw: st.DrawFn, kind: LineKind) -> Heard:
    """Any report at all: segments of any notice in any order, times anywhere; most of
    them plausible (mostly this line's notice, in order)."""
    offsets = st.floats(0, 120)
    played = draw(st.lists(st.builds(
        lambda i, s, e: PlayedSegment(i, t(s), at(e)),
        st.sampled_from(SEGMENT_IDS), offsets, st.one_of(st.none(), offsets)), max_size=7))
    digit_at = draw(st.one_of(st.none(), offsets.map(t)))
    if draw(st.integers(0, 3)):  # plausible: the notice's segments, times in order
        notice = NOTICES[draw(st.sampled_from([kind, kind, kind, SALES, SERVICE]))]
        ids = [s.segment_id for s in notice]
        if notice is NOTICES[SERVICE]:
            ids += [QUESTION] * draw(st.integers(0, 2))
        if not draw(st.integers(0, 3)):
            ids = ids[:draw(st.integers(0, len(ids)))]
        times = sorted(draw(st.lists(offsets, min_size=2 * len(ids) + 1,
                                     max_size=2 * len(ids) + 1)))
        played = [PlayedSegment(i, t(times[2 * k]), t(times[2 * k + 1]))
                  for k, i in enumerate(ids)]
        cut_short = draw(st.booleans())
        if played and cut_short:
            played[-1] = PlayedSegment(played[-1].segment_id, played[-1].started_at, None)
        digit_at = draw(st.sampled_from([None, t(times[-1]), digit_at]))
    digit = draw(st.sampled_from([None, "1", "2", "3", "*", "#", "0"]))
    return Heard(tuple(played), digit=digit, digit_at=digit_at,
                 notice_ended_at=draw(st.one_of(st.none(), offsets.map(t))))


def _question_start(notice: Sequence[Segment], report: Heard) -> datetime | None:
    question = next(s.segment_id for s in notice if s.question)
    return next((p.started_at for p in report.played if p.segment_id == question), None)


@PROPERTY_SETTINGS
@given(kind=st.sampled_from(list(LineKind)), data=st.data(), call_over=st.booleans())
def test_nothing_is_recorded_that_the_rules_do_not_allow(
        kind: LineKind, data: st.DataObject, call_over: bool) -> None:
    report = data.draw(reports(kind))
    notice = NOTICES[kind]
    r = receipt(kind, notice, report, DECIDED, call_over)
    assert r == receipt(kind, notice, report, DECIDED, call_over)  # pure
    told = completed(notice, report)
    hypothesis.event(f"{kind}: told={told}, digit {report.digit}")
    if kind is SALES:
        assert (r is None) is not told
        if r is None:
            return
        assert r.decision is Decision.LEGAL_BASIS
    assert r is not None
    # Rule 1 (and call_over): recorded only if the decision allows it and the caller was
    # told while the call lasted.
    assert r.record is (r.decision.records and told and not call_over)
    if r.record:
        assert r.notice_ended_at is not None and in_order(notice, report)
    assert (r.notice_ended_at is not None) is told
    # Rule 2: on a service line only a 1, pressed once the question had started, records.
    if kind is SERVICE:
        assert r.decision is not Decision.LEGAL_BASIS
        if report.digit != "1":
            assert r.record is False and r.decision is not Decision.CONSENT
        if r.decision is Decision.CONSENT:
            asked = _question_start(notice, report)
            assert r.digit == "1" and r.digit_at is not None and asked is not None
            assert r.digit_at >= asked and r.question_started_at == asked
        if r.decision is Decision.REFUSAL:
            assert r.digit == "2"
    # Rule 3: the receipt keeps what was reported.
    assert (r.digit, r.digit_at, r.played, r.decided_at) == (
        report.digit, report.digit_at, report.played, DECIDED)
    assert r.notice_started_at == (report.played[0].started_at if report.played else None)
