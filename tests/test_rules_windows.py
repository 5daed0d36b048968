"""Active windows: days, midnight crossings and DST edges (Europe/Berlin)."""

from __future__ import annotations

from datetime import datetime
from zoneinfo import ZoneInfo

import pytest

from rules.model import Window
from rules.windows import ActiveWindows

BERLIN = ZoneInfo("Europe/Berlin")
SHANGHAI = ZoneInfo("Asia/Shanghai")


def at(text: str, zone: ZoneInfo = SHANGHAI, fold: int = 0) -> float:
    return datetime.fromisoformat(text).replace(tzinfo=zone, fold=fold).timestamp()


def windows(*specs: dict[str, object], zone: str = "Asia/Shanghai") -> ActiveWindows:
    built = ActiveWindows.build([Window.model_validate(s) for s in specs], zone)
    assert built is not None
    return built


def test_no_windows_means_always() -> None:
    assert ActiveWindows.build([], "Asia/Shanghai") is None


@pytest.mark.parametrize(
    ("moment", "inside"),
    [
        ("2026-03-02 23:59:59", False),  # Monday evening
        ("2026-03-03 00:00:00", True),  # midnight is the start
        ("2026-03-03 04:59:59", True),
        ("2026-03-03 05:00:00", False),  # the end is exclusive
        ("2026-03-03 12:00:00", False),
    ],
)
def test_night_window(moment: str, inside: bool) -> None:
    assert windows({"from": "00:00", "to": "05:00"}).contains(at(moment)) is inside


@pytest.mark.parametrize(
    ("moment", "inside"),
    [
        ("2026-03-06 21:59:00", False),  # Friday
        ("2026-03-06 22:00:00", True),
        ("2026-03-06 23:59:59", True),
        ("2026-03-07 00:00:00", True),  # Saturday morning belongs to Friday's window
        ("2026-03-07 05:59:59", True),
        ("2026-03-07 06:00:00", False),
        ("2026-03-07 22:30:00", False),  # Saturday evening: not a listed day
        ("2026-03-06 03:00:00", False),  # Friday morning belongs to Thursday: not listed
    ],
)
def test_window_crossing_midnight_belongs_to_its_start_day(moment: str, inside: bool) -> None:
    assert windows({"days": ["fri"], "from": "22:00", "to": "06:00"}).contains(at(moment)) is inside


def test_weekday_window_and_24_00_end() -> None:
    w = windows({"days": ["sat", "sun"], "from": "18:00", "to": "24:00"})
    assert w.contains(at("2026-03-07 23:59:59"))  # Saturday
    assert not w.contains(at("2026-03-09 19:00:00"))  # Monday


def test_dst_spring_forward_berlin() -> None:
    # 2026-03-29: clocks jump from 02:00 to 03:00 in Europe/Berlin.
    w = windows({"from": "02:30", "to": "03:30"}, zone="Europe/Berlin")
    assert not w.contains(at("2026-03-29 01:59:59", BERLIN))
    assert w.contains(at("2026-03-29 03:00:00", BERLIN))  # the skipped half hour never happens
    assert w.contains(at("2026-03-29 03:29:59", BERLIN))
    assert not w.contains(at("2026-03-29 03:30:00", BERLIN))
    # One real second before 03:00 CEST is 01:59:59 CET: outside.
    assert not w.contains(at("2026-03-29 03:00:00", BERLIN) - 1)
    night = windows({"from": "22:00", "to": "06:00"}, zone="Europe/Berlin")
    assert night.contains(at("2026-03-29 05:59:00", BERLIN))
    assert not night.contains(at("2026-03-29 06:00:00", BERLIN))


def test_dst_fall_back_berlin_repeated_hour_is_inside_twice() -> None:
    # 2026-10-25: 03:00 CEST goes back to 02:00 CET; 02:00–03:00 happens twice.
    w = windows({"from": "02:00", "to": "03:00"}, zone="Europe/Berlin")
    first = at("2026-10-25 02:30:00", BERLIN, fold=0)
    second = at("2026-10-25 02:30:00", BERLIN, fold=1)
    assert second - first == 3600
    assert w.contains(first) and w.contains(second)
    assert not w.contains(at("2026-10-25 03:00:00", BERLIN))
    # A count window of local 00:00–05:00 lasts six real hours that night.
    night = windows({"from": "00:00", "to": "05:00"}, zone="Europe/Berlin")
    inside = sum(night.contains(at("2026-10-25 00:00:00", BERLIN) + m * 60) for m in range(0, 8 * 60))
    assert inside == 6 * 60


@pytest.mark.parametrize(
    "spec",
    [
        {"from": "25:00", "to": "01:00"},
        {"from": "10:00", "to": "10:00"},
        {"from": "24:00", "to": "01:00"},
        {"from": "9:00", "to": "10:00"},
        {"from": "10:00", "to": "11:00", "days": ["monday"]},
    ],
)
def test_invalid_windows(spec: dict[str, object]) -> None:
    with pytest.raises(ValueError):
        Window.model_validate(spec)


def test_remembered_second_answers_as_a_fresh_conversion() -> None:
    """``contains`` remembers its last whole second: every instant near the edges (window ends,
    midnight, both DST changes) must answer as a freshly built window does, in any order."""
    specs = (
        {"from": "02:00", "to": "02:01"},
        {"from": "02:30", "to": "03:00"},
        {"from": "22:00", "to": "06:00", "days": ["sat"]},
    )
    edges = [
        at("2026-03-29 02:00:00", BERLIN) - 1,  # spring forward
        at("2026-03-29 03:00:00", BERLIN),
        at("2026-10-25 02:01:00", BERLIN, fold=0),
        at("2026-10-25 02:30:00", BERLIN, fold=1),  # fall back: the repeated hour
        at("2026-10-25 03:00:00", BERLIN, fold=1),
        at("2026-10-24 22:00:00", BERLIN),  # Saturday's window opens
        at("2026-10-25 06:00:00", BERLIN),  # and closes on Sunday morning
    ]
    # 1 − 4e-7: the last half-microsecond of a second, which datetime.fromtimestamp rounds up.
    fractions = (0.0, 0.25, 0.999999, 1 - 4e-7, -0.5)
    instants = sorted({e + d + f for e in edges for d in range(-2, 3) for f in fractions})
    remembering = windows(*specs, zone="Europe/Berlin")
    answers = [remembering.contains(ts) for ts in instants + instants[::-1] + instants]
    fresh = [
        windows(*specs, zone="Europe/Berlin").contains(ts) for ts in instants + instants[::-1] + instants
    ]
    assert answers == fresh
    assert any(answers) and not all(answers)
    # Inside exactly when the whole second is, whatever was asked before.
    edge = at("2026-10-24 22:00:00", BERLIN)
    for first, then in ((edge - 4e-7, edge - 0.5), (edge - 0.5, edge - 4e-7)):
        w = windows(*specs, zone="Europe/Berlin")
        assert (w.contains(first), w.contains(then)) == (False, False)
    assert windows(*specs, zone="Europe/Berlin").contains(edge)
