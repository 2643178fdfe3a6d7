"""What a returned call inherits (POLICY.md rules 1, 4, 5, 8 and 9), as pure functions."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st

from ivr.policy.callbacks import ReturnedCall, due_at, inherit, overloaded
from ivr.policy.lines import LineKind
from ivr.settings import CallbackSettings

T0 = datetime(2026, 11, 23, 9, 0, tzinfo=UTC)
SALES, SERVICE = LineKind.SALES, LineKind.SERVICE


def call(kind: LineKind, decision: str | None, heard: bool = True, minute: int = 0,
         call_id: str | None = None) -> ReturnedCall:
    return ReturnedCall(call_id or f"call-{kind}-{decision}-{minute}", kind, decision, heard,
                        T0 + timedelta(minutes=minute))


# Rules 5 and 9: the callback inherits the original decision --------------------------------

def test_rule_9_sales_callback_is_recorded_on_the_legal_basis_without_repeating_notice() -> None:
    got = inherit([call(SALES, "legal_basis")], None)
    assert got.record is True
    assert got.basis == "legal_basis"
    assert got.notice_required is False
    assert got.notice_line is None
    assert "WILL be recorded" in got.reason
    assert "do not repeat the notice" in got.reason


def test_rule_9_service_callback_with_original_consent_is_recorded_on_consent() -> None:
    got = inherit([call(SERVICE, "consent", call_id="c1")], None)
    assert got.record is True
    assert got.basis == "consent"
    assert got.notice_required is False
    assert got.inherited_from == "c1"
    assert "WILL be recorded" in got.reason
    assert "do not repeat the notice" in got.reason


@pytest.mark.parametrize("decision", ["refusal", "no_consent", None])
def test_rule_9_service_callback_without_original_consent_is_not_recorded(
        decision: str | None) -> None:
    got = inherit([call(SERVICE, decision)], None)
    assert got.record is False
    assert got.basis is None
    assert got.notice_required is False  # the caller heard it: rule 5, do not repeat it
    assert got.notice_line is None
    assert "NOT recorded" in got.reason


# Rule 1: a caller who left during the notice was not informed ----------------------------

@pytest.mark.parametrize(("kind", "decision"), [
    (SALES, None), (SALES, "legal_basis"), (SERVICE, None), (SERVICE, "no_consent"),
])
def test_rule_1_caller_left_during_notice_so_callback_plays_it_first(
        kind: LineKind, decision: str | None) -> None:
    got = inherit([call(kind, decision, heard=False)], None)
    assert got.record is False
    assert got.basis is None
    assert got.notice_required is True
    assert got.notice_line is kind


def test_rule_1_unheard_among_merged_calls_asks_the_service_question_if_any_service_call() -> None:
    got = inherit([call(SALES, "legal_basis", minute=0),
                   call(SERVICE, "consent", heard=False, minute=5)], None)
    assert (got.record, got.notice_required, got.notice_line) == (False, True, SERVICE)
    got = inherit([call(SALES, None, heard=False, minute=0),
                   call(SERVICE, "consent", minute=5)], None)
    assert (got.record, got.notice_required, got.notice_line) == (False, True, SERVICE)


def test_rule_1_unheard_among_sales_calls_only_plays_the_sales_notice() -> None:
    got = inherit([call(SALES, "legal_basis", minute=0),
                   call(SALES, None, heard=False, minute=5)], None)
    assert (got.record, got.notice_required, got.notice_line) == (False, True, SALES)


# Rule 4 (one callback per caller): merged calls, the most restrictive wins --------------

def test_rule_5_merged_sales_and_consent_is_recorded_on_consent() -> None:
    got = inherit([call(SALES, "legal_basis", minute=0), call(SERVICE, "consent", minute=5)],
                  None)
    assert (got.record, got.basis, got.notice_required) == (True, "consent", False)


def test_rule_5_merged_consent_and_refusal_is_not_recorded() -> None:
    got = inherit([call(SERVICE, "consent", minute=0),
                   call(SERVICE, "refusal", minute=5, call_id="refused")], None)
    assert (got.record, got.basis, got.notice_required) == (False, None, False)
    assert got.inherited_from == "refused"
    assert "refusal" in got.reason


def test_rule_5_merged_legal_basis_and_no_consent_is_not_recorded() -> None:
    got = inherit([call(SALES, "legal_basis", minute=0), call(SERVICE, "no_consent", minute=5)],
                  None)
    assert (got.record, got.basis, got.notice_required) == (False, None, False)


def test_rule_5_order_of_the_merged_calls_does_not_matter() -> None:
    calls = [call(SERVICE, "consent", minute=0), call(SALES, "legal_basis", minute=3),
             call(SERVICE, "consent", minute=7)]
    assert inherit(calls, None) == inherit(list(reversed(calls)), None)


# Rule 8: a revocation withdraws consent, not the legal basis -----------------------------

def test_rule_8_revocation_after_the_calls_withdraws_consent() -> None:
    got = inherit([call(SERVICE, "consent")], T0 + timedelta(minutes=10))
    assert (got.record, got.basis, got.notice_required) == (False, None, False)
    assert "revoked" in got.reason


def test_rule_8_revocation_withdraws_consent_also_when_merged_with_a_sales_call() -> None:
    got = inherit([call(SALES, "legal_basis", minute=0), call(SERVICE, "consent", minute=5)],
                  T0 + timedelta(minutes=10))
    assert got.record is False


def test_rule_8_covers_consent_only_legal_basis_callback_is_still_recorded() -> None:
    got = inherit([call(SALES, "legal_basis", minute=0), call(SALES, "legal_basis", minute=5)],
                  T0 + timedelta(minutes=10))
    assert (got.record, got.basis) == (True, "legal_basis")


def test_a_callback_returns_at_least_one_call() -> None:
    with pytest.raises(ValueError, match="at least one call"):
        inherit([], None)


# Rule 4: the window, and its overload exception ------------------------------------------

def test_rule_4_due_at_is_the_first_missed_call_plus_the_window() -> None:
    assert CallbackSettings().window_minutes == 60
    assert due_at(T0, CallbackSettings().window_minutes) == T0 + timedelta(hours=1)
    assert due_at(T0, 15) == T0 + timedelta(minutes=15)


def test_rule_4_no_agent_with_callers_waiting_is_overload() -> None:
    assert overloaded(1, 0, 3.0) is True


def test_rule_4_no_agent_and_nobody_waiting_is_not_overload() -> None:
    assert overloaded(0, 0, 3.0) is False


def test_rule_4_overload_threshold_is_strictly_greater() -> None:
    assert overloaded(6, 2, 3.0) is False  # exactly 3 per agent
    assert overloaded(7, 2, 3.0) is True
    assert overloaded(0, 5, 3.0) is False


# Property: record only when every returned call allowed it (rules 1, 5, 8, 9) ------------

returned_calls = st.builds(
    ReturnedCall,
    call_id=st.uuids().map(str),
    line_kind=st.sampled_from(list(LineKind)),
    decision=st.sampled_from(["legal_basis", "consent", "refusal", "no_consent", None]),
    notice_completed=st.booleans(),
    missed_at=st.datetimes(min_value=datetime(2026, 1, 1), max_value=datetime(2027, 1, 1),
                           timezones=st.just(UTC)),
)


def allowed(c: ReturnedCall) -> bool:
    return c.notice_completed and (
        (c.line_kind is SALES and c.decision == "legal_basis")
        or (c.line_kind is SERVICE and c.decision == "consent"))


@given(calls=st.lists(returned_calls, min_size=1, max_size=6),
       revoked=st.none() | st.just(T0))
def test_rules_1_5_9_record_only_if_every_returned_call_allowed_recording(
        calls: list[ReturnedCall], revoked: datetime | None) -> None:
    got = inherit(calls, revoked)
    if got.record:
        assert all(allowed(c) for c in calls)
        assert got.basis in ("legal_basis", "consent")
        assert not got.notice_required
    else:
        assert got.basis is None
    if any(not c.notice_completed for c in calls):
        assert got.record is False
        assert got.notice_required is True
    else:
        assert got.notice_required is False
    if revoked is not None and any(c.decision == "consent" for c in calls):
        assert got.record is False  # rule 8
    if revoked is None and all(allowed(c) for c in calls):
        assert got.record is True
