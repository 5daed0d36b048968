"""Who is on duty: people, their roles and staggered shifts (错时轮班), in the community's zone.

A shift belongs to the day it starts on; one that ends at or before its start time runs
past midnight (``20:00``–``08:00``). Evaluation uses wall-clock time in the configured
zone, so a shift is correct on both sides of a DST change where a zone has one.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta
from enum import StrEnum
from typing import Protocol
from zoneinfo import ZoneInfo

from pydantic import BaseModel, ConfigDict, Field, field_validator

from hub.records import Role


class Weekday(StrEnum):
    MON = "mon"
    TUE = "tue"
    WED = "wed"
    THU = "thu"
    FRI = "fri"
    SAT = "sat"
    SUN = "sun"


WEEK: tuple[Weekday, ...] = tuple(Weekday)


def parse_days(value: object) -> object:
    """``"mon-fri"`` (wrapping: ``"sat-mon"``) or ``"all"`` → days; anything else is left to validation."""
    if value == "all":
        return WEEK
    if isinstance(value, str) and "-" in value:
        first, last = (Weekday(v.strip()) for v in value.split("-", 1))
        i, j = WEEK.index(first), WEEK.index(last)
        return WEEK[i : j + 1] if i <= j else WEEK[i:] + WEEK[: j + 1]
    return value


class DayRule(StrEnum):
    """Which days a roster shift runs on."""

    #: Its own ``days`` of the week (and ``dates``/``except_dates``): round-the-clock duty.
    WEEKDAYS = "weekdays"
    #: The calendar's working days — office hours: off on public holidays, on for 调休 Saturdays.
    WORKING_DAYS = "working_days"
    #: The calendar's days off — weekend and holiday duty (节假日值班), not on make-up days.
    DAYS_OFF = "days_off"


class WorkingDays(Protocol):
    """The working-day calendar as the roster needs it (``hub.cases.calendar.WorkingCalendar``).

    A protocol, so that the roster (below the case rules) does not import them: the hub passes
    the policies' calendar in.
    """

    def is_working_day(self, day: date) -> bool: ...


class Shift(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    days: tuple[Weekday, ...] = WEEK
    #: ``working_days`` for office hours (off on public holidays, on for 调休 Saturdays),
    #: ``days_off`` for holiday duty; without a calendar both fall back to ``days``.
    follows: DayRule = DayRule.WEEKDAYS
    start: time
    end: time
    #: A one-off shift: it applies only on these dates (the day it starts), whatever ``days`` say.
    dates: tuple[date, ...] = ()
    #: Dates on which this (weekly) shift does not run, e.g. public holidays for office hours.
    except_dates: tuple[date, ...] = ()

    @field_validator("days", mode="before")
    @classmethod
    def _days(cls, value: object) -> object:
        return parse_days(value)

    def runs_on(self, day: date, calendar: WorkingDays | None = None) -> bool:
        """Whether the shift starts on ``day`` (a shift belongs to the day it starts).

        One-off ``dates`` and ``except_dates`` win. A shift that follows the calendar runs on
        its working days (or days off) instead of its ``days``: written ``mon-fri``, office
        hours still run on a make-up Saturday and stop for National Day.
        """
        if self.dates:
            return day in self.dates
        if day in self.except_dates:
            return False
        if calendar is not None and self.follows is DayRule.WORKING_DAYS:
            return calendar.is_working_day(day)
        if calendar is not None and self.follows is DayRule.DAYS_OFF:
            return not calendar.is_working_day(day)
        return WEEK[day.weekday()] in self.days

    def covers(self, moment: datetime, calendar: WorkingDays | None = None) -> bool:
        """Whether local ``moment`` (tz-aware, in the community zone) falls in this shift."""
        now = moment.timetz().replace(tzinfo=None)
        today = moment.date()
        if self.start < self.end:
            return self.runs_on(today, calendar) and self.start <= now < self.end
        # Overnight: the evening part belongs to today, the morning part to yesterday.
        return (self.runs_on(today, calendar) and now >= self.start) or (
            self.runs_on(today - timedelta(days=1), calendar) and now < self.end
        )


class Leave(BaseModel):
    """Time off (请假, 调休): local wall-clock times in the community zone, end exclusive."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    start: datetime
    end: datetime

    def covers(self, moment: datetime) -> bool:
        local = moment.replace(tzinfo=None)
        return _wall(self.start, moment) <= local < _wall(self.end, moment)


def _wall(at: datetime, moment: datetime) -> datetime:
    """``at`` as a wall-clock time of ``moment``'s zone: one written with an offset (``…Z``) is
    converted, not read as local (found in review: leave given in UTC was 8 hours off, and an
    SOS could go to a worker on leave)."""
    if at.tzinfo is not None and moment.tzinfo is not None:
        at = at.astimezone(moment.tzinfo)
    return at.replace(tzinfo=None)


class Person(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    id: str = Field(pattern=r"^[A-Za-z0-9_.-]+$")
    name: str
    role: Role
    grids: tuple[str, ...] = ()
    phone: str = ""
    shifts: tuple[Shift, ...] = ()
    #: Leave overrides every shift it overlaps.
    leave: tuple[Leave, ...] = ()

    def on_leave(self, moment: datetime) -> bool:
        return any(period.covers(moment) for period in self.leave)

    def on_duty(self, moment: datetime, calendar: WorkingDays | None = None) -> bool:
        if self.on_leave(moment):
            return False
        return any(shift.covers(moment, calendar) for shift in self.shifts)


@dataclass(frozen=True, slots=True)
class Gap:
    """An hour in which a grid has nobody of the SOS roles on duty."""

    grid: str
    start: datetime


#: Roles that can take an SOS for a grid (the first responders of the escalation chain).
SOS_ROLES = (Role.GRID_WORKER, Role.GRID_LEADER)


def coverage_gaps(
    people: Iterable[Person],
    *,
    grids: Iterable[str],
    start: datetime,
    zone: ZoneInfo,
    hours: int = 7 * 24,
    roles: Iterable[Role] = SOS_ROLES,
    calendar: WorkingDays | None = None,
) -> list[Gap]:
    """Every hour from ``start`` with no one of ``roles`` on duty, per grid, in ``zone``.

    Each hour is checked at its start and its middle, so a shift ending at :30 shows up.
    Hours are stepped in absolute time, so a DST change neither skips nor repeats one.
    """
    staff = list(people)
    wanted = tuple(roles)
    gaps: list[Gap] = []
    first = start.astimezone(zone).replace(minute=0, second=0, microsecond=0).timestamp()
    for grid in grids:
        for hour in range(hours):
            moment = first + hour * 3600
            if any(
                not on_duty(staff, grid=grid, ts=m, zone=zone, roles=wanted, calendar=calendar)
                for m in (moment, moment + 1800)
            ):
                gaps.append(Gap(grid, datetime.fromtimestamp(moment, zone)))
    return gaps


def on_duty(
    people: Iterable[Person],
    *,
    grid: str,
    ts: float,
    zone: ZoneInfo,
    roles: Iterable[Role],
    calendar: WorkingDays | None = None,
) -> list[Person]:
    """People of the given roles covering ``grid`` whose shift includes ``ts``."""
    moment = datetime.fromtimestamp(ts, zone)
    wanted = frozenset(roles)
    return [p for p in people if p.role in wanted and grid in p.grids and p.on_duty(moment, calendar)]
