"""The benchmark's outputs: results.json (capacities, ratio, every step), results.md (a
table) and results.png (success and latency against the call rate)."""

from __future__ import annotations

import json
import platform
import statistics
import sys
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

COLUMNS = (
    ("prompts", "prompts"), ("variant", "variant"), ("rate_cps", "calls/s"),
    ("repeat", "run"),
    ("attempted", "attempted"), ("succeeded", "ok"), ("failed", "failed"),
    ("recordings", "recordings"), ("recordings_started_over_ami", "of them started over AMI"),
    ("receipts", "consent receipts"),
    ("decisions", "decisions stored"),
    ("invite_200_ms_p50", "INVITE→200 p50 ms"), ("invite_200_ms_p99", "p99"),
    ("notice_end_to_mixmonitor_ms_p50", "notice end→MixMonitor p50 ms"),
    ("notice_end_to_mixmonitor_ms_p99", "p99"),
    ("digit_to_decision_stored_ms_p50", "digit→stored p50 ms"),
    ("digit_to_decision_stored_ms_p99", "p99"),
    ("digit_to_mixmonitor_ms_p99", "digit→MixMonitor p99 ms"),
    ("digit_to_report_ms_p99", "digit→report read p99"),
    ("digit_to_accept_ms_p99", "digit→accept p99"),
    ("accept_to_report_ms_p99", "accept→report read p99"),
    ("report_to_decision_stored_ms_p99", "report→stored (service) p99"),
    ("stored_to_mixmonitor_ms_p99", "stored→MixMonitor p99"),
    ("reference_loop_s", "reference loop s (slowest core)"),
    ("asterisk_cpu_s_per_call", "Asterisk CPU s/call"),
    ("service_cpu_s_per_call", "service CPU s/call"),
    ("service_loop_lag_ms_p99", "service event-loop lag p99 ms (bucket)"),
    ("service_loop_lag_ms_max", "max (bucket)"),
    ("postgres_cpu_s_per_call", "PostgreSQL CPU s/call"),
    ("sipp_cpu_s_per_call", "SIPp CPU s/call"),
    ("cores_busy_median", "cores busy, median 2 s"),
    ("cores_busy_peak", "busiest 2 s"),
    ("threads_ready_median", "threads ready to run, median"),
    ("threads_ready_peak", "most"),
    ("db_transactions_per_call", "DB transactions/call"),
    ("service_peak_rss_mb", "service peak RSS MB"),
    ("peak_concurrent_calls", "peak concurrent calls"),
    ("service_kb_per_concurrent_call", "service KB per concurrent call"), ("clean", "clean"),
)


# A step of a run before ``--repeat`` existed was its rate's only one.
FIRST_RUN = {"repeat": 1}

Steps = list[dict[str, Any]]


def steps_by_rate(rows: Steps, variant: str, prompts: str) -> list[tuple[float, Steps]]:
    """The variant's steps grouped by rate, the lowest rate first (several at a rate when
    the run repeated each one: ``--repeat``)."""
    grouped: dict[float, Steps] = {}
    for row in rows:
        if row["variant"] == variant and row["prompts"] == prompts:
            grouped.setdefault(row["rate_cps"], []).append(row)
    return sorted(grouped.items())


def all_clean(steps: Steps) -> bool:
    return all(row["clean"] for row in steps)


def capacity(rows: Steps, variant: str, prompts: str) -> float:
    """The highest rate of an unbroken run of clean rates from the lowest (a rate is clean
    when every one of its steps is)."""
    return highest_unbroken(rows, variant, prompts, all_clean) or 0.0


def highest_unbroken(rows: Steps, variant: str, prompts: str,
                     good: Callable[[Steps], bool]) -> float | None:
    """The highest rate of the variant's from the lowest rate up, each ``good`` (given its
    steps), before the first that is not (``None``: not even the lowest)."""
    best = None
    for rate, steps in steps_by_rate(rows, variant, prompts):
        if not good(steps):
            break
        best = rate
    return best


def typical(steps: Steps, keys: tuple[str, ...]) -> dict[str, Any]:
    """Each figure's median over the steps of one rate (one step: its own), and with
    several steps its range; a figure one of them lacks is not measured (``None``)."""
    figures: dict[str, Any] = {}
    for key in keys:
        values: list[float] = [row[key] for row in steps if row.get(key) is not None]
        if len(values) < len(steps):
            figures[key] = None
            continue
        figures[key] = round(statistics.median(values), 2)
        if len(values) > 1:
            figures[f"{key}_range"] = [min(values), max(values)]
    return figures


def limit_found(rows: list[dict[str, Any]], variant: str, prompts: str) -> bool:
    """Whether a step of the variant failed: if none did, its capacity is only a lower
    bound (the highest rate tried)."""
    return any(not r["clean"] for r in rows if r["variant"] == variant
               and r["prompts"] == prompts)


