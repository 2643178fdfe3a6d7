"""Rules 6 and 8 in calendar terms: when a revoked consent's recordings must be gone, and
when a recording's retention ends.

Rule 8: a recording is deleted "at the latest within N working days of receiving the
revocation". Working days are those of the country's calendar: not a weekend day and not
a public holiday (the ``holidays`` package, whose default category for Slovenia is the
work-free days). The counting, in the local time zone of the call centre:

* the day of receipt does not count: day 1 is the first working day after it;
* a revocation received on a non-working day (a weekend or a holiday) is therefore counted
  from the next working day, which is day 1. We do not treat it as received on that next
  working day (which would make the day after it day 1): that reading gives the controller
  one more day, and the policy says "at the latest", so the shorter reading is the safe one;
* the received *local* date is what counts: 23:30 UTC on a Friday in winter is already
  Saturday in Ljubljana.

Pure: no clock, no database. Holiday calendars are built once per (country, year).
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo

import holidays

from ivr.policy.retention import add_months

DEFAULT_COUNTRY = "SI"
DEFAULT_TIMEZONE = "Europe/Ljubljana"


@dataclass(frozen=True, slots=True)
class WorkCalendar:
    """One year of a country's calendar: its weekend days (``date.weekday()`` numbers)
    and its public holidays."""

    weekend: frozenset[int]
    holidays: frozenset[date]


@functools.cache
def work_calendar(country: str, year: int) -> WorkCalendar:
    """The country's calendar for ``year``; built once per (country, year).

    >>> date(2026, 12, 26) in work_calendar("SI", 2026).holidays
    True
    """
    try:
        calendar = holidays.country_holidays(country, years=year)
    except NotImplementedError:
        raise ValueError(f"no holiday calendar for country {country!r}") from None
    return WorkCalendar(weekend=frozenset(calendar.weekend), holidays=frozenset(calendar))


def is_working_day(day: date, country: str = DEFAULT_COUNTRY) -> bool:
    """Not a weekend day and not a public holiday in ``country``.

    >>> is_working_day(date(2026, 12, 24))  # Thursday, Christmas Eve: a working day
    True
    >>> is_working_day(date(2026, 12, 25))  # Christmas
    False
    >>> is_working_day(date(2027, 1, 2))  # Saturday, and the second of the New Year days
    False
    """
    calendar = work_calendar(country, day.year)
    return day.weekday() not in calendar.weekend and day not in calendar.holidays


def working_days_after(
    received: datetime,
    days: int,
    country: str = DEFAULT_COUNTRY,
    tz: str = DEFAULT_TIMEZONE,
) -> date:
    """The deadline: the ``days``-th working day after the local date of ``received``.

    ``days == 0`` is the local date of receipt itself (nothing to add), working day or not.

    Received on Friday 18 December 2026, 5 working days: 21, 22, 23, 24 December, then
    Christmas (Fri 25), Independence and Unity Day (Sat 26) and Sunday are skipped:

    >>> from datetime import UTC
    >>> working_days_after(datetime(2026, 12, 18, 10, 0, tzinfo=UTC), 5).isoformat()
    '2026-12-28'
    """
    if received.tzinfo is None:
        raise ValueError("the time a revocation was received must carry its time zone")
    if days < 0:
        raise ValueError("days must not be negative")
    day = received.astimezone(ZoneInfo(tz)).date()
    remaining = days
    while remaining:
        day += timedelta(days=1)
        if is_working_day(day, country):
            remaining -= 1
    return day


def deadline_end(deadline: date, tz: str = DEFAULT_TIMEZONE) -> datetime:
    """The last instant of the deadline day in ``tz``: a deletion at or before it met the
    deadline (``deleted_at <= deadline_end(...)``), anything later missed it.

    >>> deadline_end(date(2026, 12, 28)).isoformat()
    '2026-12-28T23:59:59.999999+01:00'
    """
    return datetime.combine(deadline, time.max, tzinfo=ZoneInfo(tz))


def retention_expiry(created: datetime, months: int, tz: str = DEFAULT_TIMEZONE) -> datetime:
    """When a recording created at ``created`` must be gone (rule 6), in ``tz``.

    The months are added to the local date and time, so the expiry keeps the local wall
    time across daylight-saving changes, and a day past the end of the shorter month
    becomes its last day (:func:`~ivr.policy.retention.add_months`). On the one night a
    year when that wall time does not exist (clocks go forward) or exists twice (clocks go
    back), the earlier instant is taken: a recording is never kept beyond its months.

    >>> from datetime import UTC
    >>> retention_expiry(datetime(2026, 8, 31, 8, 0, tzinfo=UTC), 6).isoformat()
    '2027-02-28T10:00:00+01:00'
    """
    if created.tzinfo is None:
        raise ValueError("a recording's creation time must carry its time zone")
    zone = ZoneInfo(tz)
    wall = add_months(created.astimezone(zone), months)
    earlier = min(wall.replace(fold=fold).astimezone(UTC) for fold in (0, 1))
    return earlier.astimezone(zone)
