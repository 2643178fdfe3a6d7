"""A channel followed without its StasisStart (a caller handed on after a restart) gets its
events in order, once, and is forgotten when its task ends."""

from __future__ import annotations

import asyncio

from ivr.asterisk.ami import AgentConnected
from ivr.calls.router import CallItem, CallItems, CallRouter, ChannelVanished


async def test_a_followed_channel_gets_its_events_until_its_task_ends() -> None:
    seen: list[CallItem] = []

    async def never_started(*_: object) -> None:
        raise AssertionError("no StasisStart was dispatched")

    async def follow(items: CallItems) -> None:
        while not isinstance(item := await items.get(), ChannelVanished):
            seen.append(item)

    async with asyncio.timeout(5), asyncio.TaskGroup() as tasks:
        router = CallRouter(tasks, never_started)
        router.follow("1.1", follow)
        router.follow("1.1", follow)  # already followed: no second task
        assert router.channel_ids() == ["1.1"]
        router.dispatch(AgentConnected("1.1", "agent-1"))
        router.dispatch(AgentConnected("2.2", "agent-2"))  # no task: dropped
        router.dispatch(ChannelVanished("1.1"))
        while router.has("1.1"):
            await asyncio.sleep(0.001)
    assert seen == [AgentConnected("1.1", "agent-1")]
    assert len([t for t in asyncio.all_tasks() if t.get_name().startswith("followed-")]) == 0
