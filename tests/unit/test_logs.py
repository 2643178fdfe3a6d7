"""Structured logs (issue 9, point 3): every line the service writes is one JSON object,
the lines of a call carry its ``call_id``, and no secret of the settings reaches a line.

The formatter is the one ``ivr serve`` installs (``ivr.logs.configure``); the call is the
real call shell (``InboundCallRunner``) with stand-ins for ARI, AMI and the store, as in
``test_inbound_runner.py``. ``tests/e2e/test_supervision.py`` checks the logs of real runs
for the secrets too.
"""

from __future__ import annotations

import asyncio
import io
import json
import logging
import sys
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import pytest
from pydantic import SecretStr

from ivr import logs
from ivr.asterisk.ari import AriError
from ivr.asterisk.ari_events import ChannelHangupRequest
from ivr.settings import AmiSettings, AriSettings, DatabaseSettings, Settings
from ivr.store.database import DatabaseUnreachable

ARI_PASSWORD = "ari-pw-7f3a9c"
AMI_SECRET = "ami-secret-41bd2e"
DB_PASSWORD = "db-pw-c0ffee11"
SECRETS = (ARI_PASSWORD, AMI_SECRET, DB_PASSWORD)


@pytest.fixture
def log_lines() -> Iterator[io.StringIO]:
    """What the service's log handler writes, for the test's duration."""
    root = logging.getLogger()
    saved = (root.handlers[:], root.level)
    stream = io.StringIO()
    logs.configure("DEBUG")
    root.handlers[0].setStream(stream)  # type: ignore[attr-defined]
    try:
        yield stream
    finally:
        root.handlers[:], level = saved
        root.setLevel(level)


def entries(stream: io.StringIO) -> list[dict[str, Any]]:
    """Each line parsed; a line that is not exactly one JSON object fails the test."""
    lines = stream.getvalue().splitlines()
    assert lines, "nothing was logged"
    parsed = []
    for line in lines:
        entry = json.loads(line)
        assert isinstance(entry, dict), line
        assert {"time", "level", "logger", "message"} <= entry.keys(), line
        parsed.append(entry)
    return parsed


def test_every_line_is_one_json_object_whatever_is_logged(log_lines: io.StringIO) -> None:
    log = logging.getLogger("ivr.test")
    log.info("two\nlines and a \"quote\" and čšž", extra={
        "call_id": uuid.UUID(int=7), "at": datetime(2026, 11, 23, tzinfo=UTC),
        "count": 3, "ratio": 0.5, "ok": True, "nothing": None, "raw": b"\xff\x00",
        "nested": {"a": [1, 2]}})
    try:
        raise RuntimeError("failed\nacross lines")
    except RuntimeError:
        log.exception("with a traceback", extra={"call_id": "c-1"})
    log.warning("%s and %d", "args", 5)
    first, second, third = entries(log_lines)
    assert first["message"] == "two\nlines and a \"quote\" and čšž"
    assert (first["call_id"], first["count"], first["ratio"], first["ok"], first["nothing"]) \
        == ("00000000-0000-0000-0000-000000000007", 3, 0.5, True, None)
    assert first["at"] == "2026-11-23 00:00:00+00:00" and first["raw"] == "b'\\xff\\x00'"
    assert first["nested"] == "{'a': [1, 2]}"
    assert (first["level"], first["logger"]) == ("info", "ivr.test")
    assert second["error"].startswith("Traceback") and "failed\nacross lines" in \
        second["error"]
    assert second["call_id"] == "c-1"
    assert third["message"] == "args and 5"


def _runner_module() -> Any:
    """The stand-ins of the runner's own tests (tests/unit/test_inbound_runner.py)."""
    import importlib.util
    from pathlib import Path

    path = Path(__file__).with_name("test_inbound_runner.py")
    spec = importlib.util.spec_from_file_location("inbound_runner_stand_ins", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


async def test_the_lines_of_a_call_carry_its_call_id(log_lines: io.StringIO) -> None:
    """A sales call, and a call whose flow fails on an ARI error it does not expect (the
    error path logs the most): every line the call shell writes names the call."""
    stand_ins = _runner_module()
    call_ids = []
    for failing in (False, True):
        call, ari, _, _, items = stand_ins.runner()
        call_ids.append(str(call.call_uuid))
        if failing:
            async def set_variable(*args: Any) -> None:
                raise AriError("ARI POST /channels/1.1/variable: IncompleteReadError")

            ari.set_variable = set_variable
        task = asyncio.create_task(call.run())
        await stand_ins.notice_heard(ari, items)
        if not failing:
            await stand_ins.wait_for(ari, "continue_in_dialplan")
            items.put_nowait(ChannelHangupRequest("ChannelHangupRequest", stand_ins.T0,
                                                  "ivr", stand_ins.CHANNEL, 16))
        await asyncio.wait_for(task, 5)
    from_calls = [e for e in entries(log_lines) if e["logger"].startswith("ivr.calls")]
    assert {e["call_id"] for e in from_calls} == set(call_ids), from_calls
    assert any(e["level"] == "error" and "error" in e for e in from_calls)  # the traceback


def test_no_secret_of_the_settings_reaches_a_line(log_lines: io.StringIO) -> None:
    url = f"postgresql+psycopg://ivr:{DB_PASSWORD}@127.0.0.1:5432/ivr"
    settings = Settings(mode="test", ari=AriSettings(password=SecretStr(ARI_PASSWORD)),
                        ami=AmiSettings(secret=SecretStr(AMI_SECRET)),
                        database=DatabaseSettings(url=SecretStr(url)))
    assert settings.ari.password.get_secret_value() == ARI_PASSWORD  # the secrets are set
    log = logging.getLogger("ivr.test")
    # What the service logs of its settings and of a database it cannot reach.
    log.info("settings", extra={"settings": settings, "ari": settings.ari,
                                "ami": settings.ami, "database": settings.database,
                                "dump": settings.model_dump(mode="json")})
    log.error("%s", DatabaseUnreachable.from_error(url, OSError("connection refused")))
    log.info("repr %r, str %s", settings, settings)
    text = log_lines.getvalue()
    assert len(entries(log_lines)) == 3
    for secret in SECRETS:
        assert secret not in text
    assert "127.0.0.1:5432/ivr" in text  # what is not secret is still said
