"""Rules 4, 5 and 9: a missed call is returned within the window; the callback is the same
communication and inherits the decision of the call(s) it returns.

Pure: what a callback may record, and what the customer must hear first.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

from ivr.policy.lines import LineKind


@dataclass(frozen=True, slots=True)
class ReturnedCall:
    """What the callback needs to know of one missed call it returns."""

    call_id: str
    line_kind: LineKind
    decision: str | None  # legal_basis | consent | refusal | no_consent | None
    notice_completed: bool
    missed_at: datetime
    notice_ended_at: datetime | None = None


@dataclass(frozen=True, slots=True)
class Inheritance:
    """What the callback inherits.

    ``record``: the callback may be recorded without asking again.
    ``basis``: ``legal_basis`` or ``consent`` when it may, else ``None``.
    ``notice_required``: the customer never heard the notice (left during it), so the
    callback plays it first; then the callback's own answer decides (``notice_line``).
    ``reason``: the decision in plain words, for the agent and the receipt.
    """

    record: bool
    basis: str | None
    notice_required: bool
    notice_line: LineKind | None
    inherited_from: str | None
    reason: str
    notice_at: datetime | None = None  # when the returned call's notice ended
    refused_decision: str | None = None  # the decision that forbids recording, if any
    revoked: bool = False  # consent withdrawn since the returned call


def _allows(call: ReturnedCall) -> str | None:
    """The basis on which this one call was recorded, if it was allowed to be."""
    if not call.notice_completed:
        return None
    if call.line_kind is LineKind.SALES and call.decision == "legal_basis":
        return "legal_basis"
    if call.line_kind is LineKind.SERVICE and call.decision == "consent":
        return "consent"
    return None


def inherit(calls: Sequence[ReturnedCall], revoked_since: datetime | None) -> Inheritance:
    """The decision a callback inherits from the calls it returns.

    The most restrictive wins: recorded only if every returned call allowed it. A call of
    which the caller never heard the notice means the notice must be played on the
    callback (rule 1), and then the callback decides for itself. A revocation received
    after the calls withdraws consent: a consent-based callback is then not recorded
    (rule 8); a legal basis is not consent and is not withdrawn by it.
    """
    if not calls:
        raise ValueError("a callback returns at least one call")
    ordered = sorted(calls, key=lambda c: c.missed_at)
    unheard = [c for c in ordered if not c.notice_completed]
    if unheard:
        # Any service line among the calls: ask the question (most restrictive notice).
        kinds = {c.line_kind for c in ordered}
        line = LineKind.SERVICE if LineKind.SERVICE in kinds else LineKind.SALES
        return Inheritance(False, None, True, line, None,
                           "the caller did not hear the notice: the system plays it first")
    bases = [_allows(c) for c in ordered]
    if any(b is None for b in bases):
        refused = next(c for c, b in zip(ordered, bases, strict=True) if b is None)
        return Inheritance(False, None, False, None, refused.call_id,
                           f"{refused.decision or 'no decision'} on the returned call: "
                           "NOT recorded, do not repeat the notice", refused.notice_ended_at,
                           refused_decision=refused.decision or "no_consent")
    basis = "consent" if "consent" in bases else "legal_basis"
    source = next(c.call_id for c, b in zip(reversed(ordered), reversed(bases), strict=True)
                  if b == basis)
    notice_at = next(c.notice_ended_at for c in ordered if c.call_id == source)
    if basis == "consent" and revoked_since is not None:
        return Inheritance(False, None, False, None, source,
                           "consent revoked since the call: NOT recorded", notice_at,
                           revoked=True)
    reason = ("consent given on the returned call: this call WILL be recorded, do not "
              "repeat the notice" if basis == "consent" else
              "sales line, evidence of a transaction: this call WILL be recorded, do not "
              "repeat the notice")
    return Inheritance(True, basis, False, None, source, reason, notice_at)


def due_at(first_missed: datetime, window_minutes: int) -> datetime:
    """Rule 4: returned within the window from the first missed call."""
    return first_missed + timedelta(minutes=window_minutes)


def overloaded(callers_waiting: int, agents_available: int, per_agent: float) -> bool:
    """Rule 4's exception: the centre was substantially overloaded when the call was
    missed (more callers waiting per available agent than the setting allows)."""
    if agents_available <= 0:
        return callers_waiting > 0
    return callers_waiting / agents_available > per_agent
