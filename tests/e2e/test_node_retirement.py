"""Retiring a node for good (``ivr jobs retire-node``) against the real test PBX: refused
while the node's service runs, and while its Asterisk has a call; once the service is
stopped and the calls are over, the recorded call's file is in the store, not on the
spool, the call taken while no service ran is recorded as a call (unrecorded), and the
node may go."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import pytest

from testpbx.asterisk import Asterisk
from testpbx.sipp import Pause, Press, Sipp

from .conftest import migrated_database, running_service, short_prompts
from .test_inbound_queue import wait_until_idle

pytestmark = pytest.mark.pbx

STORED_SQL = """
SELECT r.file_name, r.stored_at, r.stored_location FROM recordings r
JOIN calls c ON c.id = r.call_id WHERE c.caller_raw = :caller
"""
LATE_SQL = """
SELECT c.ended_at IS NOT NULL AS ended,
       (SELECT count(*) FROM recordings r WHERE r.call_id = c.id) AS recordings
FROM calls c WHERE c.caller_raw = :caller
"""


async def until_a_call_is_up(pbx: Asterisk, wait: float = 20.0) -> None:
    for _ in range(int(wait * 5)):
        if "0 active channels" not in pbx.cli("core show channels count").stdout:
            return
        await asyncio.sleep(0.2)
    raise AssertionError("the call never reached the PBX")


async def test_a_node_retires_only_once_its_service_is_stopped_and_its_asterisk_idle(
        pbx: Asterisk, sipp: Sipp, new_database: Any, tmp_path: Path) -> None:
    await wait_until_idle(pbx)
    async with migrated_database(new_database) as url:
        async with running_service(pbx, url, tmp_path / "service.log",
                                   short_prompts(pbx)) as service:
            call = asyncio.create_task(sipp.call(
                "040404040", caller="031000741", actions=(Pause(3800), Press("1")),
                hold_ms=8000))
            await until_a_call_is_up(pbx)
            serving = await service.cli("jobs", "retire-node")
            result = await call
            record = await service.call_record("031000741")
        await wait_until_idle(pbx)
        # The service is stopped, but the carrier still sends this node a call: the dialplan
        # hands it to its queue unrecorded, and notes it for the service.
        late = asyncio.create_task(sipp.call("040404040", caller="031000742", hold_ms=6000))
        await until_a_call_is_up(pbx)
        busy = await service.cli("jobs", "retire-node")
        late_result = await late
        await wait_until_idle(pbx)
        # the node's service is stopped and its Asterisk idle: it hands over what is left
        # at once: the late call's end note may be a moment old; retire-node waits for it
        retired = await service.cli("jobs", "retire-node")
        [stored] = await service.query(STORED_SQL, {"caller": "031000741"})
        [unattended] = await service.query(LATE_SQL, {"caller": "031000742"})

    assert serving.returncode == 1, serving.stdout
    assert "ivr serve, pid" in serving.stderr and "holds this node" in serving.stderr
    assert result.ok, result.errors()
    assert record["decision"] == "consent" and record["file_name"]
    assert busy.returncode == 1, busy.stdout
    assert "still has" in busy.stderr and "route calls to other nodes" in busy.stderr
    assert late_result.ok, late_result.errors()
    assert retired.returncode == 0, retired.stderr
    report = json.loads(retired.stdout)
    assert (report["ready_to_go"], report["left"], report["calls_closed"],
            report["notes_recorded"]) == (True, [], 0, 1)
    assert report["recordings"]["failed"] == 0
    assert stored["stored_at"] is not None, stored
    assert Path(stored["stored_location"].removeprefix("file://")).is_file()
    assert not (Path(service.recordings) / record["file_name"]).exists()
    assert unattended == {"ended": True, "recordings": 0}, unattended
