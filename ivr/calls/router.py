"""Routes ARI events to one task per call.

Each call gets a queue and a task (owned by the service's TaskGroup); its events arrive in
order, and a slow or failing call never stalls another. A handler that raises is logged with
its call id and the call's task ends; the others go on.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable

from ivr.asterisk.ari_events import ChannelDestroyed, Event, StasisStart, channel_of

log = logging.getLogger(__name__)

CallEvents = asyncio.Queue[Event]
Handler = Callable[[StasisStart, CallEvents], Awaitable[None]]


class CallRouter:
    def __init__(self, tasks: asyncio.TaskGroup, handler: Handler) -> None:
        self._tasks = tasks
        self._handler = handler
        self._calls: dict[str, CallEvents] = {}

    @property
    def active(self) -> int:
        return len(self._calls)

    def dispatch(self, event: Event) -> None:
        channel_id = channel_of(event)
        if channel_id is None:
            return
        queue = self._calls.get(channel_id)
        if queue is not None:
            queue.put_nowait(event)
        elif isinstance(event, StasisStart):
            queue = asyncio.Queue()
            self._calls[channel_id] = queue
            self._tasks.create_task(self._run(event, queue), name=f"call-{channel_id}")
        elif not isinstance(event, ChannelDestroyed):
            log.debug("event for a channel not in the application", extra={"call": channel_id})

    async def _run(self, start: StasisStart, queue: CallEvents) -> None:
        channel_id = start.channel.id
        try:
            await self._handler(start, queue)
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("call handler failed", extra={"call": channel_id})
        finally:
            self._calls.pop(channel_id, None)
