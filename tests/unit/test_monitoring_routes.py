"""``/metrics`` and ``/healthz`` on the console's app, without a login (issue 9, point 2).

No PostgreSQL here: the database is a closed port or a server that accepts and never
answers. ``/metrics`` must still answer, at once or within its timeout, with the in-process
metrics and ``ivr_database_up 0``; ``/healthz`` answers 503 naming the part that is down,
and never shows the database password.
"""

from __future__ import annotations

import asyncio
import socket
import time
from collections.abc import AsyncIterator, Awaitable, Callable

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families
from pydantic import SecretStr

from ivr.asterisk.ami import AmiClient
from ivr.asterisk.ari import AriClient
from ivr.metrics.health import (
    Check,
    Health,
    PartDown,
    ami_check,
    ari_check,
    database_check,
)
from ivr.metrics.in_process import Metrics, Step
from ivr.settings import AmiSettings, AriSettings, DatabaseSettings, Settings
from ivr.store.audit import AuditLog
from ivr.store.callbacks import Callbacks
from ivr.store.database import Database
from ivr.web import monitoring
from ivr.web.app import create_app, templates
from ivr.web.auth import Sessions, Users
from ivr.web.console import Console

PASSWORD = "db-pw-never-shown"


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port


def database_at(port: int) -> Database:
    return Database(DatabaseSettings(
        url=SecretStr(f"postgresql+psycopg://ivr:{PASSWORD}@127.0.0.1:{port}/ivr"),
        pool_size=1))


def console(db: Database, metrics: Metrics | None = None,
            health: Health | None = None) -> Console:
    audit = AuditLog(db)
    return Console(Settings(mode="test"), db, audit, Users(db, audit), Sessions(db),
                   Callbacks(db, 60), templates(), metrics=metrics, health=health)


Get = Callable[[Console, str], Awaitable[httpx.Response]]


@pytest.fixture
async def get() -> AsyncIterator[Get]:
    databases: list[Database] = []

    async def fetch(c: Console, path: str) -> httpx.Response:
        databases.append(c.db)
        transport = httpx.ASGITransport(app=create_app(c))
        async with httpx.AsyncClient(transport=transport, base_url="http://ivr") as client:
            return await client.get(path)

    yield fetch
    for db in databases:
        await db.dispose()


def figures(body: str) -> dict[str, float]:
    return {sample.name + str(sorted(sample.labels.items())): sample.value
            for family in text_string_to_metric_families(body) for sample in family.samples}


