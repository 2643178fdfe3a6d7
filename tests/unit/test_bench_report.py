"""The benchmark's arithmetic: percentiles, a variant's capacity (the highest rate of the
unbroken clean run from the lowest rate), the ratio, and when the callers press."""

from __future__ import annotations

import asyncio
import math
import os
import subprocess
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from bench.__main__ import at_rest, notes_of_its_own
from bench.by_start import main as by_start_main
from bench.measure import (
    Sampler,
    active_channels,
    cores_busy,
    lag_ms,
    loop_lag,
    machine_busy_seconds,
    percentile,
    postgres_cpu_between,
    reference_loop_s,
    threads_ready,
)
from bench.report import (
    at_target_share,
    capacity,
    markdown,
    summary,
    within_target,
    write_reports,
)
from bench.steps import (
    Timing,
    baseline_stamps,
    decision_log_times,
    peak_concurrency,
    remove_counted,
    run_to_end,
    started_over_ami,
)
from ivr.metrics.exposition import exposition
from ivr.metrics.in_process import Metrics


def row(variant: str, rate: float, clean: bool, prompts: str = "short") -> dict[str, Any]:
    return {"variant": variant, "prompts": prompts, "rate_cps": rate, "clean": clean,
            "attempted": 10, "succeeded": 10 if clean else 8, "failed": 0 if clean else 2,
            "recordings": 10, "receipts": None, "invite_200_ms_p50": 3.0,
            "invite_200_ms_p99": 9.0, "digit_to_decision_stored_ms_p99": None}


def test_percentiles() -> None:
    values = [float(v) for v in range(1, 101)]
    assert percentile(values, 0.5) == 50.5
    assert 98.9 < (percentile(values, 0.99) or 0) <= 100
    assert percentile([], 0.5) is None and percentile([7.0], 0.99) == 7.0


def test_capacity_is_the_last_clean_rate_before_the_first_failure() -> None:
    rows = [row("service", 10, True), row("service", 20, True), row("service", 30, False),
            row("service", 40, True)]
    assert capacity(rows, "service", "short") == 20
    assert capacity([row("service", 5, False)], "service", "short") == 0


def test_the_summary_gives_both_capacities_and_their_ratio_per_prompt_kind() -> None:
    rows = [row("baseline", 40, True), row("baseline", 50, False), row("service", 30, True),
            row("service", 40, False), row("baseline", 10, True, "real"),
            row("service", 10, True, "real")]
    result = summary(rows)
    assert result["baseline"] == {"max_clean_cps": 40, "limit_found": True}
    assert result["ratio"] == 0.75
    assert result["by_prompts"]["real"]["ratio"] == 1.0


def test_the_reports_are_written(tmp_path: Path) -> None:
    rows = [row("baseline", 10, True), row("service", 10, True), row("service", 20, False)]
    write_reports(tmp_path, rows, "unit")
    assert (tmp_path / "results.png").stat().st_size > 1000
    text = (tmp_path / "results.md").read_text()
    assert "| short | service | 20 | 1 | 10 | 8 | 2 |" in text and "**no**" in text
    assert markdown({"label": "", "measured_at": "t", "machine": "m", "by_prompts": {},
                     "rows": []}).startswith("# Benchmark results")


def latency_row(rate: float, clean: bool, digit: float | None,
                notice: float | None) -> dict[str, Any]:
    return row("service-dialplan", rate, clean) | {
        "digit_to_decision_stored_ms_p99": digit, "notice_end_to_mixmonitor_ms_p99": notice}


