"""After the decision: the queue (an agent answers, and the receipt says so)."""

from __future__ import annotations

import asyncio
import wave
from array import array
from typing import Any

import pytest

from testpbx.asterisk import AGENT_PORTS, Asterisk
from testpbx.sipp import Pause, Press, Sipp

pytestmark = pytest.mark.pbx

# A sample louder than this (of 32767) is sound, not the silence of a quiet line.
SPEECH_LEVEL = 1000


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
    # The agent speaks once it answers (sipp/agent.xml): the recording holds that speech,
    # not only the seconds before it.
    with wave.open(str(service.recording(record["file_name"]))) as audio:
        assert (audio.getsampwidth(), audio.getframerate()) == (2, 8000)
        samples = array("h", audio.readframes(audio.getnframes()))
    assert len(samples) > 8000 * 3, "less than three seconds recorded"
    speech = sum(1 for sample in samples if abs(sample) > SPEECH_LEVEL)
    assert speech > 8000 // 2, f"the agent's speech is not in the recording ({speech} samples)"
