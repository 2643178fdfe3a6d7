"""After the decision: the queue (an agent answers, and the receipt says so)."""

from __future__ import annotations

import asyncio
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
