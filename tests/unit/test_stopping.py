"""A stop that takes too long is reported with the tasks still pending."""

from __future__ import annotations

import asyncio
import logging

import pytest

from ivr.stopping import slow_stop_reported, where_waiting


async def _stuck(release: asyncio.Event) -> None:
    await release.wait()


async def test_a_slow_stop_names_the_tasks_still_pending(
        caplog: pytest.LogCaptureFixture) -> None:
    stop, release = asyncio.Event(), asyncio.Event()
    stuck = asyncio.create_task(_stuck(release), name="stuck-part")
    with caplog.at_level(logging.ERROR, logger="ivr.stopping"):
        async with slow_stop_reported(stop, seconds=0.05):
            stop.set()
            await asyncio.sleep(0.2)
            release.set()
            await stuck
    [record] = [r for r in caplog.records if r.message.startswith("service still stopping")]
    pending = record.pending  # type: ignore[attr-defined]
    assert any(p.startswith("stuck-part: ") and p.endswith(" in _stuck") for p in pending)


async def test_a_prompt_stop_reports_nothing(caplog: pytest.LogCaptureFixture) -> None:
    stop = asyncio.Event()
    with caplog.at_level(logging.ERROR, logger="ivr.stopping"):
        async with slow_stop_reported(stop, seconds=0.05):
            stop.set()
        await asyncio.sleep(0.1)
    assert not caplog.records


async def test_where_a_task_waits() -> None:
    release = asyncio.Event()
    task = asyncio.create_task(_stuck(release), name="part")
    await asyncio.sleep(0)
    assert where_waiting(task).startswith("part: ")
    assert where_waiting(task).endswith(" in _stuck")
    release.set()
    await task
    assert where_waiting(task) == "part: not started or done"
