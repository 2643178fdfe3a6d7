"""Fault points: named moments in the call flow where the fault-injection tests stop the
service dead (``kill -9``) at a precise point. Only in test mode (the settings refuse a
fault point otherwise), only the one point named by ``fault_point``: the call's task logs
"fault point reached" and waits there until the test kills the process."""

from __future__ import annotations

import asyncio
import logging

from ivr.settings import FaultPoint, Settings

log = logging.getLogger(__name__)


async def reached(settings: Settings, point: FaultPoint, extra: dict[str, str]) -> None:
    if settings.fault_point != point or settings.mode != "test":
        return
    log.warning("fault point reached", extra={**extra, "point": point})
    await asyncio.Event().wait()
