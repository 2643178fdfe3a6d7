"""Alembic, run from Python: what ``ivr db upgrade`` calls.

The migrations live beside the package in the repository (``alembic.ini`` and
``migrations/``), which is where an editable install (``pip install -e .``) finds them.
Call these from synchronous code: Alembic's env.py runs its own event loop (from async
code, use ``await asyncio.to_thread(upgrade, url)``).
"""

from __future__ import annotations

from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import create_engine, pool
from sqlalchemy.exc import SQLAlchemyError

from ivr.store.database import DatabaseUnreachable

# ivr/store/migrate.py -> the repository's top directory.
PROJECT_DIR = Path(__file__).resolve().parents[2]
ALEMBIC_INI = PROJECT_DIR / "alembic.ini"


class MigrationsNotFound(Exception):
    """The package was installed without its repository, so there is nothing to run."""


def alembic_config(url: str | None = None) -> Config:
    """The Alembic configuration of this repository, aimed at ``url`` if given (else at
    the URL in the settings)."""
    if not ALEMBIC_INI.is_file() or not (PROJECT_DIR / "migrations" / "env.py").is_file():
        raise MigrationsNotFound(
            f"no alembic.ini and migrations/ in {PROJECT_DIR}: the migrations ship with the "
            "repository; install the package from a checkout with `pip install -e .`"
        )
    config = Config(str(ALEMBIC_INI))
    config.attributes["configure_logger"] = False
    if url is not None:
        config.attributes["url"] = url
    return config


def upgrade(url: str, revision: str = "head") -> None:
    """Bring the schema at ``url`` up to ``revision``.

    Raises :class:`~ivr.store.database.DatabaseUnreachable` when PostgreSQL cannot be reached.
    """
    command.upgrade(alembic_config(url), revision)


def downgrade(url: str, revision: str) -> None:
    """Take the schema at ``url`` down to ``revision`` (``"base"``: drop everything).

    No default: going down loses data, so the caller says how far.
    """
    command.downgrade(alembic_config(url), revision)


def head_revision() -> str | None:
    """The newest revision in ``migrations/versions``."""
    return ScriptDirectory.from_config(alembic_config()).get_current_head()


def current_revision(url: str) -> str | None:
    """The revision the database at ``url`` is at; ``None`` for an empty database."""
    engine = create_engine(url, poolclass=pool.NullPool)
    try:
        try:
            connection = engine.connect()
        except (SQLAlchemyError, OSError) as exc:
            raise DatabaseUnreachable.from_error(url, exc) from exc
        with connection:
            return MigrationContext.configure(connection).get_current_revision()
    finally:
        engine.dispose()
