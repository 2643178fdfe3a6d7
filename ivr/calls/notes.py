"""Notes the dialplan leaves for the service: one line of URL-encoded fields, each once,
written by ``Set(FILE(...))`` into a file of its own when a call ends (or passed as a
FastAGI argument). Parsed strictly: a note that is not what the dialplan writes is an
error naming what is wrong, never guessed at. Files that are not notes are moved to
``rejected/``; one that cannot be read now stays for the next sweep.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
import time
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import TypeVar

from ivr.asterisk.ari_events import Channel
from ivr.asterisk.form_fields import form_fields

log = logging.getLogger(__name__)

MAX_NOTE_BYTES = 4096
SETTLE_SECONDS = 2.0
CHANNEL_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")
# Epoch seconds a note may carry: from 2020 until 2100.
_EARLIEST, _LATEST = 1_577_836_800.0, 4_102_444_800.0

T = TypeVar("T")


class NoteError(ValueError):
    """A note that is not what the dialplan writes."""


def fields_of(text: str, names: tuple[str, ...], version: str = "1") -> dict[str, str]:
    """The fields of a one-line note: exactly ``names``, each once, version ``version``."""
    lines = [line for line in text.splitlines() if line.strip()]
    if len(lines) != 1:
        raise NoteError(f"a note is one line, not {len(lines)}")
    try:
        pairs = form_fields(lines[0], len(names))
    except ValueError as exc:
        raise NoteError(f"not URL-encoded fields: {exc}") from None
    fields = dict(pairs)
    if len(fields) != len(pairs) or set(fields) != set(names):
        raise NoteError(f"fields {sorted(k[:20] for k, _ in pairs)} are not {sorted(names)}")
    if fields["v"] != version:
        raise NoteError(f"version {fields['v'][:10]!r} is not {version}")
    return fields


def instant(value: str, name: str) -> datetime:
    """Epoch seconds as the dialplan writes them (``STRFTIME(,UTC,%s.%3q)``)."""
    try:
        seconds = float(value)
    except ValueError:
        raise NoteError(f"{name} is not a time: {value[:40]!r}") from None
    if not _EARLIEST <= seconds <= _LATEST:
        raise NoteError(f"{name} is out of range: {value[:40]!r}")
    return datetime.fromtimestamp(seconds, UTC)


def optional_instant(value: str, name: str) -> datetime | None:
    return instant(value, name) if value else None


def channel_id(value: str) -> str:
    if not CHANNEL_ID.match(value):
        raise NoteError(f"channel {value[:40]!r} is not a channel id")
    return value


def channel_of(channel: str, caller: str, dialled: str) -> Channel:
    """The channel as far as a note tells it, for the code that opens a call's record."""
    return Channel(id=channel, name="", state="", caller_number=caller, caller_name="",
                   context="", exten=dialled, linkedid=channel, variables=(), app_name="",
                   app_data="")


def unsettled_for(directory: Path, suffixes: tuple[str, ...], now: float | None = None
                  ) -> float:
    """Seconds until every note ending in one of ``suffixes`` in ``directory`` is old enough
    to be read (0: all are)."""
    now = time.time() if now is None else now
    newest = 0.0
    for path in directory.glob("*"):
        if path.suffix in suffixes:
            with contextlib.suppress(OSError):  # gone meanwhile: recorded by someone
                newest = max(newest, path.stat().st_mtime)
    return max(0.0, newest + SETTLE_SECONDS - now)


def read_notes(directory: Path, suffix: str, parse: Callable[[str], T],
               now: float | None = None) -> list[tuple[Path, T]]:
    """The notes ending in ``suffix`` in ``directory``, oldest name first; ones that are not
    notes moved aside. A note written in the last seconds is left for the next run
    (Asterisk may still be writing it)."""
    notes = []
    settled = (time.time() if now is None else now) - SETTLE_SECONDS
    for path in sorted(directory.glob(f"*{suffix}")):
        try:
            if path.stat().st_mtime > settled:
                continue
            with path.open("rb") as note:
                raw = note.read(MAX_NOTE_BYTES + 1)
        except OSError as exc:  # e.g. the directory's group is wrong: left, not lost
            log.error("a call's note cannot be read: %s", exc, extra={"file": path.name})
            continue
        try:
            if len(raw) > MAX_NOTE_BYTES:
                raise NoteError(f"larger than {MAX_NOTE_BYTES} bytes")
            notes.append((path, parse(raw.decode("utf-8", errors="replace"))))
        except NoteError as exc:
            log.error("a call's note is not one; moved to rejected/: %s", exc,
                      extra={"file": path.name})
            _reject(path)
    return notes


