"""Staggered shifts evaluated in the community's time zone."""

from __future__ import annotations

from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
import yaml

from hub.cases.calendar import WorkingCalendar
from hub.community.files import parse_yaml
from hub.community.registry import Registry
from hub.community.roster import Leave, Person, Shift, coverage_gaps, on_duty
from hub.records import Role
from simulators.community import generate

SH = ZoneInfo("Asia/Shanghai")
GRID = "110105001001001"


def ts(text: str, zone: ZoneInfo = SH) -> float:
    return datetime.fromisoformat(text).replace(tzinfo=zone).timestamp()


PEOPLE = [
    Person(
        id="day",
        name="日班",
        role=Role.GRID_WORKER,
        grids=(GRID,),
        shifts=(Shift(start="08:00", end="20:00"),),
    ),
    Person(
        id="night",
        name="夜班",
        role=Role.GRID_WORKER,
        grids=(GRID,),
        shifts=(Shift(start="20:00", end="08:00"),),
    ),
    Person(
        id="lead",
        name="网格长",
        role=Role.GRID_LEADER,
        grids=(GRID,),
        shifts=(Shift(days="mon-fri", start="08:30", end="17:30"),),
    ),
]


@pytest.mark.parametrize(
    ("when", "expected"),
    [
        ("2026-11-23T07:59:59", {"night"}),  # Monday morning, still Sunday's night shift
        ("2026-11-23T08:00:00", {"day"}),
        ("2026-11-23T09:00:00", {"day", "lead"}),
        ("2026-11-23T19:59:59", {"day"}),
        ("2026-11-23T20:00:00", {"night"}),
        ("2026-11-23T23:59:59", {"night"}),
        ("2026-11-24T00:00:00", {"night"}),
        ("2026-11-22T10:00:00", {"day"}),  # Sunday: no leader
    ],
)
def test_on_duty_at(when: str, expected: set[str]) -> None:
    people = on_duty(PEOPLE, grid=GRID, ts=ts(when), zone=SH, roles=(Role.GRID_WORKER, Role.GRID_LEADER))
    assert {p.id for p in people} == expected


def test_roster_is_evaluated_in_the_named_zone_not_utc() -> None:
    # 01:00 UTC is 09:00 in Shanghai: the day worker, not the night worker.
    moment = ts("2026-11-23T01:00:00", ZoneInfo("UTC"))
    people = on_duty(PEOPLE, grid=GRID, ts=moment, zone=SH, roles=(Role.GRID_WORKER,))
    assert [p.id for p in people] == ["day"]


def test_overnight_shift_limited_to_some_days_covers_the_following_morning() -> None:
    friday_night = Person(
        id="f",
        name="周五夜",
        role=Role.GRID_WORKER,
        grids=(GRID,),
        shifts=(Shift(days=("fri",), start="22:00", end="06:00"),),
    )
    assert friday_night.on_duty(datetime(2026, 11, 28, 5, 0, tzinfo=SH))  # Saturday 05:00
    assert not friday_night.on_duty(datetime(2026, 11, 29, 5, 0, tzinfo=SH))  # Sunday 05:00
    assert not friday_night.on_duty(
        datetime(2026, 11, 27, 5, 0, tzinfo=SH)
    )  # Friday 05:00 (Thursday's night)


def test_dst_zone_uses_wall_clock() -> None:
    berlin = ZoneInfo("Europe/Berlin")
    worker = Person(
        id="w", name="w", role=Role.GRID_WORKER, grids=(GRID,), shifts=(Shift(start="08:00", end="20:00"),)
    )
    # 2026-03-29 is the spring-forward day in Europe: 08:30 local is still inside the shift.
    assert on_duty(
        [worker], grid=GRID, ts=ts("2026-03-29T08:30:00", berlin), zone=berlin, roles=(Role.GRID_WORKER,)
    )
    assert not on_duty(
        [worker], grid=GRID, ts=ts("2026-03-29T07:30:00", berlin), zone=berlin, roles=(Role.GRID_WORKER,)
    )


def test_coverage_gaps_find_the_uncovered_hours() -> None:
    day_only = [p for p in PEOPLE if p.id != "night"]
    start = datetime(2026, 11, 23, 0, 0, tzinfo=SH)  # a Monday
    gaps = coverage_gaps(day_only, grids=[GRID], start=start, zone=SH, hours=24)
    assert [g.start.hour for g in gaps] == [0, 1, 2, 3, 4, 5, 6, 7, 20, 21, 22, 23]
    assert coverage_gaps(PEOPLE, grids=[GRID], start=start, zone=SH, hours=7 * 24) == []


def test_a_shift_ending_at_half_past_leaves_a_gap() -> None:
    early = Person(
        id="e", name="e", role=Role.GRID_WORKER, grids=(GRID,), shifts=(Shift(start="00:00", end="07:30"),)
    )
    late = Person(
        id="l", name="l", role=Role.GRID_WORKER, grids=(GRID,), shifts=(Shift(start="08:00", end="00:00"),)
    )
    gaps = coverage_gaps(
        [early, late], grids=[GRID], start=datetime(2026, 11, 23, tzinfo=SH), zone=SH, hours=24
    )
    assert [g.start.hour for g in gaps] == [7]


