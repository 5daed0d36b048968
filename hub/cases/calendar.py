"""Working-day calendar: weekdays, public holidays, 调休 make-up working days, working hours.

Time limits of non-urgent cases are counted in working time (GB/T 30428 / CJ/T 315 allow
limits "in working hours or working days"); urgent ones in calendar time. All arithmetic is
done on Unix timestamps; working intervals are built in wall-clock time of the calendar's
zone (default ``Asia/Shanghai``), so a day's 08:30 is 08:30 local on both sides of a DST
change in zones that have one.

Which days are worked comes from three layers, the first that speaks wins:

1. the site's own lists in ``policies.yaml`` (``makeup_days`` before ``holidays``) — local
   exceptions, and a new year's notice typed in before a library release carries it;
2. the State Council's yearly arrangement (国务院办公厅关于节假日安排的通知): public holidays
   and 调休 make-up working days (调休上班, e.g. a Saturday worked to bridge a holiday), taken
   from the maintained ``chinese_calendar`` package rather than retyped here every November;
3. the weekday rule (``workdays``).

A year the official source does not know yet is counted by the weekday rule, which is wrong
around Spring Festival and National Day; :func:`official_coverage` says which of the current
and next year are affected so start-up, ``linli doctor`` and readiness can say it loudly
instead of guessing silently. The working-hours arithmetic (lunch breaks, nights) is ours.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta
from enum import StrEnum
from functools import cached_property
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import BaseModel, ConfigDict, PrivateAttr, field_validator, model_validator

from hub.community.roster import WEEK, DayRule, Shift, Weekday, parse_days
from hub.errors import CalendarError

#: A calendar without a working second in this many days is refused, so loops end.
MAX_SCAN_DAYS = 3660
#: Days whose working periods a calendar keeps (:meth:`WorkingCalendar.periods`): ten years.
_PERIODS_KEPT = 3660


class OfficialSource(StrEnum):
    """Where the official holiday arrangement comes from."""

    #: The ``chinese_calendar`` package (mainland China, 2004 onwards, updated each November).
    CHINESE_CALENDAR = "chinese_calendar"
    #: None: only the lists in the policy file (a site that keeps its own calendar).
    NONE = "none"


@dataclass(frozen=True, slots=True, kw_only=True)
class OfficialDays:
    """One release of the official arrangement: which years it knows, and their days."""

    source: str
    years: frozenset[int]
    holidays: frozenset[date]
    makeup_days: frozenset[date]


NO_OFFICIAL_DAYS = OfficialDays(
    source="none", years=frozenset(), holidays=frozenset(), makeup_days=frozenset()
)


def chinese_calendar_days() -> OfficialDays:
    """The days published in the installed ``chinese_calendar`` release.

    Imported here, not at module level, so that importing the case model (and the CLI) does
    not load a table of twenty years of holidays until a calendar is used. A year counts as
    covered when the release lists any holiday in it: every year has New Year's Day.
    """
    import chinese_calendar  # noqa: PLC0415 — deferred on purpose, see above

    holidays = frozenset(chinese_calendar.holidays)
    return OfficialDays(
        source=f"chinese_calendar {chinese_calendar.__version__}",
        years=frozenset(day.year for day in holidays),
        holidays=holidays,
        makeup_days=frozenset(chinese_calendar.workdays),
    )


def official_days(source: OfficialSource) -> OfficialDays:
    if source is OfficialSource.CHINESE_CALENDAR:
        return chinese_calendar_days()
    return NO_OFFICIAL_DAYS


class Basis(StrEnum):
    """How a time limit is counted."""

    CALENDAR = "calendar"  # wall-clock seconds, nights and holidays included
    WORKING = "working"  # only inside working hours of working days


class WorkingCalendar(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    zone: str = "Asia/Shanghai"
    workdays: tuple[Weekday, ...] = WEEK[:5]
    #: Working periods of a working day, in local time, sorted and not overlapping.
    hours: tuple[tuple[time, time], ...] = ((time(8, 30), time(12, 0)), (time(13, 30), time(17, 30)))
    holidays: frozenset[date] = frozenset()
    #: 调休: days worked although they are weekend days (or listed as holidays).
    makeup_days: frozenset[date] = frozenset()
    #: The official arrangement under the two lists above (which win over it).
    official: OfficialSource = OfficialSource.CHINESE_CALENDAR
    #: Years whose whole arrangement is written out in ``holidays``/``makeup_days`` above — for
    #: a notice published before the installed ``chinese_calendar`` knows it. Listing a year
    #: here silences the "no official data" warning for it, so list it only when complete.
    listed_years: frozenset[int] = frozenset()
    #: Set by :meth:`with_official` (tests, or a caller that loaded the days itself).
    _official: OfficialDays | None = PrivateAttr(default=None)

    @field_validator("workdays", mode="before")
    @classmethod
    def _workdays(cls, value: object) -> object:
        return parse_days(value)

    @field_validator("hours", mode="before")
    @classmethod
    def _hours(cls, value: object) -> object:
        # "08:30-12:00" is easier to write than a pair.
        if isinstance(value, list | tuple):
            return [tuple(v.split("-", 1)) if isinstance(v, str) else v for v in value]
        return value

    @field_validator("zone")
    @classmethod
    def _zone(cls, value: str) -> str:
        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError) as exc:
            raise ValueError(f"unknown time zone {value!r}") from exc
        return value

    @model_validator(mode="after")
    def _consistent(self) -> WorkingCalendar:
        previous: time | None = None
        for start, end in self.hours:
            if not start < end:
                raise ValueError(f"working period {start}-{end} must end after it starts (same day)")
            if previous is not None and start < previous:
                raise ValueError("working periods must be sorted and must not overlap")
            previous = end
        if not self.hours:
            raise ValueError("a working calendar needs at least one working period")
        return self

    @cached_property
    def tz(self) -> ZoneInfo:
        return ZoneInfo(self.zone)

    def with_official(self, days: OfficialDays) -> WorkingCalendar:
        """This calendar over ``days`` instead of what ``official`` names (tests inject here)."""
        clone = self.model_copy()
        clone._official = days
        return clone

    def model_copy(self, *, update: Mapping[str, Any] | None = None, deep: bool = False) -> WorkingCalendar:
        """A copy that works out its own zone, official days and periods: pydantic's copy shares
        the original's cached values, which a copy with another zone, other hours or days off
        must not answer from."""
        clone = super().model_copy(update=update, deep=deep)
        for worked_out in ("tz", "official_days", "period_memo"):
            clone.__dict__.pop(worked_out, None)
        return clone

    @cached_property
    def official_days(self) -> OfficialDays:
        # Loaded once per calendar. Not into ``_official``: pydantic compares private attributes,
        # so a calendar that had loaded them was unequal to the same calendar that had not.
        return self._official if self._official is not None else official_days(self.official)

    def covered_years(self) -> frozenset[int]:
        """Years whose holidays and make-up days are known (official source or listed here)."""
        return self.official_days.years | self.listed_years

    @property
    def day_seconds(self) -> float:
        """Working seconds in one full working day (for limits written in working days)."""
        today = date(2001, 1, 1)
        return sum(
            (datetime.combine(today, end) - datetime.combine(today, start)).total_seconds()
            for start, end in self.hours
        )

    def is_working_day(self, day: date) -> bool:
        if day in self.makeup_days:
            return True
        if day in self.holidays:
            return False
        official = self.official_days
        if day in official.makeup_days:
            return True
        return WEEK[day.weekday()] in self.workdays and day not in official.holidays

    @cached_property
    def period_memo(self) -> dict[date, tuple[tuple[float, float], ...]]:
        """Each day's working periods once worked out (:meth:`periods`).

        A page of cases asks the same few days for every stage's traffic light, thousands of
        times, and each answer took two ``datetime.combine`` in the zone per period and the
        holiday lists' lookups. A cached property, not a private attribute: pydantic compares
        private attributes, and a calendar that answered a question is still the same calendar.
        """
        return {}

    def periods(self, day: date) -> tuple[tuple[float, float], ...]:
        """The working periods of ``day`` as Unix timestamp intervals (empty on days off)."""
        known = self.period_memo
        found = known.get(day)
        if found is None:
            if len(known) >= _PERIODS_KEPT:
                known.clear()  # a hub running for years: bounded, and the days asked are recent
            found = known[day] = self._periods_of(day)
        return found

    def _periods_of(self, day: date) -> tuple[tuple[float, float], ...]:
        if not self.is_working_day(day):
            return ()
        return tuple(
            (
                datetime.combine(day, start, self.tz).timestamp(),
                datetime.combine(day, end, self.tz).timestamp(),
            )
            for start, end in self.hours
        )

    def _day(self, ts: float) -> date:
        return datetime.fromtimestamp(ts, self.tz).date()

    def elapsed_working(self, start: float, end: float) -> float:
        """Working seconds between two instants (0 when ``end`` is not after ``start``)."""
        if end <= start:
            return 0.0
        total = 0.0
        day, last = self._day(start), self._day(end)
        while day <= last:
            for a, b in self.periods(day):
                lo, hi = max(a, start), min(b, end)
                if hi > lo:
                    total += hi - lo
            day += timedelta(days=1)
        return total

    def add_working(self, start: float, seconds: float) -> float:
        """The instant ``seconds`` of working time after ``start``.

        A start outside working hours begins counting at the next working period; a limit
        that ends exactly at the end of a period ends there, not at the next opening.
        """
        if seconds < 0:
            raise ValueError("working time to add must not be negative")
        if seconds == 0:
            return start
        remaining = seconds
        day = self._day(start)
        for _ in range(MAX_SCAN_DAYS):
            for a, b in self.periods(day):
                cur = max(a, start)
                if cur >= b:
                    continue
                available = b - cur
                if remaining <= available:
                    return cur + remaining
                remaining -= available
            day += timedelta(days=1)
        raise CalendarError(f"no working time within {MAX_SCAN_DAYS} days of {start}")

    def is_working_time(self, ts: float) -> bool:
        return any(a <= ts < b for a, b in self.periods(self._day(ts)))


def deadline(start: float, seconds: float, *, basis: Basis, calendar: WorkingCalendar) -> float:
    """When a limit of ``seconds`` (in ``basis``) starting at ``start`` runs out."""
    if basis is Basis.CALENDAR:
        return start + seconds
    return calendar.add_working(start, seconds)


def elapsed(start: float, end: float, *, basis: Basis, calendar: WorkingCalendar) -> float:
    """Seconds (in ``basis``) from ``start`` to ``end``; never negative."""
    if basis is Basis.CALENDAR:
        return max(0.0, end - start)
    return calendar.elapsed_working(start, end)


@dataclass(frozen=True, slots=True, kw_only=True)
class OfficialCoverage:
    """Whether the calendar knows this year's and next year's official arrangement."""

    source: str
    checked: tuple[int, ...]
    missing: tuple[int, ...]

    @property
    def ok(self) -> bool:
        return not self.missing

    @property
    def message(self) -> str:
        if self.ok:
            return f"working calendar: official holidays known for {', '.join(map(str, self.checked))} ({self.source})"
        years = ", ".join(map(str, self.missing))
        return (
            f"working calendar: no official holidays or 调休 make-up days for {years} in {self.source}; "
            "working-time deadlines (按期结案) in those years count weekdays only and will be wrong "
            "around Spring Festival and National Day. Upgrade chinese_calendar once it carries the "
            "国务院办公厅 notice, or type the notice into policies.yaml (calendar.holidays, "
            f"calendar.makeup_days) and add the year to calendar.listed_years."
        )


def official_coverage(calendar: WorkingCalendar, *, now: float, years_ahead: int = 1) -> OfficialCoverage:
    """Which of the current year (in the calendar's zone, at ``now``) and the next ones lack data.

    ``now`` comes from the hub's clock, so a test or a scenario clock decides what "this year"
    is; nothing here reads the wall clock.
    """
    this_year = datetime.fromtimestamp(now, calendar.tz).year
    checked = tuple(range(this_year, this_year + years_ahead + 1))
    known = calendar.covered_years()
    source = calendar.official_days.source
    if calendar.listed_years:
        source += " + policies.yaml"
    return OfficialCoverage(
        source=source, checked=checked, missing=tuple(y for y in checked if y not in known)
    )


def shift_covers(shift: Shift, moment: datetime, *, rule: DayRule, calendar: WorkingCalendar) -> bool:
    """Whether local ``moment`` falls in ``shift`` when the shift follows ``rule`` on ``calendar``."""
    return shift.model_copy(update={"follows": rule}).covers(moment, calendar)