# The latency target: both p99s at most this at 80 % of the service's capacity.
TARGET_MS = 50.0
TARGET_SHARE = 0.8
LATENCIES = ("digit_to_decision_stored_ms_p99", "notice_end_to_mixmonitor_ms_p99")


def at_target_share(rows: Steps, variant: str, prompts: str) -> dict[str, Any] | None:
    """The variant's latencies at the highest rate it ran clean at or below 80 % of its
    capacity (with repeated steps, each p99's median over them), and whether both p99s
    are within the target."""
    top = capacity(rows, variant, prompts)
    limit = TARGET_SHARE * top
    below = [(rate, steps) for rate, steps in steps_by_rate(rows, variant, prompts)
             if rate <= limit and all_clean(steps)]
    if not below:
        return None
    rate, steps = below[-1]
    figures = typical(steps, (*LATENCIES, "digit_to_mixmonitor_ms_p99"))
    # the same rate's digit -> MixMonitor, the service's and the PBX's alone (baseline)
    baseline = typical([r for r in rows if r["variant"] == "baseline"
                        and r["prompts"] == prompts and r["rate_cps"] == rate] or [{}],
                       ("digit_to_mixmonitor_ms_p99",))
    # the rates are stepped: the one judged may lie well below 80 % (56 of 88: 64 %)
    return {"rate_cps": rate, "share_of_capacity": round(rate / top, 2),
            "steps": len(steps), **figures,
            "baseline_digit_to_mixmonitor_ms_p99": baseline["digit_to_mixmonitor_ms_p99"],
            "target_ms": TARGET_MS, "met": _within_target_ms(figures),
            # each step on its own: how often the machine kept the target at that rate
            "steps_met": sum(_within_target_ms(step) for step in steps)}


def _within_target_ms(figures: dict[str, Any]) -> bool:
    """Both p99s measured and at most the target (one not measured is not met)."""
    return all(figures.get(key) is not None and figures[key] <= TARGET_MS
               for key in LATENCIES)


def within_target(rows: Steps, variant: str, prompts: str) -> float | None:
    """The highest rate of an unbroken run of rates from the lowest, each clean with both
    p99s (their medians over repeated steps) within the target: how far this machine
    keeps the latency, whatever its capacity (``None``: not even at the lowest rate)."""
    return highest_unbroken(rows, variant, prompts, lambda steps: all_clean(steps)
                            and _within_target_ms(typical(steps, LATENCIES)))


SERVICE_VARIANTS = ("service", "service-dialplan")
FLOW_KEYS = {"service": "service_ari", "service-dialplan": "service_dialplan"}


# A step sustains its rate when it places calls for at least this many calls' lengths.
SUSTAINED_CALLS = 3


def summary(rows: list[dict[str, Any]]) -> dict[str, Any]:
    """Per prompts: each variant's capacity and its ratio to the baseline's. ``service`` is
    the service's best inbound flow (named in ``flow``); ``service_ari`` and
    ``service_dialplan`` are each flow's own."""
    by_prompts: dict[str, Any] = {}
    for prompts in sorted({r["prompts"] for r in rows}):
        measured = {r["variant"] for r in rows if r["prompts"] == prompts}
        baseline = capacity(rows, "baseline", prompts)
        figures: dict[str, Any] = {"baseline": {
            "max_clean_cps": baseline,
            "limit_found": limit_found(rows, "baseline", prompts)}}
        for variant in SERVICE_VARIANTS:
            if variant in measured:
                cps = capacity(rows, variant, prompts)
                found = limit_found(rows, variant, prompts)
                figures[FLOW_KEYS[variant]] = {
                    "max_clean_cps": cps, "ratio": _ratio(cps, baseline),
                    "ratio_is": ratio_is(found, figures["baseline"]["limit_found"]),
                    "limit_found": found,
                    "at_80_percent": at_target_share(rows, variant, prompts),
                    "within_target_up_to_cps": within_target(rows, variant, prompts)}
        flows = [v for v in SERVICE_VARIANTS if v in measured]
        best = max(flows, key=lambda v: capacity(rows, v, prompts), default=None)
        service = capacity(rows, best, prompts) if best else 0.0
        figures["service"] = {"max_clean_cps": service,
                              "flow": FLOW_KEYS[best].removeprefix("service_") if best
                              else None,
                              "limit_found": limit_found(rows, best, prompts) if best
                              else True}
        figures["ratio"] = _ratio(service, baseline)
        figures["ratio_is"] = ratio_is(figures["service"]["limit_found"],
                                       figures["baseline"]["limit_found"])
        figures["load"] = full_load(rows, prompts)
        by_prompts[prompts] = figures
    headline: dict[str, Any] = by_prompts.get("short") or next(iter(by_prompts.values()), {})
    return {**headline, "by_prompts": by_prompts}


