"""The official working calendar: State Council holidays and 调休 from chinese_calendar, YAML overrides,
loud reporting of years without data, and roster shifts that follow the calendar.

Nothing here reads today's date: instants are explicit and the "current year" of the coverage check
comes from the ``now`` passed in.
"""

from __future__ import annotations

from datetime import date, datetime, time, timedelta
from zoneinfo import ZoneInfo

import pytest

from hub.cases.calendar import (
    NO_OFFICIAL_DAYS,
    DayRule,
    OfficialDays,
    OfficialSource,
    WorkingCalendar,
    chinese_calendar_days,
    official_coverage,
    shift_covers,
)
from hub.cases.policies import load_policies, policies_from
from hub.community.roster import Shift

SH = ZoneInfo("Asia/Shanghai")
H = 3600.0
DAY = 7.5 * H  # the default 08:30–12:00, 13:30–17:30


def ts(y: int, mo: int, d: int, h: int, mi: int = 0) -> float:
    return datetime(y, mo, d, h, mi, tzinfo=SH).timestamp()


def span(first: date, last: date) -> frozenset[date]:
    return frozenset(first + timedelta(days=i) for i in range((last - first).days + 1))


# chinese_calendar 1.11.0 (the locked release) ends with 2026. This stand-in for the 2027 notice is
# shaped like recent ones (除夕 is a statutory holiday since 2025; Spring Festival 2027 is Sat 6 Feb)
# so the arithmetic can be tested; it is NOT the official 2027 arrangement.
NOTICE_2027 = OfficialDays(
    source="test notice 2027",
    years=frozenset({2027}),
    holidays=span(date(2027, 2, 5), date(2027, 2, 13)) | span(date(2027, 10, 1), date(2027, 10, 7)),
    makeup_days=frozenset({date(2027, 2, 20), date(2027, 10, 9)}),
)

LIBRARY = WorkingCalendar()  # official: chinese_calendar (the installed release)
WITH_2027 = WorkingCalendar().with_official(NOTICE_2027)


def test_library_gives_2026_spring_festival_and_makeup_saturdays() -> None:
    assert LIBRARY.official_days.source.startswith("chinese_calendar ")
    assert 2026 in LIBRARY.covered_years()
    assert not LIBRARY.is_working_day(date(2026, 2, 16))  # 春节 (a Monday)
    assert LIBRARY.is_working_day(date(2026, 2, 14))  # Saturday, 调休上班
    assert LIBRARY.is_working_day(date(2026, 2, 28))  # Saturday, 调休上班
    assert not LIBRARY.is_working_day(date(2026, 11, 21))  # an ordinary Saturday


def test_library_gives_2026_national_day() -> None:
    # Wed 30 Sep 2026 17:00 + 1 working hour: 30 min that day; 1–7 Oct off; Thu 8 Oct 09:00.
    assert LIBRARY.add_working(ts(2026, 9, 30, 17), 1 * H) == ts(2026, 10, 8, 9)
    # Sat 10 Oct is worked (调休), Sun 11 Oct is not; Sun 20 Sep is worked too.
    assert LIBRARY.is_working_day(date(2026, 10, 10))
    assert not LIBRARY.is_working_day(date(2026, 10, 11))
    assert LIBRARY.is_working_day(date(2026, 9, 20))
    # Fri 9 Oct 17:00 + 1 h → Sat 10 Oct 09:00 (a make-up Saturday), not Monday.
    assert LIBRARY.add_working(ts(2026, 10, 9, 17), 1 * H) == ts(2026, 10, 10, 9)


def test_three_working_days_from_spring_festival_eve_2027_skip_the_holiday() -> None:
    # Fri 5 Feb 2027 (除夕) to Sat 13 Feb off; Sun 14 off; counting runs Mon 15 – Wed 17.
    assert WITH_2027.add_working(ts(2027, 2, 5, 9), 3 * DAY) == ts(2027, 2, 17, 17, 30)
    assert WITH_2027.elapsed_working(ts(2027, 2, 5, 9), ts(2027, 2, 17, 17, 30)) == 3 * DAY


def test_without_2027_data_the_same_limit_lands_in_the_holiday_and_coverage_says_so() -> None:
    bare = WorkingCalendar().with_official(NO_OFFICIAL_DAYS)
    # The bug of issue 17: weekdays only → Wed 10 Feb 09:00, in the middle of Spring Festival.
    assert bare.add_working(ts(2027, 2, 5, 9), 3 * DAY) == ts(2027, 2, 10, 9)
    coverage = official_coverage(bare, now=ts(2026, 11, 30, 10))
    assert coverage.checked == (2026, 2027)
    assert coverage.missing == (2026, 2027)
    assert not coverage.ok
    assert "2026, 2027" in coverage.message and "listed_years" in coverage.message


def test_make_up_saturday_2027_is_worked() -> None:
    # Fri 19 Feb 2027 17:00 + 1 h → Sat 20 Feb 09:00 (调休上班).
    assert WITH_2027.add_working(ts(2027, 2, 19, 17), 1 * H) == ts(2027, 2, 20, 9)
    # National Day 2027: Thu 30 Sep 17:00 + 1 h → Fri 8 Oct 09:00; Sat 9 Oct worked.
    assert WITH_2027.add_working(ts(2027, 9, 30, 17), 1 * H) == ts(2027, 10, 8, 9)
    assert WITH_2027.add_working(ts(2027, 10, 8, 17), 1 * H) == ts(2027, 10, 9, 9)


