"""Calls the dialplan took while no service instance ran (rule 4).

When Stasis fails (no instance is connected: a restart, an outage), the dialplan sends the
caller to the line's queue unrecorded (``[ivr-unavailable]``) and, when the call ends, notes
it in a file of its own in ``unattended.asterisk_dir``: the channel, when it entered and
ended, the number dialled, the caller, the agent who answered (if one did) and the queue's
status. The service reads the notes when it runs again. Each call gets its record (no
decision: the caller heard no notice, and nothing was recorded) and, when no agent
answered, a missed call, so that the caller is still called back within the hour.

Recording a note twice changes nothing (the call's id is derived from the node and the
channel). A note that is not what the dialplan writes is moved to ``rejected/`` and logged,
never guessed at; one that cannot be read or recorded now is left for the next sweep.
"""

from __future__ import annotations

import logging
import re
import uuid
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from ivr.calls import notes
from ivr.calls.caller import describe_caller, printable
from ivr.calls.inbound import CallDeps, opened_call
from ivr.calls.notes import NoteError, channel_of, instant
from ivr.store.callbacks import Missed
from ivr.store.receipts import ClosedCall

log = logging.getLogger(__name__)

__all__ = ["NoteError", "collect_unattended", "parse_note", "read_notes"]

NOTE_SUFFIX = ".call"
FIELDS = ("v", "channel", "entered", "ended", "dialled", "caller", "agent", "queue_status")
END_REASON = "service_unavailable"
# Ids of the calls recorded from notes: the same note always gives the same call.
NOTES = uuid.UUID("5a1f6d0e-2b7c-4c1e-9a47-6e0f3d8b2c11")
QUEUE_STATUS = re.compile(r"^[A-Z]{0,20}$")


@dataclass(frozen=True, slots=True)
class UnattendedCall:
    channel_id: str
    entered_at: datetime
    ended_at: datetime
    dialled: str  # as dialled (raw)
    caller: str  # as the caller ID arrived (raw, printable)
    agent: str | None  # the queue member who answered, if any
    queue_status: str  # QUEUESTATUS: TIMEOUT, ... or empty (the caller left)

    @property
    def missed_reason(self) -> str:
        return "timeout" if self.queue_status == "TIMEOUT" else "abandoned"


def queue_status(value: str) -> str:
    if not QUEUE_STATUS.match(value):
        raise NoteError(f"queue status {value[:40]!r} is not one")
    return value


def parse_note(text: str) -> UnattendedCall:
    """One note, as ``[ivr-unattended-end]`` writes it: a single line of URL-encoded
    fields, each once, version 1."""
    fields = notes.fields_of(text, FIELDS)
    entered = instant(fields["entered"], "entered")
    ended = instant(fields["ended"], "ended")
    if ended < entered:
        raise NoteError("the call ended before it entered")
    return UnattendedCall(
        channel_id=notes.channel_id(fields["channel"]), entered_at=entered, ended_at=ended,
        dialled=fields["dialled"][:64], caller=fields["caller"][:1024],
        agent=printable(fields["agent"], 128) or None,
        queue_status=queue_status(fields["queue_status"]))


async def record_unattended(deps: CallDeps, call: UnattendedCall) -> None:
    """The call's record, closed, with no decision; its missed call if nobody answered."""
    settings = deps.settings
    call_id = uuid.uuid5(NOTES, f"{settings.node}/{call.channel_id}")
    channel = channel_of(call.channel_id, call.caller, call.dialled)
    opened, line = opened_call(settings, call_id, channel, call.entered_at)
    await deps.records.open(opened)
    missed = None
    if line is not None and call.agent is None:
        caller = describe_caller(call.caller, settings.region)
        missed = Missed(call_id=call_id, caller=caller.e164, caller_withheld=caller.withheld,
                        reason=call.missed_reason, overloaded=False, missed_at=call.ended_at)
    # the missed call with the close, in one write
    callback = await deps.records.close(call_id, ClosedCall(
        answered_at=None, ended_at=call.ended_at, end_reason=END_REASON,
        notice_completed=False if line else None, agent_answered=call.agent is not None,
        agent=call.agent, state="ended"), None, missed)
    if missed is None:
        return
    log.info("missed call while no instance ran", extra={
        "call_id": str(call_id), "channel": call.channel_id, "reason": call.missed_reason,
        "callback": str(callback) if callback else None})


async def collect_unattended(deps: CallDeps, retries: notes.Retries | None = None) -> int:
    """Record every note in ``unattended.local_dir`` (``notes.collect``). Returns how many
    calls were recorded."""
    return await notes.collect(Path(deps.settings.unattended.local_dir), NOTE_SUFFIX,
                               parse_note, lambda call: record_unattended(deps, call),
                               retries=retries)


def read_notes(directory: Path, now: float | None = None) -> list[tuple[Path, UnattendedCall]]:
    """The notes of calls taken while no instance ran (``notes.read_notes``)."""
    return notes.read_notes(directory, NOTE_SUFFIX, parse_note, now)
