"""Routes ARI events (and AMI queue events) to one task per call.

Each call gets a queue and a task (owned by the service's TaskGroup); its events arrive in
order, and a slow or failing call never stalls another. A handler that raises is logged with
its call id and the call's task ends; the others go on.
"""

from __future__ import annotations

import asyncio
import logging
from collections import OrderedDict
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from ivr.asterisk.ami import AgentConnected
from ivr.asterisk.ari_events import ChannelDestroyed, Event, StasisStart, channel_of

log = logging.getLogger(__name__)

@dataclass(frozen=True, slots=True)
class ChannelVanished:
    """The channel was not among Asterisk's channels after a reconnect: its hang-up was
    lost with the connection."""

    channel_id: str


CallItem = Event | AgentConnected | ChannelVanished
CallItems = asyncio.Queue[CallItem]
Handler = Callable[[StasisStart, CallItems], Awaitable[None]]
# Ended calls' channels remembered (a few minutes of calls at the bench's highest rates).
ENDED_KEPT = 20_000


class CallRouter:
    def __init__(self, tasks: asyncio.TaskGroup, handler: Handler) -> None:
        self._tasks = tasks
        self._handler = handler
        self._calls: dict[str, CallItems] = {}
        # Channels whose calls ended here, the latest ENDED_KEPT: a StasisStart for one
        # (Asterisk sending the event again) starts nothing. The call flow answers before
        # its call's opening is stored, so PostgreSQL's refusal of a replayed channel comes
        # only after the channel was touched.
        self._ended: OrderedDict[str, None] = OrderedDict()

    @property
    def active(self) -> int:
        return len(self._calls)

    def has(self, channel_id: str) -> bool:
        return channel_id in self._calls

    def channel_ids(self) -> list[str]:
        return list(self._calls)

    def dispatch(self, item: CallItem) -> None:
        channel_id = (item.channel_id if isinstance(item, (AgentConnected, ChannelVanished))
                      else channel_of(item))
        if channel_id is None:
            return
        queue = self._calls.get(channel_id)
        if queue is not None:
            queue.put_nowait(item)
        elif isinstance(item, StasisStart):
            if channel_id in self._ended:
                log.warning("StasisStart again for a call that ended here; ignored",
                            extra={"call": channel_id})
                return
            queue = asyncio.Queue()
            self._calls[channel_id] = queue
            self._tasks.create_task(self._run(channel_id, self._handler(item, queue)),
                                    name=f"call-{channel_id}")
        elif not isinstance(item, ChannelDestroyed):
            log.debug("event for a channel not in the application", extra={"call": channel_id})

    def follow(self, channel_id: str, work: Callable[[CallItems], Awaitable[None]]) -> None:
        """A task for a channel that entered the application before this instance followed
        it (``ivr/calls/recovery.py``): its events go to ``work`` from now on."""
        if channel_id in self._calls:
            return
        queue: CallItems = asyncio.Queue()
        self._calls[channel_id] = queue
        self._tasks.create_task(self._run(channel_id, work(queue)),
                                name=f"followed-{channel_id}")

    async def _run(self, channel_id: str, work: Awaitable[None]) -> None:
        try:
            await work
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("call handler failed", extra={"call": channel_id})
        finally:
            self._calls.pop(channel_id, None)
            self._ended[channel_id] = None
            if len(self._ended) > ENDED_KEPT:
                self._ended.popitem(last=False)
