"""The inbound flow on the real test PBX (POLICY.md rules 1-3), with short stand-in
notices: SIPp calls, presses digits by SIP INFO or RFC 4733, and every test asserts the
stored receipt and whether the recording file exists with audio in it."""

from __future__ import annotations

import asyncio
import wave
from typing import Any

import pytest

from testpbx.sipp import Pause, Press, Sipp

pytestmark = pytest.mark.pbx

ServiceUnderTest = Any  # the fixture's class lives in conftest


def assert_recorded(service: ServiceUnderTest, record: dict[str, Any]) -> None:
    assert record["file_name"] == f"{record['id']}.wav"  # from the call's id, never caller data
    path = service.recording(record["file_name"])
    assert path.is_file(), f"no recording at {path}"
    assert path.stat().st_mode & 0o007 == 0, "a recording must not be world-readable"
    with wave.open(str(path)) as audio:
        assert audio.getnframes() > 8000 * 0.5, "the recording holds less than half a second"
    assert record["mixmonitor_id"]


def assert_not_recorded(service: ServiceUnderTest, record: dict[str, Any]) -> None:
    assert record["file_name"] is None
    assert not any(service.recordings.glob(f"{record['id']}*"))


async def test_rule_1_sales_call_is_recorded_after_the_notice(
        service: ServiceUnderTest, sipp: Sipp) -> None:
    result = await sipp.call("040404045", caller="031000101", hold_ms=6000)
    assert result.ok, result.errors()
    record = await service.call_record("031000101")
    assert record["decision"] == "legal_basis"
    assert record["line_kind"] == "sales" and record["dialled"] == "+38640404045"
    assert record["caller"] == "+38631000101"
    assert record["notice_completed"] is True
    assert record["recording_started_at"] >= record["notice_ended_at"]
    assert [p["id"] for p in record["prompts_played"]] == ["sales-notice"]
    assert_recorded(service, record)
