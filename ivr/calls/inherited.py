"""Storing a callback's inherited decision (rule 5), shared by the ARI dialer and the
desk-phone path: the receipt names the returned call it inherits from, and the recording
it allows is written with it, before any recording may start."""

from __future__ import annotations

import uuid

from ivr.calls.inbound import CallDeps, now, plan_recording
from ivr.flow import commands as cmd
from ivr.policy.callbacks import Inheritance
from ivr.policy.lines import LineKind, LineRef
from ivr.settings import Settings
from ivr.store.callbacks import CallbackView
from ivr.store.receipts import PlannedRecording


def callback_line(settings: Settings, view: CallbackView) -> LineRef:
    """The line a callback speaks for: the service line when the decision is consent or
    the customer must hear the service notice, else the first line among the returned
    calls' lines."""
    inheritance = view.inheritance
    wanted = inheritance.notice_line or (
        LineKind.SERVICE if inheritance.basis == "consent" else None)
    lines = [line for line in settings.lines if line.name in view.lines]
    for line in lines:
        if wanted is None or line.kind is wanted:
            return line.ref()
    return (lines[0] if lines else settings.lines[0]).ref()


async def store_inherited(deps: CallDeps, call_id: uuid.UUID, line: LineRef,
                          inheritance: Inheritance) -> PlannedRecording | None:
    """Store the decision the callback inherits; return the recording it allows (or None).

    Recorded only when the inheritance allows it and the customer heard the notice before;
    a sales call whose customer was never told stores no decision at all (rule 1).
    """
    record = inheritance.record and not inheritance.notice_required
    decision = (cmd.Decision(inheritance.basis) if record and inheritance.basis
                else cmd.Decision.NO_CONSENT if line.kind is LineKind.SERVICE else None)
    if decision is None:
        return None
    recording = plan_recording(deps.settings, call_id, decision.value) if record else None
    receipt = cmd.Receipt(decision=decision, digit=None, digit_at=None,
                          notice_started_at=None, notice_ended_at=None,
                          question_started_at=None, decided_at=now(), played=(),
                          record=record)
    await deps.records.store_decision(
        call_id, line.kind.value, receipt, [], recording,
        uuid.UUID(inheritance.inherited_from) if inheritance.inherited_from else None)
    return recording
