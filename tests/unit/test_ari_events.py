"""ivr.asterisk.ari_events: ARI websocket frames parsed into events, or refused with
:class:`AriEventError`, never another exception.

``transcripts/ari_events.jsonl`` holds frames in the shape Asterisk 22 sends them: a sales
call (StasisStart, the notice played to its end) and a service call (StasisStart, the
question, digit 1, hang-up).
"""

from __future__ import annotations

import contextlib
import copy
import json
import sys
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from ivr.asterisk.ari_events import (
    MAX_FRAME,
    AriEventError,
    Channel,
    ChannelDestroyed,
    ChannelDtmfReceived,
    ChannelHangupRequest,
    ChannelStateChange,
    ChannelUserevent,
    Event,
    OtherEvent,
    PlaybackContinuing,
    PlaybackFinished,
    PlaybackStarted,
    StasisEnd,
    StasisStart,
    channel_of,
    parse_event,
)

TRANSCRIPT = Path(__file__).parent / "transcripts" / "ari_events.jsonl"
SALES_CHANNEL = "1795384721.0"
SERVICE_CHANNEL = "1795384743.4"


def _frames() -> list[str]:
    return [line for line in TRANSCRIPT.read_text(encoding="utf-8").splitlines() if line]


FRAMES = _frames()


def _frame(kind: str, n: int = 0) -> dict[str, Any]:
    """The ``n``-th frame of type ``kind`` in the transcript, as JSON to modify."""
    found = [json.loads(f) for f in FRAMES if json.loads(f)["type"] == kind]
    frame: dict[str, Any] = found[n]
    return frame


def _parse(frame: dict[str, Any]) -> Event:
    return parse_event(json.dumps(frame))


# --- the transcript ----------------------------------------------------------------------------


def test_transcript_parses_into_the_expected_event_types() -> None:
    events = [parse_event(f) for f in FRAMES]
    assert [type(e) for e in events] == [
        StasisStart, PlaybackStarted, PlaybackFinished,
        StasisStart, ChannelStateChange, PlaybackStarted, ChannelDtmfReceived, OtherEvent,
        ChannelHangupRequest, StasisEnd, ChannelDestroyed,
    ]
    assert all(e.application == "ivr" for e in events)
    assert [e.type for e in events] == [json.loads(f)["type"] for f in FRAMES]


def test_transcript_parses_from_bytes_as_from_text() -> None:
    for frame in FRAMES:
        assert parse_event(frame.encode("utf-8")) == parse_event(frame)


def test_stasis_start_carries_channel_caller_and_dialled_number() -> None:
    """Rule 3: the line (dialled number) and the caller come from StasisStart."""
    event = parse_event(FRAMES[0])
    assert isinstance(event, StasisStart)
    assert event.channel == Channel(
        id=SALES_CHANNEL, name="PJSIP/trunk-00000000", state="Ring", caller_number="031123456",
        caller_name="", context="from-trunk", exten="040404045", linkedid=SALES_CHANNEL,
        variables=(), app_name="Stasis", app_data="ivr",
    )
    assert event.channel.in_application("ivr")
    assert not event.channel.in_application("other")
    assert event.args == ()
    assert event.replace_channel_id is None


def test_stasis_start_channel_variables_and_args() -> None:
    event = _parse(_frame("StasisStart", 1))
    assert isinstance(event, StasisStart)
    assert event.args == ("inbound",)
    assert event.channel.caller_name == "Ana Novak"
    assert event.channel.caller_number == "+38641555123"
    assert event.channel.exten == "0038640404040"
    assert event.channel.variables == (("CHANNEL(linkedid)", SERVICE_CHANNEL),
                                       ("IVR_DECISION", ""))
    assert event.channel.variable("IVR_DECISION") == ""
    assert event.channel.variable("CHANNEL(linkedid)") == SERVICE_CHANNEL
    assert event.channel.variable("NOT_SET") is None


def test_stasis_start_replacing_a_channel() -> None:
    frame = _frame("StasisStart")
    frame["replace_channel"] = {"id": "1795384721.1"}
    event = _parse(frame)
    assert isinstance(event, StasisStart)
    assert event.replace_channel_id == "1795384721.1"


def test_stasis_start_linkedid_when_asterisk_sends_it() -> None:
    frame = _frame("StasisStart")
    frame["channel"]["linkedid"] = "1795384700.0"
    event = _parse(frame)
    assert isinstance(event, StasisStart)
    assert event.channel.linkedid == "1795384700.0"


