"""Call records that survive a PostgreSQL outage: each write goes to PostgreSQL, or, when
it cannot be reached, to the outage journal (``ivr/store/journal.py``), fsynced, before
the call goes on. While the journal holds entries, new ones queue behind them, so each
call's writes reach PostgreSQL in the order they were made.

Only an unreachable database sends a write to the journal. A write PostgreSQL refuses
(a constraint) fails as it would without the journal: the caller handles it on the safe
side (no decision stored, no recording).
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections.abc import Awaitable, Callable
from datetime import datetime
from typing import TYPE_CHECKING, Any, TypeVar

from sqlalchemy.exc import DBAPIError, InterfaceError, OperationalError

from ivr.flow.commands import Receipt
from ivr.store.callbacks import Callbacks, Missed
from ivr.store.decisions_together import Outcome, decide_many
from ivr.store.journal import (
    CloseEntry,
    CloseOrphanEntry,
    DecisionEntry,
    Entry,
    Journal,
    MissedEntry,
    OpenEntry,
    RecordingStartedEntry,
)
from ivr.store.receipts import (
    CallRecords,
    ClosedCall,
    EndedCall,
    OpenedCall,
    PlannedRecording,
    StaleCall,
    StartedRecording,
)

if TYPE_CHECKING:
    from ivr.settings import Settings
    from ivr.store.audit import AuditLog
    from ivr.store.database import Database

log = logging.getLogger(__name__)

# What became of a close: the callback its missed call opened or joined (``None``: none, or
# journalled), or the error that stored nothing.
Closed = uuid.UUID | None | BaseException
# What became of an opening: ``False`` the channel was stored already (a replay), else
# ``True`` (stored or journalled), or the error that stored nothing.
Opened = bool | BaseException
_E = TypeVar("_E", OpenEntry, DecisionEntry)


def unreachable(error: BaseException) -> bool:
    """PostgreSQL could not be reached (down, restarting, network): worth journalling."""
    if isinstance(error, (OperationalError, InterfaceError, OSError, TimeoutError)):
        return True
    return isinstance(error, DBAPIError) and error.connection_invalidated


class DurableRecords:
    """The call records the call flows write (open, decision, recording, close, missed).
    Without a journal (a one-off command, not the service) an outage is an error."""

    def __init__(self, records: CallRecords, callbacks: Callbacks,
                 journal: Journal | None = None, timeout: float = 2.0) -> None:
        self.records = records
        self.callbacks = callbacks
        self.journal = journal
        self.timeout = timeout
        self.journalled = 0
        self.replayed = 0

    @classmethod
    def for_node(cls, settings: Settings, db: Database, audit: AuditLog) -> DurableRecords:
        """This node's records, its callbacks and its outage journal, as the settings say."""
        return cls(CallRecords(db, audit, settings.node),
                   Callbacks(db, settings.callbacks.window_minutes),
                   Journal(settings.journal.directory), settings.journal.store_timeout)

    # the writes ----------------------------------------------------------------------------
    async def open(self, call: OpenedCall, direction: str = "inbound") -> bool:
        """``False`` if the channel was already stored (a replayed StasisStart)."""
        stored = await self._store(OpenEntry(call=call, direction=direction))
        return stored is not False

    async def open_many(self, entries: list[OpenEntry]) -> list[Opened]:
        """Many ARI-flow calls opened in one statement (``OpenQueue``), what became of each
        (``open``'s answers, or the error that stored nothing), as ``store_decisions``."""
        async def together(entries: list[OpenEntry]) -> list[Opened]:
            stored = await self.records.open_many([entry.call for entry in entries])
            return [entry.call.id in stored for entry in entries]

        return await self._one_statement("calls", entries, together, self._open_outcome,
                                         journalled=True)

    async def _open_outcome(self, entry: OpenEntry) -> Opened:
        try:
            return await self.open(entry.call, entry.direction)
        except Exception as exc:
            return exc

    async def store_decision(self, call_id: uuid.UUID, line_kind: str, receipt: Receipt,
                             prompts_played: list[dict[str, Any]],
                             recording: PlannedRecording | None,
                             inherited_from: uuid.UUID | None = None,
                             call: OpenedCall | None = None) -> bool | None:
        """``False`` when PostgreSQL already held the call or its decision (nothing
        stored), ``None`` when the decision waits in the journal."""
        return await self.commit_decision(DecisionEntry(
            call_id=call_id, line_kind=line_kind, receipt=receipt,
            prompts_played=prompts_played, recording=recording,
            inherited_from=inherited_from, call=call))

    async def commit_decision(self, entry: DecisionEntry) -> bool | None:
        stored = await self._store(entry)
        return stored if isinstance(stored, bool) else None

    async def store_decisions(self, entries: list[DecisionEntry]) -> list[Outcome]:
        """Many decisions (the dialplan flow's each opening its call) in one statement, what
        became of each (``store_decision``'s answers, or the error that stored nothing)."""
        async def together(entries: list[DecisionEntry]) -> list[Outcome]:
            stored = await decide_many(self.records, entries)
            return [entry.call_id in stored for entry in entries]

        return await self._one_statement("decisions", entries, together, self._outcome,
                                         journalled=None)

    async def _one_statement(self, what: str, entries: list[_E],
                             together: Callable[[list[_E]], Awaitable[list[Any]]],
                             alone: Callable[[_E], Awaitable[Any]], journalled: Any
                             ) -> list[Any]:
        """``entries`` written by ``together`` (one statement), what became of each.
        PostgreSQL unreachable: all of them to the journal (each told ``journalled``).
        Refused (a constraint): one by one (``alone``), so that one bad entry does not cost
        the others theirs. One alone, or while the journal holds entries: one by one."""
        if len(entries) == 1 or (self.journal is not None and self.journal.pending()):
            return [await alone(entry) for entry in entries]
        try:
            async with asyncio.timeout(self.timeout):
                return await together(entries)
        except Exception as exc:
            if self.journal is None or not unreachable(exc):
                log.warning("%s refused together, stored one by one: %s", what,
                            _first_line(exc))
                return [await alone(entry) for entry in entries]
            log.warning("PostgreSQL did not take %d %s (%s); written to the journal",
                        len(entries), what, _first_line(exc))
            for entry in entries:
                await self.journal.append(entry)
            self.journalled += len(entries)
            return [journalled] * len(entries)

    async def _outcome(self, entry: DecisionEntry) -> Outcome:
        try:
            return await self.commit_decision(entry)
        except Exception as exc:
            return exc

    async def recording_started(self, file_name: str, mixmonitor_id: str,
                                at: datetime) -> None:
        await self._store(RecordingStartedEntry(file_name=file_name,
                                                mixmonitor_id=mixmonitor_id, at=at))

    async def close(self, call_id: uuid.UUID, closed: ClosedCall,
                    recording_file: str | None, missed: Missed | None = None,
                    started: StartedRecording | None = None) -> uuid.UUID | None:
        """Close the call and, with ``missed``, store its missed call in the same
        transaction (or the same journal entry); the callback, as ``record_missed``.
        With ``started``, the recording's start goes first in that transaction."""
        stored = await self._store(CloseEntry(call_id=call_id, closed=closed,
                                              recording_file=recording_file, missed=missed,
                                              started=started))
        return stored if isinstance(stored, uuid.UUID) else None

    async def close_many(self, entries: list[CloseEntry]) -> list[Closed]:
        """Many calls' closes (the ARI flow's, committed together) in one transaction, what
        became of each (``close``'s answers, or the error that stored nothing): each call
        closed with its recording's start and stop, its missed call and callback, in eleven
        statements whatever their number (as many as one close alone). While the journal
        holds entries, or if the transaction fails: one by one, through the journal. A
        close ``end_many`` does not write as ``close`` would (a planned recording that
        never started, a state other than ``ended``) goes on its own."""
        alone = [e.closed.state != "ended" or (e.recording_file is None) != (e.started is None)
                 for e in entries]
        together = [e for e, own in zip(entries, alone, strict=True) if not own]
        if len(together) < 2 or (self.journal is not None and self.journal.pending()):
            return [await self._close_outcome(entry) for entry in entries]
        try:
            async with asyncio.timeout(self._together_timeout):
                callbacks = await self._close_together(together)
        except Exception as exc:
            log.warning("closes refused together, stored one by one: %s", _first_line(exc))
            return [await self._close_outcome(entry) for entry in entries]
        return [await self._close_outcome(entry) if own else callbacks.get(entry.call_id)
                for entry, own in zip(entries, alone, strict=True)]

    async def _close_together(self, entries: list[CloseEntry]
                              ) -> dict[uuid.UUID, uuid.UUID | None]:
        async with self.records.db.engine.begin() as connection:
            await self.records.end_many_on(connection, [
                EndedCall(e.call_id, e.closed, e.started) for e in entries])
            return await self.callbacks.record_missed_on(
                connection, [e.missed for e in entries if e.missed is not None])

    async def _close_outcome(self, entry: CloseEntry) -> Closed:
        try:
            return await self.close(entry.call_id, entry.closed, entry.recording_file,
                                    entry.missed, entry.started)
        except Exception as exc:
            return exc

    async def close_orphan(self, channel_id: str, reason: str, at: datetime) -> None:
        await self._store(CloseOrphanEntry(channel_id=channel_id, reason=reason, at=at))

    async def record_missed(self, missed: Missed) -> uuid.UUID | None:
        """The callback the missed call opened or joined; ``None`` when the number was
        withheld or the missed call waits in the journal."""
        stored = await self._store(MissedEntry(missed=missed))
        return stored if isinstance(stored, uuid.UUID) else None

    # reads and repairs after a restart: PostgreSQL only (retried at the next sweep) ----------
    async def stale_calls(self, before: datetime) -> list[StaleCall]:
        return await self.records.stale_calls(before)

    async def recording_not_started(self, file_name: str, at: datetime) -> None:
        await self.records.recording_not_started(file_name, at)

    async def record_missed_many(self, missed: list[Missed]) -> None:
        """Many missed calls in one transaction (PostgreSQL only, like ``end_many``)."""
        self._together()
        async with asyncio.timeout(self._together_timeout):
            await self.callbacks.record_missed_many(missed)

    async def end_many(self, ended: list[EndedCall]) -> None:
        """Many calls closed in one transaction, PostgreSQL only: while the journal holds
        entries (their calls may not be in PostgreSQL yet), or on any failure, the caller
        closes them one by one (``close``, ``recording_started``: through the journal)."""
        self._together()
        async with asyncio.timeout(self._together_timeout):
            await self.records.end_many(ended)

    @property
    def _together_timeout(self) -> float:
        return max(10.0, 5 * self.timeout)

    def _together(self) -> None:
        if self.journal is not None and self.journal.pending():
            raise RuntimeError("the journal holds entries: one by one, behind them")

    # PostgreSQL or the journal -------------------------------------------------------------
    async def _store(self, entry: Entry) -> Any:
        if self.journal is None or not self.journal.pending():
            try:
                async with asyncio.timeout(self.timeout):
                    return await self.apply(entry)
            except Exception as exc:
                if self.journal is None or not unreachable(exc):
                    raise
                if isinstance(exc, TimeoutError):
                    log.warning("PostgreSQL did not take the write within %.1f s "
                                "(unreachable or overloaded); written to the journal",
                                self.timeout, extra={"entry": entry.op})
                else:
                    log.warning("PostgreSQL unreachable; written to the journal: %s",
                                _first_line(exc), extra={"entry": entry.op})
        await self.journal.append(entry)
        self.journalled += 1
        return None

    async def apply(self, entry: Entry) -> Any:
        """Write one entry into PostgreSQL; writing it twice changes nothing."""
        records = self.records
        match entry:
            case OpenEntry(call=call, direction=direction):
                return await records.open(call, direction)
            case DecisionEntry():
                return await records.store_decision(
                    entry.call_id, entry.line_kind, entry.receipt, entry.prompts_played,
                    entry.recording, entry.inherited_from, entry.call)
            case RecordingStartedEntry(file_name=name, mixmonitor_id=mixmonitor_id, at=at):
                return await records.recording_started(name, mixmonitor_id, at)
            case CloseEntry(call_id=call_id, closed=closed, recording_file=recording_file,
                            missed=None, started=started):
                return await records.close(call_id, closed, recording_file, started)
            case CloseEntry(call_id=call_id, closed=closed, recording_file=recording_file,
                            missed=Missed() as missed, started=started):
                return await self.callbacks.record_missed(missed, records.closing(
                    call_id, closed, recording_file, started))
            case CloseOrphanEntry(channel_id=channel_id, reason=reason, at=at):
                return await records.close_orphan(channel_id, reason, at)
            case MissedEntry(missed=missed):
                return await self.callbacks.record_missed(missed)
        raise AssertionError(f"unknown journal entry {entry!r}")

    async def replay(self) -> int:
        """Write the journal into PostgreSQL, oldest first; the number of entries written.
        Raises (leaving the rest for the next try) when PostgreSQL is still unreachable."""
        written = 0
        if self.journal is None:
            return written
        while (batch := await self.journal.take()) is not None:
            for problem in batch.unreadable:
                log.error("journal line unreadable; kept in rejected.jsonl: %s", problem)
            for entry in batch.entries:
                try:
                    await self.apply(entry)
                except Exception as exc:
                    if unreachable(exc):
                        raise
                    log.exception("PostgreSQL refused a journal entry; kept in "
                                  "rejected.jsonl", extra={"entry": entry.op})
                    await self.journal.reject(entry, _first_line(exc))
            await self.journal.done()
            written += len(batch.entries)
        self.replayed += written
        return written


def _first_line(error: BaseException) -> str:
    text = str(error).strip()
    return (text.splitlines() or [type(error).__name__])[0][:300]
