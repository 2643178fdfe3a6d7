"""A crash never needs a person: the `make up` stack runs `ivr serve` under a supervisor
that starts it again, as systemd's Restart=on-failure does in production
(deploy/ivr.service). And the service's log never contains a secret."""

from __future__ import annotations

import asyncio
import os
import signal
import time
from pathlib import Path
from typing import Any

import pytest

from testpbx.asterisk import Asterisk, pid_alive
from testpbx.stack import Service

pytestmark = pytest.mark.pbx


def children(pid: int) -> list[int]:
    found: list[int] = []
    for task in Path(f"/proc/{pid}/task").iterdir():
        text = (task / "children").read_text().split()
        found += [int(p) for p in text]
    return found


async def test_a_killed_service_is_started_again_by_its_supervisor(
        pbx: Asterisk, service_runner: Any, monkeypatch: pytest.MonkeyPatch,
        tmp_path: Path) -> None:
    async with service_runner.database() as url:
        monkeypatch.setenv("IVR_DATABASE__URL", url)
        monkeypatch.setenv("IVR_JOURNAL__DIRECTORY", str(tmp_path / "journal"))
        monkeypatch.setenv("IVR_CONFIG", str(pbx.paths.settings_file))
        service = Service(pbx.paths)
        await asyncio.to_thread(service.start)
        supervisor = service.running_pid()
        assert supervisor is not None
        try:
            (first,) = children(supervisor)
            connected_before = sum(e.get("message") == "ARI connected"
                                   for e in service.entries())
            os.kill(first, signal.SIGKILL)
            killed_at = time.monotonic()
            for _ in range(150):
                await asyncio.sleep(0.1)
                now_connected = sum(e.get("message") == "ARI connected"
                                    for e in service.entries())
                if now_connected > connected_before:
                    break
            restarted_after = time.monotonic() - killed_at
            (second,) = children(supervisor)
            assert second != first and not pid_alive(first)
            assert now_connected > connected_before, "the service was not started again"
            print(f"restarted and connected to ARI {restarted_after:.1f} s after SIGKILL")
        finally:
            await asyncio.to_thread(service.stop)
        assert not pid_alive(supervisor)


def test_no_secret_reaches_a_log(pbx: Asterisk) -> None:
    """The logs of every service instance of this test run, and Asterisk's."""
    secrets = [pbx.settings.ari.password.get_secret_value(),
               pbx.settings.ami.secret.get_secret_value(),
               pbx.settings.database.password() or "ivr-test-db"]
    logs = [p for p in Path("/tmp").glob("pytest-of-*/pytest-current/**/*.log")]
    logs += [pbx.paths.logs / "service.log", pbx.messages_log]
    checked = 0
    for log in logs:
        if log.is_file():
            text = log.read_text(errors="replace")
            checked += 1
            for secret in secrets:
                assert secret not in text, f"{secret[:3]}... appears in {log}"
    assert checked >= 2


async def test_every_listening_port_is_bound_to_the_configured_address(
        pbx: Asterisk, service_runner: Any, tmp_path: Path) -> None:
    """SIP, ARI (HTTP), AMI, FastAGI, the HTTP reports and the console listen on 127.0.0.1
    only."""
    import subprocess

    async with service_runner.database() as url, service_runner.run(
            url, tmp_path / "service.log"):
        listening = subprocess.run(["ss", "-H", "-lntu"], capture_output=True, text=True,
                                   check=True).stdout.splitlines()
    ports = {"5060", "8088", "5038", "4573", "4574", "8080"}
    seen: dict[str, str] = {}
    for line in listening:
        local = line.split()[4]
        address, _, port = local.rpartition(":")
        if port in ports:
            seen[port] = address
    assert set(seen) == ports, seen
    assert all(address == "127.0.0.1" for address in seen.values()), seen