def test_demo_community_roster_has_no_gaps() -> None:
    registry = Registry(communities=parse_yaml(yaml.safe_dump(generate(seed=1).document), file="demo"))
    for c in registry.communities:
        assert (
            coverage_gaps(
                c.people, grids=[g.code for g in c.grids], start=datetime(2026, 11, 23, tzinfo=SH), zone=SH
            )
            == []
        )


def test_holidays_leave_and_one_off_shifts() -> None:
    national_day = datetime(2026, 10, 1, 10, 0, tzinfo=SH)  # a Thursday, a public holiday
    office = Shift(days="mon-fri", start="08:30", end="17:30", except_dates=(national_day.date(),))
    cover = Shift(start="08:00", end="20:00", dates=(national_day.date(),))
    leader = Person(id="lead", name="网格长", role=Role.GRID_LEADER, grids=(GRID,), shifts=(office,))
    volunteer = Person(id="vol", name="志愿者", role=Role.GRID_WORKER, grids=(GRID,), shifts=(cover,))
    assert not leader.on_duty(national_day) and volunteer.on_duty(national_day)
    assert leader.on_duty(national_day + timedelta(days=1)) and not volunteer.on_duty(
        national_day + timedelta(days=1)
    )
    on_leave = leader.model_copy(
        update={"leave": (Leave(start=datetime(2026, 10, 9, 0, 0), end=datetime(2026, 10, 10, 0, 0)),)}
    )
    assert not on_leave.on_duty(datetime(2026, 10, 9, 10, 0, tzinfo=SH))
    assert on_leave.on_duty(datetime(2026, 10, 12, 10, 0, tzinfo=SH))
    # An overnight one-off shift covers the next morning too.
    night = Shift(start="20:00", end="08:00", dates=(national_day.date(),))
    assert night.covers(datetime(2026, 10, 2, 7, 0, tzinfo=SH)) and not night.covers(
        datetime(2026, 10, 3, 7, 0, tzinfo=SH)
    )


def test_office_hours_follow_the_working_calendar_throughon_duty() -> None:
    """A grid worker on office hours is off on National Day and on for the make-up Saturday."""
    zone = ZoneInfo("Asia/Shanghai")
    office = Person.model_validate(
        {
            "id": "w-office",
            "name": "坐班网格员",
            "role": "grid_worker",
            "grids": ["g1"],
            "shifts": [{"days": "mon-fri", "start": "08:30", "end": "17:30", "follows": "working_days"}],
        }
    )
    calendar = WorkingCalendar()

    def duty(y: int, m: int, d: int, with_calendar: bool) -> list[str]:
        ts = datetime(y, m, d, 10, tzinfo=zone).timestamp()
        people = on_duty(
            [office],
            grid="g1",
            ts=ts,
            zone=zone,
            roles=(Role.GRID_WORKER,),
            calendar=calendar if with_calendar else None,
        )
        return [p.id for p in people]

    assert duty(2026, 10, 1, True) == []  # National Day (Thursday)
    assert duty(2026, 10, 10, True) == ["w-office"]  # 调休 make-up Saturday
    assert duty(2026, 9, 30, True) == ["w-office"]  # an ordinary Wednesday
    # Without a calendar the shift falls back to its weekdays (what rosters did before).
    assert duty(2026, 10, 1, False) == ["w-office"] and duty(2026, 10, 10, False) == []


@pytest.mark.parametrize("written", ["utc", "local", "naive"])
def test_leave_written_with_an_offset_is_converted_to_the_community_zone(written: str) -> None:
    """Found in review: ``…Z`` was read as local time, 8 hours off: at 17:00 a worker on leave
    (08:00-18:00) was on duty, and an SOS could go to him."""
    zone = ZoneInfo("Asia/Shanghai")
    start, end = {
        "utc": ("2026-11-18T00:00:00Z", "2026-11-18T10:00:00Z"),
        "local": ("2026-11-18T08:00:00+08:00", "2026-11-18T18:00:00+08:00"),
        "naive": ("2026-11-18T08:00:00", "2026-11-18T18:00:00"),
    }[written]
    worker = Person.model_validate(
        {"id": "w1", "name": "W", "role": "grid_worker", "grids": ["g1"],
         "shifts": [{"start": "00:00", "end": "00:00"}], "leave": [{"start": start, "end": end}]}
    )  # fmt: skip

    def working(hour: int) -> bool:
        at = datetime(2026, 11, 18, hour, 0, tzinfo=zone).timestamp()
        return bool(on_duty([worker], grid="g1", ts=at, zone=zone, roles=(Role.GRID_WORKER,)))

    assert (working(3), working(9), working(17), working(19)) == (True, False, False, True)