def full_load(rows: Steps, prompts: str) -> dict[str, Any] | None:
    """How long the steps placed calls, how long a call lasted, and so how long each step
    held its full load: a step barely longer than a call never settles, and a rate it ran
    clean is a burst the PBX absorbed, not one it sustains. (Runs before ``placing_s``:
    None.)"""
    steps = [r for r in rows if r["prompts"] == prompts and "placing_s" in r]
    if not steps:
        return None
    placing, call = max(r["placing_s"] for r in steps), max(r["call_s"] for r in steps)
    return {"placing_s": placing, "call_s": call,
            "full_load_s": round(max(0.0, placing - call), 1),
            "sustained": placing >= SUSTAINED_CALLS * call}


def ratio_is(service_limit: bool, baseline_limit: bool) -> str:
    """What the ratio is, when a capacity is only a lower bound (no step of it failed):
    the service's alone makes the ratio a lower bound too, the baseline's alone an upper
    one, and both leave it unknown (each reached the highest rate tried)."""
    if service_limit and baseline_limit:
        return "exact"
    if baseline_limit:
        return "at least"
    return "at most" if service_limit else "unknown"


def _ratio(service: float, baseline: float) -> float | None:
    return round(service / baseline, 3) if baseline else None


def write_reports(out: Path, rows: list[dict[str, Any]], label: str,
                  scheduling: dict[str, str] | None = None) -> None:
    out.mkdir(parents=True, exist_ok=True)
    result = {**summary(rows), "label": label, "scheduling": scheduling or {},
              "measured_at": datetime.now(UTC).isoformat(timespec="seconds"),
              "machine": f"{platform.machine()}, {_cpus()} CPUs, Python "
                         f"{platform.python_version()} ({interpreter()})",
              "rows": rows}
    (out / "results.json").write_text(json.dumps(result, indent=1, default=str) + "\n")
    (out / "results.md").write_text(markdown(result))
    plot(out / "results.png", rows)


def markdown(result: dict[str, Any]) -> str:
    lines = [f"# Benchmark results{' — ' + result['label'] if result['label'] else ''}", "",
             f"Measured {result['measured_at']} on {result['machine']} with `make bench`.", ""]
    if result.get("scheduling"):
        lines += ["Scheduling: " + ", ".join(f"{who} {how}" for who, how
                                             in result["scheduling"].items()) + ".", ""]
    for prompts, figures in result["by_prompts"].items():
        flows = "; ".join(
            f"{name} {_cps(figures[key])} ({_ratio_text(figures[key])})"
            for name, key in (("ARI flow", "service_ari"), ("dialplan flow", "service_dialplan"))
            if key in figures)
        lines.append(f"- {prompts} prompts: baseline {_cps(figures['baseline'])}, service "
                     f"{_cps(figures['service'])}, "
                     + _ratio_text(figures) + (f" ({flows})" if flows else ""))
        if figures.get("load"):
            lines.append(f"  - {_load_text(figures['load'])}")
        for name, key in (("ARI flow", "service_ari"), ("dialplan flow", "service_dialplan")):
            if key in figures:
                lines.append(f"  - {name}: {_at_target_share(figures[key])}")
    lines += ["", "| " + " | ".join(title for _, title in COLUMNS) + " |",
              "|" + "---|" * len(COLUMNS)]
    for row in result["rows"]:
        lines.append("| " + " | ".join(_cell(row.get(key, FIRST_RUN.get(key)))
                                       for key, _ in COLUMNS) + " |")
    return "\n".join(lines + _not_at_rest(result["rows"])) + "\n"


def _not_at_rest(rows: list[dict[str, Any]]) -> list[str]:
    """The steps that began while the PBX still held the calls of the step before (it
    waits for none, up to a limit: ``rest_wait_s``, ``channels_at_start``)."""
    busy = [f"{r['prompts']} {r['variant']} at {r['rate_cps']:g} calls/s "
            f"({r['channels_at_start']} channels after {r['rest_wait_s']:g} s)"
            for r in rows if r.get("channels_at_start")]
    return ["", "Steps begun with the PBX still holding calls of the step before: "
            + "; ".join(busy) + "."] if busy else []


def _load_text(load: dict[str, Any]) -> str:
    return (f"each step placed calls for {load['placing_s']:g} s and a call lasted "
            f"{load['call_s']:g} s, so a step held its full load for {load['full_load_s']:g} s: "
            + ("rates sustained" if load["sustained"] else
               f"bursts, not sustained rates (that needs steps of at least "
               f"{SUSTAINED_CALLS} calls' lengths)"))


