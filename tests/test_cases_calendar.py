"""Working-day calendar: working hours, nights, weekends, holidays and 调休 make-up days."""

from __future__ import annotations

from datetime import date, datetime, time
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from hub.cases.calendar import NO_OFFICIAL_DAYS, Basis, WorkingCalendar, deadline, elapsed
from hub.cases.policies import load_policies

SH = ZoneInfo("Asia/Shanghai")
H = 3600.0

CAL = WorkingCalendar(
    holidays=frozenset(date(2026, 10, d) for d in range(1, 8)),
    makeup_days=frozenset({date(2026, 10, 10)}),
)


def ts(y: int, mo: int, d: int, h: int, mi: int = 0, zone: ZoneInfo = SH) -> float:
    return datetime(y, mo, d, h, mi, tzinfo=zone).timestamp()


def test_day_seconds_default_hours() -> None:
    assert CAL.day_seconds == 7.5 * H


def test_inside_one_period() -> None:
    assert CAL.add_working(ts(2026, 11, 18, 9), 2 * H) == ts(2026, 11, 18, 11)
    assert CAL.elapsed_working(ts(2026, 11, 18, 9), ts(2026, 11, 18, 11)) == 2 * H


def test_lunch_break_is_skipped() -> None:
    # 11:00 + 2 h: one hour before lunch, one after 13:30.
    assert CAL.add_working(ts(2026, 11, 18, 11), 2 * H) == ts(2026, 11, 18, 14, 30)
    assert CAL.elapsed_working(ts(2026, 11, 18, 11), ts(2026, 11, 18, 14, 30)) == 2 * H


def test_across_midnight_starts_next_morning() -> None:
    # Filed at 22:00 Wednesday: counting starts Thursday 08:30.
    assert CAL.add_working(ts(2026, 11, 18, 22), 1 * H) == ts(2026, 11, 19, 9, 30)
    assert CAL.elapsed_working(ts(2026, 11, 18, 22), ts(2026, 11, 19, 7)) == 0


def test_weekend_is_skipped() -> None:
    # Friday 17:00 + 1 h: 30 min Friday, 30 min Monday.
    assert CAL.add_working(ts(2026, 11, 20, 17), 1 * H) == ts(2026, 11, 23, 9)
    assert CAL.elapsed_working(ts(2026, 11, 20, 17), ts(2026, 11, 23, 9)) == 1 * H


def test_holidays_and_makeup_day() -> None:
    # Wed 30 Sep 17:00 + 1 h: 30 min on the 30th; 1–7 Oct holidays; Thu 8 Oct 09:00.
    assert CAL.add_working(ts(2026, 9, 30, 17), 1 * H) == ts(2026, 10, 8, 9)
    # Sat 10 Oct is a make-up working day (调休); Sun 11 Oct is not.
    assert CAL.is_working_day(date(2026, 10, 10)) and not CAL.is_working_day(date(2026, 10, 11))
    assert CAL.add_working(ts(2026, 10, 9, 17), 1 * H) == ts(2026, 10, 10, 9)
    assert CAL.elapsed_working(ts(2026, 10, 10, 0), ts(2026, 10, 12, 0)) == 7.5 * H


def test_limit_ending_at_period_end_stays_there() -> None:
    assert CAL.add_working(ts(2026, 11, 18, 16, 30), 1 * H) == ts(2026, 11, 18, 17, 30)


def test_zero_and_reversed() -> None:
    t = ts(2026, 11, 21, 3)
    assert CAL.add_working(t, 0) == t
    assert CAL.elapsed_working(t + 10, t) == 0


def test_calendar_basis_counts_wall_clock() -> None:
    t = ts(2026, 11, 20, 17)
    assert deadline(t, 3 * H, basis=Basis.CALENDAR, calendar=CAL) == t + 3 * H
    assert elapsed(t, t + 5, basis=Basis.CALENDAR, calendar=CAL) == 5


