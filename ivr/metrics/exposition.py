"""The ``/metrics`` body: this instance's in-process metrics and the policy's figures from
PostgreSQL, in Prometheus' text format. When the database did not answer, the body has the
in-process metrics and ``ivr_database_up 0``."""

from __future__ import annotations

from collections.abc import Iterable, Iterator

from prometheus_client import generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from ivr.metrics.in_process import Metrics
from ivr.metrics.policy_figures import PolicyFigures

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
NONE = "none"  # the label value of a column that is NULL (no line, no decision)
CALLBACK_CLOSINGS = ("done", "failed", "cancelled")
DELETION_REASONS = ("retention", "revocation")


class _Families(Collector):
    """A collector over families built for one scrape."""

    def __init__(self, families: tuple[Metric, ...]) -> None:
        self.families = families

    def collect(self) -> Iterator[Metric]:
        return iter(self.families)


def _yes(flag: bool) -> str:
    return "true" if flag else "false"


def _seconds(name: str, documentation: str, seconds: float | None) -> list[Metric]:
    """A gauge of seconds, or nothing when there is nothing to measure."""
    return [] if seconds is None else [GaugeMetricFamily(name, documentation, value=seconds)]


def _calls(figures: PolicyFigures) -> Iterable[Metric]:
    calls = GaugeMetricFamily(
        "ivr_calls", "Calls stored that started in the window (1h, 24h) before the scrape, by "
        "line, line kind, direction and decision (rules 2, 3).",
        labels=["window", "line", "kind", "direction", "decision"])
    notices = GaugeMetricFamily(
        "ivr_notices", "Calls on a line that started in the window whose notice was played "
        "to its end (completed) or cut (the caller left or decided before its end) (rule 1).",
        labels=["window", "line", "kind", "direction", "outcome"])
    rate = GaugeMetricFamily(
        "ivr_consent_rate", "Share of the inbound calls on a service line that started in the "
        "window and have a decision whose decision was consent (digit 1, rule 2); absent for "
        "a line with no decision in the window.", labels=["window", "line"])
    by_decision: dict[tuple[str, ...], int] = {}
    by_notice: dict[tuple[str, ...], int] = {}
    asked: dict[tuple[str, str], int] = {}
    consented: dict[tuple[str, str], int] = {}
    for row in figures.calls:
        line, kind = row.line or NONE, row.kind or NONE
        decided = (row.kind == "service" and row.direction == "inbound"
                   and row.decision in ("consent", "refusal", "no_consent"))
        for window, count in (("1h", row.last_hour), ("24h", row.last_day)):
            key = (window, line, kind, row.direction, row.decision or NONE)
            by_decision[key] = by_decision.get(key, 0) + count
            if row.kind is not None and row.notice_completed is not None:
                outcome = "completed" if row.notice_completed else "cut"
                notice = (window, line, kind, row.direction, outcome)
                by_notice[notice] = by_notice.get(notice, 0) + count
            if decided:
                asked[(window, line)] = asked.get((window, line), 0) + count
                consented[(window, line)] = consented.get((window, line), 0) + (
                    count if row.decision == "consent" else 0)
    for labels, count in sorted(by_decision.items()):
        calls.add_metric(list(labels), count)
    for labels, count in sorted(by_notice.items()):
        notices.add_metric(list(labels), count)
    for (window, line), total in sorted(asked.items()):
        if total:
            rate.add_metric([window, line], consented[(window, line)] / total)
    return calls, notices, rate


def _callbacks(figures: PolicyFigures) -> Iterable[Metric]:
    open_ = GaugeMetricFamily(
        "ivr_callbacks_open", "Open callbacks: due (the deadline is ahead) or overdue (past "
        "it), and whether the centre was overloaded when the call was missed (rule 4).",
        labels=["state", "overload"])
    for state in ("due", "overdue"):
        for overload in (False, True):
            open_.add_metric([state, _yes(overload)],
                             figures.callbacks_open.get((state, overload), 0))
    closed = GaugeMetricFamily(
        "ivr_callbacks_closed", "Callbacks due in the last 24 hours and closed, by status; "
        "in_time: closed by their due time (status done and in_time true: returned within "
        "the window of rule 4).", labels=["window", "status", "in_time"])
    for status in CALLBACK_CLOSINGS:
        for in_time in (True, False):
            closed.add_metric(["24h", status, _yes(in_time)],
                              figures.callbacks_closed.get((status, in_time), 0))
    due = figures.next_callback_due
    return [open_, closed, *_seconds(
        "ivr_callback_next_due_seconds", "Seconds until the earliest open callback is due "
        "(negative: overdue by that much); absent when none is open.",
        None if due is None else (due - figures.read_at).total_seconds())]


