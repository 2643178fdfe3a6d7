"""Rule 8 (deletion within 5 working days of a revocation, Slovenian calendar) and rule 6
(6 months from creation) in calendar terms."""

from __future__ import annotations

from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo

import holidays
import pytest
from hypothesis import given
from hypothesis import strategies as st

from ivr.policy.deadlines import (
    deadline_end,
    is_working_day,
    retention_expiry,
    work_calendar,
    working_days_after,
)

LJUBLJANA = ZoneInfo("Europe/Ljubljana")


def local(year: int, month: int, day: int, hour: int = 10, minute: int = 0) -> datetime:
    return datetime(year, month, day, hour, minute, tzinfo=LJUBLJANA)


# Rule 8: the calendar --------------------------------------------------------------------

@pytest.mark.parametrize("day", [
    date(2026, 12, 25),  # Christmas, a Friday
    date(2029, 12, 26),  # Independence and Unity Day, a Wednesday
    date(2026, 1, 1),  # New Year's Day, a Thursday
    date(2026, 1, 2),  # the second New Year's Day, a Friday
    date(2027, 2, 8),  # Prešeren Day, a Monday
    date(2026, 4, 6),  # Easter Monday
])
def test_rule_8_slovenian_public_holidays_are_not_working_days(day: date) -> None:
    assert not is_working_day(day, "SI")


def test_rule_8_weekends_are_not_working_days_and_christmas_eve_is_one() -> None:
    assert not is_working_day(date(2026, 12, 19))  # Saturday
    assert not is_working_day(date(2026, 12, 20))  # Sunday
    assert is_working_day(date(2026, 12, 24))  # Thursday, Christmas Eve: not a holiday
    assert is_working_day(date(2026, 12, 31))  # Thursday, New Year's Eve: not a holiday


def test_rule_8_the_calendar_is_built_once_per_country_and_year() -> None:
    work_calendar.cache_clear()
    for day in range(1, 32):
        is_working_day(date(2026, 12, day))
    info = work_calendar.cache_info()
    assert (info.misses, info.currsize) == (1, 1)
    is_working_day(date(2027, 1, 4))
    is_working_day(date(2027, 1, 4), "AT")
    assert work_calendar.cache_info().currsize == 3


def test_rule_8_an_unknown_country_is_refused() -> None:
    with pytest.raises(ValueError, match="'XX'"):
        is_working_day(date(2026, 12, 24), "XX")


# Rule 8: the deadline --------------------------------------------------------------------

def test_rule_8_friday_before_christmas_skips_christmas_and_independence_day() -> None:
    # Fri 18 Dec: day 1 Mon 21, 2 Tue 22, 3 Wed 23, 4 Thu 24; Fri 25 Christmas,
    # Sat 26 Independence and Unity Day, Sun 27; day 5 Mon 28.
    assert working_days_after(local(2026, 12, 18), 5) == date(2026, 12, 28)


def test_rule_8_between_christmas_and_new_year_skips_both_new_year_days() -> None:
    # Mon 28 Dec: 29, 30, 31 Dec; Fri 1 Jan and Sat 2 Jan holidays, Sun 3; Mon 4, Tue 5.
    assert working_days_after(local(2026, 12, 28), 5) == date(2027, 1, 5)
    # Wed 23 Dec: Thu 24, (25, 26, 27), Mon 28, 29, 30, Thu 31.
    assert working_days_after(local(2026, 12, 23), 5) == date(2026, 12, 31)


def test_rule_8_the_second_of_january_is_a_holiday_on_a_weekday_too() -> None:
    # Mon 29 Dec 2025: 30, 31 Dec; Thu 1 and Fri 2 Jan 2026 holidays, weekend; 5, 6, 7 Jan.
    assert working_days_after(local(2025, 12, 29), 5) == date(2026, 1, 7)


def test_rule_8_received_on_a_saturday_counts_from_monday_as_day_1() -> None:
    # Sat 19 Dec: Mon 21 is day 1 ... Thu 24 day 4, (25, 26, 27), Mon 28 day 5.
    assert working_days_after(local(2026, 12, 19), 5) == date(2026, 12, 28)
    # An ordinary weekend: Sat 14 Nov 2026 -> Mon 16 .. Fri 20.
    assert working_days_after(local(2026, 11, 14), 5) == date(2026, 11, 20)


