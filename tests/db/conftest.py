"""The store's tests: a session per test inside a transaction that is rolled back."""

from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import AbstractAsyncContextManager, AbstractContextManager, asynccontextmanager
from pathlib import Path

import pytest
from pydantic import SecretStr
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncSession

import ivr.settings
from ivr.settings import DatabaseSettings
from ivr.store.database import Database
from ivr.store.migrate import upgrade

OwnDatabase = Callable[[int], AbstractAsyncContextManager[Database]]


@pytest.fixture(scope="session")
async def database(database_url: str) -> AsyncIterator[Database]:
    db = Database(DatabaseSettings(url=SecretStr(database_url), pool_size=2))
    yield db
    await db.dispose()


@pytest.fixture
async def session(database: Database) -> AsyncIterator[AsyncSession]:
    """A session inside a transaction that is rolled back after the test; the test's own
    commits become savepoints."""
    connection: AsyncConnection = await database.engine.connect()
    transaction = await connection.begin()
    session = AsyncSession(
        bind=connection, expire_on_commit=False, join_transaction_mode="create_savepoint"
    )
    try:
        yield session
    finally:
        await session.close()
        await transaction.rollback()
        await connection.close()


@pytest.fixture(scope="session")
def own_database(new_database: Callable[[], AbstractContextManager[str]]) -> OwnDatabase:
    """A fresh, migrated database of the test's (or module's) own, with a pool of the
    given size; dropped at the end. For tests that commit (audit chains, replays)."""

    @asynccontextmanager
    async def make(pool_size: int) -> AsyncIterator[Database]:
        with new_database() as url:
            await asyncio.to_thread(upgrade, url)
            database = Database(DatabaseSettings(url=SecretStr(url), pool_size=pool_size))
            try:
                yield database
            finally:
                await database.dispose()

    return make


@pytest.fixture
def isolated(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """No ``ivr.toml`` and no ``IVR_*`` variable of the developer's machine can reach the
    settings (tests/unit's isolation does not apply here)."""
    monkeypatch.chdir(tmp_path)
    for name in list(os.environ):
        if name.startswith("IVR_"):
            monkeypatch.delenv(name)
    monkeypatch.setattr(ivr.settings, "CONFIG_CANDIDATES", (Path("ivr.toml"),))
    yield
