"""A missing PostgreSQL is one clear line with the address and a fix, not a traceback."""

from __future__ import annotations

import pytest
from pydantic import SecretStr
from sqlalchemy import text

from ivr.settings import DatabaseSettings
from ivr.store import migrate
from ivr.store.database import Database, DatabaseUnreachable

pytestmark = pytest.mark.db

# Port 1 (tcpmux) is closed on the machines we run on.
NOWHERE = "postgresql+psycopg://ivr:secret-pw@127.0.0.1:1/ivr"


async def test_unreachable_database_is_one_line_with_address_and_hint() -> None:
    db = Database(DatabaseSettings(url=SecretStr(NOWHERE)))
    try:
        with pytest.raises(DatabaseUnreachable) as caught:
            await db.check_reachable()
    finally:
        await db.dispose()
    message = str(caught.value)
    assert "127.0.0.1:1" in message and "IVR_DATABASE__URL" in message
    assert "\n" not in message and "secret-pw" not in message


def test_upgrade_of_an_unreachable_database_says_so() -> None:
    with pytest.raises(DatabaseUnreachable, match=r"127\.0\.0\.1:1\b"):
        migrate.upgrade(NOWHERE)


async def test_reachable_database_passes_the_check(database: Database) -> None:
    await database.check_reachable()
    async with database.session() as session:
        assert (await session.execute(text("SELECT 1"))).scalar_one() == 1
