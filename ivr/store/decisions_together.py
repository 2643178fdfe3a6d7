"""Decisions committed together (the dialplan flow). Each call's decision is committed
before the dialplan may start its recording; under load many arrive within one commit's
time. ``DecisionQueue`` commits the ones that arrived while the previous commits ran in a
single statement and transaction (``OPEN_AND_DECIDE_MANY``): one round trip and one commit
for all of them, so that PostgreSQL and the service spend less on each decision the busier
the PBX is, and a decision waits for at most one commit before its own. With one
decision at a time (a quiet line), it is the single statement it always was.

What each caller is told is what PostgreSQL did with its own decision: stored, found
already stored (a report again: nothing allowed), journalled (``DurableRecords``: the
outage journal holds it, fsynced) or an error (nothing stored, nothing recorded).
"""

from __future__ import annotations

import asyncio
import json
import logging
import uuid
from collections.abc import Awaitable, Callable
from typing import Any

from ivr.store.journal import DecisionEntry
from ivr.store.receipts import (
    OPEN_AND_DECIDE_MANY,
    CallRecords,
    json_value,
    opened_decided_row,
)

log = logging.getLogger(__name__)


# Most decisions one statement carries; the rest go in the next.
MAX_TOGETHER = 100
# Commits at once: while one runs, the next decisions need not wait for it.
WORKERS = 2


def _rows(entries: list[DecisionEntry]) -> str:
    """The decisions as one JSON array (one parameter, however many they are)."""
    rows = []
    for entry in entries:
        if entry.call is None:
            raise ValueError("a decision committed together opens its own call")
        rows.append(opened_decided_row(entry.call_id, entry.line_kind, entry.receipt,
                                       entry.prompts_played, entry.recording,
                                       entry.inherited_from, entry.call))
    return json.dumps(rows, default=json_value)


async def open_and_decide_many(records: CallRecords,
                               entries: list[DecisionEntry]) -> set[uuid.UUID]:
    """Commit the calls and their decisions in one statement; the ids of the calls it
    stored (a call PostgreSQL held already is not among them). All or nothing."""
    if not entries:
        return set()
    parameters = {"calls": _rows(entries), "node": records.node}
    async with records.db.autocommit.connect() as connection:
        result: Any = await connection.exec_driver_sql(OPEN_AND_DECIDE_MANY, parameters)
        return {row[0] for row in result.all()}


Outcome = bool | None | BaseException
Store = Callable[[list[DecisionEntry]], Awaitable[list[Outcome]]]


class _Waiting:
    __slots__ = ("entry", "told")

    def __init__(self, entry: DecisionEntry, told: asyncio.Future[bool | None]) -> None:
        self.entry = entry
        self.told = told


class DecisionQueue:
    """The dialplan flow's decisions, committed by ``run`` (a task of the service's
    TaskGroup): those that arrive while a commit runs go in the next one, together."""

    def __init__(self, store: Store, max_together: int = MAX_TOGETHER,
                 workers: int = WORKERS) -> None:
        """``store``: ``DurableRecords.store_decisions`` (PostgreSQL, else the journal)."""
        self._store = store
        self._max = max_together
        self._workers = workers
        self._waiting: list[_Waiting] = []
        self._arrived = asyncio.Event()
        self.commits = 0
        self.committed = 0

    async def commit_decision(self, entry: DecisionEntry) -> bool | None:
        """What became of this decision: ``True`` stored, ``False`` the call was stored
        already (nothing of this decision is), ``None`` journalled; raises when nothing was
        stored. Cancelled, the decision may still be committed (the end note finds it)."""
        told: asyncio.Future[bool | None] = asyncio.get_running_loop().create_future()
        self._waiting.append(_Waiting(entry, told))
        self._arrived.set()
        return await told

    async def run(self) -> None:
        """Commit until cancelled, ``workers`` commits at most at once (so that one slow
        commit does not hold up the decisions that arrive meanwhile)."""
        try:
            async with asyncio.TaskGroup() as workers:
                for n in range(self._workers):
                    workers.create_task(self._worker(), name=f"decisions-{n}")
        finally:  # stopped: whoever still waits is cancelled (nothing is told as stored)
            for waiting in self._waiting:
                waiting.told.cancel()

    async def _worker(self) -> None:
        batch: list[_Waiting] = []
        try:
            while True:
                while not (batch := self._next()):
                    self._arrived.clear()
                    await self._arrived.wait()
                await self._commit(batch)
        finally:
            for waiting in batch:
                waiting.told.cancel()

    def _next(self) -> list[_Waiting]:
        """The oldest waiting decisions, at most one per call (a second report of the same
        call waits for the next commit, which finds the first)."""
        batch: list[_Waiting] = []
        calls: set[uuid.UUID] = set()
        rest: list[_Waiting] = []
        for waiting in self._waiting:
            if waiting.told.done():
                continue  # its caller gave up before the commit: nothing to tell
            if len(batch) < self._max and waiting.entry.call_id not in calls:
                calls.add(waiting.entry.call_id)
                batch.append(waiting)
            else:
                rest.append(waiting)
        self._waiting = rest
        return batch

    async def _commit(self, batch: list[_Waiting]) -> None:
        try:
            outcomes: list[Outcome] = await self._store([w.entry for w in batch])
        except Exception as exc:  # a fault of the store itself: each caller is told
            log.exception("decisions not committed")
            outcomes = [exc] * len(batch)
        self.commits += 1
        self.committed += len(batch)
        for waiting, outcome in zip(batch, outcomes, strict=True):
            if waiting.told.done():
                continue
            if isinstance(outcome, BaseException):
                waiting.told.set_exception(outcome)
            else:
                waiting.told.set_result(outcome)
