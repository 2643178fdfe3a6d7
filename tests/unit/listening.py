"""A listener for the dialplan (FastAGI, the HTTP reports) served for one test's block."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from typing import Any, TypeVar

import pytest

from ivr.asterisk.listener import Listener

L = TypeVar("L", bound=Listener[Any])


@contextlib.asynccontextmanager
async def listening(server: L) -> AsyncIterator[L]:
    """``server`` accepting connections (its port known) until the block ends."""
    ready = asyncio.Event()
    task = asyncio.create_task(server.serve(ready))
    await ready.wait()
    try:
        yield server
    finally:
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
