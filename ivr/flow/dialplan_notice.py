"""The inbound call when the dialplan plays the notice and collects the digit
(``[dialplan] inbound_flow = "dialplan"``). Rules 1-3, decided once from what the dialplan
reports the caller heard, instead of event by event as in ``ivr/flow/inbound.py``.

The dialplan plays the notice's segments in order. Segments before the question ignore
digits; from the question on, a 1 or a 2 ends the notice at once (rule 1: the caller
answered the question). After the notice it waits for the answer and, on silence or any
other digit, asks the question again as often as the settings say.

``receipt()`` is pure: the same report always gives the same decision. What cannot be the
dialplan's report of this notice (segments out of order, times running backwards) counts
as a notice not heard: no recording, and no consent.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from itertools import pairwise

from ivr.flow.commands import Decision, PlayedSegment, Receipt
from ivr.flow.inbound import CONSENT_DIGITS, Segment
from ivr.policy.lines import LineKind


@dataclass(frozen=True, slots=True)
class Heard:
    """What the dialplan reports: each segment as played (a segment cut short by the
    caller's answer or the hang-up has the time it stopped, or none), the digit that ended
    the question and when, and when the notice ended (its last segment, or the answer)."""

    played: tuple[PlayedSegment, ...]
    digit: str | None = None
    digit_at: datetime | None = None
    notice_ended_at: datetime | None = None


def in_order(notice: Sequence[Segment], heard: Heard) -> bool:
    """The report follows the notice: its segments in order (the last possibly cut short or
    never ended), then only repetitions of the question; every time after the one before."""
    expected = [s.segment_id for s in notice]
    question = next((s.segment_id for s in notice if s.question), None)
    ids = [p.segment_id for p in heard.played]
    head, tail = ids[:len(expected)], ids[len(expected):]
    if head != expected[:len(head)] or any(i != question for i in tail):
        return False
    times = [t for p in heard.played for t in (p.started_at, p.ended_at) if t is not None]
    if heard.digit_at is not None:
        times.append(heard.digit_at)
    if any(later < earlier for earlier, later in pairwise(times)):
        return False
    if heard.notice_ended_at is not None:
        # The notice ends after its own segments and no later than the answer.
        own = [t for p in heard.played[:len(expected)] for t in (p.started_at, p.ended_at)
                  if t is not None]
        if any(heard.notice_ended_at < t for t in own) or (
                heard.digit_at is not None and heard.digit_at < heard.notice_ended_at):
            return False
    unfinished = [i for i, p in enumerate(heard.played) if p.ended_at is None]
    return not unfinished or unfinished == [len(heard.played) - 1]


def answered(notice: Sequence[Segment], heard: Heard) -> bool:
    """A 1 or 2 pressed once the question had started (rule 2)."""
    question = next((s.segment_id for s in notice if s.question), None)
    asked = [p.started_at for p in heard.played
             if p.segment_id == question and p.started_at is not None]
    return (heard.digit in CONSENT_DIGITS and heard.digit_at is not None and bool(asked)
            and heard.digit_at >= asked[0])


def completed(notice: Sequence[Segment], heard: Heard) -> bool:
    """Rule 1: the notice played to its end, or the caller answered the question."""
    if not in_order(notice, heard):
        return False
    whole = len(heard.played) >= len(notice) and all(
        p.ended_at is not None for p in heard.played[:len(notice)])
    return whole or answered(notice, heard)


def receipt(kind: LineKind, notice: Sequence[Segment], heard: Heard, at: datetime,
            call_over: bool = False) -> Receipt | None:
    """The decision the report allows, with its proof (rule 3); ``None`` for a sales call
    whose caller was not told (nothing is decided, nothing recorded). ``call_over``: the
    report comes after the call ended (the decision was never asked for): stored, never
    recorded."""
    if not notice:
        raise ValueError("a notice needs at least one segment")
    told = completed(notice, heard)
    if kind is LineKind.SALES:
        if not told:
            return None
        decision = Decision.LEGAL_BASIS
    elif told and answered(notice, heard):
        decision = CONSENT_DIGITS[heard.digit or ""]
    else:
        decision = Decision.NO_CONSENT
    question = next((s.segment_id for s in notice if s.question), None)
    asked = [p.started_at for p in heard.played if p.segment_id == question]
    ended = None
    if told:
        last = heard.played[min(len(notice), len(heard.played)) - 1]
        ended = heard.notice_ended_at or last.ended_at or heard.digit_at
    return Receipt(
        decision=decision, digit=heard.digit, digit_at=heard.digit_at,
        notice_started_at=heard.played[0].started_at if heard.played else None,
        notice_ended_at=ended,
        question_started_at=asked[0] if asked else None, decided_at=at,
        played=heard.played, record=decision.records and told and not call_over)
