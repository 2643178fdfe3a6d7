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

import asyncio
import logging
import re
import time
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from urllib.parse import parse_qsl

from ivr.asterisk.ari_events import Channel
from ivr.calls.caller import describe_caller, printable
from ivr.calls.inbound import CallDeps, opened_call
from ivr.store.callbacks import Missed
from ivr.store.receipts import ClosedCall

log = logging.getLogger(__name__)

NOTE_SUFFIX = ".call"
MAX_NOTE_BYTES = 4096
SETTLE_SECONDS = 2.0
FIELDS = ("v", "channel", "entered", "ended", "dialled", "caller", "agent", "queue_status")
END_REASON = "service_unavailable"
# Ids of the calls recorded from notes: the same note always gives the same call.
NOTES = uuid.UUID("5a1f6d0e-2b7c-4c1e-9a47-6e0f3d8b2c11")
_CHANNEL = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")
_QUEUE_STATUS = re.compile(r"^[A-Z]{0,20}$")
# Epoch seconds a note may carry: from 2020 until 2100.
_EARLIEST, _LATEST = 1_577_836_800.0, 4_102_444_800.0


class NoteError(ValueError):
    """A note that is not what the dialplan writes."""


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


def _instant(value: str, name: str) -> datetime:
    try:
        seconds = float(value)
    except ValueError:
        raise NoteError(f"{name} is not a time: {value[:40]!r}") from None
    if not _EARLIEST <= seconds <= _LATEST:
        raise NoteError(f"{name} is out of range: {value[:40]!r}")
    return datetime.fromtimestamp(seconds, UTC)


def parse_note(text: str) -> UnattendedCall:
    """One note, as ``[ivr-unattended-end]`` writes it: a single line of URL-encoded
    fields, each once, version 1."""
    lines = [line for line in text.splitlines() if line.strip()]
    if len(lines) != 1:
        raise NoteError(f"a note is one line, not {len(lines)}")
    try:
        pairs = parse_qsl(lines[0], keep_blank_values=True, strict_parsing=True,
                          max_num_fields=len(FIELDS))
    except ValueError as exc:
        raise NoteError(f"not URL-encoded fields: {exc}") from None
    fields = dict(pairs)
    if len(fields) != len(pairs) or set(fields) != set(FIELDS):
        raise NoteError(f"fields {sorted(k[:20] for k, _ in pairs)} are not {sorted(FIELDS)}")
    if fields["v"] != "1":
        raise NoteError(f"version {fields['v'][:10]!r} is not 1")
    if not _CHANNEL.match(fields["channel"]):
        raise NoteError(f"channel {fields['channel'][:40]!r} is not a channel id")
    if not _QUEUE_STATUS.match(fields["queue_status"]):
        raise NoteError(f"queue status {fields['queue_status'][:40]!r} is not one")
    entered = _instant(fields["entered"], "entered")
    ended = _instant(fields["ended"], "ended")
    if ended < entered:
        raise NoteError("the call ended before it entered")
    return UnattendedCall(
        channel_id=fields["channel"], entered_at=entered, ended_at=ended,
        dialled=fields["dialled"][:64], caller=fields["caller"][:1024],
        agent=printable(fields["agent"], 128) or None, queue_status=fields["queue_status"])


async def record_unattended(deps: CallDeps, call: UnattendedCall) -> None:
    """The call's record, closed, with no decision; its missed call if nobody answered."""
    settings = deps.settings
    call_id = uuid.uuid5(NOTES, f"{settings.node}/{call.channel_id}")
    channel = Channel(id=call.channel_id, name="", state="", caller_number=call.caller,
                      caller_name="", context="", exten=call.dialled,
                      linkedid=call.channel_id, variables=(), app_name="", app_data="")
    opened, line = opened_call(settings, call_id, channel, call.entered_at)
    await deps.records.open(opened)
    await deps.records.close(call_id, ClosedCall(
        answered_at=None, ended_at=call.ended_at, end_reason=END_REASON,
        notice_completed=False if line else None, agent_answered=call.agent is not None,
        agent=call.agent, state="ended"), None)
    if line is None or call.agent is not None:
        return
    caller = describe_caller(call.caller, settings.region)
    callback = await deps.records.record_missed(Missed(
        call_id=call_id, caller=caller.e164, caller_withheld=caller.withheld,
        reason=call.missed_reason, overloaded=False, missed_at=call.ended_at))
    log.info("missed call while no instance ran", extra={
        "call_id": str(call_id), "channel": call.channel_id, "reason": call.missed_reason,
        "callback": str(callback) if callback else None})


async def collect_unattended(deps: CallDeps) -> int:
    """Record every note in ``unattended.local_dir`` and remove it; a note that is not what
    the dialplan writes goes to ``rejected/``; one that cannot be read or recorded now stays
    for the next sweep. Returns how many calls were recorded."""
    recorded = 0
    directory = Path(deps.settings.unattended.local_dir)
    for path, call in await asyncio.to_thread(read_notes, directory):
        try:
            await record_unattended(deps, call)  # PostgreSQL away: the outage journal
        except Exception:
            # Never dropped: the note stays and the next sweep tries again.
            log.exception("could not record the call of a note; tried again later",
                          extra={"file": path.name})
            continue
        await asyncio.to_thread(path.unlink, True)
        recorded += 1
    return recorded


def read_notes(directory: Path, now: float | None = None) -> list[tuple[Path, UnattendedCall]]:
    """The notes in ``directory``, oldest name first; unreadable ones moved aside. A note
    written in the last seconds is left for the next run (Asterisk may still be writing)."""
    notes = []
    settled = (time.time() if now is None else now) - SETTLE_SECONDS
    for path in sorted(directory.glob(f"*{NOTE_SUFFIX}")):
        try:
            if path.stat().st_mtime > settled:
                continue
            with path.open("rb") as note:
                raw = note.read(MAX_NOTE_BYTES + 1)
        except OSError as exc:  # e.g. the directory's group is wrong: left, not lost
            log.error("note of a call taken while no instance ran cannot be read: %s",
                      exc, extra={"file": path.name})
            continue
        try:
            if len(raw) > MAX_NOTE_BYTES:
                raise NoteError(f"larger than {MAX_NOTE_BYTES} bytes")
            notes.append((path, parse_note(raw.decode("utf-8", errors="replace"))))
        except NoteError as exc:
            log.error("note of a call taken while no instance ran is not one; moved to "
                      "rejected/: %s", exc, extra={"file": path.name})
            _reject(path)
    return notes


def _reject(path: Path) -> None:
    rejected = path.parent / "rejected"
    try:
        rejected.mkdir(mode=0o750, exist_ok=True)
        path.replace(rejected / path.name)
    except OSError as exc:
        log.error("could not move the note aside: %s", exc, extra={"file": path.name})
