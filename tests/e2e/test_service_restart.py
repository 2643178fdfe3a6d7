"""A service restart in the middle of a call: the next instance resolves the call on the
safe side. (Its own module: no other service instance may run meanwhile.)"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest

from testpbx.sipp import Pause, Press, Sipp

pytestmark = pytest.mark.pbx


async def test_a_call_left_by_a_killed_service_is_resolved_unrecorded(
        service_runner: Any, sipp: Sipp, tmp_path: Path) -> None:
    """The service dies (SIGKILL) while a service-line caller hears the notice. The next
    instance finds the channel still in the application and hands it to its queue
    without recording: no consent is stored, so nothing may be recorded."""
    async with service_runner.database() as url:
        async with service_runner.run(url, tmp_path / "first.log") as first:
            call = asyncio.create_task(sipp.call("040404040", caller="031000702",
                                                 actions=(Pause(4000), Press("1")),
                                                 hold_ms=6000))
            await first.wait_for_log("call entered the application")
            first.process.kill()
            first.process.wait()
        async with service_runner.run(url, tmp_path / "second.log") as second:
            await second.wait_for_log(
                "channel left in the application resolved: continued unrecorded")
            assert (await call).ok
            records = await second.all_call_records()
            (record,) = [r for r in records if r["caller_raw"] == "031000702"]
            assert record["decision"] is None and record["file_name"] is None
            assert not list(second.recordings.glob(f"{record['id']}*"))
            assert record["end_reason"] == "service restarted: continued unrecorded"
