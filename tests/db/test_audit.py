"""The hash-chained audit log in the real PostgreSQL: appends, tampering found at the entry
it touched, and concurrent appends that never fork the chain.

These tests commit and then tamper with the table, so each gets a private database,
migrated like any other, and dropped afterwards.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from datetime import UTC, date, datetime
from itertools import pairwise
from typing import Any

import pytest
from sqlalchemy import func, select, text
from sqlalchemy.exc import IntegrityError

from ivr.store import audit as actions
from ivr.store.audit import AuditLog, entry_hash
from ivr.store.models import AUDIT_GENESIS_HASH, AuditEntry, Revocation

from .conftest import OwnDatabase

pytestmark = pytest.mark.db

MADE_UP_HASH = "ab" * 32


@pytest.fixture
async def audit(own_database: OwnDatabase) -> AsyncIterator[AuditLog]:
    """An audit log over a fresh, migrated database of its own, with a pool of 5."""
    async with own_database(5) as db:
        yield AuditLog(db)


async def five_entries(audit: AuditLog) -> list[AuditEntry]:
    return [
        await audit.record("agent-7", actions.LOGIN, "user", "agent-7", {"via": "console"}),
        await audit.record("system", actions.RECORDING_CREATED, "recording", "rec-1",
                           {"file": "a.wav", "basis": "consent", "seconds": 12.5}),
        await audit.record("dpo", actions.REVOCATION_RECEIVED, "revocation", "rev-1",
                           {"via": "email", "note": "Prosim, izbrišite posnetke — hvala",
                            "numbers": [1, 2.0, 1e16, None, True]}),
        await audit.record("agent-7", actions.RECORDING_ACCESSED, "recording", "rec-1"),
        await audit.record("system", actions.RECORDING_DELETED, "recording", None,
                           {"reason": "revocation", "nested": {"b": 1, "a": [{"z": 0}]}}),
    ]


async def sql(audit: AuditLog, statement: str, **params: Any) -> None:
    """Tamper with the table behind the log's back."""
    async with audit.db.engine.begin() as connection:
        await connection.execute(text(statement), params)


async def forge(audit: AuditLog, prev_hash: str, entry_id: int | None = None) -> int:
    """Insert an entry that hashes correctly over a prev_hash of our choosing."""
    at = datetime(2026, 12, 18, 9, 0, tzinfo=UTC)
    forged_hash = entry_hash(prev_hash, at, "mallory", actions.RECORDING_DELETED,
                             "recording", "rec-1", {})
    columns = "at, actor, action, subject_type, subject_id, details, prev_hash, hash"
    values = ":at, 'mallory', 'recording_deleted', 'recording', 'rec-1', '{}', :prev, :hash"
    if entry_id is not None:
        statement = (f"INSERT INTO audit_log (id, {columns}) OVERRIDING SYSTEM VALUE "
                     f"VALUES (:id, {values}) RETURNING id")
    else:
        statement = f"INSERT INTO audit_log ({columns}) VALUES ({values}) RETURNING id"
    async with audit.db.engine.begin() as connection:
        result = await connection.execute(
            text(statement), {"at": at, "prev": prev_hash, "hash": forged_hash, "id": entry_id})
        return int(result.scalar_one())


# An intact chain ---------------------------------------------------------------------------

async def test_five_entries_make_a_valid_chain_from_the_genesis_hash(audit: AuditLog) -> None:
    entries = await five_entries(audit)
    assert entries[0].prev_hash == AUDIT_GENESIS_HASH
    for before, after in pairwise(entries):
        assert after.prev_hash == before.hash
        assert after.id > before.id
        assert after.at >= before.at
    result = await audit.verify()
    assert (result.ok, result.checked, result.problem, result.entry_id) == (True, 5, None, None)
    assert result.last_hash == entries[-1].hash


async def test_an_empty_log_verifies(audit: AuditLog) -> None:
    result = await audit.verify()
    assert (result.ok, result.checked, result.last_hash) == (True, 0, None)


async def test_details_are_kept_as_given(audit: AuditLog) -> None:
    entries = await five_entries(audit)
    async with audit.db.session() as session:
        stored = (await session.execute(
            select(AuditEntry).where(AuditEntry.id == entries[2].id))).scalar_one()
    assert stored.details["note"] == "Prosim, izbrišite posnetke — hvala"
    assert stored.details == entries[2].details
    assert stored.hash == entries[2].hash


