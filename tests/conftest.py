"""A real PostgreSQL for every test that needs one: a fresh database per test session, migrated
with the same code as ``ivr db upgrade``, dropped at the end.

The server is the one at 127.0.0.1:5432, reached as the test role ``ivr`` (which may create
databases; ``make test`` creates it); ``IVR_TEST_PG_ADMIN_URL`` names another. No server
means the tests fail, never skip.
"""

from __future__ import annotations

import os
import secrets
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager

import pytest
from sqlalchemy import Engine, create_engine, pool, text
from sqlalchemy.engine import URL, make_url
from sqlalchemy.exc import OperationalError

from ivr.store.migrate import upgrade

ADMIN_URL_ENV = "IVR_TEST_PG_ADMIN_URL"
DEFAULT_ADMIN_URL = "postgresql+psycopg://ivr:ivr-test-db@127.0.0.1:5432/ivr"

NewDatabase = Callable[[], AbstractContextManager[str]]


def _render(url: URL) -> str:
    return url.render_as_string(hide_password=False)


@pytest.fixture(scope="session")
def pg_admin() -> Iterator[Engine]:
    """A connection to the server's maintenance database, to create and drop others."""
    admin_url = os.environ.get(ADMIN_URL_ENV, DEFAULT_ADMIN_URL)
    engine = create_engine(admin_url, isolation_level="AUTOCOMMIT", poolclass=pool.NullPool)
    reason = None
    try:
        with engine.connect() as connection:
            connection.execute(text("SELECT 1"))
    except OperationalError as exc:
        reason = str(exc.orig or exc).strip().splitlines()[0].removeprefix("connection failed: ")
    if reason is not None:
        where = make_url(admin_url).render_as_string(hide_password=True)
        pytest.fail(
            f"tests/db need PostgreSQL and cannot reach it at {where}: {reason}. "
            f"Start it, or point {ADMIN_URL_ENV} at a server where this user may "
            "CREATE DATABASE.",
            pytrace=False,
        )
    yield engine
    engine.dispose()


@pytest.fixture(scope="session")
def new_database(pg_admin: Engine) -> NewDatabase:
    """Make an empty database ``ivr_test_<random>``; it is dropped when the block ends."""

    @contextmanager
    def make() -> Iterator[str]:
        name = f"ivr_test_{secrets.token_hex(6)}"
        with pg_admin.connect() as connection:
            connection.execute(text(f'CREATE DATABASE "{name}"'))
        try:
            yield _render(pg_admin.url.set(database=name))
        finally:
            with pg_admin.connect() as connection:
                connection.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))

    return make


@pytest.fixture(scope="session")
def database_url(new_database: NewDatabase) -> Iterator[str]:
    """The session's database, migrated to head."""
    with new_database() as url:
        upgrade(url)
        yield url