def test_rule_2_dtmf_digit_is_typed() -> None:
    """Rule 2: the digit pressed is what decides consent."""
    event = _parse(_frame("ChannelDtmfReceived"))
    assert isinstance(event, ChannelDtmfReceived)
    assert event.digit == "1"
    assert event.duration_ms == 120
    assert event.channel.id == SERVICE_CHANNEL


@pytest.mark.parametrize("digit", list("0123456789*#ABCD"))
def test_rule_2_every_dtmf_digit_is_accepted(digit: str) -> None:
    frame = _frame("ChannelDtmfReceived")
    frame["digit"] = digit
    event = _parse(frame)
    assert isinstance(event, ChannelDtmfReceived)
    assert event.digit == digit


def test_dtmf_without_duration_is_zero() -> None:
    frame = _frame("ChannelDtmfReceived")
    del frame["duration_ms"]
    event = _parse(frame)
    assert isinstance(event, ChannelDtmfReceived)
    assert event.duration_ms == 0


def test_rule_1_playback_finished_says_the_notice_was_played_to_its_end() -> None:
    """Rule 1: recording may start after the notice played to its end (state done)."""
    started = parse_event(FRAMES[1])
    finished = parse_event(FRAMES[2])
    assert isinstance(started, PlaybackStarted)
    assert isinstance(finished, PlaybackFinished)
    assert started.playback_id == finished.playback_id == "6b1f0c2e-4a5d-4f3b-9a57-0d4f8e2c1a11"
    assert started.media_uri == finished.media_uri == "sound:ivr/sales-notice"
    assert started.target_uri == finished.target_uri == f"channel:{SALES_CHANNEL}"
    assert finished.state == "done"


def test_a_list_of_media_names_each_segment_as_it_starts_and_ends() -> None:
    """A notice played as one playback of its segments (as recorded on the test PBX): each
    segment's start is a PlaybackStarted naming it, each end but the last a
    PlaybackContinuing naming the segment that ended, the last a PlaybackFinished."""
    path = TRANSCRIPT.with_name("service-consent.jsonl")
    events = [parse_event(line) for line in path.read_text(encoding="utf-8").splitlines()]
    playbacks = [(type(e).__name__, e.media_uri.rsplit("/", 1)[-1]) for e in events
                 if isinstance(e, (PlaybackStarted, PlaybackContinuing, PlaybackFinished))]
    assert playbacks == [
        ("PlaybackStarted", "service-information"),
        ("PlaybackContinuing", "service-information"),
        ("PlaybackStarted", "service-question"),
        ("PlaybackContinuing", "service-question"),
        ("PlaybackStarted", "service-closing"),
        ("PlaybackFinished", "service-closing"),
    ]
    ids = {e.playback_id for e in events if isinstance(e, PlaybackContinuing)}
    assert len(ids) == 1 and all(channel_of(e) == events[0].channel.id  # type: ignore[attr-defined]
                                 for e in events if isinstance(e, PlaybackContinuing))


def test_hangup_request_and_destroyed_carry_the_cause() -> None:
    request = _parse(_frame("ChannelHangupRequest"))
    assert isinstance(request, ChannelHangupRequest)
    assert request.cause == 16
    destroyed = _parse(_frame("ChannelDestroyed"))
    assert isinstance(destroyed, ChannelDestroyed)
    assert (destroyed.cause, destroyed.cause_txt) == (16, "Normal Clearing")


def test_hangup_request_without_cause_is_none() -> None:
    frame = _frame("ChannelHangupRequest")
    del frame["cause"]
    event = _parse(frame)
    assert isinstance(event, ChannelHangupRequest)
    assert event.cause is None


def test_stasis_end_and_state_change_carry_the_channel() -> None:
    end = _parse(_frame("StasisEnd"))
    assert isinstance(end, StasisEnd)
    assert end.channel.id == SERVICE_CHANNEL
    change = _parse(_frame("ChannelStateChange"))
    assert isinstance(change, ChannelStateChange)
    assert change.channel.state == "Up"


def _queue_event(body: Any) -> dict[str, Any]:
    """The queue's ``UserEvent(ivr-queue,status: TIMEOUT)`` as ARI sends it: the body's
    keys beside the event's name, in ``userevent``; the channel of the transcript's call."""
    frame = _frame("ChannelVarset")
    for key in ("variable", "value"):
        del frame[key]
    return {**frame, "type": "ChannelUserevent", "eventname": "ivr-queue", "userevent": body}


