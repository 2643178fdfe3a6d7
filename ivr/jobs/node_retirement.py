"""Retiring a node for good (docs/several-nodes.md). Only a node reads its own spool,
journal and notes, and only it closes its own calls: before it goes, it hands everything
over, on the node itself, once calls are routed elsewhere and its Asterisk has none left:

1. the outage journal is written into PostgreSQL;
2. the notes its dialplan left are recorded, as ``ivr serve`` records them (calls taken
   while no instance ran, the ends of calls the dialplan played the notice to: rule 4's
   missed calls among them);
3. every call of the node still open is closed with what is known, as after a restart (a
   recording whose file is on the spool started, any other never did; a callback attempt
   ends as interrupted);
4. every finished recording is moved into the recording store, hash verified.

The report says what was done and what is left; anything left (a note still being
written, a recording not stored, journal entries) means the node is not ready to go.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

from ivr.asterisk.ari import AriClient, AriError
from ivr.calls import dialplan_notice, notes, unattended
from ivr.calls.inbound import CallDeps
from ivr.calls.recovery import close_ended
from ivr.jobs.recording_moves import MoveReport, RecordingMoveJob

log = logging.getLogger(__name__)

NOTE_SUFFIXES = (unattended.NOTE_SUFFIX, dialplan_notice.NOTE_SUFFIX)


class NodeInUse(RuntimeError):
    """The node's Asterisk still has calls (or cannot say whether it has)."""


@dataclass
class RetirementReport:
    node: str
    asterisk: str  # what its Asterisk said: no channels, or nothing (stopped)
    journal_entries: int = 0
    notes_recorded: int = 0
    calls_closed: int = 0
    recordings: MoveReport = field(default_factory=MoveReport)
    left: list[str] = field(default_factory=list)  # what keeps the node from going

    def as_json(self) -> dict[str, object]:
        return {"node": self.node, "asterisk": self.asterisk,
                "journal_entries": self.journal_entries,
                "notes_recorded": self.notes_recorded, "calls_closed": self.calls_closed,
                "recordings": self.recordings.as_json(), "ready_to_go": not self.left,
                "left": self.left}


async def calls_on_asterisk(ari: AriClient) -> int | None:
    """How many channels the node's Asterisk has; ``None`` when the connection to ARI's
    address is refused (Asterisk is stopped). Anything else (a timeout, an error reply)
    leaves it unknown, and the node is kept: a recording still being written must not be
    moved, nor a live call closed."""
    try:
        return len(await ari.channels())
    except AriError as exc:
        if exc.refused:
            log.info("nothing listens at ARI's address: Asterisk taken as stopped (%s)", exc)
            return None
        raise NodeInUse(f"cannot tell whether this node's Asterisk has calls: {exc}") from None


async def retire(deps: CallDeps, moves: RecordingMoveJob,
                 calls_on_pbx: Callable[[], Awaitable[int | None]]) -> RetirementReport:
    """Hand over everything only this node can (see the module's text)."""
    channels = await calls_on_pbx()
    if channels:
        raise NodeInUse(f"this node's Asterisk still has {channels} channel(s): route calls "
                        "to other nodes, wait for these to end, then retire it")
    report = RetirementReport(deps.settings.node, "no channels" if channels == 0 else
                              "stopped (nothing listens at ARI's address)")
    records = deps.records
    if records.journal is not None and records.journal.pending():
        report.journal_entries = await records.replay()
    report.notes_recorded = await _collect_notes(deps)
    # The last call's end may have been noted just now (its hangup handler): Asterisk has no
    # channel left to write another, so wait until that note can be read, then read it.
    # Once, and no longer than a note takes to settle (a clock set back could say longer).
    wait = min(notes.SETTLE_SECONDS,
               notes.unsettled_for(Path(deps.settings.unattended.local_dir), NOTE_SUFFIXES))
    if wait:
        log.info("waiting %.1f s for the last notes to settle", wait)
        await asyncio.sleep(wait + 0.05)
        report.notes_recorded += await _collect_notes(deps)
    stale = await records.stale_calls(datetime.now(UTC))
    report.calls_closed = await close_ended(deps, set(), stale)
    report.recordings = await moves.run_once(settled=True)
    report.left = _left(deps, report, len(stale))
    return report


async def _collect_notes(deps: CallDeps) -> int:
    return (await unattended.collect_unattended(deps)
            + await dialplan_notice.collect_ended(deps))


def _left(deps: CallDeps, report: RetirementReport, stale: int) -> list[str]:
    left = []
    directory = Path(deps.settings.unattended.local_dir)
    waiting = [p.name for p in sorted(directory.glob("*")) if p.suffix in NOTE_SUFFIXES]
    if waiting:
        left.append(f"{len(waiting)} note(s) not recorded yet in {directory} (retry in a "
                    f"few seconds): {', '.join(waiting[:5])}")
    if report.calls_closed < stale:
        left.append(f"{stale - report.calls_closed} call(s) of this node still open: run "
                    "it again once their notes are recorded (a failure to close one is in "
                    "the log)")
    moved = report.recordings
    if moved.failed or moved.waiting:
        left.append(f"{moved.failed} recording(s) not stored and {moved.waiting} still "
                    "being written: run it again")
    journal = deps.records.journal
    if journal is not None and journal.pending():
        left.append("the outage journal still holds call records (PostgreSQL refused them)")
    return left