def test_the_latency_target_is_read_at_80_percent_of_the_service_capacity() -> None:
    """Capacity 50: the highest clean rate at or below 40 is judged, both p99s against
    50 ms; a capacity no step failed is a lower bound, and the report says so."""
    rows = [latency_row(30, True, 12.0, 20.0), latency_row(40, True, 49.0, 51.0),
            latency_row(50, True, 300.0, 400.0), latency_row(60, False, None, None)]
    judged = at_target_share(rows, "service-dialplan", "short")
    assert judged is not None and judged["rate_cps"] == 40 and judged["met"] is False
    # the rates are stepped: without 40, the step judged is 30, 60 % of the capacity
    judged = at_target_share([rows[0], *rows[2:]], "service-dialplan", "short")
    assert judged is not None and (judged["rate_cps"], judged["share_of_capacity"]) == (30, 0.6)
    rows[1]["notice_end_to_mixmonitor_ms_p99"] = 50.0
    judged = at_target_share(rows, "service-dialplan", "short")
    assert judged is not None and judged["met"] is True
    # a p99 not measured is not a met target
    rows[1]["digit_to_decision_stored_ms_p99"] = None
    assert at_target_share(rows, "service-dialplan", "short")["met"] is False  # type: ignore[index]
    # nothing clean at or below 80 %: nothing to judge
    assert at_target_share([latency_row(10, False, 1.0, 1.0)], "service-dialplan",
                           "short") is None
    figures = summary([*rows, row("baseline", 60, True)])
    assert figures["service_dialplan"]["limit_found"] is True
    assert figures["baseline"]["limit_found"] is False
    text = markdown({**figures, "label": "", "measured_at": "t", "machine": "m",
                     "scheduling": {"asterisk": "SCHED_RR 10 (-p)"}, "rows": []})
    assert "Scheduling: asterisk SCHED_RR 10 (-p)." in text
    assert "baseline at least 60 calls/s" in text and "dialplan flow 50 calls/s" in text
    assert "service 50 calls/s" in text
    assert "at 40 calls/s" in text and "p99 digit→stored n/a ms" in text
    assert "the 50 ms target not met" in text
    # beside it, the PBX's own digit -> MixMonitor at the same rate
    rows[1]["digit_to_mixmonitor_ms_p99"] = 60.0
    both = at_target_share([*rows, row("baseline", 40, True) | {
        "digit_to_mixmonitor_ms_p99": 45.0}], "service-dialplan", "short")
    assert both is not None and both["digit_to_mixmonitor_ms_p99"] == 60.0
    assert both["baseline_digit_to_mixmonitor_ms_p99"] == 45.0


def test_the_results_say_how_far_both_p99s_stayed_within_the_target() -> None:
    """From the lowest rate up, unbroken: a step over the target (or not clean, or with a
    p99 not measured) ends it, whatever comes after."""
    rows = [latency_row(30, True, 12.0, 20.0), latency_row(40, True, 14.0, 50.0),
            latency_row(50, True, 60.0, 30.0), latency_row(60, True, 20.0, 20.0),
            row("baseline", 60, True)]
    assert within_target(rows, "service-dialplan", "short") == 40
    rows[0]["digit_to_decision_stored_ms_p99"] = None
    assert within_target(rows, "service-dialplan", "short") is None
    rows[0]["digit_to_decision_stored_ms_p99"] = 12.0
    rows[1]["clean"] = False
    assert within_target(rows, "service-dialplan", "short") == 30
    figures = summary(rows)
    assert figures["service_dialplan"]["within_target_up_to_cps"] == 30
    text = markdown({**figures, "label": "", "measured_at": "t", "machine": "m", "rows": []})
    assert "; both p99s within 50 ms up to 30 calls/s" in text
    # results written before the figure existed read as they did
    del figures["by_prompts"]["short"]["service_dialplan"]["within_target_up_to_cps"]
    text = markdown({**figures, "label": "", "measured_at": "t", "machine": "m", "rows": []})
    assert "within 50 ms" not in text and not text.split("dialplan flow: ")[1].startswith(";")


