"""``DecisionQueue`` without a database: the decisions that arrive while a commit runs go
together in the next; each caller is told its own decision's outcome; a decision the
store did not take is an error for its caller (nothing recorded), never a success."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from typing import Any

import pytest

from ivr.store.decisions_together import DecisionQueue, Outcome
from ivr.store.journal import DecisionEntry


def entry(call_id: uuid.UUID | None = None) -> DecisionEntry:
    """Only the call's id matters to the queue."""
    return DecisionEntry.model_construct(  # type: ignore[call-arg]  # the rest unset
        call_id=call_id or uuid.uuid4())


class Store:
    """Records each commit; the first waits for ``release`` (a commit that takes long)."""

    def __init__(self, outcome: Any = True) -> None:
        self.commits: list[list[DecisionEntry]] = []
        self.release = asyncio.Event()
        self.outcome = outcome

    async def __call__(self, entries: list[DecisionEntry]) -> list[Outcome]:
        self.commits.append(entries)
        if len(self.commits) == 1:
            await self.release.wait()
        if isinstance(self.outcome, Exception):
            raise self.outcome
        return [self.outcome] * len(entries)


@pytest.fixture
async def store() -> Store:
    return Store()


@pytest.fixture
async def queue(store: Store) -> AsyncIterator[DecisionQueue]:
    queue = DecisionQueue(store, max_together=4, workers=1)
    runner = asyncio.create_task(queue.run())
    yield queue
    runner.cancel()
    await asyncio.gather(runner, return_exceptions=True)


async def settle() -> None:
    for _ in range(5):
        await asyncio.sleep(0)


async def test_one_decision_alone_is_committed_at_once(queue: DecisionQueue,
                                                       store: Store) -> None:
    store.release.set()
    one = entry()
    assert await queue.commit_decision(one) is True
    assert store.commits == [[one]]


async def test_decisions_arriving_during_a_commit_go_together_in_the_next(
        queue: DecisionQueue, store: Store) -> None:
    entries = [entry() for _ in range(7)]
    first = asyncio.create_task(queue.commit_decision(entries[0]))
    await settle()
    rest = [asyncio.create_task(queue.commit_decision(e)) for e in entries[1:]]
    await settle()
    store.release.set()
    assert await asyncio.gather(first, *rest) == [True] * 7
    # at most four together (max_together), oldest first
    assert store.commits == [entries[:1], entries[1:5], entries[5:]]
    assert (queue.commits, queue.committed) == (3, 7)


async def test_the_same_call_twice_waits_for_the_next_commit(queue: DecisionQueue,
                                                             store: Store) -> None:
    store.release.set()
    call = uuid.uuid4()
    twice = [entry(call), entry(call)]
    results = await asyncio.gather(*(queue.commit_decision(e) for e in twice))
    assert results == [True, True]
    assert [len(c) for c in store.commits] == [1, 1]


async def test_a_store_that_fails_fails_every_decision_it_held_and_the_queue_goes_on(
        ) -> None:
    store = Store(outcome=RuntimeError("the store is broken"))
    store.release.set()
    queue = DecisionQueue(store)
    runner = asyncio.create_task(queue.run())
    try:
        results = await asyncio.gather(queue.commit_decision(entry()),
                                       queue.commit_decision(entry()),
                                       return_exceptions=True)
        assert all(isinstance(r, RuntimeError) for r in results)
        store.outcome = True
        assert await queue.commit_decision(entry()) is True
    finally:
        runner.cancel()
        await asyncio.gather(runner, return_exceptions=True)


async def test_each_caller_is_told_its_own_outcome() -> None:
    outcomes: list[Outcome] = [True, False, None, ValueError("refused")]

    async def store(entries: list[DecisionEntry]) -> list[Outcome]:
        return outcomes[:len(entries)]

    queue = DecisionQueue(store)
    runner = asyncio.create_task(queue.run())
    try:
        results = await asyncio.gather(*(queue.commit_decision(entry()) for _ in range(4)),
                                       return_exceptions=True)
    finally:
        runner.cancel()
        await asyncio.gather(runner, return_exceptions=True)
    assert results[:3] == [True, False, None]
    assert isinstance(results[3], ValueError)


async def test_a_caller_that_gave_up_before_the_commit_is_left_out(
        queue: DecisionQueue, store: Store) -> None:
    first = asyncio.create_task(queue.commit_decision(entry()))
    await settle()
    gave_up, kept = entry(), entry()
    waiting = asyncio.create_task(queue.commit_decision(gave_up))
    other = asyncio.create_task(queue.commit_decision(kept))
    await settle()
    waiting.cancel()
    await settle()
    store.release.set()
    assert await first is True and await other is True
    assert store.commits[1] == [kept]


async def test_stopping_the_queue_cancels_the_decisions_still_waiting(store: Store) -> None:
    queue = DecisionQueue(store, workers=1)
    runner = asyncio.create_task(queue.run())
    first = asyncio.create_task(queue.commit_decision(entry()))
    await settle()
    second = asyncio.create_task(queue.commit_decision(entry()))
    await settle()
    runner.cancel()
    await asyncio.gather(runner, return_exceptions=True)
    for task in (first, second):
        with pytest.raises(asyncio.CancelledError):
            await task


async def test_a_slow_commit_does_not_hold_up_the_next_decision(store: Store) -> None:
    """Two commits at once (the default): while the first is stuck, the next decisions
    are committed by the other."""
    queue = DecisionQueue(store)
    runner = asyncio.create_task(queue.run())
    try:
        stuck = asyncio.create_task(queue.commit_decision(entry()))
        await settle()
        assert await asyncio.wait_for(queue.commit_decision(entry()), 5) is True
        assert not stuck.done()
        store.release.set()
        assert await stuck is True
    finally:
        runner.cancel()
        await asyncio.gather(runner, return_exceptions=True)
