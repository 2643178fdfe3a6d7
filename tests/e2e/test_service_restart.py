"""A service restart in the middle of a call: the next instance resolves the call on the
safe side. (Its own module: no other service instance may run meanwhile.)"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Coroutine
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import pytest

from ivr.calls.recovery import ENDED_UNFOLLOWED, LEFT_IN_QUEUE, RESTART_REASON
from testpbx.asterisk import AGENT_PASSWORD, CUSTOMER_PORT
from testpbx.sipp import Pause, Press, Sipp

from .conftest import FaultFigures, recordings_without_basis

pytestmark = pytest.mark.pbx


async def test_a_call_left_by_a_killed_service_is_resolved_unrecorded(
        service_runner: Any, sipp: Sipp, tmp_path: Path) -> None:
    """The service dies (SIGKILL) while a service-line caller hears the notice. The next
    instance finds the channel still in the application and hands it to its queue
    without recording: no consent is stored, so nothing may be recorded. It follows the
    caller there: nobody answers before they hang up, so the call is to be returned
    (rule 4): its missed call is stored, with a callback that plays the notice."""
    placed = sipp.call("040404040", caller="031000702", actions=(Pause(4000), Press("1")),
                       hold_ms=6000)
    async with killed_and_restarted(service_runner, tmp_path, placed,
                                    "call entered the application", RESOLVED) as (
            second, recovered, _):
        records = await second.all_call_records()
        (record,) = [r for r in records if r["caller_raw"] == "031000702"]
        assert record["decision"] is None and record["file_name"] is None
        assert not list(second.recordings.glob(f"{record['id']}*"))
        assert record["end_reason"] == "service restarted: continued unrecorded"
        missed = await second.wait_for_log("missed call")
        assert missed["call_id"] == str(record["id"]) and missed["reason"] == "abandoned"
        stored_missed = await missed_with_callback(second, record["id"])
        # no decision was heard: the callback is to play the notice
        assert stored_missed == {"reason": "abandoned", "caller": "+38631000702",
                                 "status": "open", "notice_required": True}
    FaultFigures("kill -9 during the notice; caller stays", 1, 1, 0, 0,
                 round(recovered, 1)).write("kill_during_notice")


async def test_killed_while_the_caller_waits_in_the_queue(
        service_runner: Any, sipp: Sipp, tmp_path: Path) -> None:
    """A caller consents, is recorded and handed to the queue; the service dies while they
    wait there. The next instance finds them in the queue and follows them from then on:
    nobody answers before they hang up, so the call is to be returned (rule 4). Its missed
    call is stored with a callback that inherits the consent (no notice again), the call is
    closed when the caller left, and its recording, which had its basis, is kept and marked
    stopped then."""
    since = time.time()
    placed = sipp.call("040404040", caller="031000721", actions=(Pause(3800), Press("1")),
                       hold_ms=14000)
    async with killed_and_restarted(service_runner, tmp_path, placed,
                                    "call handed to the queue", FOLLOWED) as (
            second, recovered, followed):
        missed = await second.wait_for_log("missed call")
        record = await stored(second, "031000721")
        stored_missed = await missed_with_callback(second, record["id"])
        unbased = await recordings_without_basis(second, since)
    assert followed["call_id"] == record["id"] == missed["call_id"]
    assert missed["reason"] == "abandoned"
    assert stored_missed == {"reason": "abandoned", "caller": "+38631000721",
                             "status": "open", "notice_required": False}
    assert (record["state"], record["end_reason"]) == ("recovered", LEFT_IN_QUEUE)
    assert record["decision"] == "consent"
    assert record["mixmonitor_id"] and record["stopped_at"] == record["ended_at"]
    assert (second.recordings / record["file_name"]).stat().st_size > 0
    assert unbased == []
    FaultFigures("kill -9 while the caller waits in the queue", 1, 1, 0, 0,
                 round(recovered, 1)).write("kill_in_queue")


async def missed_with_callback(service: Any, call_id: object) -> dict[str, Any]:
    """The call's missed call and the callback it joined."""
    (row,) = await service.query(
        "SELECT m.reason, m.caller, b.status, b.notice_required FROM missed_calls m "
        "JOIN callbacks b ON b.id = m.callback_id WHERE m.call_id = :id", {"id": call_id})
    return dict(row)


RECORD_SQL = """
SELECT c.id::text AS id, c.ended_at, c.end_reason, c.state, d.decision, r.file_name,
       r.mixmonitor_id, r.not_started_at, r.stopped_at
FROM calls c LEFT JOIN decisions d ON d.call_id = c.id LEFT JOIN recordings r ON r.call_id = c.id
WHERE c.caller_raw = :caller
"""


