"""The benchmark's outputs: results.json (capacities, ratio, every step), results.md (a
table) and results.png (success and latency against the call rate)."""

from __future__ import annotations

import json
import platform
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

COLUMNS = (
    ("prompts", "prompts"), ("variant", "variant"), ("rate_cps", "calls/s"),
    ("attempted", "attempted"), ("succeeded", "ok"), ("failed", "failed"),
    ("recordings", "recordings"), ("receipts", "consent receipts"),
    ("decisions", "decisions stored"),
    ("invite_200_ms_p50", "INVITE→200 p50 ms"), ("invite_200_ms_p99", "p99"),
    ("notice_end_to_mixmonitor_ms_p50", "notice end→MixMonitor p50 ms"),
    ("notice_end_to_mixmonitor_ms_p99", "p99"),
    ("digit_to_decision_stored_ms_p50", "digit→stored p50 ms"),
    ("digit_to_decision_stored_ms_p99", "p99"),
    ("asterisk_cpu_s_per_call", "Asterisk CPU s/call"),
    ("service_cpu_s_per_call", "service CPU s/call"),
    ("postgres_cpu_s_per_call", "PostgreSQL CPU s/call"),
    ("db_transactions_per_call", "DB transactions/call"),
    ("service_peak_rss_mb", "service peak RSS MB"),
    ("peak_concurrent_calls", "peak concurrent calls"),
    ("service_kb_per_concurrent_call", "service KB per concurrent call"), ("clean", "clean"),
)


def capacity(rows: list[dict[str, Any]], variant: str, prompts: str) -> float:
    """The highest rate of an unbroken run of clean steps from the lowest rate."""
    best = 0.0
    for row in sorted((r for r in rows if r["variant"] == variant and r["prompts"] == prompts),
                      key=lambda r: r["rate_cps"]):
        if not row["clean"]:
            break
        best = row["rate_cps"]
    return best


SERVICE_VARIANTS = ("service", "service-dialplan")
FLOW_KEYS = {"service": "service_ari", "service-dialplan": "service_dialplan"}


def summary(rows: list[dict[str, Any]]) -> dict[str, Any]:
    """Per prompts: each variant's capacity and its ratio to the baseline's. ``service`` is
    the service's best inbound flow (named in ``flow``); ``service_ari`` and
    ``service_dialplan`` are each flow's own."""
    by_prompts: dict[str, Any] = {}
    for prompts in sorted({r["prompts"] for r in rows}):
        measured = {r["variant"] for r in rows if r["prompts"] == prompts}
        baseline = capacity(rows, "baseline", prompts)
        figures: dict[str, Any] = {"baseline": {"max_clean_cps": baseline}}
        for variant in SERVICE_VARIANTS:
            if variant in measured:
                cps = capacity(rows, variant, prompts)
                figures[FLOW_KEYS[variant]] = {"max_clean_cps": cps,
                                               "ratio": _ratio(cps, baseline)}
        flows = [v for v in SERVICE_VARIANTS if v in measured]
        best = max(flows, key=lambda v: capacity(rows, v, prompts), default=None)
        service = capacity(rows, best, prompts) if best else 0.0
        figures["service"] = {"max_clean_cps": service,
                              "flow": FLOW_KEYS[best].removeprefix("service_") if best
                              else None}
        figures["ratio"] = _ratio(service, baseline)
        by_prompts[prompts] = figures
    headline: dict[str, Any] = by_prompts.get("short") or next(iter(by_prompts.values()), {})
    return {**headline, "by_prompts": by_prompts}


def _ratio(service: float, baseline: float) -> float | None:
    return round(service / baseline, 3) if baseline else None


def write_reports(out: Path, rows: list[dict[str, Any]], label: str) -> None:
    out.mkdir(parents=True, exist_ok=True)
    result = {**summary(rows), "label": label,
              "measured_at": datetime.now(UTC).isoformat(timespec="seconds"),
              "machine": f"{platform.machine()}, {_cpus()} CPUs, Python "
                         f"{platform.python_version()}",
              "rows": rows}
    (out / "results.json").write_text(json.dumps(result, indent=1, default=str) + "\n")
    (out / "results.md").write_text(markdown(result))
    plot(out / "results.png", rows)


def markdown(result: dict[str, Any]) -> str:
    lines = [f"# Benchmark results{' — ' + result['label'] if result['label'] else ''}", "",
             f"Measured {result['measured_at']} on {result['machine']} with `make bench`.", ""]
    for prompts, figures in result["by_prompts"].items():
        flows = "; ".join(
            f"{name} {figures[key]['max_clean_cps']:g} calls/s (ratio {figures[key]['ratio']})"
            for name, key in (("ARI flow", "service_ari"), ("dialplan flow", "service_dialplan"))
            if key in figures)
        lines.append(f"- {prompts} prompts: baseline {figures['baseline']['max_clean_cps']:g} "
                     f"calls/s, service {figures['service']['max_clean_cps']:g} calls/s, "
                     f"ratio {figures['ratio']}" + (f" ({flows})" if flows else ""))
    lines += ["", "| " + " | ".join(title for _, title in COLUMNS) + " |",
              "|" + "---|" * len(COLUMNS)]
    for row in result["rows"]:
        lines.append("| " + " | ".join(_cell(row.get(key)) for key, _ in COLUMNS) + " |")
    return "\n".join(lines) + "\n"


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