def _ratio_text(figures: dict[str, Any]) -> str:
    """The ratio as far as it is known (runs written before ``ratio_is``: as they were)."""
    bound = figures.get("ratio_is", "exact")
    if bound == "unknown":
        return f"ratio not known, both clean at the highest rate tried ({figures['ratio']} there)"
    return "ratio " + ("" if bound == "exact" else f"{bound} ") + str(figures["ratio"])


def _cps(figures: dict[str, Any]) -> str:
    """A capacity, as a lower bound when no step failed."""
    return ("" if figures.get("limit_found", True) else "at least ") \
        + f"{figures['max_clean_cps']:g} calls/s"


def _at_target_share(figures: dict[str, Any]) -> str:
    return "; ".join(part for part in (_at_80_percent(figures), _within_target(figures))
                     if part)


def _within_target(figures: dict[str, Any]) -> str:
    """How far both p99s stayed within the target (a run before it was judged: nothing)."""
    if "within_target_up_to_cps" not in figures:
        return ""
    up_to = figures["within_target_up_to_cps"]
    return (f"both p99s within {TARGET_MS:g} ms " + (f"up to {up_to:g} calls/s" if up_to
                                                        else "at no rate tried"))


def _at_80_percent(figures: dict[str, Any]) -> str:
    at = figures.get("at_80_percent")
    if not at:
        return f"no clean step at or below {TARGET_SHARE:.0%} of its capacity"
    verdict = "met" if at["met"] else "not met"
    runs = at.get("steps", 1)
    if runs > 1 and "steps_met" in at:  # results written before it: as they were
        verdict += f", both within it in {at['steps_met']} of the {runs} runs"
    share = (f"{at['share_of_capacity']:.0%} of its capacity, the highest rate tried at "
             f"or below {TARGET_SHARE:.0%}" if "share_of_capacity" in at
             else f"at most {TARGET_SHARE:.0%} of its capacity")  # results from before
    return (f"at {at['rate_cps']:g} calls/s ({share}"
            + (f"; medians of {runs} runs" if runs > 1 else "") + "), "
            f"p99 digit→stored {_ranged(at, 'digit_to_decision_stored_ms_p99')} ms, notice "
            f"end→MixMonitor {_ranged(at, 'notice_end_to_mixmonitor_ms_p99')} ms: "
            f"the {at['target_ms']:g} ms target {verdict}; digit→MixMonitor p99 "
            f"{_cell(at['digit_to_mixmonitor_ms_p99'])} ms, the baseline's (the PBX "
            f"alone) {_cell(at['baseline_digit_to_mixmonitor_ms_p99'])} ms")


def _ranged(figures: dict[str, Any], key: str) -> str:
    """A median with the range of the runs it is the median of."""
    spread = figures.get(f"{key}_range")
    return _cell(figures.get(key)) + (f" (runs {_cell(spread[0])}-{_cell(spread[1])})"
                                      if spread else "")


def _cell(value: Any) -> str:
    if value is None:
        return "n/a"
    if isinstance(value, bool):
        return "yes" if value else "**no**"
    if isinstance(value, float):
        return f"{value:g}"
    return str(value)


def plot(path: Path, rows: list[dict[str, Any]]) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, (success, latency) = plt.subplots(1, 2, figsize=(12, 4.5))
    for prompts in sorted({r["prompts"] for r in rows}):
        for variant in ("baseline", *SERVICE_VARIANTS):
            mine = sorted((r for r in rows if r["variant"] == variant
                           and r["prompts"] == prompts), key=lambda r: r["rate_cps"])
            if not mine:
                continue
            rates = [r["rate_cps"] for r in mine]
            complete = [100 * min(r["succeeded"], r["recordings"]) / max(1, r["attempted"])
                        for r in mine]
            style = "--" if variant == "baseline" else "-"
            success.plot(rates, complete, style, marker="o", label=f"{variant}, {prompts}")
            latency.plot(rates, [r["invite_200_ms_p99"] or 0 for r in mine], style,
                         marker="o", label=f"INVITE→200 p99, {variant}, {prompts}")
            if variant != "baseline":
                latency.plot(rates, [r["digit_to_decision_stored_ms_p99"] or 0 for r in mine],
                             ":", marker="s", label=f"digit→stored p99, {variant}, {prompts}")
    success.set(xlabel="calls per second", ylabel="% calls completed and recorded",
                title="Success against rate")
    latency.set(xlabel="calls per second", ylabel="ms", title="Latency (p99) against rate",
                yscale="log")
    for axes in (success, latency):
        axes.grid(True, alpha=0.3)
        axes.legend(fontsize=7)
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    plt.close(figure)


def _cpus() -> int:
    import os

    return os.cpu_count() or 0


def interpreter() -> str:
    """The Python the service and the reference loop run on (the virtual environment's
    base): a distribution's optimised build and one built from source differ in speed."""
    return str(getattr(sys, "_base_executable", sys.executable))