def test_rule_8_received_on_a_public_holiday_counts_from_the_next_working_day() -> None:
    # Fri 25 Dec (Christmas): Mon 28 day 1, 29, 30, 31, (1, 2, 3 Jan), Mon 4 Jan day 5.
    assert working_days_after(local(2026, 12, 25), 5) == date(2027, 1, 4)


def test_rule_8_late_at_night_the_local_date_counts() -> None:
    # 23:30 UTC on Fri 18 Dec is 00:30 on Sat 19 Dec in Ljubljana: received on Saturday.
    late = datetime(2026, 12, 18, 23, 30, tzinfo=UTC)
    assert late.astimezone(LJUBLJANA).date() == date(2026, 12, 19)
    assert working_days_after(late, 5) == date(2026, 12, 28)
    # 22:30 UTC on Thu 17 Dec is 23:30 on Thursday: day 5 is Thu 24 Dec.
    assert working_days_after(datetime(2026, 12, 17, 22, 30, tzinfo=UTC), 5) == date(
        2026, 12, 24)
    # In summer (UTC+2) local midnight is 22:00 UTC: Thu 2 Jul 2026 at 23:59 local counts
    # Friday as day 1; a minute later it is Friday, and day 1 is Monday.
    assert working_days_after(datetime(2026, 7, 2, 21, 59, tzinfo=UTC), 1) == date(2026, 7, 3)
    assert working_days_after(datetime(2026, 7, 2, 22, 0, tzinfo=UTC), 1) == date(2026, 7, 6)


def test_rule_8_zero_days_is_the_day_of_receipt_itself() -> None:
    assert working_days_after(local(2026, 12, 18), 0) == date(2026, 12, 18)
    assert working_days_after(local(2026, 12, 25), 0) == date(2026, 12, 25)  # holiday or not
    assert working_days_after(datetime(2026, 12, 18, 23, 30, tzinfo=UTC), 0) == date(
        2026, 12, 19)


def test_rule_8_one_day_is_the_next_working_day() -> None:
    assert working_days_after(local(2026, 12, 24), 1) == date(2026, 12, 28)


def test_rule_8_refuses_a_naive_time_and_negative_days() -> None:
    with pytest.raises(ValueError, match="time zone"):
        working_days_after(datetime(2026, 12, 18, 10, 0), 5)
    with pytest.raises(ValueError, match="negative"):
        working_days_after(local(2026, 12, 18), -1)


def test_rule_8_the_deadline_ends_at_local_midnight() -> None:
    end = deadline_end(date(2026, 12, 28), "Europe/Ljubljana")
    assert end.tzinfo is not None
    assert end.astimezone(UTC) == datetime(2026, 12, 28, 22, 59, 59, 999999, tzinfo=UTC)
    assert local(2026, 12, 28, 23, 59) <= end  # met
    assert datetime(2026, 12, 28, 23, 0, tzinfo=UTC) > end  # 00:00 on the 29th: missed
    summer = deadline_end(date(2026, 7, 6), "Europe/Ljubljana")
    assert summer.astimezone(UTC) == datetime(2026, 7, 6, 21, 59, 59, 999999, tzinfo=UTC)


def _independent_working_day(day: date) -> bool:
    """The Slovenian calendar straight from the holidays package, not through our cache."""
    return day.weekday() < 5 and day not in holidays.country_holidays("SI", years=day.year)


@given(
    received=st.datetimes(min_value=datetime(2020, 1, 1), max_value=datetime(2035, 12, 31),
                          timezones=st.just(UTC)),
    days=st.integers(min_value=1, max_value=30),
)
def test_rule_8_property_the_deadline_is_the_nth_working_day_after_receipt(
        received: datetime, days: int) -> None:
    deadline = working_days_after(received, days)
    received_day = received.astimezone(LJUBLJANA).date()
    assert deadline > received_day
    assert _independent_working_day(deadline)
    between = [received_day + timedelta(days=n)
               for n in range(1, (deadline - received_day).days + 1)]
    assert sum(_independent_working_day(day) for day in between) == days


