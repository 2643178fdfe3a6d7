"""The recording store on the real test PBX (issue 9 point 4): a recorded call's file,
written by MixMonitor on the node's spool, is moved by the running service's own job into
the store once the call has ended and the file has settled: complete (its WAV header
finalised, so MixMonitor had closed it), hash verified, the spool copy gone. The service's
deletion job deletes it there, once, with a certificate that names the location."""

from __future__ import annotations

import asyncio
import hashlib
import json
import struct
import time
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import pool, text
from sqlalchemy.ext.asyncio import create_async_engine

from testpbx.sipp import Pause, Sipp

pytestmark = pytest.mark.pbx

SALES = "040404045"


async def stored_row(service: Any, call_id: str, wait: float = 40.0) -> dict[str, Any]:
    deadline = time.monotonic() + wait
    while True:
        [row] = await service.query(
            "SELECT id::text AS id, file_name, stored_location, sha256, size_bytes "
            "FROM recordings WHERE call_id = CAST(:id AS uuid)", {"id": call_id})
        if row["stored_location"] is not None:
            return dict(row)
        if time.monotonic() > deadline:
            raise AssertionError(f"not moved to the store within {wait} s: {row}; log:\n"
                                 f"{service.log.read_text(errors='replace')[-3000:]}")
        await asyncio.sleep(0.5)


async def expire(url: str, recording_id: str) -> None:
    engine = create_async_engine(url, poolclass=pool.NullPool)
    try:
        async with engine.begin() as conn:
            await conn.execute(text("UPDATE recordings SET expires_at = now() - interval '1 day'"
                                    " WHERE id = CAST(:id AS uuid)"), {"id": recording_id})
    finally:
        await engine.dispose()


async def test_a_recorded_call_moves_to_the_store_complete_and_hash_verified(
        service_runner: Any, sipp: Sipp, tmp_path: Path) -> None:
    store = tmp_path / "store"
    env = {"IVR_RECORDINGS__STORE__PATH": str(store), "IVR_RECORDINGS__SETTLE_SECONDS": "2",
           "IVR_JOBS__INTERVAL_SECONDS": "5"}
    async with service_runner.database() as url, \
            service_runner.run(url, tmp_path / "service.log", env=env) as service:
        call = await sipp.call(SALES, caller="031000961", actions=(Pause(2500),),
                               hold_ms=2500)
        assert call.ok, call.errors()
        record = await service.call_record("031000961")
        assert record["decision"] == "legal_basis" and record["file_name"]
        spool_copy = service.recording(record["file_name"])

        row = await stored_row(service, record["id"])  # moved by ivr serve's own job

        assert not spool_copy.exists()
        assert row["stored_location"].startswith(f"file://{store}/")
        stored = Path(row["stored_location"].removeprefix("file://"))
        assert stored.name == record["file_name"] and stored.stat().st_mode & 0o777 == 0o640
        data = stored.read_bytes()
        assert hashlib.sha256(data).hexdigest() == row["sha256"]
        assert len(data) == row["size_bytes"] > 8000  # the notice's end, then the caller
        # MixMonitor had closed the file: the RIFF and data sizes in its header are final.
        assert data[:4] == b"RIFF" and struct.unpack("<I", data[4:8])[0] == len(data) - 8
        assert struct.unpack("<I", data[40:44])[0] == len(data) - 44
        moved = await service.wait_for_log("recording store job")
        assert (moved["moved"], moved["failed"], moved["missing"]) == (1, 0, 0)

        # Retention over: ivr serve's own deletion job deletes it from the store, and says
        # where; a run of the jobs by hand afterwards finds nothing left to delete or certify.
        await expire(url, row["id"])
        deleted = await service.wait_for_log("deletion job")
        assert (deleted["deleted"], deleted["failed"], deleted["already_gone"]) == (1, 0, 0)
        assert not stored.exists()
        job = await service.cli("jobs", "run-once")
        assert job.returncode == 0, job.stdout + job.stderr
        assert json.loads(job.stdout)["deleted"] == 0
        [certificate] = await service.query(
            "SELECT location, file_sha256, file_existed FROM deletion_certificates "
            "WHERE recording_id = CAST(:id AS uuid)", {"id": row["id"]})
        assert certificate == {"location": row["stored_location"],
                               "file_sha256": row["sha256"], "file_existed": True}
