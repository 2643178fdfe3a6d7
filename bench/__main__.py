"""``python -m bench`` (``make bench``): the service against the PBX's own limit for the same
flow. On the test PBX, SIPp drives the service-line flow (answer, notice, 1 by SIP INFO and
by RFC 4733, recording, queue) at stepped rates against the service, with everything it
stores, in both its inbound flows (``service``: the service plays the notice over ARI;
``service-dialplan``: the dialplan plays it and the service stores the decision it
reports over HTTP), and against the dialplan-only baseline (asterisk-conf/baseline/), each for a
fixed time per step. Each variant runs on a freshly started PBX and service. A variant's
capacity is the highest rate with no failed call and every recording (and, for the
service, every receipt) present.

Writes bench/results.json, bench/results.md and bench/results.png.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Protocol

from sqlalchemy import pool, text
from sqlalchemy.ext.asyncio import create_async_engine

from bench.measure import active_channels, postgres_cpu, rss_mb
from bench.report import write_reports
from bench.steps import Context, Timing, run_step
from ivr.calls.dialplan_notice import NOTE_SUFFIX as NOTICE_NOTE
from ivr.calls.unattended import NOTE_SUFFIX as UNATTENDED_NOTE
from ivr.notices.audio import build, verify
from ivr.notices.catalogue import load_catalogue
from ivr.settings import get_settings
from ivr.store.migrate import upgrade
from testpbx.__main__ import prepare
from testpbx.asterisk import Asterisk
from testpbx.paths import REPO, default_paths
from testpbx.ports import free_port
from testpbx.sipp import Sipp

SHORT_CATALOGUE = REPO / "tests" / "e2e" / "short_notices.toml"
OUT = REPO / "bench"
# Sustained rates, finest where two cores here reach their limit (bench/results.md); a
# larger machine needs higher ones (--short-rates, --real-rates).
SHORT_RATES = (10, 20, 30, 40, 44, 48, 52, 56, 60, 64, 72, 80)
REAL_RATES = (4, 8, 12, 16, 20, 24, 28, 32)
# The notes the dialplan leaves for the service (ivr/calls/unattended, dialplan_notice).
NOTE_SUFFIXES = (UNATTENDED_NOTE, NOTICE_NOTE)
# Longest wait for the PBX to hold no channel before a step (calls last 10 s or 40 s).
REST_WAIT_S = 180.0
# The variants, and the inbound flow the service runs for each.
VARIANTS = {"baseline": "ari", "service": "ari", "service-dialplan": "dialplan"}


def arguments(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--prompts", default="short,real",
                        help="short, real or both (default short,real)")
    parser.add_argument("--variants", default=",".join(VARIANTS),
                        help=f"some of {', '.join(VARIANTS)} (default all)")
    parser.add_argument("--short-rates", default=",".join(map(str, SHORT_RATES)))
    parser.add_argument("--real-rates", default=",".join(map(str, REAL_RATES)))
    parser.add_argument("--seconds", type=int, default=60,
                        help="seconds each step places calls for, 5-300 (default 60). A step "
                             "holds its full load only once its first calls end (a short "
                             "notice's call lasts 10 s, a real one's 40 s): a step not much "
                             "longer than a call measures a burst, not a sustained rate")
    parser.add_argument("--real-seconds", type=int, default=120,
                        help="the same for the real notices, 5-300 (default 120)")
    parser.add_argument("--repeat", type=int, default=1,
                        help="steps at each rate, 1-10 (default 1): a rate is clean when all "
                             "are, and its latencies are their p99s' medians (one step's p99 "
                             "moves by more between runs than many changes do)")
    parser.add_argument("--label", default="", help="a name for this run in the results")
    parser.add_argument("--priority", type=int, default=0,
                        help="run the service ([scheduling] realtime_priority) and this "
                             "machine's PostgreSQL at SCHED_RR with this priority, 1-99 "
                             "(default 0: normal scheduling; PostgreSQL is set back after)")
    parser.add_argument("--asterisk-realtime", action="store_true",
                        help="start Asterisk with -p (SCHED_RR 10), as Debian's "
                             "asterisk.service does (default: normal scheduling)")
    parser.add_argument("--unpaired", dest="paired", action="store_false",
                        help="each variant on a PBX of its own, one after the other (default: "
                             "the baseline's steps alternate with the first service flow's)")
    args = parser.parse_args(argv)
    for name in ("prompts", "variants"):
        values = getattr(args, name).split(",")
        allowed = {"prompts": {"short", "real"}, "variants": set(VARIANTS)}[name]
        if not values or not set(values) <= allowed:
            parser.error(f"--{name}: a comma-separated list of {sorted(allowed)}")
        setattr(args, name, values)
    try:
        args.short_rates = [float(r) for r in args.short_rates.split(",")]
        args.real_rates = [float(r) for r in args.real_rates.split(",")]
    except ValueError:
        parser.error("--short-rates/--real-rates: numbers separated by commas")
    if not 0 <= args.priority <= 99:
        parser.error("--priority: between 0 and 99")
    if not 1 <= args.repeat <= 10:
        parser.error("--repeat: between 1 and 10")
    for name in ("seconds", "real_seconds"):
        if not 5 <= getattr(args, name) <= 300:
            parser.error(f"--{name.replace('_', '-')}: between 5 and 300")
    return args


PROMPT_VARIABLES = ("IVR_PROMPTS__LOCAL_DIR", "IVR_PROMPTS__SOUND_PREFIX")


def prompt_env(prompts: str, paths: Any) -> dict[str, str]:
    """The settings that select the prompts; the real ones are the settings' own. (Clear
    the short ones before a real run: os.environ keeps them from an earlier one.)"""
    for name in PROMPT_VARIABLES:
        os.environ.pop(name, None)
    if prompts == "real":
        return {}
    directory = paths.in_root("/usr/share/asterisk/sounds/ivr-short")
    build(load_catalogue(SHORT_CATALOGUE), directory)
    return {"IVR_PROMPTS__LOCAL_DIR": str(directory),
            "IVR_PROMPTS__SOUND_PREFIX": "ivr-short"}


async def run(args: argparse.Namespace) -> int:
    paths = default_paths()
    prepare(paths)
    work = paths.state / "bench"
    work.mkdir(parents=True, exist_ok=True)
    rows: list[dict[str, Any]] = []
    index = 0
    if args.priority:
        os.environ["IVR_SCHEDULING__REALTIME_PRIORITY"] = str(args.priority)
    for prompts in args.prompts:
        env = prompt_env(prompts, paths)
        kind_rates, seconds = ((args.short_rates, args.seconds) if prompts == "short"
                               else (args.real_rates, args.real_seconds))
        for group in groups(args.variants, args.paired):
            env["IVR_DIALPLAN__INBOUND_FLOW"] = VARIANTS[group[-1]]
            os.environ.update(env)
            rates = [rate for rate in kind_rates for _ in range(args.repeat)]
            notes = Path(get_settings().unattended.local_dir)
            with postgres_priority(args.priority), notes_of_its_own(notes, work / "notes"):
                for row in await run_group(paths, work, prompts, group, env, rates, seconds,
                                           index, args.asterisk_realtime):
                    rows.append(row)
            index += len(rates) * len(group)
    write_reports(OUT, rows, args.label, scheduling(args))
    print(f"bench: {OUT / 'results.json'}, results.md, results.png")
    return 0


def scheduling(args: argparse.Namespace) -> dict[str, str]:
    """How the run scheduled the processes that share the machine (for the results)."""
    service = f"SCHED_RR {args.priority}" if args.priority else "normal"
    return {"asterisk": "SCHED_RR 10 (-p)" if args.asterisk_realtime else "normal",
            "service": service, "postgresql": service, "sipp": "normal"}


@contextlib.contextmanager
def postgres_priority(priority: int) -> Iterator[None]:
    """PostgreSQL's processes (and the backends they start) at SCHED_RR ``priority``
    while the group runs, then back to normal scheduling (0: left as they are)."""
    if not priority:
        yield
        return
    for pid in postgres_cpu():
        with contextlib.suppress(OSError):
            os.sched_setscheduler(pid, os.SCHED_RR, os.sched_param(priority))
    try:
        yield
    finally:
        for pid in list(postgres_cpu()):
            with contextlib.suppress(OSError):
                os.sched_setscheduler(pid, os.SCHED_OTHER, os.sched_param(0))


@contextlib.contextmanager
def notes_of_its_own(directory: Path, aside: Path) -> Iterator[None]:
    """The group's service reads every note in the PBX's unattended directory. Notes
    already there belong to another database (a run interrupted, or the test PBX's own
    service): their calls are not in the group's fresh database, so its service would try
    each at every sweep and fail, loading the machine the bench measures (an interrupted
    run's 296 notes once did: 21220 failed attempts in 20 minutes). They wait in
    ``aside/foreign`` while the group runs and go back after; the notes the group's own
    calls leave unread (calls that ended after its service stopped) go to ``aside/left``."""
    held, left = aside / "foreign", aside / "left"
    held.mkdir(parents=True, exist_ok=True)
    for path in _notes(directory):
        shutil.move(path, held / path.name)
    try:
        yield
    finally:
        shutil.rmtree(left, ignore_errors=True)
        left.mkdir(parents=True)
        for path in _notes(directory):
            shutil.move(path, left / path.name)
        for path in _notes(held):
            shutil.move(path, directory / path.name)


def _notes(directory: Path) -> list[Path]:
    return sorted(p for p in directory.glob("*") if p.suffix in NOTE_SUFFIXES)


def groups(variants: list[str], paired: bool) -> list[list[str]]:
    """The variants that share a PBX and a service, their steps taken in turn at each rate.
    Paired, the baseline shares with the first service flow asked for: both meet the
    machine as it is at that moment (a shared machine's speed drifts, even between two
    runs of the same code), on a PBX set up for that flow (the baseline's own dialplan
    does not reach the service)."""
    services = [v for v in variants if v != "baseline"]
    if not paired or "baseline" not in variants or not services:
        return [[v] for v in variants]
    return [["baseline", services[0]], *([v] for v in services[1:])]


async def run_group(paths: Any, work: Path, prompts: str, group: list[str],
                    env: dict[str, str], rates: list[float], seconds: int,
                    first: int, realtime: bool = False) -> list[dict[str, Any]]:
    """The group's steps on a PBX and a service started for it (the baseline too runs
    beside an idle service, so that every variant shares the machine alike). At each
    rate the variants take turns, the first alternating; a variant stops after its first
    step that is not clean (the row shows how it degrades)."""
    settings = get_settings()
    manifest = verify(settings.prompts.local_dir)
    timing = Timing.of([s.duration_ms for s in manifest.notice_segments("service")])
    database = f"ivr_bench_{prompts}"
    url = await fresh_database(settings.database.url.get_secret_value(), database)
    pbx = Asterisk(paths, settings, baseline=True, realtime=realtime)
    pbx.start()
    service, log, metrics_url = start_service(
        url, env, work / f"service-{prompts}-{'-'.join(group)}.log")
    engine = create_async_engine(url, poolclass=pool.NullPool)
    rows: list[dict[str, Any]] = []
    running = list(group)
    try:
        await wait_for(log, "ARI connected")
        idle_mb = rss_mb(service.pid)  # before any call: what a call adds is above it
        asterisk_pid = pbx.running_pid()
        assert asterisk_pid is not None
        sipp = Sipp(paths, pbx=f"127.0.0.1:{settings.pbx.sip_port}")
        step = first
        for turn, rate in enumerate(rates):
            for variant in running[::-1] if turn % 2 else list(running):
                step += 1
                ctx = Context(variant, prompts, sipp, timing, asterisk_pid, service.pid, log,
                              settings.recordings.local_dir, engine, database, work, idle_mb,
                              metrics_url)
                rest = await at_rest(pbx)
                row = await run_step(ctx, step % 100, rate, seconds) | rest
                row["repeat"] = 1 + sum(r["variant"] == variant and r["rate_cps"] == rate
                                        for r in rows)
                rows.append(row)
                print(summary(row), flush=True)
                if not row["clean"]:
                    running.remove(variant)
                await asyncio.sleep(3)
            if not running:
                break
    finally:
        await engine.dispose()
        service.send_signal(signal.SIGTERM)
        service.wait(30)
        pbx.stop()
    return rows


class Cli(Protocol):
    def cli(self, command: str) -> subprocess.CompletedProcess[str]: ...


async def at_rest(pbx: Cli, wait: float = REST_WAIT_S) -> dict[str, Any]:
    """Wait until the PBX holds no channel, so that a step does not start on the calls of
    the one before: past capacity, SIPp gives callers up that Asterisk still plays to
    until their own end (seen: a step after a failed one at 72 calls/s had none of its
    4320 calls answered). How long that took, and the channels still there if it did not
    come."""
    started = time.monotonic()
    while True:
        reply = await asyncio.to_thread(pbx.cli, "core show channels count")
        left = active_channels(reply.stdout)
        waited = time.monotonic() - started
        if left == 0 or left is None or waited > wait:
            return {"rest_wait_s": round(waited, 1), "channels_at_start": left}
        await asyncio.sleep(1)


async def fresh_database(url: str, name: str) -> str:
    admin = create_async_engine(url, isolation_level="AUTOCOMMIT", poolclass=pool.NullPool)
    try:
        async with admin.connect() as connection:
            await connection.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
            await connection.execute(text(f'CREATE DATABASE "{name}"'))
    finally:
        await admin.dispose()
    target = url.rsplit("/", 1)[0] + f"/{name}"
    await asyncio.to_thread(upgrade, target)
    return target


def start_service(url: str, env: dict[str, str], log: Path
                  ) -> tuple[subprocess.Popen[bytes], Path, str]:
    """The service, its log, and its /metrics (the console on a free port: nobody logs
    in, the bench reads the event loop's lag there before and after each step)."""
    port = free_port()
    environment = os.environ | env | {"IVR_DATABASE__URL": url,
                                      "IVR_JOURNAL__DIRECTORY": str(log.parent / "journal"),
                                      "IVR_WEB__ENABLED": "true", "IVR_WEB__PORT": str(port),
                                      # The periodic jobs (deletions, moves into the
                                      # recording store) would move the files a step counts.
                                      "IVR_JOBS__ENABLED": "false"}
    with log.open("wb") as out:
        process = subprocess.Popen([sys.executable, "-m", "ivr", "serve"], env=environment,
                                   stdout=out, stderr=subprocess.STDOUT)
    return process, log, f"http://127.0.0.1:{port}/metrics"


async def wait_for(log: Path, message: str, wait: float = 30) -> None:
    for _ in range(int(wait * 10)):
        if f'"{message}"' in await asyncio.to_thread(_text, log):
            return
        await asyncio.sleep(0.1)
    raise SystemExit(f"bench: the service did not log {message!r}; see {log}")


def _text(path: Path) -> str:
    return path.read_text(errors="replace") if path.exists() else ""


def summary(row: dict[str, Any]) -> str:
    return (f"{row['prompts']:5} {row['variant']:16} {row['rate_cps']:6g} cps: "
            f"{row['succeeded']}/{row['attempted']} ok, recordings {row['recordings']}, "
            f"receipts {row['receipts']}, clean {row['clean']}"
            + (f" (begun on {row['channels_at_start']} channels of the step before)"
               if row.get("channels_at_start") else ""))


def main(argv: list[str] | None = None) -> int:
    return asyncio.run(run(arguments(argv)))


if __name__ == "__main__":
    sys.exit(main())
