"""Several nodes sharing one PostgreSQL (issue 9 point 4), proved on one machine: the first
node (Asterisk on the default ports) and node 2 (the same root, its own ports, directories
and spool; testpbx/node.py), each with its own ``ivr serve``, both on one database.

- Calls to both at once are each stored once, with their node and decision; recordings
  (rules 2, 3) land on the spool of the node that took the call, and only for consent or
  sales.
- Missed calls on both nodes from one number make one callback (rule 4), not one per node.
- The sweep of calls left open touches only its own node's calls.
- The recording store job run on both nodes at once moves each node's files, and only its
  own, into the shared store, hash verified.
- The deletion job run on both nodes at once deletes and certifies each file once (rule 6),
  in the store or on the spool of the node that recorded it.
- A node's service killed (kill -9) while calls run on both: the other node carries on,
  the killed node's callers reach the queue unrecorded, and its restart settles its calls.

(Its own module: no other service instance may run meanwhile.)
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from ivr.calls.recovery import RESTART_REASON
from testpbx.asterisk import Asterisk, pid_alive
from testpbx.errors import SetupError
from testpbx.node import further_node
from testpbx.paths import Paths
from testpbx.ports import ensure_free
from testpbx.sipp import Action, Pause, Press, Sipp, SippResult

from .conftest import (
    TEST_STATE,
    ServiceRunner,
    ServiceUnderTest,
    recordings_without_basis,
    started_pbx,
)
from .test_service_restart import killed

pytestmark = pytest.mark.pbx

NODE2 = further_node(2)
FIRST = "node1"  # the first node's `node` setting in this module (its default: the host name)
SALES, CONSENT_LINE, REFUSAL_LINE = "040404045", "040404040", "040404030"
DURING_QUESTION = Pause(3800)
# Each caller calls both nodes at once: one row per node, one callback per caller.
CALLS: dict[str, tuple[str, str, tuple[Action, ...], str | None]] = {
    # name: (number, caller, actions, decision)
    "consent": (CONSENT_LINE, "031000911", (DURING_QUESTION, Press("1")), "consent"),
    "refusal": (REFUSAL_LINE, "031000912", (DURING_QUESTION, Press("2")), "refusal"),
    "sales": (SALES, "031000913", (Pause(2500),), "legal_basis"),
}


@dataclass
class Node:
    name: str
    pbx: Asterisk
    sipp: Sipp
    runner: ServiceRunner
    service: ServiceUnderTest

    @property
    def spool(self) -> Path:
        return self.service.recordings


@dataclass
class TwoNodes:
    url: str
    store: Path  # the recording store both nodes share (a directory)
    first: Node
    second: Node

    def __iter__(self) -> Iterator[Node]:
        return iter((self.first, self.second))


@pytest.fixture(scope="module")
def node2_pbx(pbx: Asterisk) -> Iterator[Asterisk]:
    """Node 2's Asterisk, from the first node's root; stopped at the end, leaving no
    process and its ports free."""
    paths = Paths(cache=pbx.paths.cache, state=TEST_STATE.with_name("test-pbx-node2"),
                  node=NODE2)
    with started_pbx(paths) as asterisk:
        pid = asterisk.running_pid()
        yield asterisk
    assert pid is not None and not pid_alive(pid), f"node 2's Asterisk (pid {pid}) still runs"
    deadline = time.monotonic() + 10
    while True:
        try:
            ensure_free("127.0.0.1", NODE2.ports())
            break
        except SetupError:
            if time.monotonic() > deadline:
                raise


STALE_SQL = """
INSERT INTO calls (id, channel_id, linkedid, direction, started_at, state, node)
VALUES (:id, :channel, :channel, 'inbound', :at, 'answering', :node)
"""


def service_env(node: str, store: Path) -> dict[str, str]:
    """Both nodes share the store; the store and deletion jobs inside `ivr serve` keep
    their 5-minute interval: the tests run them at once on both nodes with `ivr jobs`."""
    return {"IVR_NODE": node, "IVR_JOBS__SWEEP_SECONDS": "1",
            "IVR_RECORDINGS__STORE__PATH": str(store), "IVR_RECORDINGS__SETTLE_SECONDS": "1"}


@pytest.fixture(scope="module")
async def nodes(pbx: Asterisk, node2_pbx: Asterisk, new_database: Any,
                tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[TwoNodes]:
    """One database, calls left open by earlier instances of three nodes (the third is
    gone for good), then both services started at once."""
    logs = tmp_path_factory.mktemp("several-nodes")
    store = logs / "store"
    first_runner = ServiceRunner(pbx, new_database)
    second_runner = ServiceRunner(node2_pbx, new_database)
    async with first_runner.database() as url:
        an_hour_ago = datetime.now(UTC) - timedelta(hours=1)
        for node in (FIRST, NODE2.name, "node-gone"):
            await query(url, STALE_SQL, {"id": uuid.uuid4(), "channel": f"stale-{node}",
                                         "at": an_hour_ago, "node": node})
        for log in ("node1", "node2"):  # each node its own journal, beside its log
            (logs / log).mkdir()
        first_up = first_runner.run(url, logs / "node1" / "service.log",
                                    env=service_env(FIRST, store))
        second_up = second_runner.run(url, logs / "node2" / "service.log",
                                      env=service_env(NODE2.name, store))
        async with first_up as first, second_up as second:
            yield TwoNodes(
                url, store,
                Node(FIRST, pbx, Sipp(pbx.paths, pbx=f"127.0.0.1:{pbx.settings.pbx.sip_port}"),
                     first_runner, first),
                Node(NODE2.name, node2_pbx,
                     Sipp(node2_pbx.paths, pbx=f"127.0.0.1:{NODE2.sip_port}"),
                     second_runner, second))


async def query(url: str, sql: str, params: dict[str, Any]) -> list[dict[str, Any]]:
    from sqlalchemy import pool, text
    from sqlalchemy.ext.asyncio import create_async_engine

    engine = create_async_engine(url, poolclass=pool.NullPool)
    try:
        async with engine.begin() as conn:
            result = await conn.execute(text(sql), params)
            return [dict(r) for r in result.mappings()] if result.returns_rows else []
    finally:
        await engine.dispose()


async def place(node: Node, name: str, hold_ms: int = 5000) -> SippResult:
    number, caller, actions, _ = CALLS[name]
    return await node.sipp.call(number, caller=caller, actions=actions, hold_ms=hold_ms)


CALLS_SQL = """
SELECT c.id::text AS id, c.channel_id, c.node, c.caller_raw, c.ended_at, c.end_reason,
       c.line_kind, c.notice_completed, d.decision, r.file_name, r.basis