def test_a_user_event_carries_its_name_and_body() -> None:
    """QUEUESTATUS, from the queue's dialplan, tells a queue timeout from a caller who gave
    up (rule 4)."""
    event = _parse(_queue_event({"eventname": "ivr-queue", "status": "TIMEOUT"}))
    assert isinstance(event, ChannelUserevent)
    assert (event.channel.id, event.eventname, event.body) == (
        SERVICE_CHANNEL, "ivr-queue", {"status": "TIMEOUT"})
    assert event.timestamp == datetime(2026, 11, 22, 21, 59, 5, 231000, tzinfo=UTC)
    assert channel_of(event) == SERVICE_CHANNEL


@pytest.mark.parametrize("body", [None, {}, {"status": 7, "other": ["x"]}, "status: TIMEOUT"])
def test_a_user_event_without_a_text_body_has_an_empty_one(body: Any) -> None:
    """Nothing to read: the missed call's reason stays the safe one (``abandoned``, still
    returned)."""
    frame = _queue_event(body)
    if body is None:
        del frame["userevent"]
    event = _parse(frame)
    assert isinstance(event, ChannelUserevent) and event.body == {}


def test_variable_changes_are_not_followed() -> None:
    """The service asks Asterisk for none (ivr.asterisk.ari.WANTED_EVENTS); one that
    arrives anyway is an event it does not act on, of no channel."""
    event = _parse(_frame("ChannelVarset"))
    assert type(event) is OtherEvent and channel_of(event) is None
    event = parse_event(json.dumps({"type": "ChannelVarset", "variable": "X", "value": "1"}))
    assert type(event) is OtherEvent


@pytest.mark.parametrize("kind", ["BridgeCreated", "ChannelEnteredBridge", "ApplicationReplaced",
                                  "DeviceStateChanged", "SomethingAsterisk30Adds"])
def test_any_unknown_type_is_other_event_even_without_fields(kind: str) -> None:
    event = parse_event(json.dumps({"type": kind}))
    assert event == OtherEvent(type=kind, timestamp=None, application="")


def test_events_are_frozen() -> None:
    event = parse_event(FRAMES[0])
    with pytest.raises(AttributeError):
        event.type = "StasisEnd"  # type: ignore[misc]


# --- channel_of ---------------------------------------------------------------------------------


def test_channel_of_every_transcript_event() -> None:
    assert [channel_of(parse_event(f)) for f in FRAMES] == [
        SALES_CHANNEL, SALES_CHANNEL, SALES_CHANNEL,
        SERVICE_CHANNEL, SERVICE_CHANNEL, SERVICE_CHANNEL, SERVICE_CHANNEL,
        None,  # ChannelVarset: not followed
        SERVICE_CHANNEL, SERVICE_CHANNEL, SERVICE_CHANNEL,
    ]


@pytest.mark.parametrize("target", ["bridge:5a1c", "", "channel", "recording:x"])
def test_channel_of_playback_on_something_else_is_none(target: str) -> None:
    frame = _frame("PlaybackStarted")
    frame["playback"]["target_uri"] = target
    assert channel_of(_parse(frame)) is None


def test_channel_of_other_event_is_none() -> None:
    assert channel_of(parse_event('{"type": "ApplicationReplaced"}')) is None


# --- timestamps --------------------------------------------------------------------------------


def test_timestamps_are_time_zone_aware() -> None:
    for frame in FRAMES:
        stamp = parse_event(frame).timestamp
        assert stamp is not None
        assert stamp.tzinfo is not None
        assert stamp.utcoffset() == timedelta(0)
    first = parse_event(FRAMES[0]).timestamp
    assert first == datetime(2026, 11, 22, 21, 58, 41, 101000, tzinfo=UTC)


def test_timestamp_with_an_offset_keeps_the_instant() -> None:
    frame = _frame("StasisStart")
    frame["timestamp"] = "2026-11-22T22:58:41.101+0100"
    stamp = _parse(frame).timestamp
    assert stamp == datetime(2026, 11, 22, 21, 58, 41, 101000, tzinfo=UTC)


@pytest.mark.parametrize("stamp", [None, 1795384721, "", "yesterday", "2026-11-22T21:58:41",
                                   "2026-11-22T21:58:41.101", "2026-13-40T25:61:61.000+0000"])
def test_missing_or_unreadable_timestamp_is_none(stamp: object) -> None:
    frame = _frame("StasisStart")
    frame["timestamp"] = stamp
    assert _parse(frame).timestamp is None


# --- malformed frames ---------------------------------------------------------------------------


def _with(kind: str, path: tuple[str, ...], value: object) -> str:
    frame = _frame(kind)
    target = frame
    for key in path[:-1]:
        target = target[key]
    target[path[-1]] = value
    return json.dumps(frame)


