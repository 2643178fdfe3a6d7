"""Hostile input never crashes a parser: whatever arrives, the answer is a parsed value or
the parser's own clear error (issue 7, fuzzing with Hypothesis)."""

from __future__ import annotations

import contextlib
import json

from hypothesis import given, settings
from hypothesis import strategies as st

from ivr.asterisk.agi import AgiError, AgiRequest, parse_reply
from ivr.asterisk.ari_events import AriEventError, parse_event
from ivr.asterisk.report_http import MAX_BODY_BYTES, ReportError, ReportRequest, body_text
from ivr.calls.caller import describe_caller
from ivr.policy.numbers import InvalidNumber, to_e164

JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=12), inner,
                                                                max_size=5),
    max_leaves=20)
EVENT_TYPES = st.sampled_from(["StasisStart", "StasisEnd", "ChannelDtmfReceived",
                               "ChannelHangupRequest", "ChannelDestroyed", "PlaybackStarted",
                               "PlaybackFinished", "ChannelVarset", "ChannelStateChange"])


@settings(max_examples=400)
@given(kind=EVENT_TYPES, fields=st.dictionaries(
    st.sampled_from(["channel", "playback", "digit", "args", "timestamp", "cause",
                     "variable", "value", "application", "replace_channel"]), JSON))
def test_ari_events_of_known_types_with_any_fields(kind: str, fields: dict[str, object]
                                                   ) -> None:
    with contextlib.suppress(AriEventError):
        parse_event(json.dumps({"type": kind, **fields}))


@settings(max_examples=300)
@given(st.binary(max_size=2048))
def test_ari_frames_of_any_bytes(frame: bytes) -> None:
    with contextlib.suppress(AriEventError):
        parse_event(frame)


@settings(max_examples=300)
@given(st.binary(max_size=4096))
def test_fastagi_header_blocks_and_replies_of_any_bytes(data: bytes) -> None:
    for parse in (AgiRequest.parse, parse_reply):
        with contextlib.suppress(AgiError):
            parse(data)


@settings(max_examples=300)
@given(st.binary(max_size=4096))
def test_http_report_heads_and_bodies_of_any_bytes(data: bytes) -> None:
    for parse in (ReportRequest.parse, body_text):
        with contextlib.suppress(ReportError):
            parse(data)


@settings(max_examples=300)
@given(st.text(max_size=600))
def test_http_report_heads_of_any_text_after_a_request_line(text: str) -> None:
    head = "POST /notice-decision?channel=1.1 HTTP/1.1\r\n" + text
    with contextlib.suppress(ReportError, UnicodeEncodeError):
        request = ReportRequest.parse(head.encode())
        assert 0 <= request.content_length <= MAX_BODY_BYTES


@settings(max_examples=500)
@given(st.text(max_size=300))
def test_caller_ids_and_numbers_of_any_text(raw: str) -> None:
    caller = describe_caller(raw, "SI")  # never raises: stored safely whatever arrives
    assert len(caller.raw) <= 80 and all(ch.isprintable() for ch in caller.raw)
    assert caller.e164 is None or caller.e164.startswith("+")
    with contextlib.suppress(InvalidNumber):
        to_e164(raw)
