"""The audit log: an append-only, hash-chained record of what the service and its users did.

Every entry's ``hash`` is ``sha256(prev_hash + canonical JSON of its content)`` and its
``prev_hash`` is the hash of the entry before it (``AUDIT_GENESIS_HASH`` for the first),
so changing, removing, inserting or reordering an entry breaks the chain at that entry,
and :meth:`AuditLog.verify` says where. What the chain alone cannot show is the loss of
the newest entries (a truncated tail): keep :attr:`VerifyResult.last_hash` somewhere else
(a ticket, a signed e-mail) to check that.

Appending is serialised across every instance of the service by a transaction-scoped
PostgreSQL advisory lock, held from :meth:`AuditLog.append` until the caller's transaction
ends. So append last, just before the commit: the audited change and its entry commit
together, and the lock is held for as short a time as possible. The unique ``prev_hash``
column is the last line of defence: a second entry after the same one cannot commit.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from psycopg.types.json import Jsonb
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncSession

from ivr.store.database import Database
from ivr.store.models import AUDIT_GENESIS_HASH, AuditEntry

# What happened, in the words of POLICY.md.
RECORDING_CREATED = "recording_created"
RECORDING_NOT_STARTED = "recording_not_started"
RECORDING_ACCESSED = "recording_accessed"
RECORDING_DELETED = "recording_deleted"
REVOCATION_RECEIVED = "revocation_received"
REVOCATION_FULFILLED = "revocation_fulfilled"
CALLBACK_PLACED = "callback_placed"
LOGIN = "login"
ACTIONS = frozenset({
    RECORDING_CREATED, RECORDING_NOT_STARTED, RECORDING_ACCESSED, RECORDING_DELETED,
    REVOCATION_RECEIVED, REVOCATION_FULFILLED, CALLBACK_PLACED, LOGIN,
})

# The advisory lock every append takes: b"ivraudit" read as a big-endian bigint.
AUDIT_LOCK_KEY = 0x6976_7261_7564_6974

LOCK = "SELECT pg_advisory_xact_lock(%(key)s)"
# Read after the lock, in a statement of its own (a statement's snapshot is taken when it
# starts): the chain's last hash, the details as PostgreSQL stores them, and its clock.
CHAIN_END = """
SELECT (SELECT hash FROM audit_log ORDER BY id DESC LIMIT 1), %(details)s::jsonb,
       clock_timestamp()
"""
INSERT_ENTRY = """
INSERT INTO audit_log (at, actor, action, subject_type, subject_id, details, prev_hash, hash)
VALUES (%(at)s, %(actor)s, %(action)s, %(subject_type)s, %(subject_id)s, %(details)s,
        %(prev_hash)s, %(hash)s)
RETURNING id
"""


# Many entries at once (the ends of many calls): the chain's last hash, each entry's
# details as PostgreSQL stores them, and its clock, then one insert of them all.
CHAIN_END_MANY = """
SELECT (SELECT hash FROM audit_log ORDER BY id DESC LIMIT 1), %(details)s::jsonb,
       clock_timestamp()
"""
INSERT_ENTRIES = """
INSERT INTO audit_log (at, actor, action, subject_type, subject_id, details, prev_hash, hash)
SELECT %(at)s, e.actor, e.action, e.subject_type, e.subject_id, e.details, e.prev_hash, e.hash
FROM unnest(%(actor)s::text[], %(action)s::text[], %(subject_type)s::text[],
            %(subject_id)s::text[], %(details)s::jsonb[], %(prev_hash)s::text[],
            %(hash)s::text[]) WITH ORDINALITY
     AS e(actor, action, subject_type, subject_id, details, prev_hash, hash, n)