def test_repeated_steps_make_a_rate_clean_only_together_and_judge_its_medians() -> None:
    """``--repeat``: a rate is clean when each of its steps is; at 80 % of capacity the
    p99s judged are their medians over the steps, with their ranges; within the target
    likewise."""
    rows = [latency_row(30, True, 10.0, 20.0), latency_row(30, True, 90.0, 25.0),
            latency_row(30, True, 30.0, 30.0), latency_row(40, True, 20.0, 20.0),
            latency_row(40, True, 20.0, 20.0), latency_row(40, False, 20.0, 20.0),
            latency_row(50, True, 20.0, 20.0)]
    assert capacity(rows, "service-dialplan", "short") == 30  # 50 is past a broken 40
    rows[5]["clean"] = True
    assert capacity(rows, "service-dialplan", "short") == 50
    judged = at_target_share(rows, "service-dialplan", "short")
    assert judged is not None and (judged["rate_cps"], judged["steps"]) == (40, 3)
    rows[4]["digit_to_decision_stored_ms_p99"] = 70.0
    rows[5]["digit_to_decision_stored_ms_p99"] = 80.0
    judged = at_target_share(rows, "service-dialplan", "short")
    assert judged is not None and judged["digit_to_decision_stored_ms_p99"] == 70.0
    assert judged["digit_to_decision_stored_ms_p99_range"] == [20.0, 80.0]
    assert judged["met"] is False
    # each step judged on its own as well: only the first kept both within 50 ms
    assert judged["steps_met"] == 1
    # one step over the target at 30 does not make the rate's median miss it
    assert within_target(rows, "service-dialplan", "short") == 30
    figures = summary(rows)
    text = markdown({**figures, "label": "", "measured_at": "t", "machine": "m", "rows": []})
    assert "service at least 50 calls/s" in text  # no step failed: a lower bound
    assert judged["share_of_capacity"] == 0.8
    assert ("at 40 calls/s (80% of its capacity, the highest rate tried at or below 80%; "
            "medians of 3 runs)") in text
    assert "p99 digit→stored 70 ms (runs 20-80) ms" not in text
    assert "p99 digit→stored 70 (runs 20-80) ms" in text
    assert "the 50 ms target not met, both within it in 1 of the 3 runs;" in text
    # results written before the count read as they did
    at = figures["by_prompts"]["short"]["service_dialplan"]["at_80_percent"]
    del at["steps_met"], at["share_of_capacity"]
    text = markdown({**figures, "label": "", "measured_at": "t", "machine": "m", "rows": []})
    assert "the 50 ms target not met; digit→MixMonitor" in text
    assert "at 40 calls/s (at most 80% of its capacity; medians of 3 runs)" in text


def test_the_baseline_names_its_recording_with_the_digit_and_mixmonitor_times() -> None:
    took = baseline_stamps(Path("baseline-vm-1795447941.12-031022007-1795447950.120-"
                                "1795447950.155.wav"))
    assert took == ("031022007", 35.0)
    assert baseline_stamps(Path("baseline-1795447941.12.wav")) == ("", None)
    assert baseline_stamps(Path("baseline-x-031-now-later.wav")) == ("", None)


def test_the_decision_log_gives_when_stored_and_the_service_part(tmp_path: Path) -> None:
    """Each "decision stored" line: when (after the commit) and, where it says, how long
    the service took from the report, and from the connection's accept to the report; other
    lines and broken ones are passed over."""
    log = tmp_path / "service.log"
    log.write_text(
        '{"time": "2026-11-23T10:00:00.100+00:00", "message": "decision stored", '
        '"call_id": "a", "ms": 4.5, "header_ms": 1.5}\n'
        '{"time": "2026-11-23T10:00:00.200+00:00", "message": "decision stored", '
        '"call_id": "b"}\n'
        '{"time": "2026-11-23T10:00:00.300+00:00", "message": "call ended", "call_id": "c"}\n'
        '{"message": "decision stored", "call_id": "d"\n')
    stored, took, header = decision_log_times(log, 0)
    assert sorted(stored) == ["a", "b"] and took == {"a": 4.5} and header == {"a": 1.5}
    assert stored["a"] == datetime(2026, 11, 23, 10, 0, 0, 100000, tzinfo=UTC)


def test_the_recordings_started_over_ami_are_read_from_the_step_on(
        tmp_path: Path) -> None:
    log = tmp_path / "service.log"
    earlier = '{"message": "recording started over AMI", "call": "1.1", "file": "a.wav"}\n'
    log.write_text(earlier + '{"message": "decision stored", "call_id": "a"}\n'
                   '{"message": "recording started over AMI", "call": "1.2", '
                   '"file": "b.wav"}\n'
                   '{"message": "recording not started over AMI, the dialplan starts it", '
                   '"file": "x.wav"}\n'
                   '{"message": "recording started over AMI", "call": "1.3", '
                   '"file": "c.wav"}\n'
                   '{"message": "recording started over AMI"\n')
    assert started_over_ami(log, 0) == {"a", "b", "c"}
    assert started_over_ami(log, len(earlier)) == {"b", "c"}