def _without(kind: str, path: tuple[str, ...]) -> str:
    frame = _frame(kind)
    target = frame
    for key in path[:-1]:
        target = target[key]
    del target[path[-1]]
    return json.dumps(frame)


MALFORMED = [
    pytest.param("", "not JSON", id="empty"),
    pytest.param("StasisStart", "not JSON", id="not-json"),
    pytest.param(FRAMES[0][:-1], "not JSON", id="truncated"),
    pytest.param("{'type': 'StasisStart'}", "not JSON", id="single-quotes"),
    pytest.param("[" + FRAMES[0] + "]", "must be a JSON object", id="json-array"),
    pytest.param('"StasisStart"', "must be a JSON object", id="json-string"),
    pytest.param("null", "must be a JSON object", id="json-null"),
    pytest.param("42", "must be a JSON object", id="json-number"),
    pytest.param(_without("StasisStart", ("type",)), "without a type", id="missing-type"),
    pytest.param(_with("StasisStart", ("type",), ""), "without a type", id="empty-type"),
    pytest.param(_with("StasisStart", ("type",), 7), "'type' must be text", id="type-number"),
    pytest.param(_with("StasisStart", ("application",), ["ivr"]), "'application' must be text",
                 id="application-list"),
    pytest.param(_without("StasisStart", ("channel",)), "'channel' must be an object",
                 id="stasis-start-no-channel"),
    pytest.param(_with("StasisStart", ("channel",), "1795384721.0"),
                 "'channel' must be an object", id="channel-string"),
    pytest.param(_without("StasisStart", ("channel", "id")), "'id' must be text",
                 id="channel-missing-id"),
    pytest.param(_with("StasisStart", ("channel", "id"), 1795384721.0), "'id' must be text",
                 id="channel-id-number"),
    pytest.param(_with("StasisEnd", ("channel", "id"), None), "'id' must be text",
                 id="channel-id-null"),
    pytest.param(_with("ChannelDestroyed", ("channel", "id"), ["a"]), "'id' must be text",
                 id="channel-id-list"),
    pytest.param(_with("StasisStart", ("channel", "id"), ""), "channel id must be 1 to 128",
                 id="channel-id-empty"),
    pytest.param(_with("StasisStart", ("channel", "id"), "x" * 129),
                 "channel id must be 1 to 128", id="channel-id-too-long"),
    pytest.param(_with("StasisStart", ("channel", "name"), 5), "'name' must be text",
                 id="channel-name-number"),
    pytest.param(_with("StasisStart", ("channel", "caller", "number"), 31123456),
                 "'number' must be text", id="caller-number-number"),
    pytest.param(_with("StasisStart", ("args",), "inbound"), "args must be a list",
                 id="args-string"),
    pytest.param(_with("StasisStart", ("replace_channel",), {"name": "x"}), "'id' must be text",
                 id="replace-channel-without-id"),
    pytest.param(_without("ChannelDtmfReceived", ("digit",)), "'digit' must be text",
                 id="dtmf-missing-digit"),
    pytest.param(_with("ChannelDtmfReceived", ("digit",), 1), "'digit' must be text",
                 id="dtmf-digit-number"),
    pytest.param(_with("ChannelDtmfReceived", ("digit",), ""), "DTMF digit '' is not one of",
                 id="dtmf-digit-empty"),
    pytest.param(_with("ChannelDtmfReceived", ("digit",), "12"), "DTMF digit '12' is not one of",
                 id="dtmf-two-digits"),
    pytest.param(_with("ChannelDtmfReceived", ("digit",), "E"), "is not one of 0-9 * # A-D",
                 id="dtmf-E"),
    pytest.param(_with("ChannelDtmfReceived", ("digit",), "a"), "is not one of 0-9 * # A-D",
                 id="dtmf-lowercase"),
    pytest.param(_with("ChannelDtmfReceived", ("digit",), "١"), "is not one of 0-9 * # A-D",
                 id="dtmf-arabic-indic-one"),
    pytest.param(_with("ChannelDtmfReceived", ("digit",), "1" * 10_000),
                 "DTMF digit '11111111' is not one of", id="dtmf-very-long"),
    pytest.param(_without("PlaybackStarted", ("playback",)), "'playback' must be an object",
                 id="playback-missing"),
    pytest.param(_without("PlaybackFinished", ("playback", "id")), "'id' must be text",
                 id="playback-missing-id"),
    pytest.param(_with("PlaybackStarted", ("playback", "target_uri"), None),
                 "'target_uri' must be text", id="playback-target-null"),
    pytest.param(_with("PlaybackFinished", ("playback", "state"), 0), "'state' must be text",
                 id="playback-state-number"),
    pytest.param(b'{"type":"StasisStart","channel":{"id":"\xff\xfe"}}', "not JSON",
                 id="not-utf8"),
    pytest.param(b"\x80" + FRAMES[0].encode(), "not JSON", id="not-utf8-first-byte"),
    pytest.param(FRAMES[0].encode("latin-1", "replace")[:-1] + b"\xe9}", "not JSON",
                 id="latin-1"),
    pytest.param("[" * 100_000 + "]" * 100_000, "not JSON", id="nested-too-deep"),
    pytest.param('{"type": "StasisStart", "x": ' + "[" * 5000 + "]" * 5000 + "}", "not JSON",
                 id="nested-too-deep-in-object"),
    pytest.param('{"type": "StasisStart", "cause": 1' + "0" * 5000 + "}", "not JSON",
                 id="integer-of-5000-digits"),
]


