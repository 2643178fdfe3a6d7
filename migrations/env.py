"""Alembic environment: runs the revisions over an async psycopg connection.

The database URL comes, first found wins, from:
  1. ``config.attributes["connection"]``: an open (sync) Connection a caller hands in;
  2. ``config.attributes["url"]``: a URL a caller hands in (``ivr.store.migrate``, tests);
  3. the service's settings: ``ivr.settings.get_settings().database.url``.
Nothing is read from alembic.ini but the script location.
"""

from __future__ import annotations

import asyncio
from logging.config import fileConfig

from alembic import context
from sqlalchemy import pool
from sqlalchemy.engine import URL, Connection
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.ext.asyncio import create_async_engine

from ivr.store.database import DatabaseUnreachable
from ivr.store.models import Base

config = context.config

# The alembic command line gets the logging of alembic.ini; ivr.store.migrate keeps the
# caller's logging as it is.
if config.config_file_name is not None and config.attributes.get("configure_logger", True):
    fileConfig(config.config_file_name, disable_existing_loggers=False)

# For `alembic revision --autogenerate` and `alembic check`. The revisions themselves
# never import the models: they write the schema out as it was at their time.
target_metadata = Base.metadata


def database_url() -> str:
    given = config.attributes.get("url")
    if isinstance(given, URL):
        return given.render_as_string(hide_password=False)
    if given:
        return str(given)
    from ivr.settings import get_settings

    return get_settings().database.url.get_secret_value()


def run_migrations_offline() -> None:
    """``alembic upgrade --sql``: write the SQL out instead of running it."""
    context.configure(
        url=database_url(),
        target_metadata=target_metadata,
        literal_binds=True,
        dialect_opts={"paramstyle": "named"},
        compare_type=True,
        compare_server_default=True,
    )
    with context.begin_transaction():
        context.run_migrations()


def do_run_migrations(connection: Connection) -> None:
    context.configure(
        connection=connection,
        target_metadata=target_metadata,
        compare_type=True,
        compare_server_default=True,
    )
    with context.begin_transaction():
        context.run_migrations()


async def run_async_migrations(url: str) -> None:
    engine = create_async_engine(url, poolclass=pool.NullPool)
    try:
        try:
            connection = await engine.connect()
        except (SQLAlchemyError, OSError) as exc:
            raise DatabaseUnreachable.from_error(url, exc) from exc
        try:
            await connection.run_sync(do_run_migrations)
        finally:
            await connection.close()
    finally:
        await engine.dispose()


def run_migrations_online() -> None:
    given = config.attributes.get("connection")
    if isinstance(given, Connection):
        do_run_migrations(given)
    else:
        asyncio.run(run_async_migrations(database_url()))


if context.is_offline_mode():
    run_migrations_offline()
else:
    run_migrations_online()