@pytest.mark.parametrize(("argv", "code", "said"), [
    ([], 2, "usage: python -m bench.by_start"),
    (["/no/such/log", "postgresql+psycopg://x@127.0.0.1:1/x"], 2, "no service log at"),
    (["LOG", "not a url"], 1, "the bench database cannot be read"),
    (["LOG", "postgresql+psycopg://ivr:x@127.0.0.1:1/x?connect_timeout=1"], 1,
     "the bench database cannot be read"),
])
def test_by_start_says_what_is_wrong_with_its_arguments(
        tmp_path: Path, capsys: pytest.CaptureFixture[str], argv: list[str], code: int,
        said: str) -> None:
    log = tmp_path / "service.log"
    log.write_text("")
    assert by_start_main([str(log) if a == "LOG" else a for a in argv]) == code
    err = capsys.readouterr().err
    assert said in err and "Traceback" not in err


def test_a_group_reads_only_the_notes_of_its_own_calls(tmp_path: Path) -> None:
    """Notes already in the PBX's directory (another database's) wait aside while the
    group runs and come back unchanged after; the notes its own calls leave unread go
    aside; nothing else in the directory is touched."""
    spool, aside = tmp_path / "unattended", tmp_path / "work" / "notes"
    spool.mkdir()
    (spool / "vm-1.1.notice").write_text("v=1&channel=vm-1.1")
    (spool / "vm-1.2.call").write_text("v=1&channel=vm-1.2")
    (spool / "keep.txt").write_text("not a note")
    with notes_of_its_own(spool, aside):
        assert sorted(p.name for p in spool.iterdir()) == ["keep.txt"]
        (spool / "vm-2.1.notice").write_text("v=1&channel=vm-2.1")
    assert sorted(p.name for p in spool.iterdir()) == ["keep.txt", "vm-1.1.notice",
                                                       "vm-1.2.call"]
    assert (spool / "vm-1.1.notice").read_text() == "v=1&channel=vm-1.1"
    assert [p.name for p in (aside / "left").iterdir()] == ["vm-2.1.notice"]
    assert list((aside / "foreign").iterdir()) == []


def test_callers_press_during_the_question_and_after_the_notice() -> None:
    timing = Timing.of([2700, 2300, 2000])
    assert timing.question_ms == 2700 + 1800  # half a second before the question ends
    assert Timing.of([2700, 800, 2000]).question_ms == 2700 + 400  # a short one: halfway
    assert timing.after_notice_ms == 7800 and timing.call_ms == 10000


def test_peak_concurrency_counts_calls_held_at_once() -> None:
    t = datetime(2026, 11, 23, 3, 0, tzinfo=UTC)
    rows: list[dict[str, Any]] = [
            {"started_at": t, "ended_at": t + timedelta(seconds=10)},
            {"started_at": t + timedelta(seconds=2), "ended_at": t + timedelta(seconds=4)},
            {"started_at": t + timedelta(seconds=4), "ended_at": t + timedelta(seconds=6)},
            {"started_at": t + timedelta(seconds=5), "ended_at": None},  # still held
            {"started_at": None, "ended_at": None}]
    # One ends at 4 s as another starts: an end is counted first, so never 3 until 5 s.
    assert peak_concurrency(rows) == 3
    assert peak_concurrency([]) == 0


def test_postgres_cpu_counts_each_process_growth_never_negative() -> None:
    """A backend that ended between two readings is not seen (its CPU cannot be read any
    more); one that started counts whole; none makes the figure negative."""
    before = {10: 5.0, 11: 2.0, 12: 1.0}
    after = {10: 5.5, 12: 1.25, 13: 0.5}
    assert postgres_cpu_between(before, after) == 0.5 + 0.25 + 0.5
    assert postgres_cpu_between(before, {}) == 0.0


