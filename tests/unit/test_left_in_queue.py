"""Rule 4 across a restart: a caller an earlier instance handed to the queue, still waiting
there, is followed by the next instance, and returned if nobody answers. Stand-ins for ARI
and the store; the real thing is proved end to end (tests/e2e/test_service_restart.py)."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import Any

from ivr.asterisk.ami import AgentConnected
from ivr.asterisk.ari_events import Channel, ChannelHangupRequest, ChannelUserevent
from ivr.calls.inbound import QUEUE_EVENT, CallDeps
from ivr.calls.recovery import ENDED_UNFOLLOWED, LEFT_IN_QUEUE, adopt_waiting, sweep
from ivr.calls.router import CallItem, CallItems
from ivr.settings import Settings
from ivr.store.receipts import StaleCall

T0 = datetime(2026, 11, 25, 10, 0, tzinfo=UTC)
SETTINGS = Settings(mode="test")
QUEUE_CONTEXT = SETTINGS.dialplan.queue_context


def channel(channel_id: str, context: str = QUEUE_CONTEXT, exten: str = "service",
            app: str = "Queue") -> Channel:
    return Channel(id=channel_id, name=f"PJSIP/trunk-{channel_id}", state="Up",
                   caller_number="031123456", caller_name="", context=context, exten=exten,
                   linkedid=channel_id, app_name=app, app_data="service")


def stale(channel_id: str, direction: str = "inbound") -> StaleCall:
    return StaleCall(uuid.uuid4(), channel_id, direction, None, None)


class Stand:
    """ARI, AMI and the store at once: every call is noted; ARI's variables are given."""

    def __init__(self, variables: dict[str, str] | None = None,
                 left_open: list[StaleCall] | None = None) -> None:
        self.variables = variables or {}
        self.left_open = left_open or []
        self.calls: list[tuple[str, tuple[Any, ...]]] = []

    def __getattr__(self, name: str) -> Any:
        async def record(*args: Any) -> Any:
            self.calls.append((name, args))
            if name == "get_variable":
                return self.variables.get(args[1])
            if name == "queue_load":
                return (1, 1)
            if name == "stale_calls":
                return self.left_open
            if name == "channels":
                return []  # every channel gone
            return None
        return record

    def names(self) -> list[str]:
        return [name for name, _ in self.calls]


class Router:
    def __init__(self, owned: tuple[str, ...] = ()) -> None:
        self.owned = owned
        self.followed: dict[str, Callable[[CallItems], Awaitable[None]]] = {}

    def has(self, channel_id: str) -> bool:
        return channel_id in self.owned

    def channel_ids(self) -> list[str]:
        return list(self.owned)

    def follow(self, channel_id: str, work: Callable[[CallItems], Awaitable[None]]) -> None:
        self.followed[channel_id] = work


def deps(stand: Stand) -> CallDeps:
    return CallDeps(SETTINGS, stand, stand, stand, None, stand)  # type: ignore[arg-type]


def test_only_callers_left_waiting_in_a_queue_of_a_line_are_followed() -> None:
    channels = [
        channel("waiting"),
        channel("not-left-open"),  # no call of an earlier instance left open
        channel("callback"),  # a desk-phone callback's leg
        channel("in-application", app="Stasis"),  # handed on by the restart itself
        channel("elsewhere", context="from-agents"),
        channel("no-such-queue", exten="nobody"),
        channel("owned"),  # followed already (a reconnect of this instance)
    ]
    left_open = {c.id: stale(c.id) for c in channels if c.id != "not-left-open"}
    left_open["callback"] = stale("callback", direction="callback")
    router = Router(owned=("owned",))
    assert adopt_waiting(deps(Stand()), router, channels, left_open) == 1  # type: ignore[arg-type]
    assert list(router.followed) == ["waiting"]


async def follow(stand: Stand, *items: CallItem) -> tuple[StaleCall, Stand]:
    """Follow one caller found waiting, with ``items`` as what happens to them next."""
    router = Router()
    call = stale("waiting")
    adopt_waiting(deps(stand), router, [channel("waiting")], {"waiting": call})  # type: ignore[arg-type]
    queue: CallItems = asyncio.Queue()
    for item in items:
        queue.put_nowait(item)
    async with asyncio.timeout(5):
        await router.followed["waiting"](queue)
    return call, stand


def hung_up(at: datetime = T0) -> ChannelHangupRequest:
    return ChannelHangupRequest("ChannelHangupRequest", at, "ivr", channel("waiting"), 16)


async def test_a_caller_nobody_answers_is_returned_and_closed_when_they_leave() -> None:
    gave_up = ChannelUserevent("ChannelUserevent", T0, "ivr", channel("waiting"), QUEUE_EVENT,
                               {"status": "TIMEOUT"})
    call, stand = await follow(Stand(), gave_up, hung_up())
    assert stand.names() == ["get_variable", "subscribe_channel", "get_variable",
                             "queue_load", "record_missed", "close_orphan"]
    (missed,) = [args[0] for name, args in stand.calls if name == "record_missed"]
    assert (missed.call_id, missed.reason, missed.caller) == (call.id, "timeout", "+38631123456")
    assert ("close_orphan", ("waiting", LEFT_IN_QUEUE, T0)) in stand.calls


async def test_a_caller_an_agent_answers_after_the_restart_is_not_returned() -> None:
    _, stand = await follow(Stand(), AgentConnected("waiting", "PJSIP/agent1"), hung_up())
    assert "record_missed" not in stand.names() and "close_orphan" not in stand.names()


async def test_a_caller_an_agent_answered_before_the_restart_is_left_to_the_sweep() -> None:
    _, stand = await follow(Stand({"MEMBERNAME": "agent1"}), hung_up())
    assert stand.names() == ["get_variable", "subscribe_channel", "get_variable"]


async def test_a_call_the_dialplan_notes_the_end_of_is_left_to_its_note() -> None:
    _, stand = await follow(Stand({"IVR_DIALLED": "+38640404040"}), hung_up())
    assert stand.names() == ["get_variable"]


async def test_the_sweep_leaves_a_followed_caller_to_the_task_that_follows_them() -> None:
    """Their channel gone, a followed caller's call is closed by its task (which stores the
    missed call first and knows when they left), not as one nobody followed."""
    stand = Stand(left_open=[stale("followed"), stale("nobody-follows")])
    assert await sweep(deps(stand), Router(owned=("followed",)), T0) == 1  # type: ignore[arg-type]
    closed = [args for name, args in stand.calls if name == "close_orphan"]
    assert [(channel_id, reason) for channel_id, reason, _ in closed] == [
        ("nobody-follows", ENDED_UNFOLLOWED)]
