"""One benchmark step: SIPp places service-line calls at one rate for a fixed time, half
pressing 1 by SIP INFO late in the question, half by RFC 4733 after the notice; then what
was stored and recorded is counted and the latencies are read back.

The two halves give the service's two latencies without the caller's own delay in them:
a digit heard during the question is decided at the notice's end (notice end ->
MixMonitor), a digit after the notice is decided at once (digit -> decision stored).
"""

from __future__ import annotations

import asyncio
import contextlib
import csv
import json
import shutil
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from bench.measure import (
    Buckets,
    Sampler,
    cpu_seconds,
    finished_children_cpu,
    lag_ms,
    loop_lag,
    percentile,
    postgres_cpu,
    postgres_cpu_between,
    reference_loop_s,
    transactions,
)
from testpbx.sipp import Pause, Press, Sipp

SERVICE_NUMBER = "040404040"
BASELINE_NUMBER = "baseline"

CALLS_SQL = """
SELECT c.id::text AS id, c.started_at, c.ended_at, d.decision, d.digit_at, d.notice_ended_at,
       r.file_name, r.mixmonitor_id, r.started_at AS recording_started_at
FROM calls c LEFT JOIN decisions d ON d.call_id = c.id LEFT JOIN recordings r ON r.call_id = c.id
WHERE c.caller_raw LIKE :prefix
"""


# SIP INFO callers press this long before the question ends.
ANSWER_BEFORE_END_MS = 500