FROM calls c LEFT JOIN decisions d ON d.call_id = c.id LEFT JOIN recordings r ON r.call_id = c.id
WHERE c.caller_raw = ANY(:callers)
"""


async def closed_calls(url: str, callers: list[str], count: int,
                       wait: float = 30.0) -> list[dict[str, Any]]:
    """The ``count`` calls of ``callers``, once all are closed."""
    deadline = time.monotonic() + wait
    while True:
        rows = await query(url, CALLS_SQL, {"callers": callers})
        if len(rows) >= count and all(r["ended_at"] is not None for r in rows):
            return rows
        if time.monotonic() > deadline:
            raise AssertionError(f"expected {count} closed calls of {callers}, found {rows}")
        await asyncio.sleep(0.3)


async def missed_by_callback(url: str, count: int, wait: float = 15.0
                             ) -> list[tuple[str, str, int, list[str]]]:
    """Each callback's caller, status, missed calls and their nodes, once ``count`` missed
    calls are stored. Each is stored with its call's close, but a note's call (recorded
    by the sweep of the restarted instance) may close after the calls the test waited
    for, and the dialplan flow's sweep stores its missed calls just after its closes."""
    deadline = time.monotonic() + wait
    while True:
        callbacks = await query(url, """
            SELECT b.caller, b.status, count(*) AS missed,
                   array_agg(c.node ORDER BY c.node) AS nodes
            FROM callbacks b JOIN missed_calls m ON m.callback_id = b.id
            JOIN calls c ON c.id = m.call_id GROUP BY b.id""", {})
        if sum(b["missed"] for b in callbacks) >= count or time.monotonic() > deadline:
            return sorted((b["caller"], b["status"], b["missed"], b["nodes"])
                          for b in callbacks)
        await asyncio.sleep(0.3)