async def test_the_entry_commits_with_the_change_it_records_or_not_at_all(
        audit: AuditLog) -> None:
    def revocation() -> Revocation:
        return Revocation(caller="+38631000001", via="phone",
                          received_at=datetime(2026, 12, 18, 9, 0, tzinfo=UTC),
                          recorded_by="agent-7", deadline=date(2026, 12, 28))

    async with audit.db.session() as session, session.begin():
        change = revocation()
        session.add(change)
        await session.flush()
        await audit.append(session, "agent-7", actions.REVOCATION_RECEIVED, "revocation",
                           str(change.id), {"via": "phone"})
    with pytest.raises(RuntimeError, match="boom"):
        async with audit.db.session() as session, session.begin():
            session.add(revocation())
            await session.flush()
            await audit.append(session, "agent-7", actions.REVOCATION_RECEIVED,
                               "revocation", None)
            raise RuntimeError("boom")
    async with audit.db.session() as session:
        revocations = (await session.execute(
            select(func.count()).select_from(Revocation))).scalar_one()
        entries = (await session.execute(select(AuditEntry))).scalars().all()
    assert revocations == 1
    assert [e.subject_id for e in entries] == [str(change.id)]
    # The rolled-back append used up an id; the gap is not a problem.
    await audit.record("agent-7", actions.LOGIN, "user", "agent-7")
    result = await audit.verify()
    assert (result.ok, result.checked) == (True, 2)


async def test_append_refuses_to_run_outside_a_transaction(audit: AuditLog) -> None:
    async with audit.db.session() as session:
        with pytest.raises(RuntimeError, match="inside the caller's transaction"):
            await audit.append(session, "agent-7", actions.LOGIN, "user", "agent-7")


async def test_append_refuses_an_autocommit_connection(audit: AuditLog) -> None:
    """Each statement its own transaction: the chain's lock would not hold to the insert."""
    async with audit.db.autocommit.connect() as connection:
        await connection.exec_driver_sql("SELECT 1")  # in_transaction() is True even so
        with pytest.raises(RuntimeError, match="not an autocommit connection"):
            await audit.append(connection, "service", "recording_created", "recording", "r")
    assert (await audit.verify()).checked == 0


# Tampering -----------------------------------------------------------------------------------

@pytest.mark.parametrize("change", [
    "details = details || '{\"file\": \"b.wav\"}'",
    "actor = 'someone-else'",
    "at = at + interval '1 second'",
    "subject_id = NULL",
])
async def test_a_changed_entry_is_named(audit: AuditLog, change: str) -> None:
    entries = await five_entries(audit)
    changed = entries[1].id
    await sql(audit, f"UPDATE audit_log SET {change} WHERE id = :id", id=changed)
    result = await audit.verify()
    assert not result.ok
    assert result.entry_id == changed
    assert result.problem == f"entry {changed}: content changed"
    assert result.checked == 1
    assert result.last_hash == entries[0].hash


async def test_a_changed_entry_with_its_hash_recomputed_breaks_the_next_link(
        audit: AuditLog) -> None:
    entries = await five_entries(audit)
    target = entries[2]
    new_hash = entry_hash(target.prev_hash, target.at, target.actor, target.action,
                          target.subject_type, target.subject_id, {"via": "phone"})
    await sql(audit, "UPDATE audit_log SET details = '{\"via\": \"phone\"}', hash = :hash "
              "WHERE id = :id", hash=new_hash, id=target.id)
    result = await audit.verify()
    assert (result.ok, result.entry_id, result.checked) == (False, entries[3].id, 3)
    assert result.problem is not None
    assert result.problem.startswith(f"entry {entries[3].id}: inserted, forged or moved")
    assert f"entry {target.id} was rewritten" in result.problem


async def test_a_removed_entry_is_found_at_the_entry_after_the_gap(audit: AuditLog) -> None:
    entries = await five_entries(audit)
    await sql(audit, "DELETE FROM audit_log WHERE id = :id", id=entries[2].id)
    result = await audit.verify()
    after = entries[3].id
    assert (result.ok, result.entry_id, result.checked) == (False, after, 2)
    assert result.problem == f"entry {after}: the entry before it was removed or reordered"


async def test_a_removed_first_entry_breaks_the_start_of_the_chain(audit: AuditLog) -> None:
    entries = await five_entries(audit)
    await sql(audit, "DELETE FROM audit_log WHERE id = :id", id=entries[0].id)
    result = await audit.verify()
    assert (result.ok, result.entry_id, result.checked) == (False, entries[1].id, 0)
    assert result.problem is not None
    assert result.problem.startswith(
        f"entry {entries[1].id}: the first entry does not start the chain")