# Rule 6: retention -----------------------------------------------------------------------

@pytest.mark.parametrize(("created", "expires"), [
    (local(2026, 8, 31), local(2027, 2, 28)),  # 31 Aug -> end of February
    (local(2027, 8, 31), local(2028, 2, 29)),  # leap year
    (local(2026, 9, 30), local(2027, 3, 30)),
    (local(2026, 10, 31), local(2027, 4, 30)),  # 31 -> a 30-day month
    (local(2026, 12, 31), local(2027, 6, 30)),
    (local(2027, 1, 31), local(2027, 7, 31)),
    (local(2026, 2, 28), local(2026, 8, 28)),  # a month end that is not a 31st stays the 28th
])
def test_rule_6_six_months_later_clamped_to_the_month_end(
        created: datetime, expires: datetime) -> None:
    assert retention_expiry(created, 6, "Europe/Ljubljana") == expires


def test_rule_6_the_local_date_of_creation_counts() -> None:
    # 23:30 UTC on 31 Aug is 01:30 on 1 Sept in Ljubljana: 1 March, not end of February.
    expiry = retention_expiry(datetime(2026, 8, 31, 23, 30, tzinfo=UTC), 6, "Europe/Ljubljana")
    assert expiry.tzinfo is not None
    assert expiry.astimezone(LJUBLJANA).replace(tzinfo=None) == datetime(2027, 3, 1, 1, 30)


def test_rule_6_daylight_saving_changes_keep_the_local_wall_time() -> None:
    # Summer (UTC+2) to winter (UTC+1): 10:00 stays 10:00, one hour later in UTC.
    expiry = retention_expiry(datetime(2026, 8, 15, 8, 0, tzinfo=UTC), 6, "Europe/Ljubljana")
    assert expiry.astimezone(LJUBLJANA).time() == time(10, 0)
    assert expiry.astimezone(UTC) == datetime(2027, 2, 15, 9, 0, tzinfo=UTC)
    # Winter to summer: 10:00 stays 10:00, one hour earlier in UTC.
    expiry = retention_expiry(datetime(2027, 1, 15, 9, 0, tzinfo=UTC), 6, "Europe/Ljubljana")
    assert expiry.astimezone(LJUBLJANA).time() == time(10, 0)
    assert expiry.astimezone(UTC) == datetime(2027, 7, 15, 8, 0, tzinfo=UTC)


def test_rule_6_a_wall_time_that_does_not_exist_takes_the_earlier_instant() -> None:
    # 02:30 on 28 Sept 2026 (summer); 28 March 2027 jumps from 02:00 to 03:00.
    expiry = retention_expiry(local(2026, 9, 28, 2, 30), 6, "Europe/Ljubljana")
    assert expiry.astimezone(UTC) == datetime(2027, 3, 28, 0, 30, tzinfo=UTC)  # 01:30 CET


def test_rule_6_a_wall_time_that_exists_twice_takes_the_earlier_instant() -> None:
    # 02:30 on 25 April 2026; 25 Oct 2026 has 02:30 twice (CEST, then CET).
    expiry = retention_expiry(local(2026, 4, 25, 2, 30), 6, "Europe/Ljubljana")
    assert expiry.astimezone(UTC) == datetime(2026, 10, 25, 0, 30, tzinfo=UTC)  # 02:30 CEST


def test_rule_6_refuses_a_naive_creation_time() -> None:
    with pytest.raises(ValueError, match="time zone"):
        retention_expiry(datetime(2026, 8, 31, 10, 0), 6, "Europe/Ljubljana")


# Rule 8: the holidays the issue names, counted by hand and cross-checked ----------------

def _holidays_package_deadline(received_day: date, days: int) -> date:
    """The deadline as the holidays package counts it (its own working-day arithmetic)."""
    calendar = holidays.country_holidays("SI", years=range(received_day.year,
                                                            received_day.year + 2))
    return calendar.get_nth_working_day(received_day, days)