@pytest.mark.parametrize(("frame", "reason"), MALFORMED)
def test_malformed_frame_is_ari_event_error_with_a_clear_message(
    frame: str | bytes, reason: str
) -> None:
    with pytest.raises(AriEventError) as caught:
        parse_event(frame)
    message = str(caught.value)
    assert reason in message
    assert len(message) < 300


def test_frame_larger_than_1_mib_is_refused_before_parsing() -> None:
    padding = MAX_FRAME - len(FRAMES[0]) + 1
    frame = FRAMES[0][:-1] + " " * padding + "}"
    assert len(frame) == MAX_FRAME + 1
    with pytest.raises(AriEventError, match=f"frame of {MAX_FRAME + 1} bytes is larger than"):
        parse_event(frame)
    with pytest.raises(AriEventError, match="is larger than"):
        parse_event(frame.encode())


def test_frame_of_exactly_1_mib_is_parsed() -> None:
    assert MAX_FRAME == 1 << 20
    frame = FRAMES[0][:-1] + " " * (MAX_FRAME - len(FRAMES[0])) + "}"
    assert len(frame.encode()) == MAX_FRAME
    assert isinstance(parse_event(frame.encode()), StasisStart)


def test_ari_event_error_is_a_value_error() -> None:
    assert issubclass(AriEventError, ValueError)


# --- nothing but AriEventError, whatever the frame -------------------------------------------


def _paths(node: object, prefix: tuple[str | int, ...] = ()) -> Iterator[tuple[str | int, ...]]:
    if isinstance(node, dict):
        for key, value in node.items():
            yield (*prefix, key)
            yield from _paths(value, (*prefix, key))
    elif isinstance(node, list):
        for index, value in enumerate(node):
            yield (*prefix, index)
            yield from _paths(value, (*prefix, index))


REPLACEMENTS: list[object] = [None, True, 0, -1, 1.5, "", "x", "x" * 200, [], [1, "a"], {},
                              {"id": 1}, {"x": {"y": [None]}}]


def _mutations(text: str) -> Iterator[str]:
    frame = json.loads(text)
    for path in _paths(frame):
        for value in [*REPLACEMENTS, "__delete__"]:
            mutated = copy.deepcopy(frame)
            parent: Any = mutated
            for key in path[:-1]:
                parent = parent[key]
            if value == "__delete__":
                del parent[path[-1]]
            else:
                parent[path[-1]] = value
            yield json.dumps(mutated)
    for cut in range(len(text)):
        yield text[:cut]


def _parse_or_refuse(frame: str | bytes) -> None:
    with contextlib.suppress(AriEventError):
        parse_event(frame)


@pytest.mark.parametrize("index", range(len(FRAMES)))
def test_every_mutation_of_a_real_frame_parses_or_is_ari_event_error(index: int) -> None:
    """Fields replaced by every JSON type, deleted, or the frame cut short: never a crash."""
    for mutated in _mutations(FRAMES[index]):
        _parse_or_refuse(mutated)
        _parse_or_refuse(mutated.encode("utf-16"))


@pytest.mark.parametrize(
    "template",
    [
        '{"type":"StasisStart","channel":{"id":"a","channelvars":{"x":%s}}}',
        '{"type":"StasisStart","channel":{"id":"a"},"args":[%s]}',
        '{"type":"ChannelDestroyed","channel":{"id":"a"},"cause_txt":%s}',
        '{"type":"OtherThing","x":%s}',
    ],
)
def test_nesting_around_the_recursion_limit_never_crashes(template: str) -> None:
    limit = sys.getrecursionlimit()
    for depth in range(limit - 150, limit + 20):
        _parse_or_refuse(template % ("[" * depth + "]" * depth))