def closed_by(service: ServiceUnderTest) -> set[str]:
    return {e["call"] for e in service.entries()
            if e.get("message") == "call left open by an earlier instance closed"}


@dataclass
class CallsToBoth:
    rows: list[dict[str, Any]]
    seconds: float  # from placing them to every one stored closed


@pytest.fixture(scope="module")
async def calls_to_both(nodes: TwoNodes) -> CallsToBoth:
    """Each caller of CALLS calls both nodes, all at the same moment."""
    started = time.monotonic()
    results = await asyncio.gather(*(place(node, name) for node in nodes for name in CALLS))
    assert all(r.ok for r in results), [r.errors() for r in results if not r.ok]
    callers = [caller for _, caller, _, _ in CALLS.values()]
    rows = await closed_calls(nodes.url, callers, 2 * len(CALLS))
    return CallsToBoth(rows, time.monotonic() - started)


async def test_calls_to_both_nodes_are_stored_once_with_their_node_and_decision(
        nodes: TwoNodes, calls_to_both: CallsToBoth) -> None:
    """Rules 2 and 3 on two nodes at once: each call is one row naming the node that took
    it; recordings only for consent and sales, each on its own node's spool only. The
    calls of one number on both nodes are missed calls of one callback (rule 4). Each
    service closed the call its own node left open, and no other."""
    rows = calls_to_both.rows
    assert len(rows) == 2 * len(CALLS)
    assert len({r["channel_id"] for r in rows}) == len(rows)  # system names keep ids apart
    assert all(r["channel_id"].startswith(f"{NODE2.name}-") for r in rows
               if r["node"] == NODE2.name)
    by = {(r["caller_raw"], r["node"]): r for r in rows}
    for node in nodes:
        other = nodes.second if node is nodes.first else nodes.first
        for name, (_, caller, _, decision) in CALLS.items():
            row = by[(caller, node.name)]
            assert row["decision"] == decision, (name, node.name, row)
            if decision in ("consent", "legal_basis"):
                assert row["file_name"] == f"{row['id']}.wav", (name, node.name, row)
                assert (node.spool / row["file_name"]).stat().st_size > 44, (name, node.name)
                assert not (other.spool / row["file_name"]).exists()
            else:
                assert row["file_name"] is None
                assert not list(node.spool.glob(f"{row['id']}*"))

    callers = [caller for _, caller, _, _ in CALLS.values()]
    assert await missed_by_callback(nodes.url, 2 * len(callers)) == [
        ("+386" + caller[1:], "open", 2, sorted([FIRST, NODE2.name])) for caller in callers]

    assert closed_by(nodes.first.service) == {f"stale-{FIRST}"}
    assert closed_by(nodes.second.service) == {f"stale-{NODE2.name}"}
    (gone,) = await query(nodes.url, "SELECT ended_at FROM calls WHERE node = 'node-gone'", {})
    assert gone["ended_at"] is None  # several sweeps of each service left it alone
    await query(nodes.url, "UPDATE calls SET ended_at = now(), end_reason = 'test' "
                "WHERE node = 'node-gone'", {})
    print(f"\n{len(rows)} calls to two nodes at once stored in {calls_to_both.seconds:.1f} s")


def store_path(location: str) -> Path:
    assert location.startswith("file://"), location
    return Path(location.removeprefix("file://"))