def test_busy_cores_are_read_as_the_median_and_the_busiest_second() -> None:
    # (monotonic, busy CPU seconds): 1 core busy, then both, then 0.5
    samples = [(0.0, 0.0), (0.5, 0.5), (1.0, 1.0), (1.5, 2.0), (2.0, 3.0), (2.5, 3.25),
               (3.0, 3.5)]
    # windows of two intervals: 1.0, 1.5, 2.0, 1.25, 0.5 cores
    assert cores_busy(samples) == (1.25, 2.0)
    assert cores_busy(samples, span=1) == (1.0, 2.0)
    assert cores_busy(samples[:2]) == (None, None)  # not a whole window yet
    assert cores_busy([(1.0, 1.0), (1.0, 2.0), (1.0, 3.0)]) == (None, None)  # no time passed


def test_the_machine_busy_time_only_grows() -> None:
    first = machine_busy_seconds()
    sum(range(200_000))
    assert machine_busy_seconds() >= first > 0
    # read from the text given: the first line's fields but idle (4th) and iowait (5th)
    stat = "cpu  100 0 50 9000 30 0 10 0 0 0\nprocs_running 3\n"
    assert machine_busy_seconds(stat) == 160 / os.sysconf("SC_CLK_TCK")


def test_the_threads_ready_to_run_are_read_from_the_machine() -> None:
    """``procs_running``: the threads on a core or waiting for one (this test among them);
    a file without the line gives nothing rather than a zero."""
    stat = "cpu  1 2 3 4 5 6 7 0 0 0\nctxt 99\nprocs_running 37\nprocs_blocked 0\n"
    assert threads_ready(stat) == 37
    assert threads_ready("cpu  1 2 3\nprocs_running x\n") is None
    assert threads_ready("") is None
    now = threads_ready()
    assert now is not None and now >= 1