async def test_a_first_entry_that_does_not_follow_the_genesis_hash_is_named(
        audit: AuditLog) -> None:
    entries = await five_entries(audit)
    await sql(audit, "UPDATE audit_log SET prev_hash = :h WHERE id = :id",
              h=MADE_UP_HASH, id=entries[0].id)
    result = await audit.verify()
    assert (result.ok, result.entry_id, result.checked) == (False, entries[0].id, 0)
    assert result.problem is not None
    assert "first entry does not start the chain" in result.problem


async def test_a_forged_entry_at_the_end_is_detected(audit: AuditLog) -> None:
    entries = await five_entries(audit)
    forged = await forge(audit, MADE_UP_HASH)
    result = await audit.verify()
    assert (result.ok, result.entry_id, result.checked) == (False, forged, 5)
    assert result.problem is not None
    assert result.problem.startswith(f"entry {forged}: inserted, forged or moved")
    assert result.last_hash == entries[-1].hash


async def test_a_forged_entry_in_the_middle_is_named_as_inserted(audit: AuditLog) -> None:
    first = await audit.record("agent-7", actions.LOGIN, "user", "agent-7")
    with pytest.raises(RuntimeError):  # a rolled-back append leaves a free id
        async with audit.db.session() as session, session.begin():
            await audit.append(session, "agent-7", actions.LOGIN, "user", "agent-7")
            raise RuntimeError
    third = await audit.record("agent-7", actions.LOGIN, "user", "agent-7")
    forged = await forge(audit, MADE_UP_HASH, entry_id=first.id + 1)
    assert first.id < forged < third.id
    result = await audit.verify()
    assert (result.ok, result.entry_id, result.checked) == (False, forged, 1)
    assert result.problem == f"entry {forged}: inserted: the entry after it follows entry 1"


async def test_a_forged_entry_before_the_first_is_named_as_inserted(audit: AuditLog) -> None:
    await five_entries(audit)
    forged = await forge(audit, MADE_UP_HASH, entry_id=0)
    result = await audit.verify()
    assert (result.ok, result.entry_id) == (False, forged)
    assert result.problem == (
        f"entry {forged}: inserted: the entry after it follows the start of the chain")


async def test_reordered_entries_are_detected(audit: AuditLog) -> None:
    entries = await five_entries(audit)
    a, b = entries[1], entries[3]
    swap = ("UPDATE audit_log SET at = :at, actor = :actor, action = :action, "
            "subject_type = :st, subject_id = :sid, details = CAST(:details AS jsonb), "
            "prev_hash = :prev, hash = :hash WHERE id = :id")
    # prev_hash and hash are unique: move one out of the way first.
    await sql(audit, "UPDATE audit_log SET prev_hash = :x, hash = :x WHERE id = :id",
              x="cd" * 32, id=a.id)
    for source, target in ((a, b.id), (b, a.id)):
        await sql(audit, swap, at=source.at, actor=source.actor, action=source.action,
                  st=source.subject_type, sid=source.subject_id,
                  details=json.dumps(source.details), prev=source.prev_hash,
                  hash=source.hash, id=target)
    result = await audit.verify()
    assert (result.ok, result.entry_id, result.checked) == (False, a.id, 1)
    assert result.problem is not None
    assert result.problem.startswith(f"entry {a.id}: inserted, forged or moved")


async def test_a_fork_cannot_commit(audit: AuditLog) -> None:
    entries = await five_entries(audit)
    with pytest.raises(IntegrityError, match="uq_audit_log_prev_hash"):
        await forge(audit, entries[1].hash)  # a second entry after entries[1]


# Concurrency -------------------------------------------------------------------------------

async def test_concurrent_appends_from_a_pool_make_one_chain(audit: AuditLog) -> None:
    written = await asyncio.gather(*(
        audit.record(f"agent-{n}", actions.CALLBACK_PLACED, "callback", f"cb-{n}", {"n": n})
        for n in range(20)
    ))
    assert len({entry.id for entry in written}) == 20
    result = await audit.verify()
    assert (result.ok, result.checked, result.problem) == (True, 20, None)
    async with audit.db.session() as session:
        chain = (await session.execute(
            select(AuditEntry).order_by(AuditEntry.id))).scalars().all()
    assert len(chain) == 20
    assert len({entry.prev_hash for entry in chain}) == 20  # no fork
    assert chain[0].prev_hash == AUDIT_GENESIS_HASH
    assert all(after.prev_hash == before.hash
               for before, after in pairwise(chain))
    assert all(after.at >= before.at for before, after in pairwise(chain))
    assert sorted(entry.details["n"] for entry in chain) == list(range(20))
