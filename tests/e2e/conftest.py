"""The real test PBX for end-to-end tests: Asterisk 22 in its debootstrapped root, started
once per test session on 127.0.0.1 and stopped at the end, also when tests fail.

A missing or broken PBX fails these tests with the setup's message; they never skip.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import pool, text
from sqlalchemy.ext.asyncio import create_async_engine

from ivr.notices.audio import build
from ivr.notices.catalogue import load_catalogue
from ivr.settings import Settings
from ivr.store.migrate import upgrade
from testpbx.__main__ import prepare
from testpbx.asterisk import Asterisk
from testpbx.config import settings_of
from testpbx.errors import SetupError
from testpbx.paths import REPO, Paths
from testpbx.sipp import Sipp

TEST_STATE = REPO / "var" / "test-pbx"


@pytest.fixture(scope="session")
def pbx_paths() -> Paths:
    cache = Path(os.environ.get("IVR_TESTPBX_CACHE", "/var/cache/ivr-testpbx"))
    return Paths(cache=cache, state=TEST_STATE)


@contextlib.contextmanager
def started_pbx(paths: Paths) -> Iterator[Asterisk]:
    """The test PBX of ``paths`` (the first node, or a further one) started, then stopped."""
    try:
        asterisk = prepare(paths)
        asterisk.start()
    except SetupError as exc:
        pytest.fail(f"the end-to-end tests need the test PBX, which could not start:\n{exc}",
                    pytrace=False)
    try:
        yield asterisk
    finally:
        asterisk.stop()


@pytest.fixture(scope="session")
def pbx(pbx_paths: Paths) -> Iterator[Asterisk]:
    with started_pbx(pbx_paths) as asterisk:
        yield asterisk


@pytest.fixture(scope="session")
def sipp(pbx: Asterisk, pbx_paths: Paths) -> Sipp:
    return Sipp(pbx_paths, pbx=f"127.0.0.1:{pbx.settings.pbx.sip_port}")


# the service under test ------------------------------------------------------------------
SHORT_CATALOGUE = Path(__file__).with_name("short_notices.toml")
SHORT_PREFIX = "ivr-short"


@dataclass
class ServiceUnderTest:
    process: subprocess.Popen[bytes]
    log: Path
    database_url: str
    recordings: Path
    env: dict[str, str]

    async def cli(self, *args: str, wait: float = 120) -> subprocess.CompletedProcess[str]:
        """Run ``ivr ARGS`` with this service's settings (database, PBX, prompts)."""
        return await asyncio.to_thread(
            subprocess.run, [sys.executable, "-m", "ivr", *args], env=self.env,
            capture_output=True, text=True, timeout=wait, check=False)

    def entries(self) -> list[dict[str, Any]]:
        result = []
        for line in self.log.read_text(errors="replace").splitlines():
            with contextlib.suppress(json.JSONDecodeError):
                entry = json.loads(line)
                if isinstance(entry, dict):
                    result.append(entry)
        return result

    async def wait_for_log(self, message: str, wait: float = 20.0) -> dict[str, Any]:
        deadline = time.monotonic() + wait
        while time.monotonic() < deadline:
            for entry in self.entries():
                if entry.get("message") == message:
                    return entry
            if self.process.poll() is not None:
                break
            await asyncio.sleep(0.1)
        raise AssertionError(f"no {message!r} in the service log:\n"
                             f"{self.log.read_text(errors='replace')[-4000:]}")

    async def all_call_records(self, wait: float = 60.0,
                               count: int = 1) -> list[dict[str, Any]]:
        """Every stored call with its decision and recording (None where there is none),
        once at least ``count`` are stored and every one is closed."""
        deadline = time.monotonic() + wait
        engine = create_async_engine(self.database_url, poolclass=pool.NullPool)
        try:
            while True:
                async with engine.connect() as conn:
                    rows = [dict(r) for r in (await conn.execute(text(RECORDS_SQL))).mappings()]
                if len(rows) >= count and all(r["ended_at"] is not None for r in rows):
                    return rows
                if time.monotonic() > deadline:
                    open_calls = [r["channel_id"] for r in rows if r["ended_at"] is None]
                    raise AssertionError(f"calls still open after {wait} s: {open_calls}")
                await asyncio.sleep(0.3)
        finally:
            await engine.dispose()

    async def query(self, sql: str, params: dict[str, Any]) -> list[dict[str, Any]]:
        engine = create_async_engine(self.database_url, poolclass=pool.NullPool)
        try:
            async with engine.connect() as conn:
                return [dict(r) for r in (await conn.execute(text(sql), params)).mappings()]
        finally:
            await engine.dispose()

    async def call_record(self, caller_raw: str, wait: float = 60.0) -> dict[str, Any]:
        """The stored call whose caller ID arrived as ``caller_raw``."""
        for record in await self.all_call_records(wait):
            if record["caller_raw"] == caller_raw:
                return record
        raise AssertionError(f"no stored call from {caller_raw!r}")

    def recording(self, file_name: str) -> Path:
        return self.recordings / file_name


