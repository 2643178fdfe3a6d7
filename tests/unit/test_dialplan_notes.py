"""What the dialplan that plays the notice tells the service (``inbound_flow = "dialplan"``):
the FastAGI report the decision is taken from (rules 1-3), and the note the hangup handler
leaves when the call ends (rule 4). Read strictly: anything that is not what the dialplan
writes is refused with the reason, never guessed at, so no recording follows from it."""

from __future__ import annotations

import os
import time
from datetime import UTC, datetime
from pathlib import Path

import pytest

from ivr.calls.dialplan_notice import (
    END_FIELDS,
    HEARD_FIELDS,
    MAX_PLAYED,
    NOTE_SUFFIX,
    Ended,
    parse_end,
    parse_report,
)
from ivr.calls.notes import MAX_NOTE_BYTES, SETTLE_SECONDS, NoteError, read_notes
from ivr.flow.commands import Decision, PlayedSegment

ENTERED = "1795404928.120"
PLAYED = ("service-information@1795404928.200@1795404940.310~"
          "service-question@1795404940.310@1795404943.020~")
# The FastAGI argument of ``decide`` as [ivr-notice-service] writes it: a caller who
# pressed 1 during the question (the question ends at the digit, so does the notice).
REPORT = (f"v=1&entered={ENTERED}&dialled=040404040&caller=%2B38631000925&played={PLAYED}"
          "&digit=1&digit_at=1795404943.020&notice_end=1795404943.020")
RECORDING = "0b6f3f5e-8c2d-4f7a-b1e9-3d5a7c9e2f41.wav"
# The note of [ivr-notice-end] for the same call, recorded and answered by an agent.
NOTE = (f"v=1&channel=node2-1795404928.7&entered={ENTERED}&ended=1795405001.905"
        f"&dialled=040404040&caller=%2B38631000925&played={PLAYED}&digit=1"
        "&digit_at=1795404943.020&notice_end=1795404943.020&decision=consent"
        f"&recording={RECORDING}&recording_at=1795404943.110"
        "&mixmonitor=0x7f3a2c004b20&agent=PJSIP%2Fagent1&queue_status=&queued=1&cause=16"
        "&waiting=2&available=0")


def at(seconds: float) -> datetime:
    return datetime.fromtimestamp(seconds, UTC)


def with_field(text: str, name: str, value: str) -> str:
    """``text`` with field ``name`` set to ``value`` (already URL-encoded)."""
    pairs = [p.partition("=") for p in text.split("&")]
    assert name in [k for k, _, _ in pairs]
    return "&".join(f"{k}={value if k == name else v}" for k, _, v in pairs)


def without_field(text: str, name: str) -> str:
    return "&".join(p for p in text.split("&") if p.partition("=")[0] != name)


def test_the_examples_carry_exactly_the_fields() -> None:
    assert [p.partition("=")[0] for p in REPORT.split("&")] == list(HEARD_FIELDS)
    assert sorted(p.partition("=")[0] for p in NOTE.split("&")) == sorted(END_FIELDS)


# The report ------------------------------------------------------------------------------
def test_a_report_as_the_dialplan_writes_it() -> None:
    report = parse_report(REPORT)
    assert report.entered_at == at(1795404928.12)
    assert (report.dialled, report.caller) == ("040404040", "+38631000925")
    heard = report.heard
    assert heard.played == (
        PlayedSegment("service-information", at(1795404928.2), at(1795404940.31)),
        PlayedSegment("service-question", at(1795404940.31), at(1795404943.02)))
    assert (heard.digit, heard.digit_at, heard.notice_ended_at) == (
        "1", at(1795404943.02), at(1795404943.02))


def test_a_sales_report_without_a_digit() -> None:
    """[ivr-notice-sales] never sets the digit: the fields are there, empty."""
    text = (f"v=1&entered={ENTERED}&dialled=%2B38640404045&caller="
            "&played=sales-notice@1795404928.200@1795404940.310~&digit=&digit_at="
            "&notice_end=1795404940.310")
    report = parse_report(text)
    assert (report.dialled, report.caller) == ("+38640404045", "")
    assert report.heard.played == (
        PlayedSegment("sales-notice", at(1795404928.2), at(1795404940.31)),)
    assert (report.heard.digit, report.heard.digit_at) == (None, None)
    assert report.heard.notice_ended_at == at(1795404940.31)


