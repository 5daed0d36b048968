"""Working-day calendar: weekdays, public holidays, 调休 make-up working days, working hours.

Time limits of non-urgent cases are counted in working time (GB/T 30428 / CJ/T 315 allow
limits "in working hours or working days"); urgent ones in calendar time. All arithmetic is
done on Unix timestamps; working intervals are built in wall-clock time of the calendar's
zone (default ``Asia/Shanghai``), so a day's 08:30 is 08:30 local on both sides of a DST
change in zones that have one.

A day is a working day when it is a make-up day (调休上班, e.g. a Saturday worked to bridge
a holiday), or when it is one of ``workdays`` and not a holiday. A make-up day wins over
both the weekday rule and the holiday list.
"""

from __future__ import annotations

from datetime import date, datetime, time, timedelta
from enum import StrEnum
from functools import cached_property
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import BaseModel, ConfigDict, field_validator, model_validator

from hub.community.roster import WEEK, Weekday, parse_days
from hub.errors import CalendarError

#: A calendar without a working second in this many days is refused, so loops end.
MAX_SCAN_DAYS = 3660


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
        return WEEK[day.weekday()] in self.workdays and day not in self.holidays

    def periods(self, day: date) -> list[tuple[float, float]]:
        """The working periods of ``day`` as Unix timestamp intervals (empty on days off)."""
        if not self.is_working_day(day):
            return []
        return [
            (
                datetime.combine(day, start, self.tz).timestamp(),
                datetime.combine(day, end, self.tz).timestamp(),
            )
            for start, end in self.hours
        ]

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
