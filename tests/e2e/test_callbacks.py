"""Missed calls and callbacks on the real test PBX (POLICY.md rules 4, 5, 9): callers miss
the queue (no agent answers), then `ivr callbacks dial` rings the agent's phone (SIPp) and
the customer through the carrier trunk (SIPp); each test asserts the stored callback, its
receipt and the recording file."""

from __future__ import annotations

import asyncio
import json
import uuid
import wave
from datetime import UTC, date, datetime
from typing import Any

import pytest
from sqlalchemy import pool, text
from sqlalchemy.ext.asyncio import create_async_engine

from testpbx.asterisk import AGENT_PASSWORD, AGENT_PORTS, CUSTOMER_PORT
from testpbx.sipp import Action, Pause, Press, Sipp, Speak

pytestmark = pytest.mark.pbx

DURING_QUESTION = (Pause(3800), Press("1"))
MISSED = {
    # name: (number, caller, actions, hold_ms after the actions)
    "consent": ("040404040", "031000801", DURING_QUESTION, 5000),
    "refusal": ("040404030", "031000802", (Pause(3800), Press("2")), 5000),
    "sales": ("040404045", "031000803", (), 6000),
    "left-during-notice": ("040404085", "031000804", (), 1200),
    "revoked": ("040404042", "031000805", DURING_QUESTION, 5000),
    "busy": ("040404066", "031000806", DURING_QUESTION, 5000),
    "desk-phone": ("040404040", "031000808", DURING_QUESTION, 5000),
}
REPEATED_CALLER = "031000807"


@pytest.fixture(scope="module")
async def callbacks(service: Any, sipp: Sipp) -> dict[str, dict[str, Any]]:
    """Every missed call of this module placed at once (and three more from one number);
    then the callback task of each caller, as `ivr callbacks list --json` shows it."""
    calls = [sipp.call(n, caller=c, actions=a, hold_ms=h) for n, c, a, h in MISSED.values()]
    calls += [sipp.call("040404041", caller=REPEATED_CALLER, actions=DURING_QUESTION,
                        hold_ms=5000 + 1000 * i) for i in range(3)]
    results = await asyncio.gather(*calls)
    assert all(r.ok for r in results), [r.errors() for r in results if not r.ok]
    await service.all_call_records()  # every call closed
    listed = await service.cli("callbacks", "list", "--json")
    assert listed.returncode == 0, listed.stderr
    by_caller = {c["caller"]: c for c in json.loads(listed.stdout)}
    found = {name: by_caller["+386" + caller[1:]] for name, (_, caller, _, _) in MISSED.items()}
    found["repeated"] = by_caller["+386" + REPEATED_CALLER[1:]]
    return found


async def dial(service: Any, sipp: Sipp, callback: dict[str, Any],
               customer_actions: tuple[Action, ...] = (Speak(),),
               busy: bool = False, hold_ms: int = 3000) -> dict[str, Any]:
    async with sipp.agent(AGENT_PORTS["agent1"]), sipp.customer(
            CUSTOMER_PORT, customer_actions, hold_ms=hold_ms, busy=busy):
        done = await service.cli("callbacks", "dial", callback["id"], "--agent", "agent1")
    last = done.stdout.strip().splitlines()[-1] if done.stdout.strip() else ""
    assert last.startswith("{"), f"stdout:\n{done.stdout}\nstderr:\n{done.stderr[-3000:]}"
    return dict(json.loads(last), returncode=done.returncode, progress=done.stdout)


async def callback_receipt(service: Any, call_id: str) -> dict[str, Any]:
    engine = create_async_engine(service.database_url, poolclass=pool.NullPool)
    try:
        async with engine.connect() as conn:
            row = (await conn.execute(text(
                "SELECT c.direction, c.agent_answered, c.ended_at, d.decision, d.digit,"
                " d.inherited_from_call_id, d.prompts_played, r.file_name"
                " FROM calls c LEFT JOIN decisions d ON d.call_id = c.id"
                " LEFT JOIN recordings r ON r.call_id = c.id WHERE c.id = :id"),
                {"id": call_id})).mappings().one()
            return dict(row)
    finally:
        await engine.dispose()


def assert_recording(service: Any, file_name: str | None) -> None:
    assert file_name is not None
    with wave.open(str(service.recording(file_name))) as audio:
        assert audio.getnframes() > 8000  # over a second of the conversation


def test_rule_4_one_callback_per_number_due_within_the_hour(
        callbacks: dict[str, dict[str, Any]]) -> None:
    repeated = callbacks["repeated"]
    assert len(repeated["calls"]) == 3  # three missed calls, one callback
    for callback in callbacks.values():
        assert callback["status"] == "open"
        created = datetime.fromisoformat(callback["created_at"])
        due = datetime.fromisoformat(callback["due_at"])
        assert 0 < (due - created).total_seconds() <= 3600


def test_rule_1_caller_left_during_the_notice_needs_it_first(
        callbacks: dict[str, dict[str, Any]]) -> None:
    assert callbacks["left-during-notice"]["notice_required"] is True
    assert callbacks["left-during-notice"]["record"] is False


async def test_rule_5_consent_is_inherited_recorded_without_a_prompt(
        service: Any, sipp: Sipp, callbacks: dict[str, dict[str, Any]]) -> None:
    callback = callbacks["consent"]
    assert callback["record"] is True and callback["notice_required"] is False
    result = await dial(service, sipp, callback)
    assert result["returncode"] == 0, result["progress"]
    assert (result["reached"], result["recorded"], result["status"]) == (True, True, "done")
    receipt = await callback_receipt(service, result["call"])
    assert receipt["direction"] == "callback" and receipt["agent_answered"] is True
    assert receipt["decision"] == "consent"
    assert str(receipt["inherited_from_call_id"]) == callback["calls"][0]
    assert receipt["prompts_played"] == []  # nothing was played to the customer
    assert_recording(service, receipt["file_name"])