def _revocations(figures: PolicyFigures) -> Iterable[Metric]:
    fulfilled = CounterMetricFamily(
        "ivr_revocations_fulfilled", "Revocations whose recordings are all deleted, by "
        "whether that was by the end of the deadline day (rule 8).", labels=["deadline"])
    for met in (True, False):
        fulfilled.add_metric(["met" if met else "missed"],
                             figures.revocations_fulfilled.get(met, 0))
    open_ = GaugeMetricFamily(
        "ivr_revocations_open", "Revocations not yet fulfilled: on_time, at_risk (the "
        "deadline is today or the next working day) or overdue (the deadline day is over).",
        labels=["deadline"])
    for state in ("on_time", "at_risk", "overdue"):
        open_.add_metric([state], figures.revocations_open.get(state, 0))
    return fulfilled, open_


def _deletions(figures: PolicyFigures) -> Iterable[Metric]:
    deleted = GaugeMetricFamily(
        "ivr_recording_deletions", "Recordings deleted in the last 24 hours (each with its "
        "certificate), by reason (retention rule 6, revocation rule 8), whether the "
        "deadline was met, and whether the file was still there (already_gone: it was not).",
        labels=["window", "reason", "deadline", "file"])
    for reason in DELETION_REASONS:
        for met in (True, False):
            for existed in (True, False):
                file = "deleted" if existed else "already_gone"
                deleted.add_metric(["24h", reason, "met" if met else "missed", file],
                                   figures.deletions.get((reason, met, existed), 0))
    failing = GaugeMetricFamily(
        "ivr_recordings_deletion_failing", "Recordings whose deletion failed and is retried "
        "by every run of the deletion job (flagged for people), by why they are deleted: "
        "retention (expired) or revocation (covered by an open revocation).",
        labels=["reason"])
    for reason in DELETION_REASONS:
        failing.add_metric([reason], figures.deletions_failing.get(reason, 0))
    past = GaugeMetricFamily(
        "ivr_recordings_past_expiry", "Recordings kept past their retention expiry: at_risk "
        "(the deadline, the end of the expiry's local day, is still ahead) or missed.",
        labels=["deadline"])
    for state in ("at_risk", "missed"):
        past.add_metric([state], figures.past_expiry.get(state, 0))
    oldest = figures.oldest_expiry
    return [deleted, failing, past, *_seconds(
        "ivr_recordings_past_expiry_oldest_seconds", "Seconds since the expiry of the oldest "
        "recording still kept past it; absent when there is none.",
        None if oldest is None else (figures.read_at - oldest).total_seconds())]


def figure_families(figures: PolicyFigures | None) -> tuple[Metric, ...]:
    """The families of the database's figures; only ``ivr_database_up 0`` without them."""
    up = GaugeMetricFamily("ivr_database_up", "1 if PostgreSQL answered the figures' "
                           "query within its timeout at this scrape, else 0.",
                           value=0 if figures is None else 1)
    if figures is None:
        return (up,)
    took = GaugeMetricFamily("ivr_database_figures_seconds", "How long reading the "
                             "figures from PostgreSQL took at this scrape.",
                             value=figures.seconds)
    return (up, took, *_calls(figures), *_callbacks(figures), *_revocations(figures),
            *_deletions(figures))


def _without_created(families: Iterable[Metric]) -> Iterator[Metric]:
    """The families without their ``_created`` samples (when a counter or histogram was
    made: noise on a dashboard, and a restart already shows as a counter reset)."""
    for family in families:
        family.samples = [s for s in family.samples if not s.name.endswith("_created")]
        yield family


def exposition(metrics: Metrics, figures: PolicyFigures | None) -> bytes:
    """The whole ``/metrics`` body."""
    in_process = tuple(_without_created(metrics.registry.collect()))
    return generate_latest(_Families((*in_process, *figure_families(figures))))
