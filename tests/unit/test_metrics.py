"""The in-process metrics and the Prometheus text format (issue 9, point 2): the step
histograms put each latency in the right bucket, reconnects are counted (AMI through a real
reconnect to a local AMI server), each Metrics object has its own registry, and the figures
of the policy are exposed under the names, types and labels docs/metrics.md gives.
"""

from __future__ import annotations

import asyncio
import math
import re
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import yaml
from prometheus_client.parser import text_string_to_metric_families

from ivr.asterisk.ami import AmiClient
from ivr.metrics.exposition import exposition, figure_families
from ivr.metrics.in_process import STEP_BUCKETS, Metrics, Step
from ivr.metrics.policy_figures import CallCount, PolicyFigures
from ivr.settings import AmiSettings, Settings

Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]
NOW = datetime(2026, 11, 23, 9, 0, tzinfo=UTC)


def samples(body: bytes) -> Samples:
    """Every sample of a /metrics body, by name and sorted labels; the body must parse."""
    found: Samples = {}
    for family in text_string_to_metric_families(body.decode()):
        for sample in family.samples:
            found[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return found


def types(body: bytes) -> dict[str, str]:
    return {family.name: family.type
            for family in text_string_to_metric_families(body.decode())}


def value(found: Samples, name: str, **labels: str) -> float:
    return found[(name, tuple(sorted(labels.items())))]


# step latencies -------------------------------------------------------------------------
def test_each_step_latency_lands_in_its_buckets() -> None:
    metrics = Metrics()
    for seconds in (0.004, 0.03, 0.03, 7.0):
        metrics.observe_step(Step.ANSWER, seconds)
    metrics.observe_step("digit_to_recording", 0.016)
    found = samples(exposition(metrics, None))
    answer = {le: value(found, "ivr_step_seconds_bucket", step="answer", le=le)
              for le in ("0.005", "0.025", "0.05", "5.0", "10.0", "+Inf")}
    assert answer == {"0.005": 1, "0.025": 1, "0.05": 3, "5.0": 3, "10.0": 4, "+Inf": 4}
    assert value(found, "ivr_step_seconds_count", step="answer") == 4
    assert math.isclose(value(found, "ivr_step_seconds_sum", step="answer"), 7.064)
    assert value(found, "ivr_step_seconds_bucket", step="digit_to_recording", le="0.01") == 0
    assert value(found, "ivr_step_seconds_bucket", step="digit_to_recording", le="0.025") == 1
    # A step nothing was observed for is there from the start, with zero counts.
    assert value(found, "ivr_step_seconds_count", step="notice_end_to_recording") == 0
    assert len([k for k in found if k[0] == "ivr_step_seconds_bucket"]) == \
        3 * (len(STEP_BUCKETS) + 1)


@pytest.mark.parametrize("step", ["answered", "", "ANSWER"])
def test_an_unknown_step_is_refused_by_name(step: str) -> None:
    with pytest.raises(ValueError, match=r"unknown step .*answer, notice_end_to_recording, "
                                         r"digit_to_recording"):
        Metrics().observe_step(step, 0.1)


@pytest.mark.parametrize("seconds", [-0.001, math.nan, math.inf])
def test_a_duration_that_is_not_one_is_refused(seconds: float) -> None:
    metrics = Metrics()
    with pytest.raises(ValueError, match="step answer: duration must be a finite number"):
        metrics.observe_step(Step.ANSWER, seconds)
    assert value(samples(exposition(metrics, None)), "ivr_step_seconds_count",
                 step="answer") == 0


def test_reconnects_are_counted_per_metrics_object_and_ami_connection() -> None:
    first, second = Metrics(), Metrics()
    first.ari_reconnected()
    first.ari_reconnected()
    first.ami_reconnected("events")
    first.ami_reconnected("recordings")
    first.ami_reconnected("recordings")
    one, other = samples(exposition(first, None)), samples(exposition(second, None))
    assert value(one, "ivr_ari_reconnects_total") == 2
    assert value(one, "ivr_ami_reconnects_total", connection="events") == 1
    assert value(one, "ivr_ami_reconnects_total", connection="recordings") == 2
    assert value(other, "ivr_ari_reconnects_total") == 0  # no registry shared
    # both connections' series are there before any drop
    assert value(other, "ivr_ami_reconnects_total", connection="events") == 0
    assert value(other, "ivr_ami_reconnects_total", connection="recordings") == 0


def test_the_body_has_no_created_samples_and_declares_each_type() -> None:
    body = exposition(Metrics(), None)
    assert b"_created" not in body
    assert types(body) == {"ivr_ari_reconnects": "counter", "ivr_ami_reconnects": "counter",
                           "ivr_step_seconds": "histogram",
                           "ivr_event_loop_lag_seconds": "histogram", "ivr_database_up": "gauge"}


# AMI reconnects, through a real drop -----------------------------------------------------
@pytest.mark.parametrize("recording_connections", [0, 1])
async def test_ami_reconnect_hook_runs_on_each_login_after_the_first(
        recording_connections: int) -> None:
    """Asterisk drops every connection twice: each login after a connection's first is
    counted, under the connection it was."""
    logins = 0
    writers: list[asyncio.StreamWriter] = []

    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        nonlocal logins
        writers.append(writer)
        writer.write(b"Asterisk Call Manager/9.0.0\r\n")
        try:
            action = (await reader.readuntil(b"\r\n\r\n")).decode()
        except (asyncio.IncompleteReadError, ConnectionError):
            return
        action_id = next(line.split(": ", 1)[1] for line in action.split("\r\n")
                         if line.lower().startswith("actionid: "))
        writer.write(f"Response: Success\r\nActionID: {action_id}\r\n"
                     "Message: Authentication accepted\r\n\r\n".encode())
        logins += 1

    def counted() -> tuple[float, float]:
        found = samples(exposition(metrics, None))
        return (value(found, "ivr_ami_reconnects_total", connection="events"),
                value(found, "ivr_ami_reconnects_total", connection="recordings"))

    server = await asyncio.start_server(serve, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    metrics = Metrics()
    client = AmiClient(AmiSettings(port=port, recording_connections=recording_connections),
                       on_reconnect=metrics.ami_reconnected)
    connections = 1 + recording_connections
    for connection in (client._main, *client._recorders):
        connection.manager.reconnect_timeout = 0.05
    try:
        await client.connect(wait=5)
        async with asyncio.timeout(5):
            while logins < connections:
                await asyncio.sleep(0.01)
        await asyncio.sleep(0.1)  # any login counted by mistake would show by now
        assert client.logged_in.is_set() and client.reconnects == 0
        assert counted() == (0, 0)
        for dropped in (1, 2):
            for writer in writers[-connections:]:
                writer.close()  # Asterisk goes away; every connection logs in again
            async with asyncio.timeout(5):
                while counted() != (dropped, dropped * recording_connections):
                    await asyncio.sleep(0.01)
            assert client.logged_in.is_set() and client.reconnects == dropped
    finally:
        client.close()
        server.close()
        for writer in writers:
            writer.close()
        await server.wait_closed()


# the figures of the policy, from the database ------------------------------------------
def call(line: str | None, kind: str | None, decision: str | None, day: int, hour: int,
         direction: str = "inbound", notice: bool | None = True) -> CallCount:
    return CallCount(line, kind, direction, decision, notice, day, hour)


FIGURES = PolicyFigures(
    read_at=NOW, seconds=0.004,
    calls=(call("sales", "sales", "legal_basis", 7, 2),
           call("sales", "sales", "no_consent", 1, 1, notice=False),
           call("service", "service", "consent", 5, 3),
           call("service", "service", "consent", 2, 0, notice=False),
           call("service", "service", "refusal", 1, 1),
           call("service", "service", "no_consent", 4, 0, notice=False),
           call("service", "service", "consent", 6, 6, direction="callback"),
           call("service-b", "service", "no_consent", 2, 2, notice=None),
           call("service-c", "service", "consent", 3, 0),
           call(None, None, None, 1, 1, notice=None)),
    callbacks_open={("due", False): 2, ("overdue", True): 1},
    next_callback_due=NOW - timedelta(minutes=10),
    callbacks_closed={("done", True): 4, ("done", False): 1, ("failed", False): 1},
    revocations_fulfilled={True: 3, False: 1},
    revocations_open={"at_risk": 1, "overdue": 2},
    deletions={("retention", True, True): 9, ("revocation", False, False): 1},
    deletions_failing={"retention": 2}, past_expiry={"missed": 1},
    oldest_expiry=NOW - timedelta(days=2))


def labelled(found: Samples, name: str, *keys: str) -> dict[tuple[str, ...], float]:
    return {tuple(dict(k[1])[key] for key in keys): v for k, v in found.items()
            if k[0] == name}


def test_calls_are_counted_by_window_line_kind_direction_and_decision() -> None:
    found = samples(exposition(Metrics(), FIGURES))
    calls = labelled(found, "ivr_calls", "window", "line", "kind", "direction", "decision")
    day = {k[1:]: v for k, v in calls.items() if k[0] == "24h"}
    hour = {k[1:]: v for k, v in calls.items() if k[0] == "1h"}
    assert day == {("sales", "sales", "inbound", "legal_basis"): 7,
                   ("sales", "sales", "inbound", "no_consent"): 1,
                   ("service", "service", "inbound", "consent"): 7,  # both notice outcomes
                   ("service", "service", "inbound", "refusal"): 1,
                   ("service", "service", "inbound", "no_consent"): 4,
                   ("service", "service", "callback", "consent"): 6,
                   ("service-b", "service", "inbound", "no_consent"): 2,
                   ("service-c", "service", "inbound", "consent"): 3,
                   ("none", "none", "inbound", "none"): 1}
    assert hour == {**{k: 0.0 for k in day},
                    ("sales", "sales", "inbound", "legal_basis"): 2,
                    ("sales", "sales", "inbound", "no_consent"): 1,
                    ("service", "service", "inbound", "consent"): 3,
                    ("service", "service", "inbound", "refusal"): 1,
                    ("service", "service", "callback", "consent"): 6,
                    ("service-b", "service", "inbound", "no_consent"): 2,
                    ("none", "none", "inbound", "none"): 1}
    assert types(exposition(Metrics(), FIGURES))["ivr_calls"] == "gauge"


def test_notices_are_counted_completed_or_cut() -> None:
    found = samples(exposition(Metrics(), FIGURES))
    notices = labelled(found, "ivr_notices", "window", "line", "direction", "outcome")
    assert {k[1:]: v for k, v in notices.items() if k[0] == "24h"} == {
        ("sales", "inbound", "completed"): 7, ("sales", "inbound", "cut"): 1,
        ("service", "inbound", "completed"): 6, ("service", "inbound", "cut"): 6,
        ("service", "callback", "completed"): 6, ("service-c", "inbound", "completed"): 3}
    assert notices[("1h", "service", "inbound", "cut")] == 0


def test_consent_rate_is_per_service_line_and_window_of_inbound_decisions() -> None:
    found = samples(exposition(Metrics(), FIGURES))
    # service, 24 h: 7 consents of 12 inbound decisions; 1 h: 3 of 4. Callbacks inherit,
    # they do not ask. service-b: no consent. service-c: no decision in the last hour, so
    # no rate there. The sales line asks nothing.
    assert labelled(found, "ivr_consent_rate", "window", "line") == {
        ("24h", "service"): 7 / 12, ("1h", "service"): 0.75,
        ("24h", "service-b"): 0.0, ("1h", "service-b"): 0.0, ("24h", "service-c"): 1.0}


def test_callbacks_revocations_and_deletions_are_exposed_with_every_state() -> None:
    found = samples(exposition(Metrics(), FIGURES))
    assert value(found, "ivr_database_up") == 1
    assert value(found, "ivr_database_figures_seconds") == 0.004
    assert {(dict(k[1])["state"], dict(k[1])["overload"]): v for k, v in found.items()
            if k[0] == "ivr_callbacks_open"} == {
        ("due", "false"): 2, ("due", "true"): 0, ("overdue", "false"): 0,
        ("overdue", "true"): 1}
    assert value(found, "ivr_callback_next_due_seconds") == -600
    assert labelled(found, "ivr_callbacks_closed", "window", "status", "in_time") == {
        ("24h", "done", "true"): 4, ("24h", "done", "false"): 1,
        ("24h", "failed", "true"): 0, ("24h", "failed", "false"): 1,
        ("24h", "cancelled", "true"): 0, ("24h", "cancelled", "false"): 0}
    assert value(found, "ivr_revocations_fulfilled_total", deadline="met") == 3
    assert value(found, "ivr_revocations_fulfilled_total", deadline="missed") == 1
    assert {dict(k[1])["deadline"]: v for k, v in found.items()
            if k[0] == "ivr_revocations_open"} == {"on_time": 0, "at_risk": 1, "overdue": 2}
    deletions = labelled(found, "ivr_recording_deletions", "window", "reason", "deadline",
                         "file")
    assert len(deletions) == 8 and sum(deletions.values()) == 10
    assert deletions[("24h", "retention", "met", "deleted")] == 9
    assert deletions[("24h", "revocation", "missed", "already_gone")] == 1
    assert labelled(found, "ivr_recordings_deletion_failing", "reason") == {
        ("retention",): 2, ("revocation",): 0}
    assert value(found, "ivr_recordings_past_expiry", deadline="missed") == 1
    assert value(found, "ivr_recordings_past_expiry", deadline="at_risk") == 0
    assert value(found, "ivr_recordings_past_expiry_oldest_seconds") == 2 * 86400


def test_without_open_items_their_age_gauges_are_absent() -> None:
    quiet = PolicyFigures(read_at=NOW, seconds=0.001)
    names = {name for name, _ in samples(exposition(Metrics(), quiet))}
    assert "ivr_callback_next_due_seconds" not in names
    assert "ivr_recordings_past_expiry_oldest_seconds" not in names
    assert "ivr_calls" not in names  # no call in the window: no series
    assert {"ivr_callbacks_open", "ivr_revocations_open", "ivr_recordings_past_expiry",
            "ivr_callbacks_closed"} <= names  # the fixed states are always there


def test_without_the_database_only_its_down_gauge_is_there() -> None:
    families = figure_families(None)
    assert [(f.name, f.type, [s.value for s in f.samples]) for f in families] == [
        ("ivr_database_up", "gauge", [0])]


# ARI reconnects, as the events loop of the composition root sees them -------------------
async def test_the_events_loop_counts_ari_reconnects_and_marks_the_websocket_up() -> None:
    from types import SimpleNamespace

    from ivr.app import _events
    from ivr.asterisk.ari import AriError, Connected

    class Ari:
        async def events(self) -> AsyncIterator[Connected]:
            for reconnects in (0, 1, 2):  # connected, then dropped and connected twice
                assert connected.is_set() == (reconnects > 0)
                yield Connected(reconnects)

        async def channels(self) -> list[object]:
            raise AriError("ARI GET /channels: 503")  # logged; the loop goes on

    metrics, connected = Metrics(), asyncio.Event()
    deps = SimpleNamespace(ari=Ari(), settings=Settings(mode="test"))
    await asyncio.wait_for(_events(deps, None, asyncio.Event(), NOW, metrics,  # type: ignore[arg-type]
                                   connected), 5)
    assert connected.is_set()
    assert value(samples(exposition(metrics, None)), "ivr_ari_reconnects_total") == 2


def test_the_suggested_alerts_are_rules_prometheus_could_load() -> None:
    """docs/metrics.md's alerts are pasted as they stand: one YAML group whose rules each
    have a name, an expression, and a summary; the service's metrics they name are in its
    table."""
    text = (Path(__file__).parents[2] / "docs" / "metrics.md").read_text()
    block = re.search(r"## Suggested alerts\n\n```yaml\n(.*?)```", text, re.S)
    assert block is not None
    rules = yaml.safe_load(block.group(1))["groups"][0]["rules"]
    assert len({rule["alert"] for rule in rules}) == len(rules) > 5
    for rule in rules:
        assert rule["expr"].strip() and rule["annotations"]["summary"]
    listed = set(re.findall(r"^\| `(ivr_[a-z_]+)`", text, re.M))
    named = {name for rule in rules for name in re.findall(r"\b(ivr_[a-z_]+)", rule["expr"])}
    assert named and {re.sub(r"_(bucket|sum|count)$", "", name) for name in named} <= listed
