"""Who starts the recording in the dialplan flow, once the service has stored a decision
that allows one (``[dialplan] recording_start``): the service over AMI (which names the
channel by its name: ``test_ami_frames.py``), telling the dialplan when; the dialplan
itself when AMI is away or refuses, or when as many starts as AMI takes at once are under
way; nobody when AMI took the action but did not answer (whether it started is not known:
never two MixMonitors into one file; the end note's MixMonitor id says whether it did). A
decision that allows no recording starts nothing, whoever would start it (rule 1)."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path, PurePosixPath
from typing import Any

import pytest

from ivr.asterisk.ami import AmiError, AmiNoReply
from ivr.calls.dialplan_notice import AMI_STARTS_AT_ONCE, RecordingStart
from ivr.calls.inbound import CallDeps
from ivr.flow.commands import Decision
from ivr.settings import AmiSettings, DialplanSettings, RecordingSettings, Settings

FILE = "0b6f3f5e-8c2d-4f7a-b1e9-3d5a7c9e2f41.wav"
CHANNEL = "1795404928.1042"
NAME = "PJSIP/carrier-0000041a"


class Ami:
    """AMI as the service sees it: MixMonitor asked, and what AMI does with it."""

    def __init__(self, fails: AmiError | None = None) -> None:
        self.fails = fails
        self.asked: list[tuple[str, PurePosixPath]] = []  # by the channel's name
        self.held: asyncio.Event | None = None  # set: the replies wait for it

    async def mix_monitor(self, channel_id: str, path: PurePosixPath, name: str = "") -> str:
        self.asked.append((name, path))
        if self.held is not None:
            await self.held.wait()
        if self.fails is not None:
            raise self.fails
        return "0x7f3a5c001e40"


def starts(ami: Ami, start: str = "ami") -> RecordingStart:
    return RecordingStart(deps(ami, start))


async def answer(ami: Ami, decision: Decision, file_name: str | None, start: str = "ami"
                 ) -> str:
    return await starts(ami, start).answer(CHANNEL, NAME, decision, file_name)


def deps(ami: Ami, start: str = "ami", connections: int = 1) -> CallDeps:
    settings = Settings(mode="test", ami=AmiSettings(recording_connections=connections),
                        dialplan=DialplanSettings(
                            inbound_flow="dialplan", recording_start=start),
                        recordings=RecordingSettings(asterisk_dir=Path("/var/spool/ivr/rec")))
    none: Any = None
    return CallDeps(settings, none, ami, none, none, none)  # type: ignore[arg-type]


async def test_the_service_starts_it_over_ami_and_tells_the_dialplan_when() -> None:
    ami = Ami()
    before = time.time()
    said = await answer(ami, Decision.CONSENT, FILE)
    decision, file_name, started = said.split(":")
    assert (decision, file_name) == ("consent", FILE)
    assert before - 0.001 <= float(started) <= time.time()
    assert ami.asked == [(NAME, PurePosixPath("/var/spool/ivr/rec") / FILE)]


@pytest.mark.parametrize("connections", [0, 1, 3])
async def test_past_the_starts_ami_takes_at_once_the_dialplan_starts_the_rest(
        connections: int) -> None:
    """AMI answers one action at a time on each connection: the starts beyond those under
    way on each (the first connection alone, for none of their own) are left to the
    dialplan at once rather than queued behind them; once one is answered, AMI is asked
    again."""
    ami = Ami()
    ami.held = asyncio.Event()
    start = RecordingStart(deps(ami, connections=connections))
    at_once = AMI_STARTS_AT_ONCE * max(1, connections)
    waiting = [asyncio.create_task(start.answer(CHANNEL, NAME, Decision.CONSENT, FILE))
               for _ in range(at_once)]
    await asyncio.sleep(0)
    assert len(ami.asked) == at_once
    assert await start.answer(CHANNEL, NAME, Decision.CONSENT, FILE) == f"consent:{FILE}"
    ami.held.set()
    assert all(said.startswith(f"consent:{FILE}:") for said in await asyncio.gather(*waiting))
    assert start.under_way == 0
    assert (await start.answer(CHANNEL, NAME, Decision.CONSENT, FILE)).startswith(
        f"consent:{FILE}:")
    assert len(ami.asked) == at_once + 1


async def test_the_legal_basis_too() -> None:
    ami = Ami()
    said = await answer(ami, Decision.LEGAL_BASIS, FILE)
    assert said.startswith(f"legal_basis:{FILE}:") and len(ami.asked) == 1


@pytest.mark.parametrize("refusal", [AmiError("AMI is not connected"),
                                     AmiError("AMI MixMonitor: No such channel")])
async def test_ami_away_or_refusing_leaves_it_to_the_dialplan(refusal: AmiError) -> None:
    start = starts(Ami(refusal))
    assert await start.answer(CHANNEL, NAME, Decision.CONSENT, FILE) == f"consent:{FILE}"
    assert start.under_way == 0


async def test_ami_silent_starts_nothing_more() -> None:
    ami = Ami(AmiNoReply("AMI MixMonitor: no reply in 5.0 s"))
    assert await answer(ami, Decision.CONSENT, FILE) == "consent:no"
    assert len(ami.asked) == 1


async def test_set_to_the_dialplan_the_service_starts_nothing() -> None:
    ami = Ami()
    assert await answer(ami, Decision.CONSENT, FILE, "dialplan") == f"consent:{FILE}"
    assert ami.asked == []


@pytest.mark.parametrize("decision", [Decision.REFUSAL, Decision.NO_CONSENT])
@pytest.mark.parametrize("start", ["ami", "dialplan"])
async def test_no_file_no_recording_whoever_would_start_it(decision: Decision,
                                                            start: str) -> None:
    ami = Ami()
    assert await answer(ami, decision, None, start) == f"{decision.value}:no"
    assert ami.asked == []


def test_the_setting_takes_only_who_can_start_it() -> None:
    with pytest.raises(ValueError, match="recording_start"):
        DialplanSettings(recording_start="sipp")