def test_a_segment_that_failed_to_play_leaves_nothing_played() -> None:
    report = parse_report(with_field(REPORT, "played", ""))
    assert report.heard.played == ()


def test_hostile_caller_ids_and_numbers_are_kept_as_text_within_bounds() -> None:
    text = with_field(with_field(REPORT, "caller", "..%2F..%2Fetc%2Fpasswd%27%3B%0A" * 100),
                      "dialled", "9" * 500)
    report = parse_report(text)
    assert report.caller == ("../../etc/passwd';\n" * 100)[:1024]
    assert report.dialled == "9" * 64


REPORT_REFUSALS = {
    "empty": ("", "one line"),
    "two lines": (REPORT + "\n" + REPORT, "one line"),
    "not fields": ("not a report at all", "not URL-encoded"),
    "missing field": (without_field(REPORT, "digit_at"), "are not"),
    "extra field": (REPORT + "&decision=consent", "URL-encoded|are not"),
    "duplicated field": (with_field(REPORT, "dialled", "040404040&dialled=040404045")
                         .replace("&caller=%2B38631000925", ""), "are not"),
    "version 2": (with_field(REPORT, "v", "2"), "version"),
    "no version": (with_field(REPORT, "v", ""), "version"),
    "digit 12": (with_field(REPORT, "digit", "12"), "digit"),
    "digit a": (with_field(REPORT, "digit", "a"), "digit"),
    "entered not a time": (with_field(REPORT, "entered", "soon"), "entered is not a time"),
    "entered nan": (with_field(REPORT, "entered", "nan"), "entered is out of range"),
    "entered inf": (with_field(REPORT, "entered", "inf"), "entered is out of range"),
    "entered in 1970": (with_field(REPORT, "entered", "1000"), "entered is out of range"),
    "entered in 2200": (with_field(REPORT, "entered", "7258118400"), "out of range"),
    "digit_at not a time": (with_field(REPORT, "digit_at", "x"), "digit_at is not a time"),
    "digit_at out of range": (with_field(REPORT, "digit_at", "1e300"), "digit_at is out"),
    "notice_end not a time": (with_field(REPORT, "notice_end", "-"), "notice_end"),
    "played without times": (with_field(REPORT, "played", "service-question~"),
                             "not a played segment"),
    "played without start": (with_field(REPORT, "played", "service-question@@~"),
                             "not a played segment"),
    "played with upper case": (with_field(REPORT, "played", "Service@1795404928.2@~"),
                               "not a played segment"),
    "played with a path": (with_field(REPORT, "played", "..%2Fx@1795404928.2@~"),
                           "not a played segment"),
    "played with a third time": (with_field(
        REPORT, "played", "service-question@1795404928.2@1795404929@1795404930~"),
        "not a played segment"),
    "played start not a time": (with_field(REPORT, "played", "service-question@1.2.3@~"),
                                "segment start is not a time"),
    "played start out of range": (with_field(REPORT, "played", "service-question@12@~"),
                                  "segment start is out of range"),
    "played end out of range": (with_field(
        REPORT, "played", "service-question@1795404928.2@99999999999~"),
        "segment end is out of range"),
    "played too many": (with_field(
        REPORT, "played", "service-question@1795404928.2@1795404929.2~" * (MAX_PLAYED + 1)),
        f"more than {MAX_PLAYED}"),
}


@pytest.mark.parametrize(("text", "reason"), REPORT_REFUSALS.values(),
                         ids=REPORT_REFUSALS.keys())
def test_anything_else_is_not_a_report(text: str, reason: str) -> None:
    with pytest.raises(NoteError, match=reason):
        parse_report(text)


def test_as_many_segments_as_allowed_are_a_report() -> None:
    played = "service-question@1795404928.2@1795404929.2~" * MAX_PLAYED
    assert len(parse_report(with_field(REPORT, "played", played)).heard.played) == MAX_PLAYED


# The end note ----------------------------------------------------------------------------
def test_an_end_note_as_the_dialplan_writes_it() -> None:
    call = parse_end(NOTE + "\n")
    assert isinstance(call, Ended)
    assert call.channel_id == "node2-1795404928.7"
    assert call.report == parse_report(REPORT)
    assert call.ended_at == at(1795405001.905)
    assert (call.decision, call.recording, call.recording_at) == (
        Decision.CONSENT, RECORDING, at(1795404943.11))
    assert (call.mixmonitor_id, call.agent, call.queue_status, call.queued, call.cause) == (
        "0x7f3a2c004b20", "PJSIP/agent1", "", True, "16")
    assert (call.waiting, call.available) == (2, 0)