async def test_the_reference_loop_times_the_slowest_core(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """A fixed loop on each core at once: the slowest one's seconds; nothing when a loop
    could not run (no figure rather than a wrong one)."""
    took = await reference_loop_s(iterations=500_000, cores=2)  # over a millisecond anywhere
    assert took is not None and 0 < took < 5
    monkeypatch.setattr("bench.measure.sys.executable", "/bin/false")
    assert await reference_loop_s(iterations=10, cores=2) is None


def test_the_channels_are_read_from_asterisks_count() -> None:
    assert active_channels("0 active channels\n0 active calls\n12 calls processed\n") == 0
    assert active_channels("1 active channel\n1 active call\n") == 1
    assert active_channels("812 active channels\n406 active calls\n") == 812
    assert active_channels("Unable to connect to remote asterisk\n") is None


class Counting:
    """Asterisk's answers to ``core show channels count``, one per call."""

    def __init__(self, *counts: int | None) -> None:
        self.counts, self.asked = list(counts), 0

    def cli(self, command: str) -> subprocess.CompletedProcess[str]:
        assert command == "core show channels count"
        count = self.counts[min(self.asked, len(self.counts) - 1)]
        self.asked += 1
        return subprocess.CompletedProcess([], 0, "" if count is None
                                           else f"{count} active channels\n", "")


async def test_a_step_waits_for_the_pbx_to_hold_no_channel() -> None:
    """Channels left by the step before are waited out; an answer that gives no count
    does not hold the run; past the limit the step begins and says on what."""
    draining = Counting(300, 12, 0)
    assert (await at_rest(draining, wait=10))["channels_at_start"] == 0
    assert draining.asked == 3
    assert (await at_rest(Counting(None), wait=10))["channels_at_start"] is None
    stuck = await at_rest(Counting(40), wait=0.5)
    assert stuck["channels_at_start"] == 40 and stuck["rest_wait_s"] >= 0.5
    rows = [row("baseline", 72, False) | stuck, row("service", 72, True) | {
        "rest_wait_s": 0.0, "channels_at_start": 0}]
    text = markdown({"label": "", "measured_at": "t", "machine": "m", "by_prompts": {},
                     "rows": rows})
    assert "still holding calls of the step before: short baseline at 72 calls/s (40 " \
        "channels after" in text and "short service at 72" not in text


async def test_the_sampler_keeps_the_median_and_the_most_threads_ready() -> None:
    sampler = Sampler(os.getpid())
    before = sampler.threads_ready
    assert before == (None, None)
    sampler.ready = [3, 40, 5, 2]
    assert sampler.threads_ready == (4.0, 40)
    stop = asyncio.Event()
    task = asyncio.create_task(sampler.run(stop))
    await asyncio.sleep(0.05)
    stop.set()
    await task
    assert len(sampler.ready) == 5 and sampler.ready[-1] >= 1


def test_the_baseline_takes_turns_with_the_first_service_flow() -> None:
    """Paired (the default), the baseline's steps alternate with those of the first service
    flow asked for, on one PBX; any other flow runs on a PBX of its own."""
    from bench.__main__ import arguments, groups

    assert groups(["baseline", "service-dialplan", "service"], paired=True) == [
        ["baseline", "service-dialplan"], ["service"]]
    assert groups(["service", "baseline"], paired=True) == [["baseline", "service"]]
    assert groups(["baseline"], paired=True) == [["baseline"]]
    assert groups(["baseline", "service"], paired=False) == [["baseline"], ["service"]]
    assert arguments([]).paired is True
    assert arguments(["--unpaired"]).paired is False


def test_the_priority_is_a_realtime_one_or_none(capsys: Any) -> None:
    """``--priority``: 0 by default (normal scheduling), 1-99 SCHED_RR; else a clear
    error."""
    import pytest

    from bench.__main__ import arguments

    assert arguments([]).priority == 0
    assert arguments(["--priority", "5"]).priority == 5
    assert arguments([]).asterisk_realtime is False
    for bad in ("100", "-1", "high"):
        with pytest.raises(SystemExit):
            arguments(["--priority", bad])
        assert "--priority" in capsys.readouterr().err


def test_the_steps_at_each_rate_are_one_to_ten(capsys: Any) -> None:
    import pytest

    from bench.__main__ import arguments

    assert arguments([]).repeat == 1 and arguments(["--repeat", "3"]).repeat == 3
    for bad in ("0", "11", "twice"):
        with pytest.raises(SystemExit):
            arguments(["--repeat", bad])
        assert "--repeat" in capsys.readouterr().err


def test_the_results_say_how_the_processes_were_scheduled() -> None:
    from bench.__main__ import arguments, scheduling

    assert scheduling(arguments([])) == {"asterisk": "normal", "service": "normal",
                                         "postgresql": "normal", "sipp": "normal"}
    chosen = scheduling(arguments(["--priority", "20", "--asterisk-realtime"]))
    assert chosen["asterisk"] == "SCHED_RR 10 (-p)" and chosen["service"] == "SCHED_RR 20"


def test_the_steps_loop_lag_is_read_from_two_scrapes_of_the_histogram() -> None:
    """The bench reads the service's ``ivr_event_loop_lag_seconds`` before and after a
    step: its quantiles are the bounds of the buckets the step's own samples fall in."""
    metrics = Metrics()
    before = loop_lag(exposition(metrics, None).decode())
    assert before[0.001] == 0.0 and before[math.inf] == 0.0
    for lag in [0.0002] * 97 + [0.004, 0.02, 0.3]:  # 100 samples in the step
        metrics.observe_loop_lag(lag)
    after = loop_lag(exposition(metrics, None).decode())
    assert lag_ms(before, after, 0.5) == 1.0
    assert lag_ms(before, after, 0.99) == 25.0
    assert lag_ms(before, after, 1.0) == 500.0
    # no sample in the step, or no histogram (the service's /metrics did not answer)
    assert lag_ms(after, after, 0.99) is None and lag_ms({}, {}, 0.99) is None


def test_the_ratio_says_when_a_capacity_is_only_a_lower_bound() -> None:
    """A capacity no step failed is the highest rate tried, not a limit: the ratio is then
    a bound, or not known when neither variant failed. (Service 40, baseline 80.)"""
    cases = {  # service failed past 40?, baseline failed past 80? -> what the ratio is
        (True, True): ("exact", "ratio 0.5"),
        (False, True): ("at least", "ratio at least 0.5"),
        (True, False): ("at most", "ratio at most 0.5"),
        (False, False): ("unknown", "ratio not known, both clean at the highest rate tried "
                                    "(0.5 there)")}
    for (service_failed, baseline_failed), (bound, said) in cases.items():
        rows = [row("baseline", 80, True), row("service-dialplan", 40, True)]
        rows += [row("baseline", 120, False)] if baseline_failed else []
        rows += [row("service-dialplan", 80, False)] if service_failed else []
        figures = summary(rows)
        assert figures["ratio"] == 0.5 and figures["ratio_is"] == bound
        assert figures["service_dialplan"]["ratio_is"] == bound
        text = markdown({**figures, "label": "", "measured_at": "t", "machine": "m",
                         "rows": []})
        assert said in text.splitlines()[4], text


def test_a_steps_counted_recordings_are_removed_and_nothing_else(tmp_path: Path) -> None:
    """The spool is the test PBX's too: only the files the step counted go (one already
    gone is no error)."""
    counted = [tmp_path / "baseline-1.1-0312000001-1.0-1.1.wav", tmp_path / "ab.wav"]
    other = tmp_path / "a-test-s-own.wav"
    for path in (*counted, other):
        path.write_bytes(b"RIFF")
    remove_counted([*counted, tmp_path / "never-there.wav"])
    assert sorted(tmp_path.iterdir()) == [other]


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


async def test_an_interrupted_step_leaves_no_sipp_and_a_stuck_one_is_ended(
        tmp_path: Path) -> None:
    """Ctrl-C cancels the step: the process it runs is killed and reaped, not left to go
    on placing calls. One that outlives its time is killed too."""
    pid_file = tmp_path / "pid"
    command = ["sh", "-c", f"echo $$ > {pid_file}; exec sleep 30"]
    step = asyncio.create_task(run_to_end(command, tmp_path / "a.log", tmp_path, 30))
    for _ in range(200):
        if pid_file.is_file() and pid_file.read_text().strip():
            break
        await asyncio.sleep(0.01)
    pid = int(pid_file.read_text())
    assert alive(pid)
    step.cancel()
    with pytest.raises(asyncio.CancelledError):
        await step
    assert not alive(pid)
    pid_file.unlink()
    started = asyncio.get_running_loop().time()
    await run_to_end(command, tmp_path / "b.log", tmp_path, 0.3)
    assert asyncio.get_running_loop().time() - started < 5
    assert not alive(int(pid_file.read_text()))


def test_the_results_say_whether_a_step_held_its_full_load_long_enough() -> None:
    def timed(variant: str, rate: float, placing: int, call: float,
              prompts: str = "short") -> dict[str, Any]:
        return row(variant, rate, True, prompts) | {"placing_s": placing, "call_s": call}

    rows = [timed("baseline", 40, 60, 10.0), timed("service", 40, 60, 10.0),
            timed("baseline", 20, 60, 40.0, "real"), timed("service", 20, 60, 40.0, "real")]
    result = summary(rows)
    assert result["by_prompts"]["short"]["load"] == {
        "placing_s": 60, "call_s": 10.0, "full_load_s": 50.0, "sustained": True}
    assert result["by_prompts"]["real"]["load"]["sustained"] is False
    text = markdown({**result, "label": "", "measured_at": "t", "machine": "m",
                     "rows": rows})
    assert "held its full load for 50 s: rates sustained" in text
    assert "held its full load for 20 s: bursts, not sustained rates" in text
    # A run from before the steps' lengths were kept says nothing of them.
    assert summary([row("baseline", 40, True)])["by_prompts"]["short"]["load"] is None


def test_each_kind_of_notice_may_place_calls_for_its_own_time(capsys: Any) -> None:
    from bench.__main__ import arguments

    assert (arguments([]).seconds, arguments([]).real_seconds) == (60, 120)
    args = arguments(["--seconds", "30", "--real-seconds", "120"])
    assert (args.seconds, args.real_seconds) == (30, 120)
    for bad in (["--real-seconds", "4"], ["--real-seconds", "301"], ["--seconds", "0"]):
        with pytest.raises(SystemExit):
            arguments(bad)
        assert "seconds" in capsys.readouterr().err