ORDER BY e.n
"""
# (The entries' ids come from the identity column in the order the rows are inserted,
# which the ORDER BY sets; the chain itself is the hashes, and verify() walks ids in order:
# a test appends many and verifies.)


@dataclass(frozen=True, slots=True)
class NewEntry:
    """An entry to append with others (``AuditLog.append_many``)."""

    actor: str
    action: str
    subject_type: str
    subject_id: str | None
    details: Mapping[str, Any]


def canonical_content(at: datetime, actor: str, action: str, subject_type: str,
                      subject_id: str | None, details: Mapping[str, Any]) -> str:
    """The content an entry's hash covers, as one canonical JSON text.

    >>> canonical_content(datetime(2026, 12, 18, 9, 0, tzinfo=UTC), "agent-7", "login",
    ...                   "user", "agent-7", {"via": "console", "as": "agent"})
    '{"action":"login","actor":"agent-7","at":"2026-12-18T09:00:00+00:00","details":{"as":"agent","via":"console"},"subject_id":"agent-7","subject_type":"user"}'
    """
    if at.tzinfo is None:
        raise ValueError("an audit entry's time must carry its time zone")
    content = {
        "at": at.astimezone(UTC).isoformat(),
        "actor": actor,
        "action": action,
        "subject_type": subject_type,
        "subject_id": subject_id,
        "details": details,
    }
    return json.dumps(content, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def entry_hash(prev_hash: str, at: datetime, actor: str, action: str, subject_type: str,
               subject_id: str | None, details: Mapping[str, Any]) -> str:
    """``sha256(prev_hash + canonical content)``, in hex."""
    content = canonical_content(at, actor, action, subject_type, subject_id, details)
    return hashlib.sha256((prev_hash + content).encode("utf-8")).hexdigest()


@dataclass(frozen=True, slots=True)
class VerifyResult:
    """``checked``: the entries found intact, in id order, before the first problem (all of
    them when ``ok``). ``entry_id`` is the entry the problem is reported at. ``last_hash``
    is the hash of the last intact entry (``None`` when there is none)."""

    ok: bool
    checked: int
    problem: str | None = None
    entry_id: int | None = None
    last_hash: str | None = None


@dataclass(frozen=True, slots=True)
class Link:
    """One entry as the chain check sees it: ``computed`` is the hash of what it records."""

    id: int
    prev_hash: str
    hash: str
    computed: str

    @classmethod
    def of(cls, entry: AuditEntry) -> Link:
        computed = entry_hash(entry.prev_hash, entry.at, entry.actor, entry.action,
                              entry.subject_type, entry.subject_id, entry.details)
        return cls(id=entry.id, prev_hash=entry.prev_hash, hash=entry.hash, computed=computed)


class ChainCheck:
    """Walks the entries in id order, one at a time, and stops at the first problem.

    Pure: :meth:`AuditLog.verify` feeds it from the database. An entry whose ``prev_hash``
    is not the hash of the one before it is judged with the entry after it in view: if that
    one follows the one before directly, the entry was inserted; if no id is missing
    between the two, nothing was removed, so it was inserted, forged or moved (or the one
    before it rewritten); otherwise an entry before it was removed (or entries reordered).
    Ids come from an identity column, so a rolled-back append leaves a gap: gaps alone are
    not problems, only broken links are.
    """

    def __init__(self) -> None:
        self.checked = 0
        self.last: Link | None = None
        self.suspect: Link | None = None

    @property
    def expected(self) -> str:
        return self.last.hash if self.last is not None else AUDIT_GENESIS_HASH

    def feed(self, link: Link) -> VerifyResult | None:
        """Check the next entry; a result means the walk is over (a problem was found)."""
        if self.suspect is not None:
            return self._broken_link(self.suspect, following=link)
        if link.prev_hash != self.expected:
            self.suspect = link  # judged once the next entry (or the end) is seen
            return None
        if link.computed != link.hash:
            return self._problem(link, "content changed")
        self.last = link
        self.checked += 1
        return None

    def end(self) -> VerifyResult:
        if self.suspect is not None:
            return self._broken_link(self.suspect, following=None)
        return VerifyResult(ok=True, checked=self.checked, last_hash=self._last_hash())

    def _broken_link(self, link: Link, following: Link | None) -> VerifyResult:
        before = "the start of the chain" if self.last is None else f"entry {self.last.id}"
        if following is not None and following.prev_hash == self.expected:
            return self._problem(link, f"inserted: the entry after it follows {before}")
        if self.last is None:
            return self._problem(
                link, "the first entry does not start the chain (its prev_hash is not the "
                "genesis hash): the entries before it were removed, or it was forged")
        if link.id == self.last.id + 1:
            return self._problem(
                link, f"inserted, forged or moved: it does not follow {before}, and no entry "
                f"is missing between them (or {before} was rewritten)")
        return self._problem(link, "the entry before it was removed or reordered")

    def _problem(self, link: Link, what: str) -> VerifyResult:
        return VerifyResult(ok=False, checked=self.checked, problem=f"entry {link.id}: {what}",
                            entry_id=link.id, last_hash=self._last_hash())

    def _last_hash(self) -> str | None:
        return self.last.hash if self.last is not None else None


class AuditLog:
    def __init__(self, db: Database) -> None:
        self.db = db

    async def append(self, session: AsyncSession | AsyncConnection, actor: str, action: str,
                     subject_type: str, subject_id: str | None,
                     details: Mapping[str, Any] | None = None) -> AuditEntry:
        """Add an entry inside the caller's transaction (``async with session.begin()``),
        so that it commits, or rolls back, with the change it records. Call it last.

        ``details`` must be JSON (str keys; str, int, float, bool, None, lists, dicts).
        The entry hashes ``details`` as PostgreSQL gives them back and the time as
        PostgreSQL's clock reads it after the lock, so ``verify`` recomputes the same hash
        and entries' times follow the chain's order across instances.
        """
        if not session.in_transaction():
            raise RuntimeError(
                "AuditLog.append runs inside the caller's transaction: "
                "call it within `async with session.begin()`")
        if isinstance(session, AsyncSession):
            await session.flush()  # what the entry records goes in first, as before
            connection = await session.connection()
        else:
            connection = session
        if _autocommit(connection):
            # The lock would end with its statement, and two entries could follow one hash.
            raise RuntimeError("AuditLog.append needs a transaction, not an autocommit "
                               "connection")
        # Statements sent as they are: the service appends one for every recording.
        await connection.exec_driver_sql(LOCK, {"key": AUDIT_LOCK_KEY})
        last_hash, stored_details, at = tuple((await connection.exec_driver_sql(
            CHAIN_END, {"details": Jsonb(dict(details or {}))})).one())
        prev_hash: str = last_hash if last_hash is not None else AUDIT_GENESIS_HASH
        entry = AuditEntry(
            at=at, actor=actor, action=action, subject_type=subject_type,
            subject_id=subject_id, details=stored_details, prev_hash=prev_hash,
            hash=entry_hash(prev_hash, at, actor, action, subject_type, subject_id,
                            stored_details),
        )
        entry.id = (await connection.exec_driver_sql(INSERT_ENTRY, {
            "at": at, "actor": actor, "action": action, "subject_type": subject_type,
            "subject_id": subject_id, "details": Jsonb(stored_details),
            "prev_hash": prev_hash, "hash": entry.hash})).scalar_one()
        return entry

    async def append_many(self, connection: AsyncConnection,
                          entries: list[NewEntry]) -> int:
        """Add ``entries`` in this order inside the caller's transaction, as ``append``
        would one by one, in three statements whatever their number (one lock, one read of
        the chain's end, one insert). They share one time. Returns how many."""
        if not entries:
            return 0
        if not connection.in_transaction():
            raise RuntimeError("AuditLog.append_many runs inside the caller's transaction")
        await connection.exec_driver_sql(LOCK, {"key": AUDIT_LOCK_KEY})
        last_hash, stored, at = tuple((await connection.exec_driver_sql(
            CHAIN_END_MANY, {"details": Jsonb([dict(e.details) for e in entries])})).one())
        prev_hash: str = last_hash if last_hash is not None else AUDIT_GENESIS_HASH
        chain: list[tuple[str, str]] = []
        for entry, details in zip(entries, stored, strict=True):
            digest = entry_hash(prev_hash, at, entry.actor, entry.action, entry.subject_type,
                                entry.subject_id, details)
            chain.append((prev_hash, digest))
            prev_hash = digest
        await connection.exec_driver_sql(INSERT_ENTRIES, {
            "at": at, "actor": [e.actor for e in entries],
            "action": [e.action for e in entries],
            "subject_type": [e.subject_type for e in entries],
            "subject_id": [e.subject_id for e in entries],
            "details": [Jsonb(d) for d in stored],
            "prev_hash": [p for p, _ in chain], "hash": [h for _, h in chain]})
        return len(entries)

    async def record(self, actor: str, action: str, subject_type: str,
                     subject_id: str | None, details: Mapping[str, Any] | None = None,
                     ) -> AuditEntry:
        """Add an entry in a transaction of its own, for events with no change to go with."""
        async with self.db.session() as session, session.begin():
            return await self.append(session, actor, action, subject_type, subject_id,
                                     details)

    async def verify(self, batch: int = 1000) -> VerifyResult:
        """Walk the whole chain in id order and report the first problem."""
        check = ChainCheck()
        statement = select(AuditEntry).order_by(AuditEntry.id).execution_options(
            yield_per=batch)
        async with self.db.session() as session, session.begin():
            entries = await session.stream_scalars(statement)
            try:
                async for entry in entries:
                    result = check.feed(Link.of(entry))
                    if result is not None:
                        return result
                    session.expunge(entry)
            finally:
                await entries.close()
        return check.end()


def _autocommit(connection: AsyncConnection) -> bool:
    """Whether each statement on ``connection`` is its own transaction (the option set on
    the connection, or on its engine: the driver's connection says either way)."""
    sync = connection.sync_connection
    if sync is None:
        return False
    if sync.get_execution_options().get("isolation_level") == "AUTOCOMMIT":
        return True
    return bool(getattr(sync.connection.driver_connection, "autocommit", False))