@dataclass(frozen=True)
class Timing:
    """When the callers press, from the notice's segment lengths (ms)."""

    question_ms: int  # near the question's end, where it asks: SIP INFO callers
    after_notice_ms: int  # after the closing segment: RFC 4733 callers
    call_ms: int  # answer to the caller's BYE

    @classmethod
    def of(cls, segments_ms: list[int]) -> Timing:
        information, question, _closing = segments_ms
        notice = sum(segments_ms)
        # As a caller answers once asked: late in the question, so that a PBX whose
        # playback lags behind under load (seen: 3 s over a 17.5 s segment) still has the
        # question playing when the digit comes (pressed earlier, it would fall in the
        # information, where no digit counts).
        asked = information + max(question // 2, question - ANSWER_BEFORE_END_MS)
        return cls(asked, notice + 800, notice + 3000)


@dataclass
class Context:
    variant: str  # "baseline" | "service" | "service-dialplan"
    prompts: str  # "short" | "real"
    sipp: Sipp
    timing: Timing
    asterisk_pid: int
    service_pid: int
    service_log: Path
    recordings: Path
    engine: AsyncEngine
    database: str
    work: Path
    service_idle_mb: float = 0.0
    metrics_url: str = ""  # the service's /metrics (its event-loop lag)


async def run_step(ctx: Context, index: int, rate: float, seconds: int) -> dict[str, Any]:
    """Place ``rate * seconds`` calls; everything measured about them."""
    half = max(1, round(rate * seconds / 2))
    step_dir = ctx.work / f"{ctx.prompts}-{ctx.variant}-{rate:g}"
    shutil.rmtree(step_dir, ignore_errors=True)
    step_dir.mkdir(parents=True)
    prefix = f"031{index:02d}"
    reference = await reference_loop_s()  # before SIPp's CPU is counted: its own children
    started_wall = time.time()
    log_offset = ctx.service_log.stat().st_size if ctx.service_log.exists() else 0
    cpu_before = cpu_seconds(ctx.asterisk_pid), cpu_seconds(ctx.service_pid)
    sipp_before = finished_children_cpu()
    postgres_before = postgres_cpu()
    xact_before = await transactions(ctx.engine, ctx.database)
    lag_before = await scrape_lag(ctx.metrics_url)
    stop = asyncio.Event()
    memory = Sampler(ctx.service_pid)
    sampler = asyncio.create_task(memory.run(stop))
    try:
        info, rfc = await asyncio.gather(
            place(ctx, step_dir, f"{prefix}1", "info", ctx.timing.question_ms, rate / 2,
                  half, seconds, 7200),
            place(ctx, step_dir, f"{prefix}2", "rfc4733", ctx.timing.after_notice_ms,
                  rate / 2, half, seconds, 7300))
        await settle(ctx, prefix, 2 * half)
    finally:
        stop.set()
        await sampler
    cpu_after = cpu_seconds(ctx.asterisk_pid), cpu_seconds(ctx.service_pid)
    postgres_spent = postgres_cpu_between(postgres_before, postgres_cpu())
    xact_after = await transactions(ctx.engine, ctx.database)
    attempted = info["attempted"] + rfc["attempted"]
    succeeded = info["succeeded"] + rfc["succeeded"]
    row: dict[str, Any] = {
        "variant": ctx.variant, "prompts": ctx.prompts, "rate_cps": rate,
        "placing_s": seconds, "call_s": round(ctx.timing.call_ms / 1000, 1),
        "attempted": attempted, "succeeded": succeeded, "failed": attempted - succeeded,
        "invite_200_ms_p50": percentile(info["rtt"] + rfc["rtt"], 0.5),
        "invite_200_ms_p99": percentile(info["rtt"] + rfc["rtt"], 0.99),
        "reference_loop_s": reference,
        "asterisk_cpu_s_per_call": round((cpu_after[0] - cpu_before[0]) / max(1, attempted), 4),
        "sipp_cpu_s_per_call": round((finished_children_cpu() - sipp_before)
                                     / max(1, attempted), 4),
    }
    row["cores_busy_median"], row["cores_busy_peak"] = memory.cores_busy
    row["threads_ready_median"], row["threads_ready_peak"] = memory.threads_ready
    if ctx.variant == "baseline":
        files = [p for p in ctx.recordings.glob("baseline-*")
                 if p.stat().st_mtime >= started_wall]
        after_notice = [took for caller, took in map(baseline_stamps, files)
                        if caller.startswith(f"{prefix}2") and took is not None]
        row |= {"recordings": len(files), "receipts": None,
                "digit_to_mixmonitor_ms_p99": percentile(after_notice, 0.99)}
    else:
        figures, files = await service_figures(ctx, prefix, log_offset)
        row |= figures
        lag_after = await scrape_lag(ctx.metrics_url)
        row |= {"service_loop_lag_ms_p99": lag_ms(lag_before, lag_after, 0.99),
                "service_loop_lag_ms_max": lag_ms(lag_before, lag_after, 1.0)}
        row |= {
            "service_cpu_s_per_call": round((cpu_after[1] - cpu_before[1]) / max(1, attempted),
                                            4),
            "postgres_cpu_s_per_call": round(postgres_spent / max(1, attempted), 4),
            "db_transactions_per_call": round((xact_after - xact_before) / max(1, attempted), 2),
            "service_peak_rss_mb": round(memory.peak_mb, 1),
            "service_kb_per_concurrent_call": round(
                (memory.peak_mb - ctx.service_idle_mb) * 1024
                / max(1, row["peak_concurrent_calls"])),
        }
    complete = row["recordings"] == attempted and (ctx.variant == "baseline"
                                                   or row["receipts"] == attempted)
    row["clean"] = attempted > 0 and row["failed"] == 0 and complete
    remove_counted(files)
    return row


async def run_to_end(args: list[str], log: Path, cwd: Path, seconds: float) -> None:
    """Run ``args`` (SIPp) with its output in ``log``, killed after ``seconds``
    (its unfinished calls then count as failed) or when the bench is interrupted (Ctrl-C
    cancels the step): no SIPp is left behind."""
    with open(log, "wb") as out:  # noqa: ASYNC230 (opened once)
        proc = await asyncio.create_subprocess_exec(*args, stdin=asyncio.subprocess.DEVNULL,
                                                    stdout=out, stderr=out, cwd=cwd)
        try:
            await asyncio.wait_for(proc.wait(), seconds)
        except TimeoutError:
            proc.kill()
            await proc.wait()
        finally:
            if proc.returncode is None:  # cancelled
                proc.kill()
                await asyncio.shield(proc.wait())


def remove_counted(files: list[Path]) -> None:
    """The step's recordings, once counted: the spool the bench shares with the test PBX
    would otherwise keep every one (24,836 files for the run of 2026-11-24 in
    bench/results.*; with the probes of that morning, 28,969 files and 2.1 GB)."""
    for path in files:
        path.unlink(missing_ok=True)


async def place(ctx: Context, step_dir: Path, caller_prefix: str, how: str, press_ms: int,
                rate: float, calls: int, seconds: int, port: int) -> dict[str, Any]:
    """One SIPp process: ``calls`` calls at ``rate``, each pressing 1 at ``press_ms``."""
    scenario = ctx.sipp.scenario((Pause(press_ms), Press("1", how)),
                                 max(500, ctx.timing.call_ms - press_ms))
    text_ = scenario.read_text().replace("[caller]", f"{caller_prefix}[call_number]")
    path = step_dir / f"caller-{how}.xml"
    path.write_text(text_)
    stats = step_dir / f"{how}-stats.csv"
    number = BASELINE_NUMBER if ctx.variant == "baseline" else SERVICE_NUMBER
    timeout = seconds + ctx.timing.call_ms // 1000 + 60
    args = ["sipp", "-sf", str(path), "-s", number, "-r", f"{rate:g}", "-m", str(calls),
            "-l", str(max(50, int(rate * (ctx.timing.call_ms / 1000 + 10)))),
            "-i", "127.0.0.1", "-p", str(port), "-mp", str(40000 + (port - 7200) * 10),
            "-trace_stat", "-stf", str(stats), "-fd", "1", "-trace_rtt", "-rtt_freq", "1",
            "-timeout", f"{timeout}s", "-nostdin", "-trace_err", "-error_file",
            str(step_dir / f"{how}-errors.log"), ctx.sipp.pbx]
    await run_to_end(args, step_dir / f"{how}.log", step_dir, timeout + 15)
    succeeded, failed = sipp_counts(stats)
    return {"attempted": calls, "succeeded": succeeded, "failed": failed,
            "rtt": response_times(step_dir, path.stem)}


def sipp_counts(stats: Path) -> tuple[int, int]:
    """Successful and failed calls from the last line of SIPp's statistics file."""
    with contextlib.suppress(FileNotFoundError):
        rows = list(csv.DictReader(stats.open(), delimiter=";"))
        if rows:
            return int(rows[-1]["SuccessfulCall(C)"]), int(rows[-1]["FailedCall(C)"])
    return 0, 0


def response_times(step_dir: Path, stem: str) -> list[float]:
    """INVITE -> 200 OK of each call (ms), from SIPp's rtt file."""
    found: list[float] = []
    for path in step_dir.glob(f"{stem}_*_rtt.csv"):
        for row in csv.DictReader(path.open(), delimiter=";"):
            with contextlib.suppress(KeyError, ValueError):
                found.append(float(row["response_time_ms"]))
    return found


async def settle(ctx: Context, prefix: str, expected: int, wait: float = 45.0) -> None:
    """Wait until the service has closed the step's calls (or give up: counted as lost)."""
    if ctx.variant == "baseline":
        await asyncio.sleep(2)
        return
    deadline = time.monotonic() + wait
    while time.monotonic() < deadline:
        async with ctx.engine.connect() as connection:
            open_calls = (await connection.execute(text(
                "SELECT count(*) FILTER (WHERE ended_at IS NULL), count(*) FROM calls "
                "WHERE caller_raw LIKE :p"), {"p": prefix + "%"})).one()
        if open_calls[0] == 0 and open_calls[1] >= expected:
            return
        await asyncio.sleep(0.5)


async def service_figures(ctx: Context, prefix: str, log_offset: int
                          ) -> tuple[dict[str, Any], list[Path]]:
    """The step's figures from the calls' rows and the service's log, and the recordings
    counted."""
    async with ctx.engine.connect() as connection:
        rows = [dict(r) for r in (await connection.execute(
            text(CALLS_SQL), {"prefix": prefix + "%"})).mappings()]
    stored_at, service_ms, header_ms = decision_log_times(ctx.service_log, log_offset)
    by_ami = started_over_ami(ctx.service_log, log_offset)
    notice_to_record, digit_to_stored, digit_to_report, report_to_stored = [], [], [], []
    digit_to_record, digit_to_accept, accept_to_header, stored_to_record = [], [], [], []
    for r in rows:
        if r["decision"] == "consent" and r["recording_started_at"] and r["notice_ended_at"] \
                and r["digit_at"] and r["digit_at"] <= r["notice_ended_at"]:
            notice_to_record.append(ms(r["notice_ended_at"], r["recording_started_at"]))
        if r["digit_at"] and r["notice_ended_at"] and r["digit_at"] > r["notice_ended_at"] \
                and r["id"] in stored_at:
            digit_to_stored.append(ms(r["digit_at"], stored_at[r["id"]]))
            if r["recording_started_at"]:
                digit_to_record.append(ms(r["digit_at"], r["recording_started_at"]))
                stored_to_record.append(ms(stored_at[r["id"]], r["recording_started_at"]))
            if r["id"] in service_ms:  # the dialplan flow: the PBX's part, the service's
                report_to_stored.append(service_ms[r["id"]])
                digit_to_report.append(digit_to_stored[-1] - service_ms[r["id"]])
            if r["id"] in header_ms:  # the report's header: from accept to read
                accept_to_header.append(header_ms[r["id"]])
                digit_to_accept.append(digit_to_report[-1] - header_ms[r["id"]])
    recorded = [r for r in rows if r["file_name"] and r["mixmonitor_id"]
                and (ctx.recordings / r["file_name"]).is_file()]
    unbased = [r for r in recorded if r["decision"] not in ("consent", "legal_basis")]
    return {
        "peak_concurrent_calls": peak_concurrency(rows),
        "receipts": sum(r["decision"] == "consent" for r in rows),
        # every call's decision, whatever it is (a digit lost on the way is a no_consent)
        "decisions": sum(r["decision"] is not None for r in rows),
        "recordings": len(recorded), "recordings_without_decision": len(unbased),
        "recordings_started_over_ami": len(by_ami),
        "notice_end_to_mixmonitor_ms_p50": percentile(notice_to_record, 0.5),
        "notice_end_to_mixmonitor_ms_p99": percentile(notice_to_record, 0.99),
        "digit_to_decision_stored_ms_p50": percentile(digit_to_stored, 0.5),
        "digit_to_decision_stored_ms_p99": percentile(digit_to_stored, 0.99),
        "digit_to_mixmonitor_ms_p99": percentile(digit_to_record, 0.99),
        "digit_to_report_ms_p99": percentile(digit_to_report, 0.99),
        "digit_to_accept_ms_p99": percentile(digit_to_accept, 0.99),
        "accept_to_report_ms_p99": percentile(accept_to_header, 0.99),
        "stored_to_mixmonitor_ms_p99": percentile(stored_to_record, 0.99),
        "report_to_decision_stored_ms_p99": percentile(report_to_stored, 0.99),
    }, [ctx.recordings / r["file_name"] for r in recorded]


def baseline_stamps(path: Path) -> tuple[str, float | None]:
    """The caller and the milliseconds from digit to MixMonitor, from the name the
    baseline gives its recording (``baseline-<uniqueid>-<caller>-<digit at>-<MixMonitor
    at>.<format>``, both instants in epoch seconds); ``None`` for a name not of that form."""
    parts = path.name.rsplit(".", 1)[0].split("-")
    try:
        digit_at, recording_at = float(parts[-2]), float(parts[-1])
    except (IndexError, ValueError):
        return "", None
    return parts[-3], round((recording_at - digit_at) * 1000, 1)


def peak_concurrency(rows: list[dict[str, Any]]) -> int:
    """The most calls the service held at once (from the calls' own start and end)."""
    edges = sorted([(r["started_at"], 1) for r in rows if r["started_at"]]
                   + [(r["ended_at"], -1) for r in rows if r["started_at"] and r["ended_at"]],
                   key=lambda edge: (edge[0], edge[1]))
    held = peak = 0
    for _, change in edges:
        held += change
        peak = max(peak, held)
    return peak


def decision_log_times(log: Path, offset: int) -> tuple[dict[str, datetime],
                                                       dict[str, float], dict[str, float]]:
    """call id -> when the service logged its decision as stored (after the commit); and,
    where the log line says (the dialplan flow), call id -> the milliseconds the service
    took from the dialplan's report to the commit, and from the connection's
    accept to the report's whole header."""
    found: dict[str, datetime] = {}
    took: dict[str, float] = {}
    header: dict[str, float] = {}
    for line in log_lines(log, offset, b'"decision stored"'):
        with contextlib.suppress(ValueError, KeyError, TypeError):
            entry = json.loads(line)
            found[entry["call_id"]] = datetime.fromisoformat(entry["time"])
            if "ms" in entry:
                took[entry["call_id"]] = float(entry["ms"])
            if "header_ms" in entry:
                header[entry["call_id"]] = float(entry["header_ms"])
    return found, took, header


def log_lines(log: Path, offset: int, marker: bytes) -> Iterator[bytes]:
    """The service log's lines from ``offset`` on that hold ``marker``."""
    with log.open("rb") as stream:
        stream.seek(offset)
        yield from (line for line in stream if marker in line)


def started_over_ami(log: Path, offset: int) -> set[str]:
    """The calls (ids) whose recording the service started over AMI (the dialplan flow,
    ``recording_start = "ami"``; the dialplan started the others): its file is named from
    the call."""
    found = set()
    for line in log_lines(log, offset, b'"recording started over AMI"'):
        with contextlib.suppress(ValueError, KeyError, TypeError, AttributeError):
            found.add(json.loads(line)["file"].split(".", 1)[0])
    return found


async def scrape_lag(url: str) -> Buckets:
    """The service's event-loop lag histogram now (empty when its /metrics did not answer:
    the step's lag is then not measured)."""
    if not url:
        return {}

    def fetch() -> str:
        with urllib.request.urlopen(url, timeout=5) as reply:
            return str(reply.read().decode())

    try:
        return loop_lag(await asyncio.to_thread(fetch))
    except (OSError, ValueError) as exc:
        print(f"bench: the service's {url} did not answer ({exc}): its loop lag not measured",
              flush=True)
        return {}


def ms(start: datetime, end: datetime) -> float:
    return round((end - start).total_seconds() * 1000, 1)
