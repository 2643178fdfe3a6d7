"""Rules 6, 7 and 8 against a real PostgreSQL and real files: the deletion job (retention
and revocations, certificates, two runners at once, files that cannot be deleted),
purpose-bound access to recordings, the audit chain, and the data subject export.

Every test gets a fresh database of its own, migrated like ``ivr db upgrade`` does it, and
a recordings directory of its own in ``tmp_path``: the job and the stores open their own
sessions and commit, so nothing is shared with other tests.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import shutil
import stat
import uuid
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractContextManager
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
from sqlalchemy import func, select

import ivr.jobs.deletion
import ivr.settings
from ivr.jobs.deletion import DeletionJob
from ivr.policy.deadlines import deadline_end, working_days_after
from ivr.settings import Settings
from ivr.store.audit import AuditLog
from ivr.store.database import Database
from ivr.store.migrate import upgrade
from ivr.store.models import (
    AuditEntry,
    Call,
    Callback,
    CallbackAttempt,
    Decision,
    DeletionCertificate,
    MissedCall,
    Recording,
    Revocation,
)
from ivr.store.recordings import AccessRefused, RecordingAccess
from ivr.store.revocations import Revocations
from ivr.store.subject import export_subject

pytestmark = pytest.mark.db

LJUBLJANA = ZoneInfo("Europe/Ljubljana")
# A fixed "now": Wednesday 17 March 2027, 10:00 in Ljubljana. The job, the access check and
# the revocation deadlines all take the time as an argument; the files are real.
NOW = datetime(2027, 3, 17, 10, 0, tzinfo=LJUBLJANA)
DIALLED = {"sales": "+38640404045", "service": "+38640404040"}
CALLER = "+38631111111"
OTHER = "+38641222222"


@dataclass
class Env:
    url: str
    settings: Settings
    db: Database
    audit: AuditLog
    recordings: Path
    tmp: Path

    def job(self, db: Database | None = None) -> DeletionJob:
        db = db or self.db
        return DeletionJob(db, self.settings, AuditLog(db))

    def revocations(self) -> Revocations:
        return Revocations(self.db, self.settings, self.audit)

    def access(self) -> RecordingAccess:
        return RecordingAccess(self.db, self.settings, self.audit)


@pytest.fixture
async def env(new_database: Callable[[], AbstractContextManager[str]], tmp_path: Path,
              isolated: None) -> AsyncIterator[Env]:
    recordings = tmp_path / "recordings"
    recordings.mkdir()
    with new_database() as url:
        await asyncio.to_thread(upgrade, url)
        settings = Settings(mode="test", database={"url": url, "pool_size": 5},
                            recordings={"local_dir": recordings, "asterisk_dir": recordings,
                                        "store": {"path": tmp_path / "store"}})
        assert settings.recordings.local_dir == recordings
        assert settings.revocations.working_days == 5
        assert settings.timezone == "Europe/Ljubljana"
        db = Database(settings.database)
        try:
            yield Env(url, settings, db, AuditLog(db), recordings, tmp_path)
        finally:
            await db.dispose()


# Rows and files ---------------------------------------------------------------------------

@dataclass(frozen=True)
class Made:
    id: uuid.UUID
    call_id: uuid.UUID
    path: Path
    data: bytes

    @property
    def sha256(self) -> str:
        return hashlib.sha256(self.data).hexdigest()


async def add_call(env: Env, caller: str, line_kind: str, at: datetime) -> uuid.UUID:
    """A finished inbound call with its consent receipt: sales -> legal basis, service ->
    consent (the digit 1, pressed after the notice started)."""
    call = Call(channel_id=f"test-{uuid.uuid4().hex}", linkedid="1.1", direction="inbound",
                dialled=DIALLED[line_kind], caller=caller, caller_raw=caller,
                line_name=line_kind, line_kind=line_kind, started_at=at, answered_at=at,
                ended_at=at + timedelta(minutes=3), end_reason="caller",
                notice_completed=True, agent_answered=True, agent="agent-7", state="ended")
    async with env.db.session() as session, session.begin():
        session.add(call)
        await session.flush()
        notice = at + timedelta(seconds=1)
        consent = line_kind == "service"
        session.add(Decision(
            call_id=call.id, decision="consent" if consent else "legal_basis",
            line_kind=line_kind, digit="1" if consent else None,
            digit_at=notice + timedelta(seconds=12) if consent else None,
            prompts_played=[{"id": line_kind, "version": "1", "sha256": "0" * 64}],
            notice_started_at=notice, notice_ended_at=notice + timedelta(seconds=15),
            decided_at=notice + timedelta(seconds=15)))
    return call.id


async def add_recording(env: Env, caller: str, basis: str, started: datetime,
                        expires: datetime | None = None, write: bool = True,
                        data: bytes | None = None) -> Made:
    """A call, its decision and a recording row; the file written with some bytes."""
    line_kind = "sales" if basis == "legal_basis" else "service"
    call_id = await add_call(env, caller, line_kind, started - timedelta(seconds=20))
    data = data if data is not None else b"RIFF" + os.urandom(4000) + b"WAVE"
    file_name = f"rec-{uuid.uuid4().hex}.wav"
    path = env.recordings / file_name
    if write:
        path.write_bytes(data)
    recording = Recording(
        call_id=call_id, basis=basis, file_name=file_name, mixmonitor_id="mm-1",
        started_at=started, stopped_at=started + timedelta(minutes=2),
        sha256=hashlib.sha256(data).hexdigest(), size_bytes=len(data),
        expires_at=expires if expires is not None else started + timedelta(days=182))
    async with env.db.session() as session, session.begin():
        session.add(recording)
    return Made(recording.id, call_id, path, data)


async def recording(env: Env, made: Made) -> Recording:
    async with env.db.session() as session:
        row = await session.get(Recording, made.id)
        assert row is not None
        return row


async def certificates(env: Env) -> list[DeletionCertificate]:
    async with env.db.session() as session:
        return list((await session.execute(
            select(DeletionCertificate).order_by(DeletionCertificate.deleted_at))).scalars())


async def audit_entries(env: Env, action: str) -> list[AuditEntry]:
    async with env.db.session() as session:
        return list((await session.execute(select(AuditEntry).where(
            AuditEntry.action == action).order_by(AuditEntry.id))).scalars())


async def assert_audit_intact(env: Env) -> None:
    result = await env.audit.verify()
    assert result.ok, result.problem
    async with env.db.session() as session:
        total = (await session.execute(select(func.count()).select_from(AuditEntry))).scalar()
    assert result.checked == total


# Rule 6: retention ------------------------------------------------------------------------

async def test_rule_6_an_expired_recording_is_deleted_with_a_certificate(env: Env) -> None:
    expired = await add_recording(env, CALLER, "legal_basis", NOW - timedelta(days=183),
                                  expires=NOW - timedelta(hours=1))
    kept = await add_recording(env, CALLER, "consent", NOW - timedelta(days=100),
                               expires=NOW + timedelta(hours=1))

    report = await env.job().run_once(NOW)

    assert (report.deleted, report.already_gone, report.failed) == (1, 0, 0)
    assert report.errors == []
    assert not expired.path.exists()
    row = await recording(env, expired)
    assert row.deleted_at == NOW
    assert row.deleted_sha256 == expired.sha256
    assert row.deletion_reason == "retention"
    assert row.deletion_attempts == 0 and row.deletion_error is None
    [certificate] = await certificates(env)
    assert certificate.recording_id == expired.id
    assert certificate.reason == "retention" and certificate.revocation_id is None
    assert certificate.file_name == expired.path.name
    assert certificate.file_sha256 == expired.sha256
    assert certificate.file_existed is True
    assert certificate.location == f"file://{expired.path}"  # on the spool: never moved
    assert certificate.deleted_at == NOW
    assert certificate.met is True
    [entry] = await audit_entries(env, "recording_deleted")
    assert entry.subject_type == "recording" and entry.subject_id == str(expired.id)
    assert entry.details == {"reason": "retention", "sha256": expired.sha256,
                             "file_existed": True, "met": True,
                             "location": f"file://{expired.path}"}

    # Not yet expired: untouched.
    assert kept.path.read_bytes() == kept.data
    row = await recording(env, kept)
    assert (row.deleted_at, row.deletion_reason, row.deleted_sha256) == (None, None, None)

    # A second run finds nothing more to do.
    again = await env.job().run_once(NOW + timedelta(minutes=5))
    assert (again.deleted, again.already_gone, again.failed) == (0, 0, 0)
    assert len(await certificates(env)) == 1
    await assert_audit_intact(env)


async def test_rule_6_a_file_already_gone_counts_as_deleted(env: Env) -> None:
    gone = await add_recording(env, CALLER, "consent", NOW - timedelta(days=183),
                               expires=NOW - timedelta(minutes=30), write=False)
    assert not gone.path.exists()

    report = await env.job().run_once(NOW)

    assert (report.deleted, report.already_gone, report.failed) == (0, 1, 0)
    row = await recording(env, gone)
    assert row.deleted_at == NOW and row.deletion_reason == "retention"
    assert row.deleted_sha256 == gone.sha256  # the hash recorded when it was made
    [certificate] = await certificates(env)
    assert certificate.file_existed is False
    assert certificate.file_sha256 == gone.sha256
    assert certificate.met is True
    [entry] = await audit_entries(env, "recording_deleted")
    assert entry.details["file_existed"] is False
    await assert_audit_intact(env)


async def test_rule_6_deleted_days_after_expiry_the_certificate_says_missed(env: Env) -> None:
    # The job did not run for two days: the recording expired on Monday, deleted Wednesday.
    late = await add_recording(env, CALLER, "legal_basis", NOW - timedelta(days=185),
                               expires=NOW - timedelta(days=2))
    report = await env.job().run_once(NOW)
    assert report.deleted == 1
    assert not late.path.exists()
    [certificate] = await certificates(env)
    assert certificate.met is False
    assert certificate.deadline < NOW
    await assert_audit_intact(env)


# Rule 8: revocation -----------------------------------------------------------------------

async def test_rule_8_revocation_deletes_consent_recordings_and_keeps_sales(env: Env) -> None:
    consent = await add_recording(env, CALLER, "consent", NOW - timedelta(days=10))
    sales = await add_recording(env, CALLER, "legal_basis", NOW - timedelta(days=9))
    others = await add_recording(env, OTHER, "consent", NOW - timedelta(days=8))
    async with env.db.session() as session, session.begin():
        callback = Callback(caller=CALLER, due_at=NOW + timedelta(minutes=40), record=True,
                            notice_required=False)
        other_callback = Callback(caller=OTHER, due_at=NOW + timedelta(minutes=40),
                                  record=True, notice_required=False)
        session.add_all([callback, other_callback])

    received = NOW - timedelta(hours=2)
    result = await env.revocations().add(CALLER, "phone", received, "agent-7", "by phone")

    assert result.consent_recordings == 1
    assert result.legal_basis_recordings == 1
    assert result.callbacks_no_longer_recorded == 1
    revocation = result.revocation
    # Wed 17 March 2027: Thu 18, Fri 19, Mon 22, Tue 23, Wed 24.
    assert revocation.deadline == date(2027, 3, 24)
    assert revocation.fulfilled_at is None
    async with env.db.session() as session:
        assert (await session.get(Callback, callback.id)).record is False  # type: ignore[union-attr]
        assert (await session.get(Callback, other_callback.id)).record is True  # type: ignore[union-attr]
    [received_entry] = await audit_entries(env, "revocation_received")
    assert received_entry.subject_id == str(revocation.id)
    assert received_entry.details == {"via": "phone", "deadline": "2027-03-24"}

    report = await env.job().run_once(NOW)

    assert (report.deleted, report.already_gone, report.failed) == (1, 0, 0)
    assert report.revocations_fulfilled == 1
    assert not consent.path.exists()
    assert sales.path.read_bytes() == sales.data  # legal basis: not covered
    assert others.path.read_bytes() == others.data  # another caller
    row = await recording(env, consent)
    assert row.deletion_reason == "revocation" and row.deleted_at == NOW
    assert row.deleted_sha256 == consent.sha256
    assert (await recording(env, sales)).deleted_at is None
    assert (await recording(env, others)).deleted_at is None

    stored, certs = await env.revocations().get(revocation.id)
    assert stored.fulfilled_at == NOW
    [certificate] = certs
    assert certificate.recording_id == consent.id
    assert certificate.revocation_id == revocation.id
    assert certificate.reason == "revocation"
    assert certificate.file_sha256 == consent.sha256 and certificate.file_existed is True
    assert certificate.deadline == deadline_end(date(2027, 3, 24), "Europe/Ljubljana")
    assert certificate.met is True
    [fulfilled] = await audit_entries(env, "revocation_fulfilled")
    assert fulfilled.subject_id == str(revocation.id)
    assert fulfilled.details == {"deadline": "2027-03-24", "met": True, "recordings": 1}

    # Fulfilled: the next run leaves it alone.
    again = await env.job().run_once(NOW + timedelta(minutes=5))
    assert again.revocations_fulfilled == 0 and again.deleted == 0
    assert len(await certificates(env)) == 1
    await assert_audit_intact(env)


async def test_rule_8_a_consent_given_after_the_revocation_is_not_covered(env: Env) -> None:
    # The e-mail reached the DPO two days ago and is entered today; meanwhile the caller
    # called again and pressed 1: a new consent, which the old revocation does not cover.
    received = NOW - timedelta(days=2)
    before = await add_recording(env, CALLER, "consent", received - timedelta(days=5))
    after = await add_recording(env, CALLER, "consent", received + timedelta(days=1))

    result = await env.revocations().add(CALLER, "email", received, "dpo", None)

    assert result.consent_recordings == 1  # only the one made before the revocation
    report = await env.job().run_once(NOW)
    assert report.deleted == 1 and report.revocations_fulfilled == 1
    assert not before.path.exists()
    assert after.path.read_bytes() == after.data
    assert (await recording(env, after)).deleted_at is None
    _, certs = await env.revocations().get(result.revocation.id)
    assert [c.recording_id for c in certs] == [before.id]
    await assert_audit_intact(env)


async def test_rule_8_a_missed_deadline_is_certified_as_missed(env: Env) -> None:
    consent = await add_recording(env, CALLER, "consent", NOW - timedelta(days=40))
    received = NOW - timedelta(days=30)
    deadline = working_days_after(received, 5)
    assert deadline < NOW.date()
    async with env.db.session() as session, session.begin():
        revocation = Revocation(caller=CALLER, via="email", received_at=received,
                                recorded_by="dpo", note=None, deadline=deadline)
        session.add(revocation)

    report = await env.job().run_once(NOW)

    assert report.deleted == 1 and report.revocations_fulfilled == 1
    assert not consent.path.exists()
    stored, [certificate] = await env.revocations().get(revocation.id)
    assert stored.fulfilled_at == NOW
    assert certificate.revocation_id == revocation.id
    assert certificate.met is False
    assert certificate.deadline == deadline_end(deadline, "Europe/Ljubljana")
    [fulfilled] = await audit_entries(env, "revocation_fulfilled")
    assert fulfilled.details["met"] is False
    [deleted] = await audit_entries(env, "recording_deleted")
    assert deleted.details["met"] is False
    await assert_audit_intact(env)


async def test_rule_8_an_undeletable_covered_file_keeps_the_revocation_open(env: Env) -> None:
    consent = await add_recording(env, CALLER, "consent", NOW - timedelta(days=10))
    consent.path.unlink()
    consent.path.mkdir()
    (consent.path / "inside").write_bytes(b"x")
    result = await env.revocations().add(CALLER, "phone", NOW - timedelta(hours=1), "agent-7",
                                         None)

    report = await env.job().run_once(NOW)
    assert (report.deleted, report.failed, report.revocations_fulfilled) == (0, 1, 0)
    stored, certs = await env.revocations().get(result.revocation.id)
    assert stored.fulfilled_at is None and certs == []
    row = await recording(env, consent)
    assert row.deleted_at is None and row.deletion_attempts == 1

    shutil.rmtree(consent.path)
    consent.path.write_bytes(consent.data)
    later = NOW + timedelta(minutes=5)
    report = await env.job().run_once(later)
    assert (report.deleted, report.failed, report.revocations_fulfilled) == (1, 0, 1)
    stored, [certificate] = await env.revocations().get(result.revocation.id)
    assert stored.fulfilled_at == later and certificate.met is True
    assert not consent.path.exists()
    await assert_audit_intact(env)


# Several instances at once ----------------------------------------------------------------

@pytest.mark.parametrize("batch", [5, 200])
async def test_two_job_runners_at_once_delete_every_file_exactly_once(
        env: Env, batch: int, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(ivr.jobs.deletion, "BATCH", batch)
    made = [await add_recording(env, CALLER if n % 2 else OTHER,
                                "consent" if n % 3 else "legal_basis",
                                NOW - timedelta(days=190, minutes=n),
                                expires=NOW - timedelta(minutes=30 + n))
            for n in range(30)]
    second = Database(env.settings.database)
    try:
        job1, job2 = env.job(), env.job(second)
        report1, report2 = await asyncio.gather(job1.run_once(NOW), job2.run_once(NOW))
    finally:
        await second.dispose()

    assert report1.deleted + report2.deleted == 30
    assert report1.already_gone + report2.already_gone == 0
    assert report1.failed + report2.failed == 0
    assert report1.errors + report2.errors == []
    assert not any(m.path.exists() for m in made)
    assert list(env.recordings.iterdir()) == []
    certs = await certificates(env)
    assert len(certs) == 30
    assert sorted(c.recording_id for c in certs) == sorted(m.id for m in made)
    assert {c.recording_id: c.file_sha256 for c in certs} == {m.id: m.sha256 for m in made}
    assert len(await audit_entries(env, "recording_deleted")) == 30
    await assert_audit_intact(env)


# A file that cannot be deleted ------------------------------------------------------------

async def test_rule_6_an_undeletable_file_is_retried_flagged_and_not_marked_deleted(
        env: Env) -> None:
    stuck = await add_recording(env, CALLER, "legal_basis", NOW - timedelta(days=183),
                                expires=NOW - timedelta(hours=2))
    fine = await add_recording(env, CALLER, "legal_basis", NOW - timedelta(days=183),
                               expires=NOW - timedelta(hours=1))
    stuck.path.unlink()
    stuck.path.mkdir()
    (stuck.path / "something").write_bytes(b"not empty")

    report = await env.job().run_once(NOW)

    assert (report.deleted, report.failed) == (1, 1)
    [error] = report.errors
    assert error.startswith(stuck.path.name)
    assert not fine.path.exists()
    row = await recording(env, stuck)
    assert row.deleted_at is None and row.deletion_reason is None
    assert row.deleted_sha256 is None
    assert row.deletion_attempts == 1
    assert row.deletion_error
    assert row.deletion_flagged_at == NOW
    assert [c.recording_id for c in await certificates(env)] == [fine.id]
    assert stuck.path.is_dir()

    second = NOW + timedelta(minutes=5)
    report = await env.job().run_once(second)
    assert (report.deleted, report.failed) == (0, 1)
    row = await recording(env, stuck)
    assert row.deletion_attempts == 2
    assert row.deletion_flagged_at == NOW  # flagged once, when it first failed
    assert row.deleted_at is None

    shutil.rmtree(stuck.path)
    stuck.path.write_bytes(stuck.data)
    third = NOW + timedelta(minutes=10)
    report = await env.job().run_once(third)
    assert (report.deleted, report.failed) == (1, 0)
    assert not stuck.path.exists()
    row = await recording(env, stuck)
    assert row.deleted_at == third and row.deletion_reason == "retention"
    assert row.deleted_sha256 == stuck.sha256
    assert row.deletion_error is None
    assert row.deletion_attempts == 2  # the history stays
    certs = {c.recording_id: c for c in await certificates(env)}
    assert set(certs) == {fine.id, stuck.id}
    assert certs[stuck.id].file_sha256 == stuck.sha256
    await assert_audit_intact(env)


# Rule 7: purpose limitation ---------------------------------------------------------------

async def test_rule_7_consent_recordings_are_not_for_training(env: Env) -> None:
    consent = await add_recording(env, CALLER, "consent", NOW - timedelta(days=3))
    out = env.tmp / "out.wav"
    for purpose in ("training", "evidence"):
        with pytest.raises(AccessRefused, match=f"consent recording may not be used for "
                                                f"{purpose}"):
            await env.access().get(consent.id, purpose, "trainer", out, NOW)
        assert not out.exists()
    assert await audit_entries(env, "recording_accessed") == []
    # Service quality is what it is for.
    got = await env.access().get(consent.id, "service_quality", "qa-lead", out, NOW)
    assert got.id == consent.id
    assert out.read_bytes() == consent.data
    [entry] = await audit_entries(env, "recording_accessed")
    assert entry.details["purpose"] == "service_quality" and entry.actor == "qa-lead"
    await assert_audit_intact(env)


@pytest.mark.parametrize("purpose", ["evidence", "training"])
async def test_rule_7_sales_recordings_for_evidence_and_training(env: Env, purpose: str) -> None:
    sales = await add_recording(env, CALLER, "legal_basis", NOW - timedelta(days=3))
    out = env.tmp / f"{purpose}.wav"

    got = await env.access().get(sales.id, purpose, "dpo", out, NOW)

    assert got.id == sales.id
    assert out.read_bytes() == sales.data
    assert stat.S_IMODE(out.stat().st_mode) == 0o600
    assert sales.path.read_bytes() == sales.data  # the original stays
    [entry] = await audit_entries(env, "recording_accessed")
    assert entry.actor == "dpo" and entry.subject_id == str(sales.id)
    assert entry.details == {"purpose": purpose, "out": str(out)}
    await assert_audit_intact(env)


async def test_rule_7_expired_or_deleted_recordings_are_refused(env: Env) -> None:
    expired = await add_recording(env, CALLER, "legal_basis", NOW - timedelta(days=183),
                                  expires=NOW - timedelta(minutes=1))
    out = env.tmp / "out.wav"
    # Expired, the job has not run yet: the file is still there, but refused.
    assert expired.path.exists()
    with pytest.raises(AccessRefused, match="retention"):
        await env.access().get(expired.id, "evidence", "dpo", out, NOW)
    assert not out.exists()
    # Deleted.
    await env.job().run_once(NOW)
    with pytest.raises(AccessRefused, match="retention or deleted"):
        await env.access().get(expired.id, "evidence", "dpo", out,
                               NOW - timedelta(days=1))
    assert not out.exists()
    with pytest.raises(AccessRefused, match="no recording"):
        await env.access().get(uuid.uuid4(), "evidence", "dpo", out, NOW)
    assert await audit_entries(env, "recording_accessed") == []
    await assert_audit_intact(env)


async def test_rule_7_an_existing_out_file_is_never_overwritten(env: Env) -> None:
    sales = await add_recording(env, CALLER, "legal_basis", NOW - timedelta(days=3))
    out = env.tmp / "precious.txt"
    out.write_bytes(b"do not touch")
    out.chmod(0o644)
    with pytest.raises(AccessRefused, match="exists already"):
        await env.access().get(sales.id, "evidence", "dpo", out, NOW)
    assert out.read_bytes() == b"do not touch"
    assert stat.S_IMODE(out.stat().st_mode) == 0o644
    # The audit entry went with the failed copy: nothing was handed out.
    assert await audit_entries(env, "recording_accessed") == []
    await assert_audit_intact(env)


# The audit chain after all of it ----------------------------------------------------------

async def test_audit_chain_is_intact_after_deletions_revocations_access_and_export(
        env: Env) -> None:
    expired = await add_recording(env, OTHER, "legal_basis", NOW - timedelta(days=183),
                                  expires=NOW - timedelta(hours=1))
    consent = await add_recording(env, CALLER, "consent", NOW - timedelta(days=10))
    sales = await add_recording(env, CALLER, "legal_basis", NOW - timedelta(days=10))
    revocations = env.revocations()
    await revocations.add(CALLER, "phone", NOW - timedelta(hours=1), "agent-7", None)
    with pytest.raises(AccessRefused):
        await env.access().get(consent.id, "training", "trainer", env.tmp / "a.wav", NOW)
    await env.access().get(sales.id, "training", "trainer", env.tmp / "b.wav", NOW)
    report = await env.job().run_once(NOW)
    assert (report.deleted, report.revocations_fulfilled) == (2, 1)
    await export_subject(env.db, env.audit, CALLER, env.tmp / "export", "dpo")
    assert not expired.path.exists() and not consent.path.exists() and sales.path.exists()

    result = await env.audit.verify()
    assert result.ok, result.problem
    async with env.db.session() as session:
        actions = list((await session.execute(
            select(AuditEntry.action).order_by(AuditEntry.id))).scalars())
    assert result.checked == len(actions)
    assert sorted(actions) == sorted([
        "revocation_received", "recording_accessed", "recording_deleted",
        "recording_deleted", "revocation_fulfilled", "subject_exported"])


# Data subject access ----------------------------------------------------------------------

async def test_subject_export_has_only_that_callers_rows(env: Env) -> None:
    mine = [await add_recording(env, CALLER, "consent", NOW - timedelta(days=5)),
            await add_recording(env, CALLER, "legal_basis", NOW - timedelta(days=4))]
    theirs = await add_recording(env, OTHER, "consent", NOW - timedelta(days=3))
    async with env.db.session() as session, session.begin():
        callbacks = {}
        for caller, made in ((CALLER, mine[0]), (OTHER, theirs)):
            callback = Callback(caller=caller, due_at=NOW + timedelta(minutes=30),
                                record=True, notice_required=False)
            session.add(callback)
            await session.flush()
            callbacks[caller] = callback.id
            session.add(MissedCall(call_id=made.call_id, caller=caller, reason="abandoned",
                                   missed_at=NOW - timedelta(minutes=20),
                                   callback_id=callback.id))
            session.add(CallbackAttempt(callback_id=callback.id, agent="agent-7",
                                        started_at=NOW - timedelta(minutes=5)))
    await env.revocations().add(CALLER, "email", NOW - timedelta(hours=3), "dpo", "mail")
    await env.revocations().add(OTHER, "phone", NOW - timedelta(hours=2), "agent-7", None)
    await env.job().run_once(NOW)  # the consent recording goes, with a certificate

    out = env.tmp / "exports" / "subject-1"
    assert not out.exists()
    counts = await export_subject(env.db, env.audit, CALLER, out, "dpo")

    names = {"calls", "decisions", "recordings", "deletion_certificates", "missed_calls",
             "callbacks", "callback_attempts", "revocations"}
    assert {p.name for p in out.iterdir()} == {f"{n}.json" for n in names}
    assert stat.S_IMODE(out.stat().st_mode) == 0o700
    data = {}
    for name in names:
        path = out / f"{name}.json"
        assert stat.S_IMODE(path.stat().st_mode) == 0o600, name
        data[name] = json.loads(path.read_text(encoding="utf-8"))
        assert isinstance(data[name], list)
        assert counts[name] == len(data[name])

    my_calls = {str(m.call_id) for m in mine}
    assert {c["id"] for c in data["calls"]} == my_calls
    assert {c["caller"] for c in data["calls"]} == {CALLER}
    assert {d["call_id"] for d in data["decisions"]} == my_calls
    assert {r["id"] for r in data["recordings"]} == {str(m.id) for m in mine}
    assert [c["recording_id"] for c in data["deletion_certificates"]] == [str(mine[0].id)]
    assert [m["caller"] for m in data["missed_calls"]] == [CALLER]
    assert [c["id"] for c in data["callbacks"]] == [str(callbacks[CALLER])]
    assert [a["callback_id"] for a in data["callback_attempts"]] == [str(callbacks[CALLER])]
    assert [r["caller"] for r in data["revocations"]] == [CALLER]
    text = "".join((out / f"{n}.json").read_text(encoding="utf-8") for n in names)
    assert OTHER not in text
    assert str(theirs.id) not in text and str(theirs.call_id) not in text

    [entry] = await audit_entries(env, "subject_exported")
    assert entry.subject_id == CALLER and entry.actor == "dpo"
    assert entry.details == counts
    await assert_audit_intact(env)
