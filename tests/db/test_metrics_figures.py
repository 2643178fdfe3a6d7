"""The policy's figures at ``/metrics``, read from a real PostgreSQL holding known rows
(issue 9, point 2): calls by line and decision, notices completed or cut (rule 1), the
consent rate per service line (rule 2), callbacks due, returned within the hour and
overdue (rule 4), revocation deadlines met, missed and at risk (rule 8), deletions and
recordings kept past their retention (rule 6).

The rows are committed to a database of the module's own; a second instance's figures are
the same (they live in the database, not in the process), and one statement reads them.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families
from sqlalchemy import event

from ivr.metrics.in_process import Metrics
from ivr.metrics.policy_figures import Moments, read_policy_figures
from ivr.policy.deadlines import working_days_after
from ivr.settings import Settings
from ivr.store.audit import AuditLog
from ivr.store.callbacks import Callbacks
from ivr.store.database import Database
from ivr.store.models import (
    Call,
    Callback,
    Decision,
    DeletionCertificate,
    Recording,
    Revocation,
)
from ivr.web.app import create_app, templates
from ivr.web.auth import Sessions, Users
from ivr.web.console import Console

from .conftest import OwnDatabase

pytestmark = pytest.mark.db

TZ = ZoneInfo("Europe/Ljubljana")


@dataclass(frozen=True)
class Stored:
    db: Database
    now: datetime  # when the rows were written; every figure is at least minutes from it
    call_id: uuid.UUID  # a call the test's own recordings can belong to


class Rows:
    """Builds rows with the fields the CHECK constraints ask for."""

    def __init__(self, now: datetime) -> None:
        self.now = now
        self.rows: list[Any] = []
        self.number = 0

    def caller(self) -> str:
        self.number += 1
        return f"+38631{self.number:06d}"

    def call(self, line: str | None, kind: str | None, decision: str | None, *,
             direction: str = "inbound", notice: bool | None = True,
             age: timedelta = timedelta(minutes=10), inherited: Call | None = None,
             caller: str | None = None) -> Call:
        started = self.now - age
        call = Call(id=uuid.uuid4(), channel_id=uuid.uuid4().hex, linkedid="l",
                    direction=direction, caller=caller or self.caller(), line_name=line,
                    line_kind=kind,
                    started_at=started, ended_at=started + timedelta(minutes=2),
                    notice_completed=notice, state="ended")
        self.rows.append(call)
        if decision is not None:
            consent = decision == "consent" and inherited is None
            self.rows.append(Decision(
                call_id=call.id, decision=decision, line_kind=kind,
                digit="1" if consent else None,
                digit_at=started + timedelta(seconds=20) if consent else None,
                notice_started_at=started + timedelta(seconds=1),
                decided_at=started + timedelta(seconds=20),
                inherited_from_call_id=inherited.id if inherited else None))
        return call

    def callback(self, status: str, due_in: timedelta, *, closed_after_due: timedelta |
                 None = None, overload: bool = False) -> None:
        due = self.now + due_in
        self.rows.append(Callback(
            caller=self.caller(), status=status, due_at=due, record=False,
            notice_required=False, overload=overload,
            closed_at=None if closed_after_due is None else due + closed_after_due))

    def revocation(self, deadline: date, fulfilled_at: datetime | None = None,
                   caller: str | None = None) -> Revocation:
        revocation = Revocation(id=uuid.uuid4(), caller=caller or self.caller(), via="phone",
                                received_at=self.now - timedelta(days=3), recorded_by="agent1",
                                deadline=deadline, fulfilled_at=fulfilled_at)
        self.rows.append(revocation)
        return revocation

    def recording(self, call: Call, expires_in: timedelta, basis: str = "legal_basis",
                  **fields: Any) -> Recording:
        recording = Recording(id=uuid.uuid4(), call_id=call.id, basis=basis,
                              file_name=f"{uuid.uuid4()}.wav", started_at=call.started_at,
                              expires_at=self.now + expires_in, **fields)
        self.rows.append(recording)
        return recording

    def certificate(self, recording: Recording, reason: str, met: bool, existed: bool,
                    revocation: Revocation | None = None,
                    ago: timedelta = timedelta(hours=2)) -> None:
        recording.deleted_at = self.now - ago
        recording.deletion_reason = reason
        self.rows.append(DeletionCertificate(
            recording_id=recording.id, revocation_id=revocation.id if revocation else None,
            reason=reason, file_name=recording.file_name, file_sha256=None,
            file_existed=existed, deleted_at=recording.deleted_at,
            deadline=recording.deleted_at + (timedelta(hours=1) if met else -timedelta(hours=1)),
            met=met))


def local_end_of(day: date) -> datetime:
    return datetime.combine(day + timedelta(days=1), datetime.min.time(), TZ)


@pytest.fixture(scope="module")
async def stored(own_database: OwnDatabase) -> AsyncIterator[Stored]:
    async with own_database(2) as db:
        now = datetime.now(UTC)
        rows = Rows(now)
        # Calls: the sales line, two service lines, a callback, a number on no line; most
        # in the last hour, some earlier today, two three days ago (in no window).
        earlier = timedelta(hours=5)
        for _ in range(3):
            rows.call("sales", "sales", "legal_basis")
        rows.call("sales", "sales", "no_consent", notice=False, age=earlier)
        for _ in range(3):
            rows.call("service", "service", "consent")
        old = [rows.call("service", "service", "consent", age=timedelta(days=3))
               for _ in range(2)]
        rows.call("service", "service", "refusal", age=earlier)
        rows.call("service", "service", "no_consent", notice=False)
        rows.call("service", "service", "consent", direction="callback", inherited=old[0])
        rows.call("service-b", "service", "no_consent", notice=False)
        rows.call("service-b", "service", None, notice=None)  # still at the question
        rows.call(None, None, None, notice=None)
        # Callbacks (rule 4): 2 due, 2 overdue (1 in an overload), 2 returned within the
        # window, 1 late, 1 failed after its due time.
        rows.callback("open", timedelta(minutes=30))
        rows.callback("open", timedelta(minutes=50))
        rows.callback("open", -timedelta(minutes=10))
        rows.callback("open", -timedelta(minutes=20), overload=True)
        rows.callback("done", -timedelta(hours=3), closed_after_due=-timedelta(minutes=5))
        rows.callback("done", -timedelta(hours=3), closed_after_due=timedelta(0))
        rows.callback("done", -timedelta(hours=3), closed_after_due=timedelta(minutes=1))
        rows.callback("failed", -timedelta(hours=3), closed_after_due=timedelta(minutes=30))
        rows.callback("done", -timedelta(days=3), closed_after_due=timedelta(0))  # no window
        # Revocations (rule 8): fulfilled on the last minute of a winter deadline day (met)
        # and 30 s into the day after a summer one (missed; 22:00:30 UTC on the deadline
        # day, so a count in UTC would call it met); open ones past, at and off risk.
        today = now.astimezone(TZ).date()
        rows.revocation(date(2026, 1, 15), local_end_of(date(2026, 1, 15)) -
                        timedelta(minutes=1))
        summer = rows.revocation(date(2026, 7, 15), local_end_of(date(2026, 7, 15)) +
                                 timedelta(seconds=30))
        rows.revocation(today - timedelta(days=1))
        rows.revocation(today)
        rows.revocation(working_days_after(now, 1))
        rows.revocation(working_days_after(now, 2))
        pending = rows.revocation(today + timedelta(days=30))
        # Recordings (rule 6): kept within retention, kept 3 days past it (its deletion
        # failing), one that never started (no file), and four deleted with certificates.
        source = old[1]
        rows.recording(source, timedelta(days=90))
        rows.recording(source, -timedelta(days=3), deletion_attempts=2,
                       deletion_error="PermissionError: Permission denied",
                       deletion_flagged_at=now - timedelta(days=2))
        rows.recording(source, -timedelta(days=5), not_started_at=now - timedelta(days=200))
        for reason, met, existed in [("retention", True, True), ("retention", True, True),
                                     ("retention", False, True)]:
            rows.certificate(rows.recording(source, -timedelta(days=2)), reason, met, existed)
        rows.certificate(rows.recording(source, -timedelta(days=2)), "revocation", True,
                         False, summer)
        rows.certificate(rows.recording(source, -timedelta(days=9)), "retention", True, True,
                         ago=timedelta(days=3))  # deleted before the window
        # The open revocation's caller: a recording within retention whose deletion fails.
        revoked = rows.call("service", "service", "consent", age=timedelta(days=4),
                            caller=pending.caller)
        rows.recording(revoked, timedelta(days=170), basis="consent", deletion_attempts=1,
                       deletion_error="OSError: read-only file system")
        # Not covered by it (rule 8 withdraws consent, not a legal basis): not counted.
        rows.recording(revoked, timedelta(days=170), deletion_attempts=1,
                       deletion_error="OSError: read-only file system")
        async with db.session() as session, session.begin():
            for row in rows.rows:  # in order: the foreign keys point backwards
                session.add(row)
                await session.flush()
        yield Stored(db, now, source.id)


def console(db: Database, metrics: Metrics) -> Console:
    audit = AuditLog(db)
    return Console(Settings(mode="test"), db, audit, Users(db, audit), Sessions(db),
                   Callbacks(db, 60), templates(), metrics=metrics)


async def scrape(db: Database, metrics: Metrics | None = None) -> dict[str, float]:
    transport = httpx.ASGITransport(app=create_app(console(db, metrics or Metrics())))
    async with httpx.AsyncClient(transport=transport, base_url="http://ivr") as client:
        response = await client.get("/metrics")
    assert response.status_code == 200
    found = {}
    for family in text_string_to_metric_families(response.text):
        for sample in family.samples:
            labels = ",".join(f"{k}={v}" for k, v in sorted(sample.labels.items()))
            found[f"{sample.name}{{{labels}}}"] = sample.value
    return found


def only(found: dict[str, float], prefix: str) -> dict[str, float]:
    return {name: value for name, value in found.items() if name.startswith(prefix + "{")}


async def test_calls_are_counted_by_window_line_direction_and_decision(
        stored: Stored) -> None:
    found = await scrape(stored.db)
    assert found["ivr_database_up{}"] == 1
    calls = only(found, "ivr_calls")
    assert {k: v for k, v in calls.items() if "window=24h" in k} == {
        "ivr_calls{decision=legal_basis,direction=inbound,kind=sales,line=sales,window=24h}": 3,
        "ivr_calls{decision=no_consent,direction=inbound,kind=sales,line=sales,window=24h}": 1,
        "ivr_calls{decision=consent,direction=inbound,kind=service,line=service,window=24h}": 3,
        "ivr_calls{decision=refusal,direction=inbound,kind=service,line=service,window=24h}": 1,
        "ivr_calls{decision=no_consent,direction=inbound,kind=service,line=service,window=24h}":
            1,
        "ivr_calls{decision=consent,direction=callback,kind=service,line=service,window=24h}":
            1,
        "ivr_calls{decision=no_consent,direction=inbound,kind=service,line=service-b,"
        "window=24h}": 1,
        "ivr_calls{decision=none,direction=inbound,kind=service,line=service-b,window=24h}": 1,
        "ivr_calls{decision=none,direction=inbound,kind=none,line=none,window=24h}": 1,
    }
    # The last hour: the same calls less the two of five hours ago.
    hour = {k.replace("window=1h", "window=24h"): v for k, v in calls.items()
            if "window=1h" in k}
    assert hour == {**{k: v for k, v in calls.items() if "window=24h" in k},
                    "ivr_calls{decision=no_consent,direction=inbound,kind=sales,line=sales,"
                    "window=24h}": 0,
                    "ivr_calls{decision=refusal,direction=inbound,kind=service,line=service,"
                    "window=24h}": 0}


async def test_rule_1_notices_completed_and_cut(stored: Stored) -> None:
    notices = only(await scrape(stored.db), "ivr_notices")
    assert {k: v for k, v in notices.items() if "window=24h" in k} == {
        "ivr_notices{direction=inbound,kind=sales,line=sales,outcome=completed,window=24h}": 3,
        "ivr_notices{direction=inbound,kind=sales,line=sales,outcome=cut,window=24h}": 1,
        "ivr_notices{direction=inbound,kind=service,line=service,outcome=completed,"
        "window=24h}": 4,
        "ivr_notices{direction=inbound,kind=service,line=service,outcome=cut,window=24h}": 1,
        "ivr_notices{direction=callback,kind=service,line=service,outcome=completed,"
        "window=24h}": 1,
        "ivr_notices{direction=inbound,kind=service,line=service-b,outcome=cut,window=24h}": 1,
    }
    assert notices["ivr_notices{direction=inbound,kind=sales,line=sales,outcome=cut,"
                   "window=1h}"] == 0


async def test_rule_2_consent_rate_per_service_line_and_window(stored: Stored) -> None:
    # service: 3 consents of 5 inbound decisions in 24 h, of 4 in the last hour (the
    # refusal was five hours ago); the consents of three days ago and the callback's
    # inherited one do not count. service-b: its one decision was no consent.
    assert only(await scrape(stored.db), "ivr_consent_rate") == {
        "ivr_consent_rate{line=service,window=24h}": 0.6,
        "ivr_consent_rate{line=service,window=1h}": 0.75,
        "ivr_consent_rate{line=service-b,window=24h}": 0.0,
        "ivr_consent_rate{line=service-b,window=1h}": 0.0}


async def test_rule_4_callbacks_due_overdue_and_returned_within_the_hour(
        stored: Stored) -> None:
    found = await scrape(stored.db)
    assert only(found, "ivr_callbacks_open") == {
        "ivr_callbacks_open{overload=false,state=due}": 2,
        "ivr_callbacks_open{overload=true,state=due}": 0,
        "ivr_callbacks_open{overload=false,state=overdue}": 1,
        "ivr_callbacks_open{overload=true,state=overdue}": 1,
    }
    # Due in the last 24 hours and closed (the one due three days ago is in no window).
    assert only(found, "ivr_callbacks_closed") == {
        "ivr_callbacks_closed{in_time=true,status=done,window=24h}": 2,
        "ivr_callbacks_closed{in_time=false,status=done,window=24h}": 1,
        "ivr_callbacks_closed{in_time=true,status=failed,window=24h}": 0,
        "ivr_callbacks_closed{in_time=false,status=failed,window=24h}": 1,
        "ivr_callbacks_closed{in_time=true,status=cancelled,window=24h}": 0,
        "ivr_callbacks_closed{in_time=false,status=cancelled,window=24h}": 0,
    }
    # The earliest open callback was due 20 minutes before the rows were written.
    overdue_by = -found["ivr_callback_next_due_seconds{}"]
    elapsed = (datetime.now(UTC) - stored.now).total_seconds()
    assert 20 * 60 <= overdue_by <= 20 * 60 + elapsed + 1


async def test_rule_8_revocation_deadlines_met_missed_and_at_risk(stored: Stored) -> None:
    found = await scrape(stored.db)
    assert only(found, "ivr_revocations_fulfilled_total") == {
        "ivr_revocations_fulfilled_total{deadline=met}": 1,
        "ivr_revocations_fulfilled_total{deadline=missed}": 1,
    }
    # Open: yesterday's deadline is over; today's and the next working day's are at risk;
    # the one after that, and a month away, are on time.
    assert only(found, "ivr_revocations_open") == {
        "ivr_revocations_open{deadline=on_time}": 2,
        "ivr_revocations_open{deadline=at_risk}": 2,
        "ivr_revocations_open{deadline=overdue}": 1,
    }


async def test_rule_6_deletions_and_recordings_kept_past_their_retention(
        stored: Stored) -> None:
    found = await scrape(stored.db)
    deletions = only(found, "ivr_recording_deletions")
    assert {name: value for name, value in deletions.items() if value} == {
        "ivr_recording_deletions{deadline=met,file=deleted,reason=retention,window=24h}": 2,
        "ivr_recording_deletions{deadline=missed,file=deleted,reason=retention,window=24h}": 1,
        "ivr_recording_deletions{deadline=met,file=already_gone,reason=revocation,window=24h}":
            1,
    }  # the one deleted three days ago is in no window
    assert len(deletions) == 8  # every combination is there, the others 0
    # Failing: the expired one, and the one the open revocation covers.
    assert only(found, "ivr_recordings_deletion_failing") == {
        "ivr_recordings_deletion_failing{reason=retention}": 1,
        "ivr_recordings_deletion_failing{reason=revocation}": 1}
    # Kept 3 days past its expiry: its deadline (the end of that local day) is missed;
    # the recording that never started has no file and is not counted.
    assert only(found, "ivr_recordings_past_expiry") == {
        "ivr_recordings_past_expiry{deadline=at_risk}": 0,
        "ivr_recordings_past_expiry{deadline=missed}": 1,
    }
    age = found["ivr_recordings_past_expiry_oldest_seconds{}"]
    assert 3 * 86400 <= age <= 3 * 86400 + (datetime.now(UTC) - stored.now).total_seconds() + 1


async def test_a_recording_expired_today_is_at_risk_not_missed(stored: Stored) -> None:
    """The deletion deadline is the end of the expiry's local day (ivr/jobs/deletion.py):
    read a minute after an expiry, the recording is at risk; read the next day, missed."""
    expired = datetime(2026, 3, 10, 9, 0, tzinfo=TZ)
    async with stored.db.session() as session, session.begin():
        recording = Recording(call_id=stored.call_id, basis="legal_basis", file_name="today.wav",
                              started_at=expired - timedelta(days=183), expires_at=expired)
        session.add(recording)
    try:
        same_day = await read_policy_figures(
            stored.db, Moments.at(expired + timedelta(minutes=1), "Europe/Ljubljana", "SI"), 5)
        next_day = await read_policy_figures(
            stored.db, Moments.at(local_end_of(expired.date()), "Europe/Ljubljana", "SI"), 5)
        assert same_day.past_expiry == {"at_risk": 1}
        assert next_day.past_expiry == {"missed": 1}
        assert same_day.oldest_expiry == expired
    finally:
        async with stored.db.session() as session, session.begin():
            await session.delete(await session.get(Recording, recording.id))


async def test_every_figure_is_read_in_one_statement_and_two_instances_agree(
        stored: Stored) -> None:
    statements: list[str] = []

    def count(conn: Any, cursor: Any, statement: str, *args: Any) -> None:
        statements.append(statement)

    event.listen(stored.db.engine.sync_engine, "before_cursor_execute", count)
    try:
        first = await scrape(stored.db, Metrics())
    finally:
        event.remove(stored.db.engine.sync_engine, "before_cursor_execute", count)
    assert len(statements) == 1 and statements[0].lstrip().startswith("SELECT")
    # Another instance, same database; and past the fifth run, when psycopg prepares the
    # statement on the server, the same figures still.
    for _ in range(7):
        again = await scrape(stored.db, Metrics())
        assert {k: v for k, v in first.items() if "seconds" not in k} == \
            {k: v for k, v in again.items() if "seconds" not in k}
