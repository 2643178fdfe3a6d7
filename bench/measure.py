"""What one benchmark step measures outside SIPp: CPU seconds of a process (from /proc),
its resident memory and the machine's busy cores, sampled, SIPp's own CPU, how fast the
machine's cores were just before the step,
PostgreSQL's transaction counter for a database, the service's event-loop lag (its
/metrics), and how many channels the PBX holds."""

from __future__ import annotations

import asyncio
import contextlib
import math
import os
import re
import resource
import statistics
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, field

from prometheus_client.parser import text_string_to_metric_families
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

TICKS = os.sysconf("SC_CLK_TCK")
LAG_BUCKET = "ivr_event_loop_lag_seconds_bucket"
# A fixed piece of work for each core: how long it takes says how fast the core is now.
REFERENCE_LOOP = ("import time\nstarted = time.perf_counter()\ntotal = 0\n"
                  "for i in range({n}):\n    total += i\nprint(time.perf_counter() - started)")
REFERENCE_ITERATIONS = 5_000_000
Buckets = dict[float, float]  # a histogram's cumulative counts by bucket bound
ACTIVE_CHANNELS = re.compile(r"^(\d+) active channels?$", re.M)


def loop_lag(body: str) -> Buckets:
    """The event-loop lag histogram of a /metrics body (empty when it has none)."""
    return {float(sample.labels["le"]): sample.value
            for family in text_string_to_metric_families(body)
            for sample in family.samples if sample.name == LAG_BUCKET}


def lag_ms(before: Buckets, after: Buckets, share: float) -> float | None:
    """The bound, in ms, of the bucket that holds the step's ``share`` quantile of the
    samples (``inf``: past the last bound); ``None`` with no sample or no histogram."""
    counts = {bound: after[bound] - before.get(bound, 0.0) for bound in after}
    total = counts.get(math.inf, 0.0)
    if not total:
        return None
    bound = min(b for b, n in counts.items() if n >= share * total)
    return round(bound * 1000, 1)


def active_channels(cli_output: str) -> int | None:
    """The channels Asterisk holds, from ``core show channels count``; None when the
    output does not say."""
    found = ACTIVE_CHANNELS.search(cli_output)
    return int(found.group(1)) if found else None


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


def proc_stat() -> str:
    with open("/proc/stat") as file:
        return file.read()


def machine_busy_seconds(stat: str | None = None) -> float:
    """CPU seconds all cores of this machine have spent busy so far (anything but idle and
    waiting for I/O), from the first line of /proc/stat (``stat``: its text, read now
    when not given)."""
    fields = [int(v) for v in (stat or proc_stat()).split("\n", 1)[0].split()[1:9]]
    idle = fields[3] + fields[4]
    return (sum(fields) - idle) / TICKS


def threads_ready(stat: str | None = None) -> int | None:
    """Threads of this machine running or ready to run now (``procs_running`` in
    /proc/stat, this reader among them): more than its cores means that some wait for
    one. ``stat``: the file's text (read now when not given)."""
    for line in (proc_stat() if stat is None else stat).splitlines():
        name, _, value = line.partition(" ")
        if name == "procs_running" and value.strip().isdigit():
            return int(value)
    return None


async def reference_loop_s(iterations: int = REFERENCE_ITERATIONS,
                           cores: int | None = None) -> float | None:
    """Seconds a fixed Python loop takes, run at once in one process per core, the slowest.
    Taken before each step, on an idle machine: a host that lends this machine's cores to
    others, or slows them, makes it longer, and every figure of the step with it. So two
    runs' figures compare only where this one is alike. ``None`` if a loop failed."""
    async def one() -> float | None:
        process = await asyncio.create_subprocess_exec(
            sys.executable, "-c", REFERENCE_LOOP.format(n=int(iterations)),
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.DEVNULL)
        out, _ = await process.communicate()
        try:
            return float(out) if process.returncode == 0 else None
        except ValueError:
            return None

    times = await asyncio.gather(*(one() for _ in range(cores or os.cpu_count() or 1)))
    if any(t is None for t in times):
        return None
    return round(max(t for t in times if t is not None), 3)


def finished_children_cpu() -> float:
    """User + system CPU seconds of this process's children that have ended and been
    waited for (a step's SIPp processes)."""
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def rss_mb(pid: int) -> float:
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return 0.0


@dataclass
class Sampler:
    """Every half second while a step runs: the largest resident size of ``pid``, how
    many of the machine's cores were busy, over windows of two seconds (a step whose
    cores were all busy makes every thread wait for one, the PBX's among them), and how
    many threads were ready to run (how long that queue was)."""

    pid: int
    peak_mb: float = 0.0
    samples: list[float] = field(default_factory=list)
    busy: list[tuple[float, float]] = field(default_factory=list)  # (monotonic, busy s)
    ready: list[int] = field(default_factory=list)

    async def run(self, stop: asyncio.Event) -> None:
        while not stop.is_set():
            before = time.monotonic()
            stat = proc_stat()
            # stamped halfway: this process may wait for a core between the two readings
            self.busy.append(((before + time.monotonic()) / 2, machine_busy_seconds(stat)))
            if (ready := threads_ready(stat)) is not None:
                self.ready.append(ready)
            try:
                value = rss_mb(self.pid)
            except FileNotFoundError:
                return
            self.samples.append(value)
            self.peak_mb = max(self.peak_mb, value)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), 0.5)

    @property
    def cores_busy(self) -> tuple[float | None, float | None]:
        """Busy cores over windows of two seconds (four samples apart; a reading's own
        delay weighs less on a longer window): the median window's and the busiest's."""
        return cores_busy(self.busy, span=4)

    @property
    def threads_ready(self) -> tuple[float | None, int | None]:
        """Threads ready to run at the samples: the median and the most."""
        if not self.ready:
            return None, None
        return statistics.median(self.ready), max(self.ready)


def cores_busy(samples: Sequence[tuple[float, float]],
               span: int = 2) -> tuple[float | None, float | None]:
    """Cores busy over each ``span`` consecutive sampling intervals: the median and the
    most."""
    rates = [(b1 - b0) / (t1 - t0)
             for (t0, b0), (t1, b1) in zip(samples, samples[span:], strict=False) if t1 > t0]
    if not rates:
        return None, None
    return round(statistics.median(rates), 2), round(max(rates), 2)


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
