"""The connection to PostgreSQL: one engine and one session factory, made by the
composition root from :class:`ivr.settings.DatabaseSettings`. Nothing here runs at import.
"""

from __future__ import annotations

import asyncio

from sqlalchemy import text
from sqlalchemy.engine import URL, make_url
from sqlalchemy.exc import DBAPIError, SQLAlchemyError
from sqlalchemy.ext.asyncio import (
    AsyncEngine,
    AsyncSession,
    async_sessionmaker,
    create_async_engine,
)

from ivr.settings import DatabaseSettings

URL_HINT = "set IVR_DATABASE__URL or [database] url in the settings file"


class DatabaseUnreachable(Exception):
    """PostgreSQL cannot be reached or refuses us. The message is one line, with a fix."""

    def __init__(self, where: str, reason: str, hint: str) -> None:
        super().__init__(f"cannot reach PostgreSQL at {where}: {reason}; {hint}")
        self.where = where
        self.reason = reason
        self.hint = hint

    @classmethod
    def from_error(cls, url: str | URL, error: BaseException) -> DatabaseUnreachable:
        """Explain a connection failure without a traceback and without the password."""
        parsed = make_url(url)
        where = f"{parsed.host or 'localhost'}:{parsed.port or 5432}"
        if parsed.database:
            where += f"/{parsed.database}"
        original = error.orig if isinstance(error, DBAPIError) else error
        reason = _first_line(str(original)) or type(original).__name__
        lowered = reason.lower()
        if isinstance(error, TimeoutError):
            reason = "no answer in time"
            hint = f"is the host right and is the port open? {URL_HINT}"
        elif "password" in lowered or "role" in lowered or "authentication" in lowered:
            hint = f"check the user name and password; {URL_HINT}"
        elif "database" in lowered and "does not exist" in lowered:
            owner = f"-O {parsed.username} " if parsed.username else ""
            hint = f"create it (createdb {owner}{parsed.database}), then run: ivr db upgrade"
        else:
            hint = f"is PostgreSQL running and listening there? {URL_HINT}"
        return cls(where, reason, hint)


def _first_line(message: str) -> str:
    for line in message.splitlines():
        line = line.strip()
        if line:
            return line.removeprefix("connection failed: ")
    return ""


class Database:
    """The service's engine and sessions. Build one in the composition root; dispose it
    on the way out."""

    def __init__(self, settings: DatabaseSettings) -> None:
        self.url: URL = make_url(settings.url.get_secret_value())
        # No ping before each checkout (a round trip per transaction): a connection
        # PostgreSQL dropped fails its first statement, the pool is invalidated, and the
        # call's write goes to the outage journal (ivr/store/durable.py).
        self.engine: AsyncEngine = create_async_engine(
            self.url, pool_size=settings.pool_size, pool_pre_ping=False
        )
        # Each statement its own transaction: for writes that are one statement (no BEGIN
        # and COMMIT round trips around them). A pool of its own, its connections set to
        # autocommit once: the same engine with the option set at each checkout cost about
        # a quarter more CPU per write (2000 writes timed outside the bench).
        self.autocommit: AsyncEngine = create_async_engine(
            self.url, pool_size=settings.pool_size, pool_pre_ping=False,
            isolation_level="AUTOCOMMIT")
        self.sessions: async_sessionmaker[AsyncSession] = async_sessionmaker(
            self.engine, expire_on_commit=False
        )

    def session(self) -> AsyncSession:
        """A new session; use it as ``async with db.session() as session``."""
        return self.sessions()

    async def check_reachable(self, wait_seconds: float = 5.0) -> None:
        await check_reachable(self.engine, wait_seconds)

    async def dispose(self) -> None:
        await self.autocommit.dispose()
        await self.engine.dispose()


async def check_reachable(engine: AsyncEngine, wait_seconds: float = 5.0) -> None:
    """Connect once and run ``SELECT 1``; raise :class:`DatabaseUnreachable` if that fails."""
    try:
        async with asyncio.timeout(wait_seconds), engine.connect() as connection:
            await connection.execute(text("SELECT 1"))
    except (SQLAlchemyError, OSError, TimeoutError) as exc:
        raise DatabaseUnreachable.from_error(engine.url, exc) from exc
