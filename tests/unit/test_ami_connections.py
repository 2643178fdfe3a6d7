"""Recordings started on AMI connections of their own (``[ami] recording_connections``).

Asterisk serves each AMI connection with one thread that takes one action at a time, so a
MixMonitor asked on the connection that also carries the events and the queue's questions
waits behind them. The recordings' own connections log in with events off, each start goes
to the one with the fewest actions awaiting a reply, and while none of them is logged in
the first connection takes the recordings too: AMI up at all is enough to record.
"""

from __future__ import annotations

import asyncio
from pathlib import PurePosixPath

from ivr.asterisk.ami import AgentConnected, AmiClient

from .test_ami_frames import FakeAmi, Session, answer_mix_monitor, run, until


async def logins(ami: FakeAmi, count: int) -> tuple[Session, list[Session]]:
    """The first connection (events on) and the recordings' own (events off)."""
    sessions = [await ami.session() for _ in range(count)]
    first = [s for s in sessions if s.login.get("events") == "on"]
    own = [s for s in sessions if s.login.get("events") == "off"]
    assert len(first) == 1 and len(own) == count - 1
    return first[0], own


def test_recordings_go_to_their_own_connections_never_the_first() -> None:
    async def scenario(ami: FakeAmi, client: AmiClient, agents: list[AgentConnected]) -> None:
        first, own = await logins(ami, 3)
        await until(lambda: all(c.up for c in client._recorders))
        # two starts at once: one on each of the recordings' connections
        asked = [asyncio.create_task(client.mix_monitor(f"1.{n}", PurePosixPath("/rec/x.wav"),
                                                        f"PJSIP/a-{n}")) for n in (1, 2)]
        actions = await asyncio.gather(*(session.action() for session in own))
        assert sorted(a["channel"] for a in actions) == ["PJSIP/a-1", "PJSIP/a-2"]
        for session, action in zip(own, actions, strict=True):
            session.reply(action, MixMonitorID=f"0x{action['channel'][-1]}")
        assert sorted(await asyncio.gather(*asked)) == ["0x1", "0x2"]
        # everything else is asked on the first connection
        checking = asyncio.create_task(client.module_loaded("func_curl"))
        action = await first.action()
        assert action["action"] == "ModuleCheck"
        first.reply(action)
        assert await checking

    run(scenario, recording_connections=2)


def test_a_start_goes_to_the_connection_with_fewer_awaiting_a_reply() -> None:
    async def scenario(ami: FakeAmi, client: AmiClient, agents: list[AgentConnected]) -> None:
        _, own = await logins(ami, 3)
        await until(lambda: all(c.up for c in client._recorders))
        held = asyncio.create_task(client.mix_monitor("1.1", PurePosixPath("/rec/a.wav")))
        busy, action = await first_action(own)
        idle = next(s for s in own if s is not busy)
        answered = asyncio.create_task(client.mix_monitor("1.2", PurePosixPath("/rec/b.wav")))
        await answer_mix_monitor(idle)
        assert await answered == "0x1"
        assert not held.done()  # the first start still awaits its reply, on the other one
        busy.reply(action, MixMonitorID="0x2")
        assert await held == "0x2"

    run(scenario, recording_connections=2)


async def first_action(sessions: list[Session]) -> tuple[Session, dict[str, str]]:
    """The session that got an action, and the action (the others got none)."""
    pending = {asyncio.create_task(s.action()): s for s in sessions}
    done, waiting = await asyncio.wait(pending, return_when=asyncio.FIRST_COMPLETED)
    for task in waiting:
        task.cancel()
    await asyncio.gather(*waiting, return_exceptions=True)  # their readers free again
    assert len(done) == 1
    task = done.pop()
    return pending[task], task.result()


def test_with_the_recordings_connections_down_the_first_takes_them() -> None:
    async def scenario(ami: FakeAmi, client: AmiClient, agents: list[AgentConnected]) -> None:
        first, own = await logins(ami, 2)
        await until(lambda: all(c.up for c in client._recorders))
        assert ami.server is not None
        ami.server.close()  # no login again: the recordings' connection stays down
        own[0].drop()
        await until(lambda: not any(c.up for c in client._recorders))
        assert client.logged_in.is_set()
        answering = asyncio.create_task(answer_mix_monitor(first))
        assert await client.mix_monitor("1.1", PurePosixPath("/rec/x.wav")) == "0x1"
        await answering

    run(scenario, recording_connections=1)
