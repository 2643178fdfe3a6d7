"""Rule 6: a recording is kept for N calendar months from its creation, then deleted.

A month later than the 31st is the last day of the shorter month: a recording made on
31 August expires at the same time of day on the last day of February.
"""

from __future__ import annotations

import calendar
from datetime import datetime


def add_months(moment: datetime, months: int) -> datetime:
    """``moment`` plus whole calendar months, clamped to the month's last day.

    >>> from datetime import datetime, UTC
    >>> add_months(datetime(2026, 8, 31, 10, 0, tzinfo=UTC), 6).date().isoformat()
    '2027-02-28'
    >>> add_months(datetime(2027, 8, 31, 10, 0, tzinfo=UTC), 6).date().isoformat()
    '2028-02-29'
    """
    if months < 0:
        raise ValueError("months must not be negative")
    index = moment.month - 1 + months
    year, month = moment.year + index // 12, index % 12 + 1
    day = min(moment.day, calendar.monthrange(year, month)[1])
    return moment.replace(year=year, month=month, day=day)


def expires_at(created: datetime, months: int) -> datetime:
    """When a recording created at ``created`` must be gone."""
    if created.tzinfo is None:
        raise ValueError("a recording's creation time must carry its time zone")
    return add_months(created, months)
