"""``CloseQueue`` without a database: the ARI flow's closes of a moment (its linger) go in
one commit; each call is told its own callback, or its own error."""

from __future__ import annotations

import asyncio
import uuid
from typing import Any

import pytest

from ivr.store.closes_together import CloseQueue
from ivr.store.journal import CloseEntry


def entry() -> CloseEntry:
    """Only the call's id matters to the queue."""
    return CloseEntry.model_construct(call_id=uuid.uuid4())  # type: ignore[call-arg]


async def test_closes_of_a_moment_go_in_one_commit_each_told_its_own() -> None:
    commits: list[list[CloseEntry]] = []
    failed = entry()

    async def store(entries: list[CloseEntry]) -> list[Any]:
        commits.append(entries)
        return [RuntimeError("refused") if e is failed else e.call_id for e in entries]

    queue = CloseQueue(store, workers=1, linger=0.05)
    runner = asyncio.create_task(queue.run())
    try:
        first, second = entry(), entry()
        closing = [asyncio.create_task(queue.close(e)) for e in (first, second, failed)]
        done = await asyncio.gather(*closing, return_exceptions=True)
        assert [len(c) for c in commits] == [3]
        assert done[:2] == [first.call_id, second.call_id]
        assert isinstance(done[2], RuntimeError)
        # a later close: a commit of its own
        assert await queue.close(last := entry()) == last.call_id
        assert [len(c) for c in commits] == [3, 1]
        assert (queue.commits, queue.committed) == (2, 4)
    finally:
        runner.cancel()
        await asyncio.gather(runner, return_exceptions=True)


async def test_a_close_waiting_when_the_service_stops_is_cancelled_not_told_stored() -> None:
    async def store(entries: list[CloseEntry]) -> list[Any]:
        raise AssertionError("no commit: the service stopped first")

    queue = CloseQueue(store, workers=1, linger=10.0)
    runner = asyncio.create_task(queue.run())
    closing = asyncio.create_task(queue.close(entry()))
    await asyncio.sleep(0.01)
    runner.cancel()
    await asyncio.gather(runner, return_exceptions=True)
    assert (await asyncio.gather(closing, return_exceptions=True))[0].__class__ is (
        asyncio.CancelledError)


async def test_a_close_after_the_queue_stopped_is_refused_at_once() -> None:
    """A call that ends after the service's stop began is told so, not left waiting for a
    commit that will never come (the stop would wait for it)."""
    async def store(entries: list[CloseEntry]) -> list[Any]:
        raise AssertionError("no commit after the stop")

    queue = CloseQueue(store, workers=1)
    runner = asyncio.create_task(queue.run())
    await asyncio.sleep(0)
    runner.cancel()
    await asyncio.gather(runner, return_exceptions=True)
    with pytest.raises(RuntimeError, match="stopping"):
        await asyncio.wait_for(queue.close(entry()), 1)