def test_zone_with_dst_uses_local_wall_clock() -> None:
    berlin = WorkingCalendar(zone="Europe/Berlin", hours=(("09:00", "17:00"),))  # type: ignore[arg-type]
    # Friday 27 March 2026 16:00 + 2 h → Monday 30 March 10:00 local, after the DST change.
    start = ts(2026, 3, 27, 16, zone=ZoneInfo("Europe/Berlin"))
    assert berlin.add_working(start, 2 * H) == ts(2026, 3, 30, 10, zone=ZoneInfo("Europe/Berlin"))


def test_invalid_calendars_are_refused() -> None:
    with pytest.raises(ValidationError):
        WorkingCalendar(zone="Mars/Olympus")
    with pytest.raises(ValidationError):
        WorkingCalendar(hours=(("13:00", "12:00"),))  # type: ignore[arg-type]
    with pytest.raises(ValidationError):
        WorkingCalendar(hours=(("13:00", "14:00"), ("08:00", "09:00")))  # type: ignore[arg-type]


def test_shipped_calendar_has_2026_holidays() -> None:
    cal = load_policies().calendar
    assert not cal.is_working_day(date(2026, 2, 16))  # 春节
    assert cal.is_working_day(date(2026, 2, 14))  # Saturday, 调休上班
    assert not cal.is_working_day(date(2026, 11, 21))  # an ordinary Saturday


@settings(max_examples=200, deadline=None)
@given(
    start=st.floats(ts(2026, 9, 20, 0), ts(2026, 12, 31, 0)),
    seconds=st.floats(0, 40 * H),
)
def test_add_and_elapsed_are_inverse(start: float, seconds: float) -> None:
    end = CAL.add_working(start, seconds)
    assert end >= start
    assert CAL.elapsed_working(start, end) == pytest.approx(seconds, abs=1e-3)


def test_a_calendar_that_has_answered_is_the_same_calendar() -> None:
    """Days' periods and the official days are worked out once and kept, outside what pydantic
    compares: a calendar equal to another stays equal after answering, and a copy over other
    official days answers from those days, not from the original's memo."""
    used, fresh = WorkingCalendar(), WorkingCalendar()
    assert used.periods(date(2026, 10, 1)) == ()  # National Day, from the official days
    assert used.periods(date(2026, 10, 1)) is used.periods(date(2026, 10, 1))  # kept
    assert used == fresh and hash(used) == hash(fresh)
    bare = used.with_official(NO_OFFICIAL_DAYS)
    assert bare.periods(date(2026, 10, 1)) == (
        (ts(2026, 10, 1, 8, 30), ts(2026, 10, 1, 12)),
        (
            ts(2026, 10, 1, 13, 30),
            ts(2026, 10, 1, 17, 30),
        ),
    )
    assert used.periods(date(2026, 10, 1)) == ()


def test_a_copy_with_other_hours_works_out_its_own_periods() -> None:
    """pydantic's ``model_copy`` copies the instance's cached values: a copy with other hours
    answered a day the original had answered with the original's periods (found by review)."""
    day = date(2026, 12, 3)
    original = WorkingCalendar()
    assert original.periods(day)[0][0] == ts(2026, 12, 3, 8, 30)
    shorter = original.model_copy(update={"hours": ((time(9, 0), time(10, 0)),)})
    assert shorter.periods(day) == ((ts(2026, 12, 3, 9), ts(2026, 12, 3, 10)),)
    assert shorter.period_memo is not original.period_memo


def test_a_copy_in_another_zone_works_out_its_own_zone() -> None:
    """The zone is cached too: a copy in another zone kept the original's (found by review)."""
    original = WorkingCalendar()
    original.periods(date(2026, 12, 3))
    london = original.model_copy(update={"zone": "Europe/London"})
    assert str(london.tz) == "Europe/London"
    assert london.periods(date(2026, 12, 7))[0][0] == ts(2026, 12, 7, 8, 30, zone=ZoneInfo("Europe/London"))