async def test_rule_9_refusal_is_inherited_not_recorded(
        service: Any, sipp: Sipp, callbacks: dict[str, dict[str, Any]]) -> None:
    result = await dial(service, sipp, callbacks["refusal"])
    assert (result["reached"], result["recorded"]) == (True, False)
    receipt = await callback_receipt(service, result["call"])
    assert receipt["file_name"] is None and receipt["decision"] == "no_consent"


async def test_rule_9_sales_callback_is_recorded(
        service: Any, sipp: Sipp, callbacks: dict[str, dict[str, Any]]) -> None:
    result = await dial(service, sipp, callbacks["sales"])
    assert (result["reached"], result["recorded"]) == (True, True)
    receipt = await callback_receipt(service, result["call"])
    assert receipt["decision"] == "legal_basis"
    assert_recording(service, receipt["file_name"])


async def test_rule_1_the_callback_plays_the_notice_first_when_it_was_never_heard(
        service: Any, sipp: Sipp, callbacks: dict[str, dict[str, Any]]) -> None:
    """The customer hears the service notice on the callback and presses 1 (RFC 4733)."""
    result = await dial(service, sipp, callbacks["left-during-notice"],
                        customer_actions=(Pause(3800), Press("1", "rfc4733"), Pause(3500),
                                          Speak()), hold_ms=3000)
    assert (result["reached"], result["recorded"]) == (True, True), result["progress"]
    receipt = await callback_receipt(service, result["call"])
    assert (receipt["decision"], receipt["digit"]) == ("consent", "1")
    assert receipt["inherited_from_call_id"] is None  # decided on the callback itself
    assert [p["id"] for p in receipt["prompts_played"]] == [
        "service-information", "service-question", "service-closing"]
    assert_recording(service, receipt["file_name"])


async def test_rule_8_a_revocation_since_the_call_means_not_recorded(
        service: Any, sipp: Sipp, callbacks: dict[str, dict[str, Any]]) -> None:
    callback = callbacks["revoked"]
    engine = create_async_engine(service.database_url, poolclass=pool.NullPool)
    async with engine.begin() as conn:  # (until `ivr revocations add` exists)
        await conn.execute(text(
            "INSERT INTO revocations (id, caller, via, received_at, recorded_by, deadline)"
            " VALUES (:id, :caller, 'phone', :at, 'test', :deadline)"),
            {"id": uuid.uuid4(), "caller": callback["caller"], "at": datetime.now(UTC),
             "deadline": date.today()})
    await engine.dispose()
    result = await dial(service, sipp, callback)
    assert (result["reached"], result["recorded"]) == (True, False)
    receipt = await callback_receipt(service, result["call"])
    assert receipt["file_name"] is None


async def test_rule_4_a_busy_customer_keeps_the_callback_open_with_a_retry(
        service: Any, sipp: Sipp, callbacks: dict[str, dict[str, Any]]) -> None:
    callback = callbacks["busy"]
    result = await dial(service, sipp, callback, busy=True)
    assert result["returncode"] == 1
    assert (result["reached"], result["outcome"], result["status"]) == (False, "busy", "open")
    shown = await service.cli("callbacks", "show", callback["id"], "--json")
    data = json.loads(shown.stdout)
    assert data["attempts"] == 1 and data["next_attempt_at"] is not None
    assert data["attempts_made"][0]["outcome"] == "busy"


async def test_rule_5_desk_phone_dial_through_fastagi_applies_and_links_the_decision(
        service: Any, sipp: Sipp, callbacks: dict[str, dict[str, Any]]) -> None:
    """The agent dials 031 000 808 from the desk phone: the dialplan asks the service over
    FastAGI, which links the callback, stores the inherited consent and names the file;
    the dialplan records."""
    callback = callbacks["desk-phone"]
    async with sipp.customer(CUSTOMER_PORT, hold_ms=10000):
        dialled = await sipp.agent_dials("031000808", AGENT_PASSWORD, hold_ms=4000)
    assert dialled.ok, dialled.errors()
    for _ in range(50):
        shown = json.loads((await service.cli("callbacks", "show", callback["id"],
                                              "--json")).stdout)
        if shown["status"] != "open":
            break
        await asyncio.sleep(0.2)
    assert shown["status"] == "done", shown
    attempt = shown["attempts_made"][0]
    assert (attempt["agent"], attempt["outcome"]) == ("agent1", "answered")
    receipt = await callback_receipt(service, attempt["call"])
    assert receipt["direction"] == "callback" and receipt["decision"] == "consent"
    assert str(receipt["inherited_from_call_id"]) == callback["calls"][0]
    assert_recording(service, receipt["file_name"])


async def test_rule_4_missed_calls_are_told_apart_by_how_they_ended(
        service: Any, callbacks: dict[str, dict[str, Any]]) -> None:
    """Trusted signal: the call's own life (closed with no agent having answered). A caller
    who left during the notice hung up in the IVR; one who waited in the queue for no
    agent abandoned it."""
    engine = create_async_engine(service.database_url, poolclass=pool.NullPool)
    try:
        async with engine.connect() as conn:
            rows = (await conn.execute(text(
                "SELECT m.caller, m.reason, m.callback_id FROM missed_calls m"))).all()
    finally:
        await engine.dispose()
    reasons = {caller: reason for caller, reason, _ in rows}
    assert reasons["+38631000804"] == "ivr_hangup"  # left during the notice
    assert reasons["+38631000801"] == "abandoned"  # left the queue
    assert all(callback_id is not None for _, _, callback_id in rows)
