"""Finished recordings move from a node's spool into the recording store (a directory
here; the S3 store has tests of its own), hash verified, against a real PostgreSQL and
real files: the row says where the file is now with its hash and size, the spool copy goes
only after the commit, a bad copy keeps the spool copy; two runners and two nodes never
move a file twice; the deletion job (rules 6 and 8) and purpose-bound access (rule 7)
find the file in the store.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import shutil
import stat
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

import ivr.jobs.recording_moves
from ivr.cli import main
from ivr.recordings.directory import DirectoryStore
from ivr.recordings.location import file_location
from ivr.recordings.store import StoredCopy
from ivr.store.audit import AuditLog
from ivr.store.recordings import RecordingAccess
from ivr.store.revocations import Revocations

from .conftest import OwnDatabase
from .recording_store_env import (
    CALLER,
    Node,
    add_recording,
    assert_audit_intact,
    audit_entries,
    certificates,
    migrated,
    node,
    row,
)

pytestmark = pytest.mark.db

ENDED = datetime.now(UTC) - timedelta(minutes=5)


@pytest.fixture
async def url(own_database: OwnDatabase, isolated: None) -> AsyncIterator[str]:
    async with migrated(own_database) as database_url:
        yield database_url


@pytest.fixture
async def a(url: str, tmp_path: Path) -> AsyncIterator[Node]:
    async with node(url, "node-a", tmp_path / "a" / "spool",
                    {"kind": "directory", "path": tmp_path / "store"}) as n:
        yield n


def store_files(root: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in root.rglob("*") if p.is_file()}


class CorruptingStore(DirectoryStore):
    """Writes a copy with one byte changed, as a failing disk or a broken mount might."""

    def put(self, source: Path, key: str) -> StoredCopy:
        copy = super().put(source, key)
        path = Path(copy.location.removeprefix("file://"))
        data = bytearray(path.read_bytes())
        data[100] ^= 0xFF
        path.write_bytes(bytes(data))
        return copy


class CountingStore(DirectoryStore):
    """Counts what it is asked to write, whoever asks."""

    def __init__(self, root: Path, puts: list[str]) -> None:
        super().__init__(root)
        self.puts = puts

    def put(self, source: Path, key: str) -> StoredCopy:
        self.puts.append(key)
        return super().put(source, key)


# the move ---------------------------------------------------------------------------------

async def test_a_finished_recording_is_moved_hash_verified_and_the_spool_copy_goes(
        a: Node, tmp_path: Path) -> None:
    made = await add_recording(a, ended=ENDED)
    now = datetime.now(UTC)

    report = await a.move_job().run_once(now)

    assert (report.moved, report.failed, report.missing, report.waiting) == (1, 0, 0, 0)
    assert not made.path.exists()  # the spool copy is gone
    key = f"{made.started_at:%Y/%m/%d}/{made.file_name}"
    stored = tmp_path / "store" / key
    assert stored.read_bytes() == made.data  # the store's bytes are the recording's
    assert stat.S_IMODE(stored.stat().st_mode) == 0o640
    assert stat.S_IMODE(stored.parent.stat().st_mode) == 0o750
    assert [p.name for p in stored.parent.iterdir()] == [made.file_name]  # no partial file
    recording = await row(a, made)
    assert recording.stored_location == file_location(stored)
    assert recording.stored_at == now
    assert recording.sha256 == hashlib.sha256(made.data).hexdigest()
    assert recording.size_bytes == len(made.data)
    assert (recording.store_attempts, recording.store_error) == (0, None)
    [entry] = await audit_entries(a, "recording_stored")
    assert entry.subject_id == str(made.id)
    assert entry.details == {"location": recording.stored_location, "sha256": made.sha256,
                             "size": len(made.data), "node": "node-a"}

    again = await a.move_job().run_once(now + timedelta(minutes=5))
    assert (again.moved, again.failed, again.missing) == (0, 0, 0)
    assert store_files(tmp_path / "store") == {made.file_name: made.data}
    await assert_audit_intact(a)


async def test_only_finished_recordings_of_this_node_are_moved(a: Node, tmp_path: Path,
                                                               url: str) -> None:
    now = datetime.now(UTC)
    open_call = await add_recording(a, ended=None)  # the call goes on
    never = await add_recording(a, ended=ENDED, not_started=True, write=False)
    other = await add_recording(a, ended=ENDED, call_node="node-b")  # not our spool's
    just_ended = await add_recording(a, ended=now - timedelta(seconds=5))
    expired = await add_recording(a, ended=ENDED, expires=now - timedelta(minutes=1))
    async with node(url, "node-a", a.spool, {"path": tmp_path / "store"},
                    settle_seconds=30) as settled:
        report = await settled.move_job().run_once(now)

    assert (report.moved, report.failed, report.missing) == (0, 0, 0)
    for made in (open_call, other, just_ended, expired):
        assert made.path.read_bytes() == made.data
        assert (await row(a, made)).stored_at is None
    assert (await row(a, never)).stored_at is None
    assert store_files(tmp_path / "store") == {}


async def test_a_file_still_being_written_waits_for_the_next_run(a: Node,
                                                                 tmp_path: Path) -> None:
    made = await add_recording(a, ended=ENDED)
    now = datetime.now(UTC)
    os.utime(made.path, (now.timestamp(), now.timestamp()))  # MixMonitor wrote just now

    report = await a.move_job().run_once(now - timedelta(seconds=1))
    assert (report.moved, report.waiting, report.failed) == (0, 1, 0)
    assert made.path.read_bytes() == made.data
    assert (await row(a, made)).store_attempts == 0

    later = await a.move_job().run_once(now + timedelta(seconds=1))
    assert later.moved == 1 and not made.path.exists()


async def test_a_hash_mismatch_keeps_the_spool_copy_and_is_retried(a: Node,
                                                                   tmp_path: Path) -> None:
    made = await add_recording(a, ended=ENDED)
    now = datetime.now(UTC)

    report = await a.move_job(CorruptingStore(tmp_path / "store")).run_once(now)

    assert (report.moved, report.failed) == (0, 1)
    [error] = report.errors
    assert error.startswith(f"{made.file_name}: hash mismatch: spool {made.sha256}, store ")
    assert made.path.read_bytes() == made.data  # kept
    assert store_files(tmp_path / "store") == {}  # the bad copy removed
    recording = await row(a, made)
    assert (recording.stored_location, recording.stored_at) == (None, None)
    assert recording.store_attempts == 1
    assert recording.store_error is not None and "hash mismatch" in recording.store_error
    assert await audit_entries(a, "recording_stored") == []

    # The next run, with a store that writes what it is given, moves it.
    retried = await a.move_job().run_once(now + timedelta(minutes=5))
    assert (retried.moved, retried.failed) == (1, 0)
    assert not made.path.exists()
    recording = await row(a, made)
    assert recording.sha256 == made.sha256 and recording.store_error is None
    assert recording.store_attempts == 1  # the history stays
    assert store_files(tmp_path / "store") == {made.file_name: made.data}


async def test_a_file_missing_from_the_spool_is_counted_and_kept_in_view(a: Node) -> None:
    made = await add_recording(a, ended=ENDED, write=False)
    report = await a.move_job().run_once(datetime.now(UTC))
    assert (report.moved, report.missing, report.failed) == (0, 1, 0)
    recording = await row(a, made)
    assert recording.stored_at is None and recording.store_attempts == 1
    assert recording.store_error is not None and "spool" in recording.store_error


async def test_a_store_that_cannot_be_written_keeps_the_spool_copy(a: Node,
                                                                   tmp_path: Path) -> None:
    made = await add_recording(a, ended=ENDED)
    (tmp_path / "store").write_bytes(b"a file where the store directory should be")
    report = await a.move_job().run_once(datetime.now(UTC))
    assert (report.moved, report.failed) == (0, 1)
    assert made.path.read_bytes() == made.data
    assert (await row(a, made)).store_error


async def test_a_spool_copy_left_by_an_interrupted_run_is_removed(a: Node) -> None:
    made = await add_recording(a, ended=ENDED)
    changed = await add_recording(a, ended=ENDED)
    assert (await a.move_job().run_once(datetime.now(UTC))).moved == 2
    # As if the run had stopped between its commit and deleting the spool copy:
    made.path.write_bytes(made.data)
    changed.path.write_bytes(b"not what was stored")

    report = await a.move_job().run_once(datetime.now(UTC))
    assert (report.moved, report.leftovers_removed) == (0, 1)
    assert not made.path.exists()
    assert changed.path.exists()  # differs from the stored copy: kept, and logged


# several runners, several nodes -----------------------------------------------------------

@pytest.mark.parametrize("batch", [4, 50])
async def test_two_runners_at_once_move_every_file_exactly_once(
        a: Node, tmp_path: Path, batch: int, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(ivr.jobs.recording_moves, "BATCH", batch)
    made = [await add_recording(a, "consent" if n % 3 else "legal_basis",
                                ended=ENDED - timedelta(minutes=n)) for n in range(24)]
    puts: list[str] = []
    now = datetime.now(UTC)
    first = a.move_job(CountingStore(tmp_path / "store", puts))
    async with node(a.settings.database.url.get_secret_value(), "node-a", a.spool,
                    {"path": tmp_path / "store"}) as same_node_again:
        second = same_node_again.move_job(CountingStore(tmp_path / "store", puts))
        one, two = await asyncio.gather(first.run_once(now), second.run_once(now))

    assert one.moved + two.moved == 24
    assert one.failed + two.failed == 0
    assert sorted(puts) == sorted(f"{m.started_at:%Y/%m/%d}/{m.file_name}" for m in made)
    assert list(a.spool.iterdir()) == []
    assert store_files(tmp_path / "store") == {m.file_name: m.data for m in made}
    assert len(await audit_entries(a, "recording_stored")) == 24
    await assert_audit_intact(a)


async def test_two_nodes_move_only_their_own_spools(a: Node, url: str,
                                                    tmp_path: Path) -> None:
    async with node(url, "node-b", tmp_path / "b" / "spool",
                    {"path": tmp_path / "store"}) as b:
        on_a = [await add_recording(a, ended=ENDED) for _ in range(5)]
        on_b = [await add_recording(b, ended=ENDED) for _ in range(4)]
        now = datetime.now(UTC)
        report_a, report_b = await asyncio.gather(a.move_job().run_once(now),
                                                  b.move_job().run_once(now))
        assert (report_a.moved, report_a.missing) == (5, 0)
        assert (report_b.moved, report_b.missing) == (4, 0)
        for made in on_a + on_b:
            assert not made.path.exists()
            assert (await row(a, made)).sha256 == made.sha256
        assert store_files(tmp_path / "store") == {m.file_name: m.data for m in on_a + on_b}


# deletion and access find the file in the store -------------------------------------------

async def test_rule_6_the_deletion_job_deletes_a_moved_recording_from_the_store(
        a: Node, tmp_path: Path) -> None:
    now = datetime.now(UTC)
    made = await add_recording(a, ended=ENDED, expires=now + timedelta(minutes=1))
    assert (await a.move_job().run_once(now)).moved == 1
    stored = (await row(a, made)).stored_location
    assert stored is not None and store_files(tmp_path / "store")
    made.path.write_bytes(made.data)  # and a spool copy an interrupted move left behind

    later = now + timedelta(minutes=2)
    report = await a.deletion_job().run_once(later)

    assert (report.deleted, report.already_gone, report.failed) == (1, 0, 0)
    assert store_files(tmp_path / "store") == {}
    assert not made.path.exists()
    [certificate] = await certificates(a)
    assert certificate.location == stored  # the certificate names where it was deleted
    assert certificate.file_sha256 == made.sha256 and certificate.file_existed is True
    [entry] = await audit_entries(a, "recording_deleted")
    assert entry.details["location"] == stored
    assert entry.details["copies_removed"] == [file_location(made.path)]
    await assert_audit_intact(a)


async def test_rule_8_a_revocation_deletes_the_moved_consent_recording_from_the_store(
        a: Node, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    now = datetime.now(UTC)
    consent = await add_recording(a, "consent", ended=ENDED)
    sales = await add_recording(a, "legal_basis", ended=ENDED)
    assert (await a.move_job().run_once(now)).moved == 2
    result = await Revocations(a.db, a.settings, AuditLog(a.db)).add(
        CALLER, "phone", now, "agent-7", None)

    report = await a.deletion_job().run_once(now + timedelta(minutes=1))

    assert (report.deleted, report.revocations_fulfilled) == (1, 1)
    assert store_files(tmp_path / "store") == {sales.file_name: sales.data}
    [certificate] = await certificates(a)
    assert certificate.recording_id == consent.id
    assert certificate.revocation_id == result.revocation.id
    assert certificate.location == (await row(a, consent)).stored_location
    assert certificate.location is not None and certificate.location.startswith("file://")

    # The DPO's command shows where it was deleted from.
    for name, value in {"IVR_MODE": "test", "IVR_NODE": "node-a",
                        "IVR_DATABASE__URL": a.settings.database.url.get_secret_value(),
                        "IVR_RECORDINGS__LOCAL_DIR": str(a.spool),
                        "IVR_RECORDINGS__STORE__PATH": str(tmp_path / "store")}.items():
        monkeypatch.setenv(name, value)
    capsys.readouterr()
    assert await asyncio.to_thread(main, ["revocations", "show", str(result.revocation.id),
                                          "--json"]) == 0
    [shown] = json.loads(capsys.readouterr().out)["certificates"]
    assert shown["location"] == certificate.location


async def test_an_unmoved_recording_on_another_node_is_left_to_that_node(
        a: Node, url: str, tmp_path: Path) -> None:
    """The deletion job of node B cannot reach node A's spool: it must not certify the
    file as already gone, and the revocation stays open until node A deletes it."""
    now = datetime.now(UTC)
    made = await add_recording(a, "consent", ended=ENDED)
    async with node(url, "node-b", tmp_path / "b" / "spool",
                    {"path": tmp_path / "store"}) as b:
        await Revocations(b.db, b.settings, AuditLog(b.db)).add(CALLER, "email", now, "dpo",
                                                                None)
        report_b = await b.deletion_job().run_once(now + timedelta(minutes=1))
        assert (report_b.deleted, report_b.already_gone, report_b.revocations_fulfilled) == (
            0, 0, 0)
        assert made.path.exists() and await certificates(a) == []

        report_a = await a.deletion_job().run_once(now + timedelta(minutes=2))
        assert (report_a.deleted, report_a.revocations_fulfilled) == (1, 1)
        assert not made.path.exists()
        [certificate] = await certificates(a)
        assert certificate.location == file_location(made.path)  # on node A's spool


async def test_a_store_copy_of_a_move_never_recorded_is_deleted_with_the_recording(
        a: Node, tmp_path: Path) -> None:
    """A run that wrote the store copy but stopped before its commit: the row still says
    spool; deleting the recording removes both."""
    now = datetime.now(UTC)
    made = await add_recording(a, ended=ENDED, expires=now - timedelta(minutes=1))
    orphan = tmp_path / "store" / f"{made.started_at:%Y/%m/%d}" / made.file_name
    orphan.parent.mkdir(parents=True)
    shutil.copy(made.path, orphan)

    report = await a.deletion_job().run_once(now)
    assert report.deleted == 1
    assert not made.path.exists() and not orphan.exists()
    [entry] = await audit_entries(a, "recording_deleted")
    assert entry.details["copies_removed"] == [file_location(orphan)]


async def test_rule_7_a_moved_recording_is_handed_out_from_the_store(a: Node,
                                                                     tmp_path: Path) -> None:
    made = await add_recording(a, ended=ENDED)
    assert (await a.move_job().run_once(datetime.now(UTC))).moved == 1
    out = tmp_path / "out.wav"
    access = RecordingAccess(a.db, a.settings, AuditLog(a.db), a.files())
    await access.get(made.id, "evidence", "dpo", out, datetime.now(UTC))
    assert out.read_bytes() == made.data
    assert stat.S_IMODE(out.stat().st_mode) == 0o600
