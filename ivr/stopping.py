"""A stop that takes too long says why. Once the service is told to stop, its tasks are
cancelled and its connections closed; if that has not finished after ``seconds``, the
tasks still pending are logged with where each one waits; if the process has still not
ended a little later, the stacks of every thread are written to stderr (a loop held by
blocking code, or a thread the exit waits for, shows there, not in the tasks)."""

from __future__ import annotations

import asyncio
import faulthandler
import logging
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager, suppress

log = logging.getLogger(__name__)

SLOW_STOP_SECONDS = 10.0


def where_waiting(task: asyncio.Task[object]) -> str:
    """``name: file:line in function`` of the innermost frame ``task`` is suspended in."""
    frames = task.get_stack()
    if not frames:
        return f"{task.get_name()}: not started or done"
    frame = frames[-1]
    code = frame.f_code
    return f"{task.get_name()}: {code.co_filename}:{frame.f_lineno} in {code.co_name}"


async def _report_when_slow(stop: asyncio.Event, seconds: float) -> None:
    await stop.wait()
    await asyncio.sleep(seconds)
    me = asyncio.current_task()
    pending = sorted(where_waiting(t) for t in asyncio.all_tasks() if t is not me)
    log.error("service still stopping after %g s", seconds, extra={"pending": pending})


@asynccontextmanager
async def slow_stop_reported(stop: asyncio.Event,
                             seconds: float = SLOW_STOP_SECONDS) -> AsyncIterator[None]:
    """Within this block, a stop still under way ``seconds`` after ``stop`` is set is
    reported (above)."""
    watch = asyncio.create_task(_report_when_slow(stop, seconds), name="slow-stop-report")
    try:
        yield
    finally:
        watch.cancel()
        with suppress(asyncio.CancelledError):
            await watch


def dump_threads_unless_ended(seconds: float = SLOW_STOP_SECONDS + 2) -> None:
    """Write every thread's stack to stderr in ``seconds`` unless the process has ended or
    :func:`ended` was called (from a signal handler: it only arms a timer thread)."""
    faulthandler.dump_traceback_later(seconds, exit=False, file=sys.stderr)


def ended() -> None:
    faulthandler.cancel_dump_traceback_later()