def test_a_queue_whose_load_is_not_known() -> None:
    call = parse_end(with_field(with_field(NOTE, "waiting", ""), "available", ""))
    assert (call.waiting, call.available) == (None, None)


def test_a_caller_who_left_during_the_notice() -> None:
    """The hangup handler notes the segment playing with no end; nothing else was set:
    no decision, ``IVR_RECORD`` still ``no``, never queued."""
    note = NOTE
    for name, value in [("played", "service-information@1795404928.200@~"), ("digit", ""),
                        ("digit_at", ""), ("notice_end", ""), ("decision", ""),
                        ("recording", "no"), ("recording_at", ""), ("mixmonitor", ""),
                        ("agent", ""), ("queued", ""), ("ended", "1795404931.5")]:
        note = with_field(note, name, value)
    call = parse_end(note)
    assert call.report.heard.played == (
        PlayedSegment("service-information", at(1795404928.2), None),)
    assert (call.decision, call.recording, call.recording_at, call.mixmonitor_id) == (
        None, None, None, None)
    assert (call.agent, call.queued, call.report.heard.notice_ended_at) == (None, False, None)


@pytest.mark.parametrize("decision", list(Decision))
def test_every_decision_the_service_gives_is_noted(decision: Decision) -> None:
    assert parse_end(with_field(NOTE, "decision", decision.value)).decision is decision


def test_nobody_answered_in_time() -> None:
    call = parse_end(with_field(with_field(NOTE, "agent", ""), "queue_status", "TIMEOUT"))
    assert (call.agent, call.queue_status, call.queued) == (None, "TIMEOUT", True)


def test_an_empty_recording_is_none() -> None:
    assert parse_end(with_field(NOTE, "recording", "")).recording is None


END_REFUSALS = {
    "a report is not a note": (REPORT, "are not"),
    "missing field": (without_field(NOTE, "cause"), "are not"),
    "extra field": (NOTE + "&x=1", "URL-encoded|are not"),
    "duplicated field": (without_field(NOTE, "cause") + "&queued=1", "are not"),
    "version 2": (with_field(NOTE, "v", "2"), "version '2' is not 1"),
    "channel path": (with_field(NOTE, "channel", "..%2Fx"), "is not a channel id"),
    "channel empty": (with_field(NOTE, "channel", ""), "is not a channel id"),
    "channel with space": (with_field(NOTE, "channel", "a%20b"), "is not a channel id"),
    "channel too long": (with_field(NOTE, "channel", "a" * 129), "is not a channel id"),
    "digit 3x": (with_field(NOTE, "digit", "3x"), "digit"),
    "ended not a time": (with_field(NOTE, "ended", "later"), "ended is not a time"),
    "ended out of range": (with_field(NOTE, "ended", "1e300"), "ended is out of range"),
    "ended before entered": (with_field(NOTE, "ended", "1795404900"), "ended before"),
    "recording_at not a time": (with_field(NOTE, "recording_at", "x"), "recording_at"),
    "played malformed": (with_field(NOTE, "played", "service-question@x@~"),
                         "not a played segment"),
    "played too many": (with_field(
        NOTE, "played", "sales-notice@1795404928.2@1795404929.2~" * (MAX_PLAYED + 1)),
        f"more than {MAX_PLAYED}"),
    "unknown decision": (with_field(NOTE, "decision", "yes"), "decision 'yes' is not one"),
    "decision in capitals": (with_field(NOTE, "decision", "CONSENT"), "decision"),
    "recording up the tree": (with_field(NOTE, "recording", "..%2Fx.wav"), "recording"),
    "recording elsewhere": (with_field(NOTE, "recording", "%2Fetc%2Fpasswd"), "recording"),
    "recording under a directory": (with_field(NOTE, "recording", "x%2F" + RECORDING),
                                    "recording"),
    "recording not named by the service": (with_field(NOTE, "recording", "x.wav"),
                                           "recording"),
    "recording without a format": (with_field(NOTE, "recording", RECORDING[:-4]),
                                   "recording"),
    "mixmonitor with a space": (with_field(NOTE, "mixmonitor", "a%20b"), "MixMonitor"),
    "mixmonitor with a newline": (with_field(NOTE, "mixmonitor", "a%0Ab"), "MixMonitor"),
    "mixmonitor too long": (with_field(NOTE, "mixmonitor", "a" * 129), "MixMonitor"),
    "queued yes": (with_field(NOTE, "queued", "yes"), "queued"),
    "queued 0": (with_field(NOTE, "queued", "0"), "queued"),
    "queued 2": (with_field(NOTE, "queued", "2"), "queued"),
    "cause not a number": (with_field(NOTE, "cause", "NORMAL"), "hangup cause"),
    "cause too long": (with_field(NOTE, "cause", "1234"), "hangup cause"),
    "queue status lower case": (with_field(NOTE, "queue_status", "timeout"), "queue status"),
    "queue status newline": (with_field(NOTE, "queue_status", "%0Arm"), "queue status"),
    "queue status too long": (with_field(NOTE, "queue_status", "A" * 21), "queue status"),
    "waiting not a number": (with_field(NOTE, "waiting", "many"), "waiting 'many' is not"),
    "waiting negative": (with_field(NOTE, "waiting", "-1"), "waiting"),
    "available too large": (with_field(NOTE, "available", "1234567"), "available"),
    "available a fraction": (with_field(NOTE, "available", "1.5"), "available"),
}


