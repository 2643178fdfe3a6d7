"""Decisions committed together. Each call's decision is committed before its recording
may start; under load many arrive within one commit's time. ``DecisionQueue`` commits the
ones that arrived while the previous commits ran in a single statement and transaction
(``DECIDE_MANY``): one round trip and one commit for all of them, so that PostgreSQL and the
service spend less on each decision the busier the PBX is, and a decision waits for at
most one commit before its own. With one decision at a time (a quiet line), it is the
single statement it always was. The dialplan flow's decisions open their calls in that
statement; the ARI flow's decide calls opened before.

What each caller is told is what PostgreSQL did with its own decision: stored, found
already stored (a report again: nothing allowed), journalled (``DurableRecords``: the
outage journal holds it, fsynced) or an error (nothing stored, nothing recorded).
"""

from __future__ import annotations

import logging
import uuid

from ivr.store.journal import DecisionEntry
from ivr.store.receipts import CallRecords, decision_row
from ivr.store.together import CommitQueue

log = logging.getLogger(__name__)


async def decide_many(records: CallRecords, entries: list[DecisionEntry]) -> set[uuid.UUID]:
    """Commit the decisions (and the calls they open) in one statement; the ids of the
    calls whose decision it stored (a call PostgreSQL held already, or whose decision it
    held, is not among them). All or nothing."""
    if not entries:
        return set()
    return await records.decide([decision_row(
        entry.call_id, entry.line_kind, entry.receipt, entry.prompts_played, entry.recording,
        entry.inherited_from, entry.call) for entry in entries])


Outcome = bool | None | BaseException


class DecisionQueue(CommitQueue[DecisionEntry]):
    """Decisions, committed by ``run`` (a task of the service's TaskGroup): those that
    arrive while a commit runs go in the next one, together (``store``:
    ``DurableRecords.store_decisions``, PostgreSQL, else the journal)."""

    async def commit_decision(self, entry: DecisionEntry) -> bool | None:
        """What became of this decision: ``True`` stored, ``False`` the call (or its
        decision) was stored already: nothing of this decision is, ``None`` journalled;
        raises when nothing was stored. Cancelled, the decision may still be committed
        (the end note finds it)."""
        stored: bool | None = await self.submit(entry)
        return stored
