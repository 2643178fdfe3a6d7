"""How long this process's event loop keeps ready work waiting: its lag. Every decision the
dialplan asks for over FastAGI, every ARI event and every reply from PostgreSQL waits for
the loop; one long callback holds them all. A timer that should wake every ``interval``
measures it: how late it woke is how long anything that became ready with it waited.

Observed into ``ivr_event_loop_lag_seconds``; a wait of ``HELD`` or more is also logged,
since a decision the caller waits for waited that long too."""

from __future__ import annotations

import asyncio
import logging

from ivr.metrics.in_process import Metrics

log = logging.getLogger(__name__)

INTERVAL = 0.05  # seconds between samples: 20 wakes a second, a few microseconds each
HELD = 0.1  # seconds: a wait worth a log line


async def watch_lag(metrics: Metrics, interval: float = INTERVAL, held: float = HELD) -> None:
    """Sample the loop's lag until cancelled."""
    loop = asyncio.get_running_loop()
    while True:
        asked = loop.time()
        await asyncio.sleep(interval)
        # The loop may wake a timer up to its clock's resolution early: never below zero.
        lag = max(0.0, loop.time() - asked - interval)
        metrics.observe_loop_lag(lag)
        if lag >= held:
            log.warning("the event loop was held %.0f ms: decisions and events waited as long",
                        lag * 1000, extra={"lag_ms": round(lag * 1000, 1)})
