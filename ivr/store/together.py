"""Writes committed together. Under load, many calls' writes of one kind (decisions, the
ARI flow's openings and closes) arrive within one commit's time. ``CommitQueue``
hands the ones that arrived while the previous commits ran to one ``store`` call, which
writes them in a few statements and one transaction: PostgreSQL and the service spend less
on each the busier the PBX is. With one write at a time (a quiet line), it is the single
write it always was.

What each writer is told is what became of its own entry (``store``'s answer for it, or
the error that stored nothing). At most one entry per call goes in one commit (a second
entry of the same call waits for the next, which finds the first).
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections.abc import Awaitable, Callable
from typing import Any, Generic, Protocol, TypeVar

log = logging.getLogger(__name__)

# Most entries one commit carries; the rest go in the next.
MAX_TOGETHER = 100
# Commits at once: while one runs, the next entries need not wait for it.
WORKERS = 2


class _OfACall(Protocol):
    @property
    def call_id(self) -> uuid.UUID: ...


E = TypeVar("E", bound=_OfACall)
Outcome = Any  # the store's answer for one entry, or the exception that stored nothing
Store = Callable[[list[E]], Awaitable[list[Outcome]]]


class _Waiting(Generic[E]):
    __slots__ = ("entry", "told")

    def __init__(self, entry: E, told: asyncio.Future[Any]) -> None:
        self.entry = entry
        self.told = told


class CommitQueue(Generic[E]):
    """Entries committed by ``run`` (a task of the service's TaskGroup): those that arrive
    while a commit runs go in the next one, together. ``linger``: how long a worker waits
    after the first entry before it commits, for more to join (writes nobody waits on)."""

    # A queue's linger unless told otherwise.
    LINGER: float = 0.0

    def __init__(self, store: Store[E], max_together: int = MAX_TOGETHER,
                 workers: int = WORKERS, linger: float | None = None) -> None:
        self._store = store
        self._max = max_together
        self._workers = workers
        self._linger = self.LINGER if linger is None else linger
        self._waiting: list[_Waiting[E]] = []
        self._arrived = asyncio.Event()
        self._stopped = False
        self.commits = 0
        self.committed = 0

    async def submit(self, entry: E) -> Any:
        """What became of this entry (the store's answer); raises when nothing was stored.
        Cancelled, the entry may still be committed. Once ``run`` has stopped (the
        service's stop), nothing is committed: ``RuntimeError`` at once."""
        if self._stopped:
            raise RuntimeError("the service is stopping: not committed")
        told: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self._waiting.append(_Waiting(entry, told))
        self._arrived.set()
        return await told

    async def run(self) -> None:
        """Commit until cancelled, ``workers`` commits at most at once (so that one slow
        commit does not hold up the entries that arrive meanwhile)."""
        try:
            async with asyncio.TaskGroup() as workers:
                for n in range(self._workers):
                    workers.create_task(self._worker(), name=f"together-{n}")
        finally:  # stopped: whoever still waits is cancelled (nothing is told as stored)
            self._stopped = True
            for waiting in self._waiting:
                waiting.told.cancel()

    async def _worker(self) -> None:
        batch: list[_Waiting[E]] = []
        try:
            while True:
                while not self._pending():
                    self._arrived.clear()
                    await self._arrived.wait()
                if self._linger:
                    await asyncio.sleep(self._linger)
                if batch := self._next():
                    await self._commit(batch)
        finally:
            for waiting in batch:
                waiting.told.cancel()

    def _pending(self) -> bool:
        return any(not waiting.told.done() for waiting in self._waiting)

    def _next(self) -> list[_Waiting[E]]:
        """The oldest waiting entries, at most one per call."""
        batch: list[_Waiting[E]] = []
        calls: set[uuid.UUID] = set()
        rest: list[_Waiting[E]] = []
        for waiting in self._waiting:
            if waiting.told.done():
                continue  # its writer gave up before the commit: nothing to tell
            if len(batch) < self._max and waiting.entry.call_id not in calls:
                calls.add(waiting.entry.call_id)
                batch.append(waiting)
            else:
                rest.append(waiting)
        self._waiting = rest
        return batch

    async def _commit(self, batch: list[_Waiting[E]]) -> None:
        try:
            outcomes: list[Outcome] = await self._store([w.entry for w in batch])
        except Exception as exc:  # a fault of the store itself: each writer is told
            log.exception("writes not committed together")
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
