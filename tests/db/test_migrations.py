"""The migrations build the schema the models describe, and can be undone (STYLE.md:
typed models, migrations tested by the tests)."""

from __future__ import annotations

import ast
import re
from collections.abc import Callable
from contextlib import AbstractContextManager

import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import create_engine, inspect, pool, text

from ivr.store.migrate import PROJECT_DIR, current_revision, downgrade, head_revision, upgrade
from ivr.store.models import Base

pytestmark = pytest.mark.db

TABLES = {
    "calls",
    "decisions",
    "recordings",
    "missed_calls",
    "callbacks",
    "callback_attempts",
    "revocations",
    "audit_log",
    "deletion_certificates",
    "console_users",
    "console_sessions",
}
VERSIONS = PROJECT_DIR / "migrations" / "versions"

NewDatabase = Callable[[], AbstractContextManager[str]]


def table_names(url: str) -> set[str]:
    engine = create_engine(url, poolclass=pool.NullPool)
    try:
        with engine.connect() as connection:
            return set(inspect(connection).get_table_names())
    finally:
        engine.dispose()


def differences(url: str, *, drop_index: str | None = None) -> list[object]:
    """What `alembic check` would report: models against the migrated database."""
    engine = create_engine(url, poolclass=pool.NullPool)
    try:
        with engine.connect() as connection, connection.begin() as transaction:
            if drop_index is not None:
                connection.execute(text(f"DROP INDEX {drop_index}"))
            context = MigrationContext.configure(
                connection, opts={"compare_type": True, "compare_server_default": True}
            )
            found: list[object] = compare_metadata(context, Base.metadata)
            transaction.rollback()
            return found
    finally:
        engine.dispose()


def test_upgrade_to_head_creates_every_table(database_url: str) -> None:
    assert table_names(database_url) == TABLES | {"alembic_version"}
    assert current_revision(database_url) == head_revision()
    assert head_revision() is not None


def test_downgrade_to_base_and_upgrade_again(new_database: NewDatabase) -> None:
    with new_database() as url:
        assert current_revision(url) is None
        upgrade(url)
        downgrade(url, "base")
        assert table_names(url) == {"alembic_version"}
        assert current_revision(url) is None
        upgrade(url)
        assert table_names(url) == TABLES | {"alembic_version"}
        assert current_revision(url) == head_revision()


def test_models_and_migrations_agree(database_url: str) -> None:
    assert differences(database_url) == []


def test_the_comparison_would_see_a_difference(database_url: str) -> None:
    found = differences(database_url, drop_index="uq_callbacks_open_caller")
    assert [d[0] for d in found if isinstance(d, tuple)] == ["add_index"]


def test_revisions_do_not_import_the_models() -> None:
    revisions = sorted(VERSIONS.glob("*.py"))
    assert revisions, f"no revisions in {VERSIONS}"
    for path in revisions:
        for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
            if isinstance(node, ast.ImportFrom):
                names = [node.module or ""]
            elif isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            else:
                continue
            assert not any(n == "ivr" or n.startswith("ivr.") for n in names), path.name


def test_revision_files_carry_a_date_prefix() -> None:
    for path in VERSIONS.glob("*.py"):
        assert re.match(r"^\d{4}_\d{2}_\d{2}_\d{4}_[a-z0-9_]+\.py$", path.name), path.name