async def test_recordings_of_both_nodes_move_to_the_shared_store_hash_verified(
        nodes: TwoNodes, calls_to_both: CallsToBoth) -> None:
    """The store job run on both nodes at once: each node moves the files of its own
    calls from its own spool (none missing, none twice), each stored with its SHA-256 and
    size, which the stored copy matches; the spool copies are gone."""
    recorded = {r["file_name"]: r for r in calls_to_both.rows if r["file_name"]}
    assert len(recorded) == 4
    await asyncio.sleep(1.5)  # recordings.settle_seconds after the calls ended
    started = time.monotonic()
    runs = await asyncio.gather(*(node.service.cli("jobs", "move-recordings")
                                  for node in nodes))
    seconds = time.monotonic() - started
    assert all(run.returncode == 0 for run in runs), [r.stdout + r.stderr for r in runs]
    reports = {node.name: json.loads(run.stdout) for node, run in zip(nodes, runs, strict=True)}
    for node in nodes:
        own = sum(r["node"] == node.name for r in recorded.values())
        assert (reports[node.name]["moved"], reports[node.name]["missing"],
                reports[node.name]["failed"]) == (own, 0, 0), reports

    stored = await query(nodes.url, """
        SELECT r.file_name, r.stored_location, r.sha256, r.size_bytes, c.node,
               (SELECT count(*) FROM audit_log a WHERE a.action = 'recording_stored'
                AND a.subject_id = r.id::text) AS audited
        FROM recordings r JOIN calls c ON c.id = r.call_id
        WHERE r.file_name = ANY(:files)""", {"files": list(recorded)})
    assert len(stored) == len(recorded)
    for row in stored:
        copy = store_path(row["stored_location"])
        assert copy.is_relative_to(nodes.store) and copy.name == row["file_name"]
        data = copy.read_bytes()
        assert (hashlib.sha256(data).hexdigest(), len(data)) == (row["sha256"],
                                                                 row["size_bytes"])
        assert row["audited"] == 1
        for node in nodes:
            assert not (node.spool / row["file_name"]).exists()
    print(f"\n{len(stored)} recordings of two nodes moved to the store by both at once in "
          f"{seconds:.1f} s: {reports}")


async def test_the_deletion_job_on_both_nodes_deletes_and_certifies_each_file_once(
        nodes: TwoNodes, calls_to_both: CallsToBoth) -> None:
    """Rule 6 with the job running on both nodes at once over expired recordings of both,
    some in the store, some still on the spool of the node that recorded them: every file
    is gone from where it was, with exactly one certificate naming that place."""
    consent, sales = "031000931", "031000932"
    results = await asyncio.gather(*(call for node in nodes for call in (
        node.sipp.call(CONSENT_LINE, caller=consent, actions=(DURING_QUESTION, Press("1")),
                       hold_ms=4000),  # past the end of the notice (about 7 s)
        node.sipp.call(SALES, caller=sales, actions=(Pause(2500),), hold_ms=1500))))
    assert all(r.ok for r in results), [r.errors() for r in results if not r.ok]
    await closed_calls(nodes.url, [consent, sales], 4)
    recordings = await query(nodes.url, """
        UPDATE recordings r SET expires_at = now() - interval '1 day' FROM calls c
        WHERE c.id = r.call_id AND r.deleted_at IS NULL
        RETURNING r.id::text AS id, r.file_name, r.stored_location, c.node""", {})
    spools = {node.name: node.spool for node in nodes}
    where = {r["file_name"]: store_path(r["stored_location"]) if r["stored_location"]
             else spools[r["node"]] / r["file_name"] for r in recordings}
    assert all(path.is_file() for path in where.values()), where
    in_store = sum(r["stored_location"] is not None for r in recordings)
    assert len(recordings) - in_store >= 4

    runs = await asyncio.gather(*(node.service.cli("jobs", "run-once") for node in nodes))
    assert all(run.returncode == 0 for run in runs), [r.stdout + r.stderr for r in runs]
    reports = [json.loads(run.stdout) for run in runs]

    certificates = await query(nodes.url, """
        SELECT c.file_name, c.file_existed, c.location,
               count(*) OVER (PARTITION BY c.recording_id) AS n
        FROM deletion_certificates c""", {})
    assert sorted(c["file_name"] for c in certificates) == sorted(where)
    assert all(c["n"] == 1 and c["file_existed"] for c in certificates), certificates
    assert all(store_path(c["location"]) == where[c["file_name"]] for c in certificates)
    assert sum(r["deleted"] for r in reports) == len(where), reports
    left = sorted(str(p) for p in where.values() if p.exists())
    assert left == [], f"certified deleted but still there: {left}; {reports}"
    print(f"\n{len(where)} expired recordings ({in_store} in the store, the rest on two "
          f"spools) deleted by both nodes' jobs at once: {reports}")


