"""PostgreSQL stopped for 30 s under a steady call load (issue 7, point 2), on a server of
the test's own: calls keep flowing, each decision is durably stored before its recording
starts (in PostgreSQL, or fsynced in the outage journal), and once PostgreSQL is back the
journal is replayed: every call is there once, with its decision, its recording and its
missed-call record, and nothing is duplicated. (Its own module: no other service runs.)"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest

from ivr.store.migrate import upgrade
from testpbx.postgres import ScratchPostgres
from testpbx.sipp import Pause, Press, Sipp, SippResult

from .conftest import FaultFigures, recordings_without_basis

pytestmark = pytest.mark.pbx

CALLS = 40  # one a second
OUTAGE_AT, OUTAGE_S = 6.0, 30.0
DURING_QUESTION = Pause(3800)

DUPLICATES_SQL = """
SELECT (SELECT count(*) FROM calls) - (SELECT count(DISTINCT channel_id) FROM calls) AS calls,
       (SELECT count(*) FROM audit_log WHERE action = 'recording_created')
     - (SELECT count(DISTINCT subject_id) FROM audit_log
        WHERE action = 'recording_created') AS audits,
       (SELECT count(*) FROM missed_calls) AS missed,
       (SELECT count(*) FROM recordings) AS recordings
"""


@pytest.fixture
def postgres() -> Iterator[ScratchPostgres]:
    server = ScratchPostgres()
    try:
        server.start()
        server.create_database()
        upgrade(server.url)
        yield server
    finally:
        server.remove()


def expected(i: int) -> str:
    return ("legal_basis", "consent", "refusal")[i % 3]


async def place(sipp: Sipp, i: int) -> SippResult:
    await asyncio.sleep(i * 1.0)
    decision = expected(i)
    if decision == "legal_basis":
        return await sipp.call("040404045", caller=f"03100{i:04d}", hold_ms=5000)
    digit = "1" if decision == "consent" else "2"
    return await sipp.call("040404040", caller=f"03100{i:04d}", hold_ms=7000,
                           actions=(DURING_QUESTION, Press(digit, "rfc4733" if i % 2 else "info")))


async def drained(service: Any, journal: Path) -> None:
    """Wait until every call is closed, its missed call stored and the journal empty
    (nothing rejected)."""
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline:
        (row,) = await service.query(
            "SELECT (SELECT count(*) FROM calls WHERE ended_at IS NULL) AS open, "
            "(SELECT count(*) FROM missed_calls) AS missed", {})
        if not any(journal.glob("*.jsonl")) and row == {"open": 0, "missed": CALLS}:
            return
        await asyncio.sleep(0.2)
    raise AssertionError(f"not drained: {sorted(p.name for p in journal.iterdir())}, {row}")


async def test_postgresql_stopped_for_30_s_under_load_loses_nothing(
        service_runner: Any, sipp: Sipp, postgres: ScratchPostgres, tmp_path: Path) -> None:
    since = time.time()
    async with service_runner.run(postgres.url, tmp_path / "service.log") as service:
        calls = [asyncio.create_task(place(sipp, i)) for i in range(CALLS)]
        await asyncio.sleep(OUTAGE_AT)
        await asyncio.to_thread(postgres.stop)
        await asyncio.sleep(OUTAGE_S)
        await asyncio.to_thread(postgres.start)
        back = time.time()
        results = await asyncio.gather(*calls)
        journal = tmp_path / "journal"
        await drained(service, journal)
        replays = [e for e in service.entries()
                   if e.get("message") == "journal replayed into PostgreSQL"]
        records = await service.all_call_records(wait=60)
        (duplicates,) = await service.query(DUPLICATES_SQL, {})

    failed = [i for i, r in enumerate(results) if not r.ok]
    assert not failed, f"calls that did not complete: {failed}: {results[failed[0]].errors()}"
    journalled = sum(e["entries"] for e in replays)
    assert journalled >= 20, "the outage barely reached the journal: was PostgreSQL stopped?"
    recovered = datetime.fromisoformat(replays[0]["time"]).timestamp() - back
    by_caller = {r["caller_raw"]: r for r in records}
    assert len(records) == CALLS == len(by_caller)
    lost = []
    for i in range(CALLS):
        record = by_caller[f"03100{i:04d}"]
        if record["decision"] != expected(i):
            lost.append((i, record["decision"]))
        elif expected(i) == "refusal":
            assert record["file_name"] is None
        else:
            assert record["file_name"] == f"{record['id']}.wav" and record["mixmonitor_id"]
            assert (service.recordings / record["file_name"]).is_file()
    assert not lost, f"decisions lost or wrong: {lost}"
    unbased = await recordings_without_basis(service, since)
    assert unbased == []
    assert duplicates == {"calls": 0, "audits": 0, "missed": CALLS,
                          "recordings": sum(expected(i) != "refusal" for i in range(CALLS))}
    FaultFigures("PostgreSQL stopped 30 s under 1 call/s", CALLS, CALLS - len(failed),
                 len(unbased), len(lost), round(recovered, 1)).write("database_outage")
    print(f"\n{journalled} writes journalled; the first replay {recovered:.1f} s after "
          "PostgreSQL was back")
