"""The figures one service instance keeps in memory: ARI and AMI reconnects, and how long
the call flow's steps take. Each :class:`Metrics` has its own registry (no global one), made
by the composition root and passed to whatever observes."""

from __future__ import annotations

import math
from datetime import datetime
from enum import StrEnum

from prometheus_client import CollectorRegistry, Counter, Histogram

from ivr.asterisk.ami import CONNECTION_KINDS


class Step(StrEnum):
    """The call flow's steps whose latency is measured (the ``step`` label)."""

    # StasisStart received -> the channel answered (ARI answer returned).
    ANSWER = "answer"
    # The notice's last prompt finished (PlaybackFinished) -> MixMonitor started (AMI reply).
    NOTICE_END_TO_RECORDING = "notice_end_to_recording"
    # The caller's digit 1 received (ChannelDtmfReceived) -> MixMonitor started.
    DIGIT_TO_RECORDING = "digit_to_recording"


# Seconds. The steps take milliseconds below capacity (README: p99 16-71 ms at 10 calls/s)
# and seconds past it; the buckets cover both.
STEP_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
# Seconds. The loop's lag is well under a millisecond when idle (ivr/metrics/event_loop.py);
# a few milliseconds are a busy loop, a tenth of a second a held one.
LAG_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5)


class Metrics:
    """This instance's in-process metrics."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        self._ari_reconnects = Counter(
            "ivr_ari_reconnects", "Times the ARI events websocket was connected again after "
            "a drop, since this instance started.", registry=self.registry)
        self._ami_reconnects = Counter(
            "ivr_ami_reconnects", "Times an AMI connection logged in again after a drop, "
            "since this instance started: the first (events) or one of the recordings' own.",
            ["connection"], registry=self.registry)
        for connection in CONNECTION_KINDS:  # both exposed from the start, at zero
            self._ami_reconnects.labels(connection)
        self._steps = Histogram(
            "ivr_step_seconds", "Latency of one step of the call flow, in seconds.",
            ["step"], buckets=STEP_BUCKETS, registry=self.registry)
        for step in Step:  # every step is exposed from the start, with zero counts
            self._steps.labels(step.value)
        self._loop_lag = Histogram(
            "ivr_event_loop_lag_seconds", "How late the event loop ran a timer due then, in "
            "seconds: how long a FastAGI request, an ARI event or a database reply that "
            "became ready with it waited.", buckets=LAG_BUCKETS, registry=self.registry)

    def ari_reconnected(self) -> None:
        self._ari_reconnects.inc()

    def ami_reconnected(self, connection: str) -> None:
        """An AMI connection logged in again: ``events`` (the first: events, the queue's
        questions) or ``recordings`` (one of those that start recordings)."""
        self._ami_reconnects.labels(connection).inc()

    def observe_recording_start(self, notice_ended_at: datetime | None,
                                digit_at: datetime | None, started: datetime) -> None:
        """How long the recording waited: from the notice's end when the decision was
        known by then (sales, a digit during the notice), else from the digit. The clocks
        of the times can differ (Asterisk's, the service's): a negative wait is not
        observed."""
        if notice_ended_at is None:
            return
        if digit_at is not None and digit_at > notice_ended_at:
            step, since = Step.DIGIT_TO_RECORDING, digit_at
        else:
            step, since = Step.NOTICE_END_TO_RECORDING, notice_ended_at
        waited = (started - since).total_seconds()
        if waited >= 0:
            self.observe_step(step, waited)

    def observe_loop_lag(self, seconds: float) -> None:
        self._loop_lag.observe(seconds)

    def observe_step(self, step: Step | str, seconds: float) -> None:
        """Record that ``step`` took ``seconds``. An unknown step or a negative, infinite or
        NaN duration is a programming error and raises ``ValueError``."""
        try:
            label = Step(step).value
        except ValueError:
            raise ValueError(f"unknown step {step!r}; one of: "
                             f"{', '.join(s.value for s in Step)}") from None
        if not math.isfinite(seconds) or seconds < 0:
            raise ValueError(f"step {label}: duration must be a finite number of seconds "
                             f">= 0, not {seconds!r}")
        self._steps.labels(label).observe(seconds)