@pytest.mark.parametrize(("received", "holiday", "holiday_name", "expected"), [
    # Fri 26 Mar 2027; Sat 27, Sun 28 (Easter), Mon 29 Easter Monday; day 1 Tue 30,
    # 2 Wed 31, 3 Thu 1 Apr, 4 Fri 2 Apr, (Sat 3, Sun 4), 5 Mon 5 Apr.
    (date(2027, 3, 26), date(2027, 3, 29), "Easter Monday", date(2027, 4, 5)),
    # Thu 24 Jun 2027; Fri 25 Statehood Day, Sat 26, Sun 27; day 1 Mon 28, 2 Tue 29,
    # 3 Wed 30, 4 Thu 1 Jul, 5 Fri 2 Jul.
    (date(2027, 6, 24), date(2027, 6, 25), "Statehood Day", date(2027, 7, 2)),
    # Wed 24 Jun 2026; Thu 25 Statehood Day; day 1 Fri 26, (27, 28), 2 Mon 29, 3 Tue 30,
    # 4 Wed 1 Jul, 5 Thu 2 Jul.
    (date(2026, 6, 24), date(2026, 6, 25), "Statehood Day", date(2026, 7, 2)),
    # Mon 30 Oct 2028; Tue 31 Reformation Day, Wed 1 Nov Remembrance Day; day 1 Thu 2,
    # 2 Fri 3, (4, 5), 3 Mon 6, 4 Tue 7, 5 Wed 8 Nov.
    (date(2028, 10, 30), date(2028, 10, 31), "Reformation Day", date(2028, 11, 8)),
    # Fri 22 Dec 2028; Sat 23, Sun 24, Mon 25 Christmas, Tue 26 Independence and Unity
    # Day; day 1 Wed 27, 2 Thu 28, 3 Fri 29, (Sat 30, Sun 31, Mon 1 Jan, Tue 2 Jan 2029
    # New Year), 4 Wed 3 Jan, 5 Thu 4 Jan 2029.
    (date(2028, 12, 22), date(2028, 12, 26), "Independence and Unity Day",
     date(2029, 1, 4)),
])
def test_rule_8_five_working_days_from_the_working_day_before_a_named_holiday(
        received: date, holiday: date, holiday_name: str, expected: date) -> None:
    si = holidays.country_holidays("SI", years=holiday.year)
    assert holiday_name in si.get_list(holiday)
    assert is_working_day(received) and not is_working_day(holiday)
    deadline = working_days_after(local(received.year, received.month, received.day), 5)
    assert deadline == expected
    assert _holidays_package_deadline(received, 5) == expected


@pytest.mark.parametrize(("friday", "holiday_monday", "expected"), [
    # Fri 26 Mar 2027 19:30 CET (18:30 UTC) is still Friday: Mon 29 Easter Monday;
    # Tue 30, Wed 31, Thu 1, Fri 2 Apr, Mon 5 Apr.
    (date(2027, 3, 26), date(2027, 3, 29), date(2027, 4, 5)),
    # Fri 29 Oct 2027 19:30 CEST (17:30 UTC): Sun 31 Reformation Day, Mon 1 Nov
    # Remembrance Day; Tue 2, Wed 3, Thu 4, Fri 5, Mon 8 Nov.
    (date(2027, 10, 29), date(2027, 11, 1), date(2027, 11, 8)),
    # Fri 5 Feb 2027 19:30 CET: Mon 8 Feb Preseren Day; Tue 9 .. Fri 12, Mon 15 Feb.
    (date(2027, 2, 5), date(2027, 2, 8), date(2027, 2, 15)),
])
def test_rule_8_received_on_a_friday_evening_before_a_holiday_monday(
        friday: date, holiday_monday: date, expected: date) -> None:
    assert friday.weekday() == 4 and holiday_monday.weekday() == 0
    assert not is_working_day(holiday_monday)
    evening = local(friday.year, friday.month, friday.day, 19, 30)
    assert evening.astimezone(UTC).date() == friday  # the same day in UTC as well
    assert working_days_after(evening, 5) == expected
    assert working_days_after(evening.astimezone(UTC), 5) == expected
    assert _holidays_package_deadline(friday, 5) == expected
    # Day 1 is the Tuesday after the holiday Monday, not the Monday.
    assert working_days_after(evening, 1) == holiday_monday + timedelta(days=1)
