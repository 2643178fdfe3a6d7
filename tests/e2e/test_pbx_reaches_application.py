"""Foundation: a real SIP call from SIPp reaches the ARI application on the real Asterisk."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import subprocess
import sys
from contextlib import aclosing
from pathlib import Path

import pytest

from ivr.asterisk.ari import WANTED_EVENTS, AriClient, Connected
from ivr.asterisk.ari_events import StasisEnd, StasisStart
from testpbx.asterisk import Asterisk
from testpbx.sipp import Sipp

pytestmark = pytest.mark.pbx


async def _next(events: object, kind: type, timeout: float = 15.0) -> object:
    async def find() -> object:
        async for event in events:  # type: ignore[attr-defined]
            if isinstance(event, kind):
                return event
        raise AssertionError("event stream ended")

    return await asyncio.wait_for(find(), timeout)


async def test_sales_call_reaches_the_application(pbx: Asterisk, sipp: Sipp) -> None:
    """SIPp calls 040 40 40 45; the service's ARI client receives StasisStart for it,
    answers it and hangs it up."""
    ari = AriClient(pbx.settings.ari)
    try:
        async with aclosing(ari.events()) as events:
            assert isinstance(await _next(events, Connected), Connected)
            # Asterisk sends the application only the events the flows read.
            app = await ari.request("GET", f"/applications/{pbx.settings.ari.app}")
            assert sorted(e["type"] for e in app["events_allowed"]) == sorted(WANTED_EVENTS)
            call = asyncio.create_task(sipp.call("040404045", caller="031123456"))
            start = await _next(events, StasisStart)
            assert isinstance(start, StasisStart)
            assert start.channel.exten == "040404045"
            assert start.channel.caller_number == "031123456"
            assert start.application == pbx.settings.ari.app
            await ari.answer(start.channel.id)
            await ari.hangup(start.channel.id)
            end = await _next(events, StasisEnd)
            assert isinstance(end, StasisEnd) and end.channel.id == start.channel.id
            result = await call
            assert result.ok, result.errors()
    finally:
        await ari.aclose()


async def test_every_dialled_form_reaches_the_application(pbx: Asterisk, sipp: Sipp) -> None:
    """National, E.164 and 00386 forms of a service number all enter the application."""
    ari = AriClient(pbx.settings.ari)
    try:
        async with aclosing(ari.events()) as events:
            await _next(events, Connected)
            for form in ("040404040", "+38640404040", "0038640404040"):
                call = asyncio.create_task(sipp.call(form))
                start = await _next(events, StasisStart)
                assert isinstance(start, StasisStart)
                assert start.channel.exten == form
                await ari.answer(start.channel.id)
                await ari.hangup(start.channel.id)
                assert (await call).ok
    finally:
        await ari.aclose()


def _service_env(pbx: Asterisk, database_url: str, journal: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("IVR_")}
    env["IVR_CONFIG"] = str(pbx.paths.settings_file)
    env["IVR_DATABASE__URL"] = database_url
    env["IVR_JOURNAL__DIRECTORY"] = str(journal)
    return env


async def test_serve_takes_a_call(pbx: Asterisk, sipp: Sipp, database_url: str,
                                  tmp_path: Path) -> None:
    """`ivr serve` connects to ARI and logs the call with its line; SIGTERM stops it."""
    log_path = tmp_path / "service.log"
    with log_path.open("wb") as log:
        service = subprocess.Popen(
            [sys.executable, "-m", "ivr", "serve"],
            env=_service_env(pbx, database_url, tmp_path / "journal"),
            stdout=log, stderr=subprocess.STDOUT)
    try:
        await _wait_for_log(log_path, "ARI connected")
        result = await sipp.call("040404040", caller="+38631123456", hold_ms=2000)
        assert result.ok, result.errors()
        entry = await _wait_for_log(log_path, "call entered the application")
        assert entry["dialled"] == "+38640404040"
        assert entry["caller"] == "+38631123456"
        assert entry["line"] == "service"
    finally:
        service.send_signal(signal.SIGTERM)
        try:
            code = service.wait(15)
        except subprocess.TimeoutExpired:
            service.kill()
            raise AssertionError(
                f"the service did not stop on SIGTERM:\n{log_path.read_text()[-4000:]}"
            ) from None
    assert code == 0, log_path.read_text()


async def _wait_for_log(path: Path, message: str, timeout: float = 15.0) -> dict[str, object]:
    deadline = asyncio.get_running_loop().time() + timeout
    while asyncio.get_running_loop().time() < deadline:
        for line in path.read_text().splitlines():
            with contextlib.suppress(json.JSONDecodeError):
                entry = json.loads(line)
                if entry.get("message") == message:
                    return dict(entry)
        await asyncio.sleep(0.1)
    raise AssertionError(f"no {message!r} in the service log:\n{path.read_text()[-3000:]}")

