"""The policy's figures, read from PostgreSQL at scrape time: they are right across restarts
and across several service instances sharing one database, because the database is the
only place they are kept.

One statement, one round trip: every figure is an aggregate over one table (a ``UNION ALL``
of small ``GROUP BY`` selects), each row tagged with the figure it belongs to. The cost of
a scrape must not grow with the years of calls kept, so what grows with the traffic is
counted over the last day only (calls by their start, closed callbacks by their due time,
deletions by their time); the open items (callbacks, revocations, recordings past expiry)
are read through the indexes the tables already have. With all-time counts over 500 000
calls the statement took 0.7 s; a day's window is read through ``ix_calls_started_at``.

Deadlines are those of the policy and of :mod:`ivr.jobs.deletion`: a callback is due at
``due_at`` (rule 4); a revocation's deadline is met when it was fulfilled by the end of its
deadline day in the call centre's time zone (rule 8); a recording's deletion deadline is
the end of the local day its retention ends on (rule 6).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import (
    ColumnElement,
    Date,
    DateTime,
    Float,
    Integer,
    Select,
    SQLColumnExpression,
    Text,
    case,
    cast,
    func,
    literal,
    literal_column,
    null,
    select,
    union_all,
)

from ivr.policy.deadlines import working_days_after
from ivr.store.database import Database
from ivr.store.models import Call, Callback, Decision, DeletionCertificate, Recording, Revocation

# What grows with the traffic is counted over the day before the scrape; calls also over
# the hour before it (a consent rate that drops shows there first).
DAY = timedelta(hours=24)
HOUR = timedelta(hours=1)
LABELS = 5  # label columns of a figure row: k1 .. k5


@dataclass(frozen=True, slots=True)
class CallCount:
    """Calls of one kind that started in the last day: line, direction, decision and
    whether the notice ended."""

    line: str | None
    kind: str | None  # sales | service | None (the number is on no configured line)
    direction: str
    decision: str | None  # None: no decision stored (yet)
    notice_completed: bool | None  # None: not known (still in progress, or no notice)
    last_day: int
    last_hour: int  # of ``last_day``, started in the last hour


@dataclass(frozen=True, slots=True)
class PolicyFigures:
    """What the database says at ``read_at``; each mapping is keyed by its labels."""

    read_at: datetime
    seconds: float  # how long the read took
    calls: tuple[CallCount, ...] = ()
    # (due | overdue, overload) -> open callbacks
    callbacks_open: Mapping[tuple[str, bool], int] = field(default_factory=dict)
    next_callback_due: datetime | None = None
    # (done | failed | cancelled, closed by its due time) -> callbacks due in the last day
    # and closed
    callbacks_closed: Mapping[tuple[str, bool], int] = field(default_factory=dict)
    # deadline met -> fulfilled revocations
    revocations_fulfilled: Mapping[bool, int] = field(default_factory=dict)
    # on_time | at_risk | overdue -> open revocations
    revocations_open: Mapping[str, int] = field(default_factory=dict)
    # (retention | revocation, deadline met, the file existed) -> recordings deleted in
    # the last day
    deletions: Mapping[tuple[str, bool, bool], int] = field(default_factory=dict)
    # retention | revocation -> recordings whose deletion failed, retried at every run
    deletions_failing: Mapping[str, int] = field(default_factory=dict)
    # at_risk | missed -> recordings kept past their expiry
    past_expiry: Mapping[str, int] = field(default_factory=dict)
    oldest_expiry: datetime | None = None


@dataclass(frozen=True, slots=True)
class Moments:
    """The instants and local dates the figures are measured against."""

    now: datetime
    today: date  # the local date in the call centre's time zone
    at_risk_until: date  # the first working day after today: deadlines up to it are at risk
    timezone: str

    @classmethod
    def at(cls, now: datetime, timezone: str, country: str) -> Moments:
        if now.tzinfo is None:
            raise ValueError("the scrape time must carry its time zone")
        return cls(now, now.astimezone(ZoneInfo(timezone)).date(),
                   working_days_after(now, 1, country, timezone), timezone)


def _row(figure: str, labels: Sequence[SQLColumnExpression[Any]],
         count: SQLColumnExpression[Any],
         extra: SQLColumnExpression[Any] | None = None) -> list[ColumnElement[Any]]:
    """The columns of one figure row: its name, five text labels, a count and a number."""
    padded = [cast(label, Text) for label in labels]
    padded += [cast(null(), Text)] * (LABELS - len(padded))
    return [literal(figure, Text).label("figure"),
            *(column.label(f"k{i}") for i, column in enumerate(padded, 1)),
            cast(count, Integer).label("n"),
            cast(extra if extra is not None else null(), Float).label("x")]


def _epoch(moment: SQLColumnExpression[Any]) -> ColumnElement[Any]:
    return func.extract("epoch", moment)


def _local_date(moment: SQLColumnExpression[Any], tz: str) -> ColumnElement[Any]:
    return cast(func.timezone(tz, moment), Date)


def figures_statement(at: Moments) -> Select[Any]:
    """The one statement that reads every figure."""
    tz = at.timezone
    # Literal predicates where a partial index has them: a bound parameter would stop
    # PostgreSQL from matching the index once psycopg prepares the statement.
    callback_open = Callback.status == literal_column("'open'")
    # Each call's decision looked up by its unique index (a join would hash every decision).
    decision = (select(Decision.decision).where(Decision.call_id == Call.id)
                .correlate(Call).scalar_subquery())
    day = (select(Call.line_name, Call.line_kind, Call.direction, decision.label("decision"),
                  Call.notice_completed, Call.started_at)
           .where(Call.started_at >= at.now - DAY).subquery("day"))
    c = day.c
    calls = (select(*_row("calls", [c.line_name, c.line_kind, c.direction, c.decision,
                                    c.notice_completed],
                          func.count(), func.count().filter(c.started_at >= at.now - HOUR)))
             .group_by(c.line_name, c.line_kind, c.direction, c.decision, c.notice_completed))
    overdue = case((Callback.due_at < at.now, "overdue"), else_="due")
    callbacks_open = (select(*_row("callbacks_open", [overdue, Callback.overload],
                                   func.count(), _epoch(func.min(Callback.due_at))))
                      .where(callback_open).group_by(overdue, Callback.overload))
    in_time = Callback.closed_at <= Callback.due_at
    callbacks_closed = (select(*_row("callbacks_closed", [Callback.status, in_time],
                                     func.count()))
                        .where(Callback.status != literal_column("'open'"),
                               Callback.due_at >= at.now - DAY)
                        .group_by(Callback.status, in_time))
    # Met when fulfilled before the local midnight that ends the deadline day.
    deadline_over = func.timezone(tz, cast(Revocation.deadline + literal_column("1", Integer),
                                           DateTime))
    met = Revocation.fulfilled_at < deadline_over
    revocations_fulfilled = (select(*_row("revocations_fulfilled", [met], func.count()))
                             .where(Revocation.fulfilled_at.is_not(None)).group_by(met))
    state = case((Revocation.deadline < at.today, "overdue"),
                 (Revocation.deadline <= at.at_risk_until, "at_risk"), else_="on_time")
    revocations_open = (select(*_row("revocations_open", [state], func.count()))
                        .where(Revocation.fulfilled_at.is_(None)).group_by(state))
    deletions = (select(*_row("deletions", [DeletionCertificate.reason, DeletionCertificate.met,
                                            DeletionCertificate.file_existed], func.count()))
                 .where(DeletionCertificate.deleted_at >= at.now - DAY)
                 .group_by(DeletionCertificate.reason, DeletionCertificate.met,
                           DeletionCertificate.file_existed))
    # A failing deletion is of an expired recording (found through the expiry index) or
    # of one an open revocation covers (through the caller's calls): a recording both would
    # be is counted under each reason.
    failing_expired = (select(*_row("deletions_failing", [literal("retention", Text)],
                                    func.count()))
                       .where(Recording.deleted_at.is_(None), Recording.expires_at <= at.now,
                              Recording.deletion_error.is_not(None)))
    # What an open revocation covers, as the deletion job takes it: the caller's consent
    # recordings that started before the revocation was received.
    revoked = (select(Recording.id).join(Call, Call.id == Recording.call_id)
               .join(Revocation, Revocation.caller == Call.caller)
               .where(Revocation.fulfilled_at.is_(None), Recording.basis == "consent",
                      Recording.started_at <= Revocation.received_at))
    failing_revoked = (select(*_row("deletions_failing", [literal("revocation", Text)],
                                    func.count()))
                       .where(Recording.deleted_at.is_(None), Recording.id.in_(revoked),
                              Recording.deletion_error.is_not(None)))
    missed = case((_local_date(Recording.expires_at, tz) < at.today, "missed"),
                  else_="at_risk")
    past_expiry = (select(*_row("past_expiry", [missed], func.count(),
                                _epoch(func.min(Recording.expires_at))))
                   .where(Recording.deleted_at.is_(None), Recording.not_started_at.is_(None),
                          Recording.expires_at <= at.now)
                   .group_by(missed))
    union = union_all(calls, callbacks_open, callbacks_closed, revocations_fulfilled,
                      revocations_open, deletions, failing_expired, failing_revoked,
                      past_expiry).subquery()
    return select(union)


def _flag(value: str | None) -> bool | None:
    return None if value is None else value == "true"


def _moment(epoch: float | None, tz: str) -> datetime | None:
    return None if epoch is None else datetime.fromtimestamp(epoch, ZoneInfo(tz))


def figures_from_rows(rows: Sequence[Sequence[Any]], at: Moments,
                      seconds: float) -> PolicyFigures:
    """The rows of :func:`figures_statement`, sorted into their figures."""
    calls: list[CallCount] = []
    callbacks_open: dict[tuple[str, bool], int] = {}
    callbacks_closed: dict[tuple[str, bool], int] = {}
    fulfilled: dict[bool, int] = {}
    revocations_open: dict[str, int] = {}
    deletions: dict[tuple[str, bool, bool], int] = {}
    past_expiry: dict[str, int] = {}
    failing: dict[str, int] = {}
    next_due: list[float] = []
    oldest: list[float] = []
    for figure, k1, k2, k3, k4, k5, n, x in rows:
        count = int(n)
        if figure == "calls":
            calls.append(CallCount(k1, k2, k3, k4, _flag(k5), count, int(x)))
        elif figure == "callbacks_open":
            callbacks_open[(k1, k2 == "true")] = count
            next_due.append(float(x))
        elif figure == "callbacks_closed":
            callbacks_closed[(k1, k2 == "true")] = count
        elif figure == "revocations_fulfilled":
            fulfilled[k1 == "true"] = count
        elif figure == "revocations_open":
            revocations_open[k1] = count
        elif figure == "deletions":
            deletions[(k1, k2 == "true", k3 == "true")] = count
        elif figure == "deletions_failing":
            failing[k1] = count
        elif figure == "past_expiry":
            past_expiry[k1] = count
            oldest.append(float(x))
        else:
            raise ValueError(f"unknown figure {figure!r} in the figures' rows")
    return PolicyFigures(
        read_at=at.now, seconds=seconds, calls=tuple(calls), callbacks_open=callbacks_open,
        next_callback_due=_moment(min(next_due, default=None), at.timezone),
        callbacks_closed=callbacks_closed, revocations_fulfilled=fulfilled,
        revocations_open=revocations_open, deletions=deletions, deletions_failing=failing,
        past_expiry=past_expiry, oldest_expiry=_moment(min(oldest, default=None), at.timezone))


async def read_policy_figures(db: Database, at: Moments,
                              wait_seconds: float) -> PolicyFigures:
    """Every figure in one round trip. Raises ``TimeoutError`` after ``wait_seconds``
    (psycopg cancels the statement on the server) and the driver's errors as they come."""
    started = time.perf_counter()
    async with asyncio.timeout(wait_seconds), db.engine.connect() as connection:
        rows = (await connection.execute(figures_statement(at))).all()
    return figures_from_rows(rows, at, time.perf_counter() - started)
