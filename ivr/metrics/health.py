"""The service's health: each part it needs (the database, ARI, AMI) is checked, at once
and each within a timeout; the service is up when every part is.

A check is an async callable that returns when its part is up and raises, with a reason
that carries no secret, when it is not. The composition root decides what each check does.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass

from ivr.asterisk.ami import AmiClient
from ivr.asterisk.ari import AriClient
from ivr.store.database import Database

Check = Callable[[], Awaitable[None]]


class PartDown(Exception):
    """A part of the service is not up; the message says why."""


@dataclass(frozen=True, slots=True)
class PartHealth:
    name: str
    up: bool
    reason: str | None = None

    def as_json(self) -> dict[str, object]:
        entry: dict[str, object] = {"up": self.up}
        if self.reason is not None:
            entry["reason"] = self.reason
        return entry


@dataclass(frozen=True, slots=True)
class HealthReport:
    parts: tuple[PartHealth, ...]

    @property
    def up(self) -> bool:
        return all(part.up for part in self.parts)

    @property
    def down(self) -> list[str]:
        return [part.name for part in self.parts if not part.up]

    def as_json(self) -> dict[str, object]:
        return {"status": "up" if self.up else "down", "down": self.down,
                "parts": {part.name: part.as_json() for part in self.parts}}


def _reason(error: BaseException) -> str:
    if isinstance(error, TimeoutError):
        return "no answer in time"
    text = str(error).strip().splitlines()
    return (text[0] if text else type(error).__name__)[:200]


class Health:
    """The checks of the service's parts, by name, each run with ``timeout`` seconds."""

    def __init__(self, checks: Mapping[str, Check], timeout: float) -> None:
        if not checks:
            raise ValueError("health needs at least one check")
        if timeout <= 0:
            raise ValueError(f"health check timeout must be positive, not {timeout!r}")
        self.checks = dict(checks)
        self.timeout = timeout

    async def _part(self, name: str, check: Check) -> PartHealth:
        try:
            async with asyncio.timeout(self.timeout):
                await check()
        except Exception as exc:
            return PartHealth(name, False, _reason(exc))
        return PartHealth(name, True)

    async def report(self) -> HealthReport:
        async with asyncio.TaskGroup() as tasks:
            parts = [tasks.create_task(self._part(name, check), name=f"health-{name}")
                     for name, check in self.checks.items()]
        return HealthReport(tuple(part.result() for part in parts))


# The checks of this service's parts ------------------------------------------------------
CURL_MODULE = "func_curl"


def database_check(db: Database) -> Check:
    """PostgreSQL answers ``SELECT 1``."""

    async def check() -> None:
        await db.check_reachable()

    return check


def ari_check(ari: AriClient, events_connected: asyncio.Event) -> Check:
    """The ARI events websocket has connected (the events loop sets ``events_connected`` on
    each ``Connected``) and Asterisk's ARI answers ``GET /asterisk/ping`` now."""

    async def check() -> None:
        if not events_connected.is_set():
            raise PartDown("the ARI events websocket has not connected yet")
        await ari.request("GET", "/asterisk/ping")

    return check


def ami_check(ami: AmiClient) -> Check:
    """AMI is logged in (cleared by the client when the connection drops)."""

    async def check() -> None:
        if not ami.logged_in.is_set():
            raise PartDown("AMI is not logged in")

    return check


def curl_check(ami: AmiClient) -> Check:
    """Asterisk has func_curl loaded, without which the dialplan flow's dialplan, rendered
    to ask for decisions over HTTP (``[dialplan] decision_request = "http"``), asks nobody:
    every caller would go to the queue unrecorded, whatever they pressed."""

    async def check() -> None:
        if not ami.logged_in.is_set():
            raise PartDown("AMI is not logged in: whether Asterisk has func_curl is not known")
        if not await ami.module_loaded(CURL_MODULE):
            raise PartDown(f"Asterisk has no {CURL_MODULE} loaded: the dialplan cannot ask "
                           "for decisions and records nobody; load it (modules.conf) or set "
                           '[dialplan] decision_request = "fastagi"')

    return check