class Retries:
    """When each note that could not be recorded is tried again: at the next sweep after
    ``first`` seconds, then after twice as long each time, at most ``most``. A note whose
    call PostgreSQL does not have (yet: its decision still in the outage journal; or ever:
    a database restored from before the call) then costs a failed transaction a minute,
    not one a sweep (296 such notes once failed 21220 times in 20 minutes, at a second a
    sweep). Kept by the sweep's loop, for as long as the service runs."""

    def __init__(self, first: float = 1.0, most: float = 60.0,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.first = first
        self.most = most
        self._clock = clock
        self._next: dict[str, tuple[float, float]] = {}  # file -> (when, the wait before)

    def due(self, path: Path) -> bool:
        return self._next.get(path.name, (0.0, 0.0))[0] <= self._clock()

    def failed(self, path: Path) -> float:
        """The note failed: the seconds until it is tried again."""
        wait = min(self.most, self._next[path.name][1] * 2) if path.name in self._next \
            else self.first
        self._next[path.name] = (self._clock() + wait, wait)
        return wait

    def keep_only(self, paths: list[Path]) -> None:
        """Forget the notes that are no longer there (recorded, or moved aside)."""
        names = {path.name for path in paths}
        self._next = {name: due for name, due in self._next.items() if name in names}


async def collect(directory: Path, suffix: str, parse: Callable[[str], T],
                  record: Callable[[T], Awaitable[None]],
                  record_many: Callable[[list[T]], Awaitable[None]] | None = None,
                  retries: Retries | None = None) -> int:
    """Record every note ending in ``suffix`` and remove it; one that is not a note goes to
    ``rejected/``; one that cannot be recorded now (PostgreSQL away: the outage journal
    takes it, else it) stays for a later sweep: the next one, or with ``retries`` the first
    after its wait. With ``record_many``, the notes are first recorded all together
    (cheaper per note), and one by one only if that fails. Returns how many were
    recorded."""
    found = await asyncio.to_thread(read_notes, directory, suffix, parse)
    if retries is not None:
        retries.keep_only([path for path, _ in found])
        found = [(path, note) for path, note in found if retries.due(path)]
    done: list[Path] = []
    if record_many is not None and len(found) > 1:
        try:
            await record_many([note for _, note in found])
            done, found = [path for path, _ in found], []
        except Exception as exc:
            log.warning("notes not recorded together (%s); one by one", _said(exc))
    for path, note in found:
        try:
            await record(note)
        except Exception as exc:
            # Never dropped: the note stays and a later sweep tries again. (A note may name
            # a call the database does not have yet, its decision still in the outage
            # journal: the replay stores it, and the note is then recorded.)
            wait = retries.failed(path) if retries is not None else 0.0
            log.exception("could not record the call of a note (%s); it stays, tried again "
                          "%s (a call whose decision is still in the outage journal is "
                          "recorded once the journal is replayed)", _said(exc),
                          f"in {wait:g} s" if wait else "at the next sweep",
                          extra={"file": path.name})
            continue
        done.append(path)
    await asyncio.to_thread(_remove, done)
    return len(done)


def _said(exc: Exception) -> str:
    """The first line of what an error says (a database's error runs to many)."""
    return str(exc).splitlines()[0][:200] if str(exc) else type(exc).__name__


def _remove(paths: list[Path]) -> None:
    for path in paths:
        path.unlink(missing_ok=True)


def _reject(path: Path) -> None:
    rejected = path.parent / "rejected"
    try:
        rejected.mkdir(mode=0o750, exist_ok=True)
        path.replace(rejected / path.name)
    except OSError as exc:
        log.error("could not move the note aside: %s", exc, extra={"file": path.name})