async def stored(service: Any, caller: str) -> dict[str, Any]:
    (record,) = await service.query(RECORD_SQL, {"caller": caller})
    return dict(record)


RESOLVED = "channel left in the application resolved: continued unrecorded"
FOLLOWED = "caller left in the queue by an earlier instance followed"


@asynccontextmanager
async def killed_and_restarted(service_runner: Any, tmp_path: Path,
                               placed: Coroutine[Any, Any, Any], kill_at: str,
                               resolved: str) -> AsyncIterator[tuple[Any, float, dict[str, Any]]]:
    """On a database of its own, the call ``placed`` runs while the service is killed once
    its log says ``kill_at``. Given: the next instance once its log says ``resolved``, the
    seconds from the death to that, and that entry; the call has completed."""
    async with service_runner.database() as url:
        async with service_runner.run(url, tmp_path / "first.log") as first:
            call = asyncio.create_task(placed)
            await first.wait_for_log(kill_at)
            died = killed(first)
        async with service_runner.run(url, tmp_path / "second.log") as second:
            entry = await second.wait_for_log(resolved)
            recovered = time.monotonic() - died
            assert (await call).ok
            yield second, recovered, entry


def killed(service: Any) -> float:
    """Kill -9 now; the moment it died."""
    service.process.kill()
    service.process.wait()
    return time.monotonic()


async def test_killed_during_the_question_a_caller_who_left_meanwhile_is_closed(
        service_runner: Any, sipp: Sipp, tmp_path: Path) -> None:
    """The service dies while the question plays; the caller presses 1 to nobody and hangs
    up before the next instance starts. No decision was stored, so none may appear and
    nothing is recorded; the next instance closes the call it finds left open."""
    since = time.time()
    async with service_runner.database() as url:
        async with service_runner.run(url, tmp_path / "first.log",
                                      env={"IVR_FAULT_POINT": "question"}) as first:
            call = asyncio.create_task(sipp.call("040404040", caller="031000711",
                                                 actions=(Pause(4000), Press("1")),
                                                 hold_ms=1000))
            await first.wait_for_log("fault point reached")
            died = killed(first)
        assert (await call).ok
        async with service_runner.run(url, tmp_path / "second.log") as second:
            await second.wait_for_log("call left open by an earlier instance closed")
            recovered = time.monotonic() - died
            record = await stored(second, "031000711")
            unbased = await recordings_without_basis(second, since)
    assert (record["decision"], record["file_name"]) == (None, None)
    assert (record["state"], record["end_reason"]) == ("recovered", ENDED_UNFOLLOWED)
    assert unbased == []
    FaultFigures("kill -9 during the question; caller leaves while down", 1, 1, 0, 0,
                 round(recovered, 1)).write("kill_during_question")


async def test_killed_between_the_decision_and_mixmonitor(
        service_runner: Any, sipp: Sipp, tmp_path: Path) -> None:
    """The consent is stored, the service dies before MixMonitor starts. The next
    instance keeps the decision as it is, hands the caller to the queue unrecorded, and
    the recording row says it never started (no file)."""
    since = time.time()
    async with service_runner.database() as url:
        async with service_runner.run(url, tmp_path / "first.log",
                                      env={"IVR_FAULT_POINT": "before_recording"}) as first:
            call = asyncio.create_task(sipp.call("040404040", caller="031000712",
                                                 actions=(Pause(3800), Press("1")),
                                                 hold_ms=8000))
            await first.wait_for_log("fault point reached")
            died = killed(first)
        async with service_runner.run(url, tmp_path / "second.log") as second:
            await second.wait_for_log(RESOLVED)
            recovered = time.monotonic() - died
            await second.wait_for_log("recording allowed but never started: the service "
                                      "stopped first")
            assert (await call).ok
            record = await stored(second, "031000712")
            unbased = await recordings_without_basis(second, since)
            verified = await second.cli("audit", "verify")
    assert record["decision"] == "consent"  # the stored decision is intact
    assert record["file_name"] == f"{record['id']}.wav" and record["mixmonitor_id"] is None
    assert record["not_started_at"] is not None
    assert not (second.recordings / record["file_name"]).exists()
    assert record["end_reason"] == RESTART_REASON
    assert unbased == []
    assert verified.returncode == 0, verified.stdout + verified.stderr
    FaultFigures("kill -9 between the stored consent and MixMonitor", 1, 1, 0, 0,
                 round(recovered, 1)).write("kill_before_recording")