@pytest.fixture
async def silent_database() -> AsyncIterator[int]:
    """A port that accepts connections and never says a word."""
    held: list[asyncio.StreamWriter] = []

    async def hold(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        held.append(writer)
        await reader.read()  # until the client gives up

    server = await asyncio.start_server(hold, "127.0.0.1", 0)
    yield server.sockets[0].getsockname()[1]
    server.close()
    for writer in held:
        writer.close()


# /metrics --------------------------------------------------------------------------------
async def test_metrics_answer_with_database_up_0_when_postgresql_is_not_there(
        get: Get) -> None:
    metrics = Metrics()
    metrics.ari_reconnected()
    metrics.observe_step(Step.NOTICE_END_TO_RECORDING, 0.04)
    response = await get(console(database_at(closed_port()), metrics), "/metrics")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain; version=0.0.4")
    found = figures(response.text)
    assert found["ivr_database_up[]"] == 0
    assert found["ivr_ari_reconnects_total[]"] == 1
    assert found["ivr_step_seconds_count[('step', 'notice_end_to_recording')]"] == 1
    assert not any(name.startswith(("ivr_calls", "ivr_callbacks", "ivr_revocations"))
                   for name in found)
    assert PASSWORD not in response.text


async def test_metrics_answer_within_their_timeout_when_postgresql_hangs(
        get: Get, silent_database: int, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(monitoring, "FIGURES_TIMEOUT", 0.5)
    started = time.monotonic()
    response = await get(console(database_at(silent_database), Metrics()), "/metrics")
    took = time.monotonic() - started
    assert response.status_code == 200
    assert figures(response.text)["ivr_database_up[]"] == 0
    assert 0.5 <= took < 2.0, took


async def test_metrics_and_health_need_no_login_but_the_pages_do(get: Get) -> None:
    up = Health({"database": _up}, timeout=1)
    c = console(database_at(closed_port()), Metrics(), up)
    assert (await get(c, "/metrics")).status_code == 200
    assert (await get(c, "/healthz")).status_code == 200
    page = await get(c, "/agent")
    assert page.status_code == 303 and page.headers["location"] == "/login"


async def test_without_metrics_wired_the_routes_say_so(get: Get) -> None:
    c = console(database_at(closed_port()))
    metrics, health = await get(c, "/metrics"), await get(c, "/healthz")
    assert (metrics.status_code, metrics.json()) == (
        404, {"detail": "metrics are not wired into this console"})
    assert (health.status_code, health.json()) == (
        404, {"detail": "health checks are not wired into this console"})


# /healthz --------------------------------------------------------------------------------
async def _up() -> None:
    return None


async def _down() -> None:
    raise PartDown("AMI is not logged in")


async def _hangs() -> None:
    await asyncio.sleep(30)


async def test_healthz_is_200_when_every_part_is_up(get: Get) -> None:
    health = Health({"database": _up, "ari": _up, "ami": _up}, timeout=1)
    response = await get(console(database_at(closed_port()), Metrics(), health), "/healthz")
    assert response.status_code == 200
    assert response.json() == {"status": "up", "down": [], "parts": {
        "database": {"up": True}, "ari": {"up": True}, "ami": {"up": True}}}


async def test_healthz_is_503_naming_each_part_that_is_down(get: Get) -> None:
    health = Health({"database": _up, "ari": _hangs, "ami": _down}, timeout=0.2)
    started = time.monotonic()
    response = await get(console(database_at(closed_port()), Metrics(), health), "/healthz")
    assert time.monotonic() - started < 1.5  # the checks run at once, each with its timeout
    assert response.status_code == 503
    assert response.json() == {"status": "down", "down": ["ari", "ami"], "parts": {
        "database": {"up": True},
        "ari": {"up": False, "reason": "no answer in time"},
        "ami": {"up": False, "reason": "AMI is not logged in"}}}


async def test_the_service_checks_report_what_is_down(get: Get) -> None:
    """The checks the composition root wires: the database's SELECT 1, ARI's websocket and
    ping, AMI's login, against a database that is not there, an ARI that answers, an AMI
    that never logged in."""
    served: list[bytes] = []

    async def ari_server(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        served.append(await reader.readuntil(b"\r\n\r\n"))
        body = b'{"ping": "pong"}'
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
                     b"Content-Length: %d\r\n\r\n%s" % (len(body), body))
        await writer.drain()
        writer.close()

    server = await asyncio.start_server(ari_server, "127.0.0.1", 0)
    ari = AriClient(AriSettings(url=f"http://127.0.0.1:{server.sockets[0].getsockname()[1]}"))
    ami = AmiClient(AmiSettings(port=closed_port()))
    db = database_at(closed_port())
    websocket_up = asyncio.Event()
    checks: dict[str, Check] = {"database": database_check(db),
                                "ari": ari_check(ari, websocket_up), "ami": ami_check(ami)}
    try:
        before = await Health(checks, timeout=2).report()
        assert before.down == ["database", "ari", "ami"]
        parts = before.as_json()["parts"]
        assert parts == {
            "database": {"up": False, "reason": parts["database"]["reason"]},  # type: ignore[index]
            "ari": {"up": False, "reason": "the ARI events websocket has not connected yet"},
            "ami": {"up": False, "reason": "AMI is not logged in"}}
        reason = parts["database"]["reason"]
        assert reason.startswith(f"cannot reach PostgreSQL at 127.0.0.1:{db.url.port}/ivr: ")
        assert PASSWORD not in reason
        websocket_up.set()
        after = await Health(checks, timeout=2).report()
        assert after.down == ["database", "ami"]
        assert served and served[0].startswith(b"GET /ari/asterisk/ping HTTP/1.1")
    finally:
        ami.close()
        await ari.aclose()
        await db.dispose()
        server.close()


def test_health_needs_checks_and_a_positive_timeout() -> None:
    with pytest.raises(ValueError, match="at least one check"):
        Health({}, timeout=1)
    with pytest.raises(ValueError, match="timeout must be positive"):
        Health({"database": _up}, timeout=0)