RECORDS_SQL = """
SELECT c.*, d.decision, d.digit, d.digit_at, d.prompts_played, d.notice_started_at,
       d.notice_ended_at, d.question_started_at, d.decided_at, r.file_name, r.mixmonitor_id,
       r.basis, r.started_at AS recording_started_at, r.expires_at
FROM calls c LEFT JOIN decisions d ON d.call_id = c.id LEFT JOIN recordings r ON r.call_id = c.id
ORDER BY c.started_at
"""


def service_env(pbx: Asterisk, database_url: str, env_extra: dict[str, str],
                journal: Path) -> dict[str, str]:
    """The service's environment: its database, and a journal of its own (the instances
    of one test, restarted one after the other, share it as one node would)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("IVR_")}
    return env | {"IVR_CONFIG": str(pbx.paths.settings_file),
                  "IVR_DATABASE__URL": database_url,
                  "IVR_JOURNAL__DIRECTORY": str(journal), **env_extra}


def _start_service(pbx: Asterisk, database_url: str, log: Path,
                   env_extra: dict[str, str]) -> subprocess.Popen[bytes]:
    env = service_env(pbx, database_url, env_extra, log.parent / "journal")
    with log.open("wb") as out:
        return subprocess.Popen(
            [sys.executable, "-m", "ivr", "serve", "--log-level", "DEBUG"], env=env,
            stdout=out, stderr=subprocess.STDOUT)


# What the service logs when AMI would not let it in at start (it goes on trying).
AMI_GIVEN_UP = "AMI login did not succeed within 10 s; retrying in the background"


@contextlib.asynccontextmanager
async def running_service(pbx: Asterisk, database_url: str, log: Path,
                          env_extra: dict[str, str], ami: bool = True
                          ) -> AsyncIterator[ServiceUnderTest]:
    """`ivr serve` against ``database_url``, ready (ARI and AMI connected; with ``ami``
    false, ARI connected and AMI's login given up on for now); stopped with SIGTERM at the
    end (if still running)."""
    process = _start_service(pbx, database_url, log, env_extra)
    service = ServiceUnderTest(process, log, database_url, pbx.settings.recordings.local_dir,
                               service_env(pbx, database_url, env_extra,
                                           log.parent / "journal"))
    try:
        await service.wait_for_log("ARI connected")
        await service.wait_for_log("AMI connected" if ami else AMI_GIVEN_UP)
        yield service
    finally:
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(15)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
                raise AssertionError(f"ivr serve did not stop on SIGTERM; log {log}") from None


@contextlib.asynccontextmanager
async def migrated_database(new_database: Any) -> AsyncIterator[str]:
    with new_database() as url:
        await asyncio.to_thread(upgrade, url)
        yield url


def settings_with(path: Path, env: dict[str, str]) -> Settings:
    """The settings a service started with ``IVR_CONFIG=path`` and ``env`` reads."""
    before = {name: os.environ.get(name) for name in env}
    os.environ.update(env)
    try:
        return settings_of(path)
    finally:
        for name, value in before.items():
            if value is None:
                del os.environ[name]
            else:
                os.environ[name] = value


def short_prompts(pbx: Asterisk) -> dict[str, str]:
    """Build the short stand-in notices into the root; the settings that select them."""
    prompts = pbx.paths.in_root(f"/usr/share/asterisk/sounds/{SHORT_PREFIX}")
    build(load_catalogue(SHORT_CATALOGUE), prompts)
    return {"IVR_PROMPTS__LOCAL_DIR": str(prompts), "IVR_PROMPTS__SOUND_PREFIX": SHORT_PREFIX,
            "IVR_CONSENT__ANSWER_TIMEOUT": "3"}


@pytest.fixture(scope="module")
async def service(pbx: Asterisk, new_database: Any,
                  tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[ServiceUnderTest]:
    """`ivr serve` with short stand-in notices and a quick consent timeout."""
    log = tmp_path_factory.mktemp("service") / "service.log"
    async with migrated_database(new_database) as url, \
            running_service(pbx, url, log, short_prompts(pbx)) as running:
        yield running


@pytest.fixture(scope="module")
async def real_service(pbx: Asterisk, new_database: Any,
                       tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[ServiceUnderTest]:
    """`ivr serve` with the real notices of POLICY.md and the default consent timeout."""
    log = tmp_path_factory.mktemp("real-service") / "service.log"
    async with migrated_database(new_database) as url, \
            running_service(pbx, url, log, {}) as running:
        yield running


@dataclass
class ServiceRunner:
    """Start services by hand (restarts, kills): a fresh database, then instances on it."""

    pbx: Asterisk
    new_database: Any

    def database(self) -> contextlib.AbstractAsyncContextManager[str]:
        return migrated_database(self.new_database)

    def run(self, url: str, log: Path, short: bool = True, env: dict[str, str] | None = None
            ) -> contextlib.AbstractAsyncContextManager[ServiceUnderTest]:
        prompts = short_prompts(self.pbx) if short else {}
        return running_service(self.pbx, url, log, prompts | (env or {}))


@pytest.fixture(scope="session")
def service_runner(pbx: Asterisk, new_database: Any) -> ServiceRunner:
    return ServiceRunner(pbx, new_database)


# the figures of the fault tests (docs/reliability.md) ------------------------------------
RELIABILITY = REPO / "var" / "reliability"

BASIS_SQL = """
SELECT c.id::text AS id, d.decision, r.file_name
FROM calls c LEFT JOIN decisions d ON d.call_id = c.id LEFT JOIN recordings r ON r.call_id = c.id
"""


@dataclass
class FaultFigures:
    """One row of the reliability table: what was injected and what it cost."""

    fault: str
    calls_placed: int
    calls_completed: int
    recordings_without_basis: int
    decisions_lost: int
    recover_seconds: float | None

    def write(self, test: str) -> None:
        RELIABILITY.mkdir(parents=True, exist_ok=True)
        (RELIABILITY / f"{test}.json").write_text(json.dumps({"test": test, **vars(self)},
                                                             indent=1))


async def recordings_without_basis(service: ServiceUnderTest, since: float) -> list[str]:
    """Recording files written since ``since`` (a time.time()) with no stored row that
    allows them: a file of an unknown call, or of a call whose decision records nothing."""
    rows = await service.query(BASIS_SQL, {})
    allowed = {r["file_name"] for r in rows
               if r["file_name"] and r["decision"] in ("legal_basis", "consent")}
    return [p.name for p in service.recordings.iterdir()
            if p.is_file() and p.stat().st_mtime >= since and p.name not in allowed]
