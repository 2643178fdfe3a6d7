"""The event loop's lag (``ivr_event_loop_lag_seconds``): an idle loop's samples fall in
the lowest buckets; a callback that holds the loop is observed as the wait it caused, and
logged once it is a tenth of a second."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time

import pytest

from ivr.metrics.event_loop import watch_lag
from ivr.metrics.in_process import Metrics


def count(metrics: Metrics, at_most: str = "+Inf") -> float:
    value = metrics.registry.get_sample_value("ivr_event_loop_lag_seconds_bucket",
                                              {"le": at_most})
    return value or 0.0


async def test_a_held_loop_is_observed_and_logged(caplog: pytest.LogCaptureFixture) -> None:
    metrics = Metrics()
    watcher = asyncio.create_task(watch_lag(metrics, interval=0.01))
    try:
        await asyncio.sleep(0.1)  # idle: a few samples
        assert count(metrics) >= 3
        idle_late = count(metrics) - count(metrics, "0.1")  # 0 unless the machine stalled
        with caplog.at_level(logging.WARNING, logger="ivr.metrics.event_loop"):
            time.sleep(0.15)  # a callback that holds the loop
            await asyncio.sleep(0.05)
    finally:
        watcher.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await watcher
    late = count(metrics) - count(metrics, "0.1") - idle_late
    assert late >= 1  # the sample that waited for the held loop
    held = [r.lag_ms for r in caplog.records  # type: ignore[attr-defined]
            if "event loop was held" in r.getMessage()]
    assert held and max(held) >= 140


def test_the_histogram_is_exposed_from_the_start() -> None:
    metrics = Metrics()
    assert count(metrics) == 0.0
    assert metrics.registry.get_sample_value("ivr_event_loop_lag_seconds_count") == 0.0
