"""The desk-phone path of a callback (rules 5 and 9): an agent dials the customer's number
directly; the dialplan asks the service over FastAGI whether an open callback exists for
that number. If so, the attempt is linked, the inherited decision stored (with the
recording it allows) before the dialplan may start MixMonitor, and the file named from the
call's id. No callback, or any doubt: not recorded.

A customer who never heard the notice cannot be told it from this path: such a call is
not recorded (the agent's console places those callbacks through the service instead).
"""

from __future__ import annotations

import logging
import uuid

from ivr.asterisk.agi import AgiRequest
from ivr.asterisk.fastagi import AgiSession, Handler
from ivr.calls.caller import printable
from ivr.calls.inbound import CallDeps, now
from ivr.calls.inherited import callback_line, store_inherited
from ivr.policy.numbers import InvalidNumber, to_e164
from ivr.store.callbacks import CallbackError
from ivr.store.receipts import ClosedCall, OpenedCall

log = logging.getLogger(__name__)


def desk_phone_handlers(deps: CallDeps) -> dict[str, Handler]:
    async def dial(request: AgiRequest, agi: AgiSession) -> None:
        settings = deps.settings
        agent = printable(request.get("callerid") or request.get("channel") or "unknown", 64)
        channel_id = request.get("uniqueid") or ""
        try:
            customer = to_e164(request.get("extension") or "", settings.region)
        except InvalidNumber as exc:
            log.info("desk-phone call to a non-number: not recorded (%s)", exc)
            return
        callback_id = await deps.callbacks.open_for(customer)
        if callback_id is None or not channel_id:
            return  # not a callback: IVR_RECORD stays "no"
        try:
            view, attempt_id = await deps.callbacks.begin_attempt(callback_id, agent, now())
        except CallbackError as exc:
            log.warning("desk-phone callback not linked: %s", exc)
            return
        inheritance = view.inheritance
        line = callback_line(settings, view)
        call_id = uuid.uuid4()
        await deps.records.open(OpenedCall(
            id=call_id, channel_id=channel_id, linkedid=request.get("linkedid") or channel_id,
            dialled=customer, caller=customer, caller_withheld=False, caller_raw=customer,
            line_name=line.name, line_kind=line.kind.value, started_at=now()),
            direction="callback")
        await deps.callbacks.link_attempt(attempt_id, call_id)
        recording = await store_inherited(deps, call_id, line, inheritance)
        await agi.set("IVR_CALLBACK_ID", str(callback_id))
        await agi.set("IVR_ATTEMPT_ID", str(attempt_id))
        await agi.set("IVR_CALL_ID", str(call_id))
        if recording is not None:
            await agi.set("IVR_RECORDING_FILE", recording.file_name)
            await agi.set("IVR_RECORD", "yes")
            # The dialplan starts MixMonitor right after this answer.
            await deps.records.recording_started(recording.file_name, "dialplan", now())
        log.info("desk-phone callback linked", extra={
            "call": channel_id, "callback": str(callback_id), "record": recording is not None})

    async def dial_end(request: AgiRequest, agi: AgiSession) -> None:
        settings = deps.settings
        try:
            callback_id = uuid.UUID(await agi.get("IVR_CALLBACK_ID") or "")
            attempt_id = uuid.UUID(await agi.get("IVR_ATTEMPT_ID") or "")
            call_id = uuid.UUID(await agi.get("IVR_CALL_ID") or "")
        except ValueError:
            log.warning("desk-phone callback end without its ids")
            return
        status = (await agi.get("DIALSTATUS") or "UNKNOWN").upper()
        reached = status == "ANSWER"
        outcome = {"ANSWER": "answered", "BUSY": "busy", "NOANSWER": "no_answer"}.get(
            status, status.lower()[:32] or "failed")
        record_file = await agi.get("IVR_RECORDING_FILE")
        await deps.records.close(call_id, ClosedCall(
            answered_at=None, ended_at=now(), end_reason=f"desk-phone callback: {outcome}",
            notice_completed=None, agent_answered=True, agent=None, state="ended"),
            record_file or None)
        await deps.callbacks.end_attempt(
            callback_id, attempt_id, call_id, outcome, reached, now(),
            settings.callbacks.retry_attempts, settings.callbacks.retry_delay_minutes)

    return {"callback-dial": dial, "callback-dial-end": dial_end}
