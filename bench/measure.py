"""What one benchmark step measures outside SIPp: CPU seconds of a process (from /proc),
its resident memory, sampled, and PostgreSQL's transaction counter for a database."""

from __future__ import annotations

import asyncio
import contextlib
import os
import statistics
from collections.abc import Sequence
from dataclasses import dataclass, field

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

TICKS = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pid: int) -> float:
    """User + system CPU seconds of ``pid`` so far (its threads included)."""
    with open(f"/proc/{pid}/stat") as stat:
        fields = stat.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICKS


def postgres_cpu() -> dict[int, float]:
    """User + system CPU seconds so far of every PostgreSQL process on this machine (the
    server, its backends and workers), by pid."""
    found: dict[int, float] = {}
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        with contextlib.suppress(OSError, IndexError, ValueError):
            with open(f"/proc/{entry.name}/comm") as comm:
                if comm.read().strip() != "postgres":
                    continue
            found[int(entry.name)] = cpu_seconds(int(entry.name))
    return found


def postgres_cpu_between(before: dict[int, float], after: dict[int, float]) -> float:
    """PostgreSQL's CPU seconds between two readings: each process's own growth (one that
    started in between counts whole; one that ended in between is not seen, so a short-lived
    backend's work may be missed, never counted twice or negative)."""
    return sum(max(0.0, spent - before.get(pid, 0.0)) for pid, spent in after.items())


def rss_mb(pid: int) -> float:
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return 0.0


@dataclass
class MemorySampler:
    """The largest resident size of ``pid`` while it runs (every half second)."""

    pid: int
    peak_mb: float = 0.0
    samples: list[float] = field(default_factory=list)

    async def run(self, stop: asyncio.Event) -> None:
        while not stop.is_set():
            try:
                value = rss_mb(self.pid)
            except FileNotFoundError:
                return
            self.samples.append(value)
            self.peak_mb = max(self.peak_mb, value)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), 0.5)


async def transactions(engine: AsyncEngine, database: str) -> int:
    """Committed plus rolled-back transactions of ``database`` so far."""
    async with engine.connect() as connection:
        row = (await connection.execute(text(
            "SELECT xact_commit + xact_rollback FROM pg_stat_database WHERE datname = :d"),
            {"d": database})).scalar_one()
    return int(row)


def percentile(values: Sequence[float], q: float) -> float | None:
    """The ``q`` quantile (0-1) of ``values``, or ``None`` when there are none."""
    if not values:
        return None
    if len(values) == 1:
        return values[0]
    cuts = statistics.quantiles(sorted(values), n=1000, method="inclusive")
    return cuts[min(len(cuts) - 1, max(0, round(q * 1000) - 1))]
