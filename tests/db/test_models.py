"""The models round-trip through PostgreSQL: a call, its consent receipt and its recording
come back as written, timestamps with their time zone (rule 3: proof of consent)."""

from __future__ import annotations

import hashlib
import uuid
from datetime import UTC, date, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from ivr.store.models import (
    AUDIT_GENESIS_HASH,
    AuditEntry,
    Call,
    Decision,
    Recording,
    Revocation,
)

pytestmark = pytest.mark.db

LJUBLJANA = ZoneInfo("Europe/Ljubljana")
T0 = datetime(2026, 11, 22, 10, 0, 0, tzinfo=LJUBLJANA)


def a_call(**overrides: object) -> Call:
    fields: dict[str, object] = {
        "channel_id": f"1763805600.{uuid.uuid4().hex}",
        "linkedid": "1763805600.1",
        "direction": "inbound",
        "dialled": "+38640404040",
        "caller": "+38641123456",
        "caller_raw": "041 123 456",
        "line_name": "service",
        "line_kind": "service",
        "started_at": T0,
        "state": "ended",
    }
    fields.update(overrides)
    return Call(**fields)


async def test_call_decision_and_recording_round_trip(session: AsyncSession) -> None:
    call = a_call()
    session.add(call)
    await session.flush()
    prompts = [
        {
            "id": "service",
            "version": "2026-11-01",
            "sha256": "ab" * 32,
            "started_at": (T0 + timedelta(seconds=1)).isoformat(),
            "ended_at": (T0 + timedelta(seconds=19)).isoformat(),
        }
    ]
    session.add(
        Decision(
            call_id=call.id,
            decision="consent",
            line_kind="service",
            digit="1",
            digit_at=T0 + timedelta(seconds=12),
            prompts_played=prompts,
            notice_started_at=T0 + timedelta(seconds=1),
            notice_ended_at=T0 + timedelta(seconds=19),
            question_started_at=T0 + timedelta(seconds=9),
            decided_at=T0 + timedelta(seconds=12),
        )
    )
    session.add(
        Recording(
            call_id=call.id,
            basis="consent",
            file_name=f"{call.id}.wav",
            mixmonitor_id="0x7f00aa",
            started_at=T0 + timedelta(seconds=13),
            expires_at=T0 + timedelta(days=182),
        )
    )
    await session.commit()
    session.expunge_all()

    stored = (await session.execute(select(Call).where(Call.id == call.id))).scalar_one()
    decision = (
        await session.execute(select(Decision).where(Decision.call_id == call.id))
    ).scalar_one()
    recording = (
        await session.execute(select(Recording).where(Recording.call_id == call.id))
    ).scalar_one()

    assert isinstance(stored.id, uuid.UUID)
    assert stored.caller == "+38641123456"
    assert stored.caller_withheld is False and stored.agent_answered is False
    assert stored.notice_completed is None
    assert decision.decision == "consent" and decision.digit == "1"
    assert decision.prompts_played == prompts
    assert recording.basis == "consent" and recording.deleted_at is None
    for moment in (
        stored.started_at,
        decision.digit_at,
        decision.notice_started_at,
        decision.decided_at,
        recording.started_at,
        recording.expires_at,
    ):
        assert moment is not None and moment.tzinfo is not None
    assert stored.started_at == T0
    assert decision.digit_at == T0 + timedelta(seconds=12)


async def test_audit_entries_are_numbered_by_the_database(session: AsyncSession) -> None:
    first = AuditEntry(
        actor="system",
        action="call.decided",
        subject_type="call",
        subject_id="x",
        prev_hash=AUDIT_GENESIS_HASH,
        hash=hashlib.sha256(b"first").hexdigest(),
    )
    session.add(first)
    await session.flush()
    second = AuditEntry(
        actor="system",
        action="call.decided",
        subject_type="call",
        prev_hash=first.hash,
        hash=hashlib.sha256(b"second").hexdigest(),
        details={"decision": "refusal"},
    )
    session.add(second)
    await session.flush()
    assert isinstance(first.id, int) and second.id > first.id
    assert first.details == {} and first.at.tzinfo is not None


async def test_revocation_keeps_its_deadline_as_a_date(session: AsyncSession) -> None:
    revocation = Revocation(
        caller="+38641123456",
        via="email",
        received_at=datetime(2026, 12, 24, 16, 0, tzinfo=UTC),
        recorded_by="dpo",
        deadline=date(2027, 1, 5),
    )
    session.add(revocation)
    await session.commit()
    session.expunge_all()
    stored = (
        await session.execute(select(Revocation).where(Revocation.id == revocation.id))
    ).scalar_one()
    assert stored.deadline == date(2027, 1, 5)
    assert stored.created_at.tzinfo is not None and stored.fulfilled_at is None
