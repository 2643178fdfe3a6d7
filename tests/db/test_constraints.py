"""The database itself refuses what the policy forbids, whatever the code above it does."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from ivr.store.models import Call, Callback, Decision

pytestmark = pytest.mark.db

T0 = datetime(2026, 11, 22, 9, 0, tzinfo=UTC)
CALLER = "+38641123456"


def a_callback(**overrides: object) -> Callback:
    fields: dict[str, object] = {
        "caller": CALLER,
        "due_at": T0 + timedelta(hours=1),
        "record": True,
        "notice_required": False,
    }
    fields.update(overrides)
    return Callback(**fields)


async def a_call(session: AsyncSession, line_kind: str = "service") -> Call:
    call = Call(
        channel_id=f"chan-{uuid.uuid4().hex}",
        linkedid="linked",
        direction="inbound",
        dialled="+38640404040",
        caller=CALLER,
        line_name=line_kind,
        line_kind=line_kind,
        started_at=T0,
        state="ended",
    )
    session.add(call)
    await session.flush()
    return call


async def refused(session: AsyncSession, row: object) -> str:
    """Insert ``row`` in a savepoint; return the name of the constraint that refused it."""
    with pytest.raises(IntegrityError) as caught:
        async with session.begin_nested():
            session.add(row)
            await session.flush()
    diag = getattr(caught.value.orig, "diag", None)
    return str(getattr(diag, "constraint_name", ""))


async def test_rule_4_one_open_callback_per_caller(session: AsyncSession) -> None:
    first = a_callback()
    session.add(first)
    await session.flush()

    assert await refused(session, a_callback()) == "uq_callbacks_open_caller"

    first.status = "done"
    first.closed_at = T0 + timedelta(minutes=20)
    await session.flush()
    second = a_callback(due_at=T0 + timedelta(hours=2))
    session.add(second)
    await session.flush()
    assert second.status == "open"


async def test_a_decision_the_policy_does_not_know_is_refused(session: AsyncSession) -> None:
    call = await a_call(session)
    row = Decision(call_id=call.id, decision="maybe", line_kind="service", decided_at=T0)
    assert await refused(session, row) == "ck_decisions_decision"


async def test_rule_2_consent_is_the_digit_1_after_the_notice(session: AsyncSession) -> None:
    call = await a_call(session)
    pressed_early = Decision(
        call_id=call.id,
        decision="consent",
        line_kind="service",
        digit="1",
        digit_at=T0,
        notice_started_at=T0 + timedelta(seconds=1),
        decided_at=T0 + timedelta(seconds=2),
    )
    assert await refused(session, pressed_early) == "ck_decisions_consent_is_1_after_notice"
    pressed_3 = Decision(
        call_id=call.id,
        decision="consent",
        line_kind="service",
        digit="3",
        digit_at=T0 + timedelta(seconds=5),
        notice_started_at=T0,
        decided_at=T0 + timedelta(seconds=5),
    )
    assert await refused(session, pressed_3) == "ck_decisions_consent_is_1_after_notice"


async def test_a_legal_basis_only_on_a_sales_line(session: AsyncSession) -> None:
    call = await a_call(session, line_kind="service")
    row = Decision(call_id=call.id, decision="legal_basis", line_kind="service", decided_at=T0)
    assert await refused(session, row) == "ck_decisions_legal_basis_on_sales"


async def test_numbers_are_stored_in_e164(session: AsyncSession) -> None:
    assert await refused(session, a_callback(caller="041 123 456")) == "ck_callbacks_caller_e164"