def test_coverage_follows_the_injected_now_not_the_wall_clock() -> None:
    cal = WorkingCalendar().with_official(
        OfficialDays(source="t", years=frozenset({2026, 2027}), holidays=frozenset(), makeup_days=frozenset())
    )
    assert official_coverage(cal, now=ts(2026, 11, 30, 10)).ok
    assert official_coverage(cal, now=ts(2027, 12, 31, 23)).missing == (2028,)
    # 00:30 on 1 Jan 2027 in Shanghai is still 31 Dec 2026 in UTC: the calendar's zone decides.
    assert official_coverage(cal, now=ts(2027, 1, 1, 0, 30)).checked == (2027, 2028)


def test_yaml_overrides_win_over_the_official_days() -> None:
    doc = {
        "calendar": {
            # A street office that works the (official) National Day Thursday and closes on a make-up Saturday.
            "makeup_days": ["2026-10-01"],
            "holidays": ["2026-10-10", "2027-02-08"],
            "listed_years": [2027],
        }
    }
    cal = policies_from(doc).calendar.with_official(chinese_calendar_days())
    assert cal.is_working_day(date(2026, 10, 1))
    assert not cal.is_working_day(date(2026, 10, 10))
    assert not cal.is_working_day(date(2027, 2, 8))
    assert not cal.is_working_day(date(2026, 10, 2))  # still official
    coverage = official_coverage(cal, now=ts(2026, 11, 30, 10))
    assert coverage.ok and "policies.yaml" in coverage.source


def test_official_none_uses_only_the_file() -> None:
    cal = policies_from({"calendar": {"official": "none"}}).calendar
    assert cal.official is OfficialSource.NONE
    assert cal.is_working_day(date(2026, 10, 1))  # a Thursday, nobody said otherwise
    assert official_coverage(cal, now=ts(2026, 6, 1, 10)).missing == (2026, 2027)


def test_shipped_policies_take_the_official_source() -> None:
    cal = load_policies().calendar
    assert cal.official is OfficialSource.CHINESE_CALENDAR
    assert not cal.is_working_day(date(2026, 10, 1))


OFFICE = Shift(days="mon-fri", start=time(8, 30), end=time(17, 30))  # type: ignore[arg-type]
HOLIDAY_DUTY = Shift(days="all", start=time(9), end=time(17))  # type: ignore[arg-type]
NIGHT = Shift(days="mon-fri", start=time(20), end=time(8))  # type: ignore[arg-type]


def at(y: int, mo: int, d: int, h: int, mi: int = 0) -> datetime:
    return datetime(y, mo, d, h, mi, tzinfo=SH)


@pytest.mark.parametrize(
    ("moment", "expected"),
    [
        (at(2026, 9, 30, 10), True),  # ordinary Wednesday
        (at(2026, 10, 1, 10), False),  # National Day Thursday
        (at(2026, 10, 10, 10), True),  # make-up Saturday
        (at(2026, 10, 17, 10), False),  # ordinary Saturday
        (at(2026, 2, 14, 10), True),  # make-up Saturday before Spring Festival
        (at(2026, 2, 18, 10), False),  # Spring Festival Wednesday
    ],
)
def test_office_hours_shift_follows_the_calendar(moment: datetime, expected: bool) -> None:
    assert shift_covers(OFFICE, moment, rule=DayRule.WORKING_DAYS, calendar=LIBRARY) is expected


def test_weekday_rule_keeps_todays_behaviour() -> None:
    assert shift_covers(OFFICE, at(2026, 10, 1, 10), rule=DayRule.WEEKDAYS, calendar=LIBRARY)
    assert not shift_covers(OFFICE, at(2026, 10, 10, 10), rule=DayRule.WEEKDAYS, calendar=LIBRARY)


def test_holiday_duty_runs_on_days_off_only() -> None:
    assert shift_covers(HOLIDAY_DUTY, at(2026, 10, 1, 10), rule=DayRule.DAYS_OFF, calendar=LIBRARY)
    assert shift_covers(HOLIDAY_DUTY, at(2026, 10, 17, 10), rule=DayRule.DAYS_OFF, calendar=LIBRARY)
    assert not shift_covers(HOLIDAY_DUTY, at(2026, 10, 10, 10), rule=DayRule.DAYS_OFF, calendar=LIBRARY)
    assert not shift_covers(HOLIDAY_DUTY, at(2026, 10, 9, 10), rule=DayRule.DAYS_OFF, calendar=LIBRARY)


def test_overnight_shift_belongs_to_the_day_it_starts() -> None:
    # Fri 9 Oct 2026 is a working day: its night shift runs into the make-up Saturday morning.
    assert shift_covers(NIGHT, at(2026, 10, 10, 7), rule=DayRule.WORKING_DAYS, calendar=LIBRARY)
    # Wed 30 Sep is worked, so its night runs to Thu 1 Oct 08:00 ...
    assert shift_covers(NIGHT, at(2026, 10, 1, 7), rule=DayRule.WORKING_DAYS, calendar=LIBRARY)
    # ... but the evening of Thu 1 Oct (a holiday) starts no shift.
    assert not shift_covers(NIGHT, at(2026, 10, 1, 21), rule=DayRule.WORKING_DAYS, calendar=LIBRARY)


def test_except_and_one_off_dates_still_win() -> None:
    shift = OFFICE.model_copy(update={"except_dates": (date(2026, 10, 10),)})
    assert not shift_covers(shift, at(2026, 10, 10, 10), rule=DayRule.WORKING_DAYS, calendar=LIBRARY)
    one_off = OFFICE.model_copy(update={"dates": (date(2026, 10, 3),)})
    assert shift_covers(one_off, at(2026, 10, 3, 10), rule=DayRule.WORKING_DAYS, calendar=LIBRARY)
