"""Composition root: builds the service's parts from the settings and runs them in one
TaskGroup. Nothing is created at import time."""

from __future__ import annotations

import asyncio
import logging
from contextlib import aclosing

from ivr.asterisk.ari import AriClient, Connected
from ivr.asterisk.ari_events import Event
from ivr.calls.entry import entry_handler
from ivr.calls.router import CallRouter
from ivr.settings import Settings

log = logging.getLogger(__name__)


async def serve(settings: Settings, stop: asyncio.Event | None = None) -> None:
    """Run until ``stop`` is set (or forever)."""
    ari = AriClient(settings.ari)
    stop = stop or asyncio.Event()
    try:
        async with asyncio.TaskGroup() as tasks:
            router = CallRouter(tasks, entry_handler(ari, settings))
            tasks.create_task(_events(ari, router, stop), name="ari-events")
            await stop.wait()
            raise _Stopped
    except* _Stopped:
        log.info("service stopped")
    finally:
        await ari.aclose()


class _Stopped(Exception):
    """Raised inside the TaskGroup to cancel every task on the way out."""


async def _events(ari: AriClient, router: CallRouter, stop: asyncio.Event) -> None:
    async with aclosing(ari.events()) as events:
        async for event in events:
            if isinstance(event, Connected):
                log.info("ARI connected", extra={"reconnects": event.reconnects})
                continue
            assert isinstance(event, Event)
            router.dispatch(event)
            if stop.is_set():
                return