async def test_killed_during_a_desk_phone_callback_that_ends_while_down(
        service_runner: Any, sipp: Sipp, tmp_path: Path) -> None:
    """A missed consenting caller is called back from the agent's desk phone; the service
    dies while they talk, and the call ends before it is back. The recording (started by
    the dialplan on the stored consent) is kept and marked stopped; the call is closed;
    the attempt ends as interrupted and the callback stays open for a retry."""
    since = time.time()
    async with service_runner.database() as url:
        async with service_runner.run(url, tmp_path / "first.log") as first:
            missed = await sipp.call("040404040", caller="031000713",
                                     actions=(Pause(3800), Press("1")), hold_ms=4000)
            assert missed.ok
            await first.wait_for_log("missed call")
            async with sipp.customer(CUSTOMER_PORT, hold_ms=8000):
                dialled = asyncio.create_task(
                    sipp.agent_dials("031000713", AGENT_PASSWORD, hold_ms=3000))
                await first.wait_for_log("desk-phone callback linked")
                await asyncio.sleep(1.0)  # they talk; the dialplan records
                died = killed(first)
                assert (await dialled).ok
        async with service_runner.run(url, tmp_path / "second.log") as second:
            closed = await second.wait_for_log("call left open by an earlier instance closed")
            recovered = time.monotonic() - died
            (callback,) = await second.query(
                "SELECT b.status, a.outcome, a.ended_at, c.end_reason, c.direction, "
                "d.decision, r.file_name, r.stopped_at FROM callback_attempts a "
                "JOIN callbacks b ON b.id = a.callback_id JOIN calls c ON c.id = a.call_id "
                "JOIN decisions d ON d.call_id = c.id "
                "LEFT JOIN recordings r ON r.call_id = c.id", {})
            unbased = await recordings_without_basis(second, since)
    assert closed["callback"] == "open"
    assert (callback["status"], callback["outcome"]) == ("open", "interrupted")
    assert (callback["direction"], callback["decision"]) == ("callback", "consent")
    assert callback["end_reason"] == ENDED_UNFOLLOWED
    assert callback["stopped_at"] is not None
    assert (second.recordings / callback["file_name"]).is_file()
    assert unbased == []
    FaultFigures("kill -9 during a desk-phone callback; it ends while down", 2, 2, 0, 0,
                 round(recovered, 1)).write("kill_during_callback")


def burst_decision(i: int) -> str:
    return ("legal_basis", "consent", "refusal")[i % 3]


async def test_killed_under_a_burst_of_calls_in_every_phase(
        service_runner: Any, sipp: Sipp, tmp_path: Path) -> None:
    """Twelve calls half a second apart, so that the kill finds them in the notice, the
    question, just decided, recording and in the queue, and the last ones arrive while no
    instance runs. After the restart every caller completes, every call is closed, every
    stored decision is the one its caller gave, and no file exists without one that
    allows it."""
    since = time.time()

    async def place(i: int) -> Any:
        await asyncio.sleep(i * 0.5)
        if burst_decision(i) == "legal_basis":
            return await sipp.call("040404045", caller=f"0310030{i:02d}", hold_ms=9000)
        return await sipp.call("040404040", caller=f"0310030{i:02d}", hold_ms=6000,
                               actions=(Pause(3800), Press("1" if i % 3 == 1 else "2")))

    async with service_runner.database() as url:
        async with service_runner.run(url, tmp_path / "first.log") as first:
            calls = [asyncio.create_task(place(i)) for i in range(12)]
            await asyncio.sleep(4.5)
            died = killed(first)
            entered = {"0" + e["caller"].removeprefix("+386") for e in first.entries()
                       if e.get("message") == "call entered the application"}
        async with service_runner.run(url, tmp_path / "second.log") as second:
            await second.wait_for_log(RESOLVED)
            recovered = time.monotonic() - died
            results = await asyncio.gather(*calls)
            # all twelve: those placed while no instance ran are recorded from the notes
            # of their ends, which must not be left to whichever service runs next here
            records = {r["caller_raw"]: r
                       for r in await second.all_call_records(wait=60, count=12)}
            unbased = await recordings_without_basis(second, since)
    assert all(r.ok for r in results), [r.errors() for r in results if not r.ok]
    wrong = [f"0310030{i:02d}" for i in range(12) if f"0310030{i:02d}" in records
             and records[f"0310030{i:02d}"]["decision"] not in (None, burst_decision(i))]
    # Calls placed while no instance ran never entered the application: the dialplan
    # sent them to their queue unrecorded (STASISSTATUS=FAILED). Every earlier one is here.
    assert entered and entered <= set(records) and not wrong
    assert all(r["ended_at"] is not None for r in records.values())
    assert unbased == []
    FaultFigures("kill -9 under 12 calls in every phase", 12, sum(r.ok for r in results),
                 len(unbased), len(wrong), round(recovered, 1)).write("kill_under_burst")