async def test_a_killed_node_leaves_the_other_carrying_on(nodes: TwoNodes) -> None:
    """Node 2's service dies (kill -9) while calls run on both nodes, node 2's callers
    still hearing the notice. Node 1's calls end as usual (decisions and recordings);
    node 2's callers reach their queue unrecorded (their 1 reached no one), also one who
    calls while it is down; the restarted instance settles node 2's calls."""
    first, second = nodes.first, nodes.second
    since = time.time()
    callers = {"031000921": first, "031000922": first, "031000923": second,
               "031000924": second}

    async def call(caller: str, node: Node, number: str, press: str | None) -> SippResult:
        actions = (DURING_QUESTION, Press(press)) if press else ()
        return await node.sipp.call(number, caller=caller, actions=actions, hold_ms=5000)

    calls = [asyncio.create_task(call("031000921", first, CONSENT_LINE, "1")),
             asyncio.create_task(call("031000922", first, SALES, None)),
             asyncio.create_task(call("031000923", second, CONSENT_LINE, "1")),
             asyncio.create_task(call("031000924", second, REFUSAL_LINE, "1"))]
    deadline = time.monotonic() + 10
    while sum(e.get("message") == "call entered the application"
              and e.get("caller") in ("+38631000923", "+38631000924")
              for e in second.service.entries()) < 2:
        assert time.monotonic() < deadline, "node 2's calls never entered the application"
        await asyncio.sleep(0.05)
    died = killed(second.service)
    while_down = asyncio.create_task(call("031000925", second, SALES, None))
    await asyncio.sleep(1.0)  # its Stasis() fails at once: no instance of node 2 runs
    async with second.runner.run(nodes.url, second.service.log.with_name("restarted.log"),
                                 env=service_env(NODE2.name, nodes.store)) as restarted:
        await restarted.wait_for_log(
            "channel left in the application resolved: continued unrecorded")
        recovered = time.monotonic() - died
        results = await asyncio.gather(*calls, while_down)
        rows = await closed_calls(nodes.url, list(callers), 4)
        # Noted by the dialplan when it ended, recorded by the restarted instance (rule 4).
        (unattended,) = await closed_calls(nodes.url, ["031000925"], 1)
        unbased = [*await recordings_without_basis(first.service, since),
                   *await recordings_without_basis(restarted, since)]
    assert all(r.ok for r in results), [r.errors() for r in results if not r.ok]
    by = {r["caller_raw"]: r for r in rows}
    # Stasis failed: [ivr-unavailable] sent the caller to the queue, unrecorded and told
    # nothing; the call is known all the same, and its caller is to be called back.
    assert "031000925" not in by
    assert (unattended["node"], unattended["line_kind"], unattended["end_reason"],
            unattended["decision"], unattended["file_name"], unattended["notice_completed"]
            ) == (NODE2.name, "sales", "service_unavailable", None, None, False), unattended
    (callback,) = await query(nodes.url, """
        SELECT b.status, b.record, b.notice_required FROM callbacks b
        JOIN missed_calls m ON m.callback_id = b.id WHERE m.call_id = CAST(:id AS uuid)""",
                              {"id": unattended["id"]})
    assert (callback["status"], callback["record"], callback["notice_required"]) == (
        "open", False, True)
    assert (by["031000921"]["decision"], by["031000922"]["decision"]) == (
        "consent", "legal_basis")
    for caller in ("031000921", "031000922"):
        assert by[caller]["node"] == FIRST and by[caller]["end_reason"] != RESTART_REASON
        assert (first.spool / by[caller]["file_name"]).stat().st_size > 44
    for caller in ("031000923", "031000924"):
        row = by[caller]
        assert row["node"] == NODE2.name
        assert row["end_reason"] == RESTART_REASON, row
        assert (row["decision"], row["file_name"]) == (None, None), row
        assert not list(second.spool.glob(f"{row['id']}*"))
    assert unbased == []
    print(f"\nnode 2 killed under 4 calls: its restart settled them {recovered:.1f} s after "
          "the kill; node 1's calls unaffected")