@pytest.mark.parametrize(("text", "reason"), END_REFUSALS.values(), ids=END_REFUSALS.keys())
def test_anything_else_is_not_an_end_note(text: str, reason: str) -> None:
    with pytest.raises(NoteError, match=reason):
        parse_end(text)


# Reading the notes -----------------------------------------------------------------------
def _aged(path: Path, seconds: float) -> None:
    then = time.time() - seconds
    os.utime(path, (then, then))


def test_end_notes_are_read_and_bad_ones_moved_aside(tmp_path: Path) -> None:
    """A note that is not one goes to rejected/ (an oversize one too); one written in the
    last seconds is left, good or bad (Asterisk may still be writing it); other files are
    not touched."""
    files = {
        "a" + NOTE_SUFFIX: NOTE,
        "b" + NOTE_SUFFIX: with_field(NOTE, "recording", "..%2Fx.wav"),
        "c" + NOTE_SUFFIX: "x" * (MAX_NOTE_BYTES + 1),
        "d.call": NOTE,
        "e" + NOTE_SUFFIX + ".tmp": NOTE,
        "fresh" + NOTE_SUFFIX: NOTE,
        "fresh-bad" + NOTE_SUFFIX: "v=9",
    }
    for name, text in files.items():
        (tmp_path / name).write_text(text)
        if not name.startswith("fresh"):
            _aged(tmp_path / name, SETTLE_SECONDS + 10)
    notes = read_notes(tmp_path, NOTE_SUFFIX, parse_end)
    assert [(p.name, c.channel_id) for p, c in notes] == [
        ("a" + NOTE_SUFFIX, "node2-1795404928.7")]
    assert sorted(p.name for p in (tmp_path / "rejected").iterdir()) == [
        "b" + NOTE_SUFFIX, "c" + NOTE_SUFFIX]
    left = {p.name for p in tmp_path.iterdir() if p.is_file()}
    assert left == set(files) - {"b" + NOTE_SUFFIX, "c" + NOTE_SUFFIX}
    # Read again: the good note stays until the caller removes it; the fresh ones settle.
    later = read_notes(tmp_path, NOTE_SUFFIX, parse_end, now=time.time() + 60)
    assert [p.name for p, _ in later] == ["a" + NOTE_SUFFIX, "fresh" + NOTE_SUFFIX]
    assert sorted(p.name for p in (tmp_path / "rejected").iterdir()) == [
        "b" + NOTE_SUFFIX, "c" + NOTE_SUFFIX, "fresh-bad" + NOTE_SUFFIX]


def test_a_note_just_at_the_size_limit_is_read(tmp_path: Path) -> None:
    note = with_field(NOTE, "caller", "1" * (MAX_NOTE_BYTES - len(NOTE) + len("%2B38631000925")))
    assert len(note.encode()) == MAX_NOTE_BYTES
    (tmp_path / ("n" + NOTE_SUFFIX)).write_text(note)
    [(_, call)] = read_notes(tmp_path, NOTE_SUFFIX, parse_end, now=time.time() + 60)
    assert call.report.caller == "1" * 1024
