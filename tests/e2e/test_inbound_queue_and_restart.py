"""After the decision: the queue (an agent answers, and the receipt says so), and a
service restart in the middle of a call (the call is resolved on the safe side)."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest

from testpbx.asterisk import AGENT_PORTS, Asterisk
from testpbx.sipp import Pause, Press, Sipp

pytestmark = pytest.mark.pbx


async def wait_until_idle(pbx: Asterisk, wait: float = 30.0) -> None:
    """No channel left from earlier tests (a queue still ringing would reach our agent)."""
    for _ in range(int(wait * 5)):
        if "0 active channels" in pbx.cli("core show channels count").stdout:
            return
        await asyncio.sleep(0.2)
    raise AssertionError("the PBX still has channels from earlier tests")


async def test_an_agent_answers_and_the_receipt_says_so(service: Any, sipp: Sipp,
                                                      pbx: Asterisk) -> None:
    """Item 7 of the receipt: whether an agent answered; the recording goes on into the
    conversation with the agent."""
    await wait_until_idle(pbx)
    async with sipp.agent(AGENT_PORTS["agent1"]):
        caller = await sipp.call("040404040", caller="031000701",
                                 actions=(Pause(3800), Press("1")), hold_ms=8000)
    assert caller.ok, caller.errors()
    record = await service.call_record("031000701")
    assert record["decision"] == "consent"
    assert record["agent_answered"] is True
    assert record["agent"] == "PJSIP/agent1"
    assert service.recording(record["file_name"]).stat().st_size > 8000


async def test_a_call_left_by_a_killed_service_is_resolved_unrecorded(
        service_runner: Any, sipp: Sipp, tmp_path: Path) -> None:
    """The service dies (SIGKILL) while a service-line caller hears the notice. The next
    instance finds the channel still in the application and hands it to its queue
    without recording: no consent is stored, so nothing may be recorded."""
    async with service_runner.database() as url:
        async with service_runner.run(url, tmp_path / "first.log") as first:
            call = asyncio.create_task(sipp.call("040404040", caller="031000702",
                                                 actions=(Pause(4000), Press("1")),
                                                 hold_ms=6000))
            await first.wait_for_log("call entered the application")
            first.process.kill()
            first.process.wait()
        async with service_runner.run(url, tmp_path / "second.log") as second:
            await second.wait_for_log(
                "channel left in the application resolved: continued unrecorded")
            assert (await call).ok
            records = await second.all_call_records()
            (record,) = [r for r in records if r["caller_raw"] == "031000702"]
            assert record["decision"] is None and record["file_name"] is None
            assert not list(second.recordings.glob(f"{record['id']}*"))
            assert record["end_reason"] == "service restarted: continued unrecorded"
