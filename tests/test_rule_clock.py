"""The rules' clock never runs backwards (hub.clock.SteadyClock), across restarts too.

Most devices send no time of their own: their events carry the hub's receive time, and the
rules take an event older than the newest one they applied as late. Before this clock, a step
back of the wall clock made every such event late for the length of the step: a car parked in
the fire lane an hour after NTP stepped the clock back got no alert at all.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

import orjson
import pytest

from hub.app import Hub
from hub.clock import DemoClock, ManualClock, SteadyClock
from hub.ingest.rule_clock import FILE_NAME, ClockFloor, read_floor
from tests.helpers import COMMUNITY, hub_settings
from tests.test_clock_steps import HOUR, NO_BROKER, T0, Monotonic, Stepping, run

LANE = "lane-b-1"  # a Zigbee2MQTT parking sensor in the test community's fire lane: no device time
FIRE_LANE = "parking.fire_lane_occupied"


def lane_alerts(hub: Hub) -> list[str]:
    return [a.rule for a in hub.store.alerts(limit=1000) if a.device_id == LANE]


def occupancy(hub: Hub, occupied: bool) -> None:
    payload = json.dumps({"occupancy": occupied, "battery": 90}).encode()
    hub.pipeline.handle(f"zigbee2mqtt/{LANE}", payload, 1, False)


def seconds_until_alert(hub: Hub, clocks: Stepping, *, within: float, tick: float = 5.0) -> float | None:
    """Real (monotonic) seconds until the fire-lane alert is raised, running the timers every ``tick``."""
    waited = 0.0
    while waited <= within:
        run(hub)
        if FIRE_LANE in lane_alerts(hub):
            return waited
        clocks.pass_(tick)
        waited += tick
    return None


# -- the clock on its own -----------------------------------------------------------------


def test_it_follows_the_wall_clock_and_its_forward_steps() -> None:
    wall, mono = ManualClock(start=T0), Monotonic()
    clock = SteadyClock(wall=wall, monotonic=mono)
    assert clock.now() == T0 and clock.ahead == 0.0
    wall.advance(10)
    mono.advance(10)
    assert clock.now() == T0 + 10
    wall.advance(HOUR)  # forward: followed at once (deadlines fall due early, the safe side)
    assert clock.now() == T0 + 10 + HOUR and clock.ahead == 0.0 and clock.steps_back == 0


def test_a_step_back_is_absorbed_at_half_pace_until_the_wall_clock_catches_up() -> None:
    wall, mono = ManualClock(start=T0), Monotonic()
    steps: list[tuple[float, bool]] = []
    clock = SteadyClock(wall=wall, monotonic=mono, on_step=lambda s, absorbed: steps.append((s, absorbed)))
    clock.now()
    wall.set(T0 - 100)  # NTP: the clock was 100 s ahead
    assert clock.now() == T0, "never back"
    assert clock.ahead == 100 and steps == [(100, True)]
    readings = []
    for _ in range(30):
        wall.advance(10)
        mono.advance(10)
        readings.append(clock.now())
    assert readings == sorted(readings)
    assert readings[0] == T0 + 5  # 10 real seconds at half pace
    # Caught up after 200 s (100 s of step at 0.5 s per second): the wall clock again, exactly.
    assert readings[19] == T0 + 100 == wall.now() - 100 and clock.ahead == 0.0
    assert readings[-1] == wall.now()
    assert steps == [(100, True)], "one step, told once"


def test_a_step_back_too_large_to_absorb_is_followed_and_told() -> None:
    wall, mono = ManualClock(start=T0), Monotonic()
    steps: list[tuple[float, bool]] = []
    clock = SteadyClock(
        wall=wall, monotonic=mono, max_absorb_s=HOUR, on_step=lambda s, absorbed: steps.append((s, absorbed))
    )
    clock.now()
    wall.set(T0 - 2 * HOUR)
    assert clock.now() == T0 - 2 * HOUR and clock.ahead == 0.0
    assert steps == [(2 * HOUR, False)]


def test_a_floor_from_the_last_run_is_where_it_starts_unless_it_is_implausible() -> None:
    wall, mono = ManualClock(start=T0), Monotonic()
    assert SteadyClock(wall=wall, monotonic=mono, floor=T0 + 60).now() == T0 + 60
    assert SteadyClock(wall=wall, monotonic=mono, floor=T0 - 60).now() == T0  # behind: the wall
    # A floor a day ahead is a clock that was wrong then, not a step to ride out now.
    assert SteadyClock(wall=wall, monotonic=mono, floor=T0 + 24 * HOUR).now() == T0
    with pytest.raises(ValueError, match="slew"):
        SteadyClock(wall=wall, monotonic=mono, slew=1.0)


def test_raised_to_another_nodes_newest_time_it_runs_on_from_there() -> None:
    """A cluster node taking a community over from a node whose clock was ahead (skew)."""
    wall, mono = ManualClock(start=T0), Monotonic()
    clock = SteadyClock(wall=wall, monotonic=mono, max_absorb_s=HOUR)
    assert not clock.raise_to(T0 - 5), "behind: nothing to do"
    assert not clock.raise_to(T0 + 2 * HOUR), "a clock that far off is not followed"
    assert clock.raise_to(T0 + 60) and clock.now() == T0 + 60 and clock.ahead == 60
    wall.advance(10)
    mono.advance(10)
    assert clock.now() == T0 + 65, "absorbed at half pace, as a step back"
    wall.advance(200)
    mono.advance(200)
    assert clock.now() == wall.now() and clock.ahead == 0.0


def test_the_floor_file_round_trips_and_a_bad_one_is_ignored(tmp_path: Path) -> None:
    path = tmp_path / FILE_NAME
    assert read_floor(path) is None
    clock = SteadyClock(wall=ManualClock(start=T0), monotonic=Monotonic())
    ClockFloor(clock=clock, path=path).write()
    assert read_floor(path) == pytest.approx(T0)
    assert path.stat().st_mode & 0o777 == 0o600
    for junk in ("", "soon", "nan", "-5", "inf"):
        path.write_text(junk)
        assert read_floor(path) is None, junk


def test_a_floor_that_cannot_be_written_is_logged_not_raised(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    blocked = tmp_path / "file"
    blocked.write_text("")
    floor = ClockFloor(
        clock=SteadyClock(wall=ManualClock(start=T0), monotonic=Monotonic()), path=blocked / "x"
    )
    with caplog.at_level(logging.WARNING, logger="hub.ingest.rule_clock"):
        floor.write()
        floor.write()
    assert floor.failures == 2 and len(caplog.records) == 2  # the 1st and 2nd (then 4th, 8th …)


# -- a hub on stepping clocks -------------------------------------------------------------


@pytest.mark.parametrize("step", [0.0, -HOUR, HOUR], ids=["no step", "back an hour", "forward an hour"])
def test_a_car_in_the_fire_lane_after_a_clock_step_is_alerted(tmp_path: Path, step: float) -> None:
    """The lane was free 30 s before the step; a car parks 5 s after it: alerted after 1 min.

    After a step back the rules' clock runs at half pace until it has absorbed the step, so
    the minute takes up to two; with the step on the wall clock alone (the code before) the
    car's event was late and no alert came within the hour.
    """
    clocks = Stepping(start=T0)
    hub = Hub(settings=hub_settings(tmp_path, NO_BROKER), clock=clocks.wall, monotonic=clocks.monotonic)
    try:
        occupancy(hub, False)
        clocks.pass_(30)
        run(hub)
        clocks.step(step)
        clocks.pass_(5)
        occupancy(hub, True)
        waited = seconds_until_alert(hub, clocks, within=300)
        assert waited is not None, "the car in the fire lane was never alerted"
        told = hub.stats()["rule_clock"]
        assert told["steps_back"] == (1 if step < 0 else 0) and told["floor_failures"] == 0
        if step < 0:
            assert 60 <= waited <= 125
        else:
            assert 55 <= waited <= 65
        assert lane_alerts(hub) == [FIRE_LANE]
        # Alerts, cases and shifts stay on the wall clock: the alert is dated when it was raised
        # there, not on the rules' clock, which is ahead while it absorbs the step.
        (alert,) = [a for a in hub.store.alerts(limit=10) if a.device_id == LANE]
        assert clocks.wall.now() - 10 <= alert.raised_at <= clocks.wall.now()
    finally:
        hub.close()


def test_a_device_time_is_moved_onto_the_rules_axis_while_a_step_is_absorbed(tmp_path: Path) -> None:
    """A native event with the device's own (correct) time, sent after the step back: not late."""
    clocks = Stepping(start=T0)
    hub = Hub(settings=hub_settings(tmp_path, NO_BROKER), clock=clocks.wall, monotonic=clocks.monotonic)
    topic = f"linli/{COMMUNITY}/devices/{LANE}/events"

    def native(occupied: bool) -> None:
        doc = {"v": 1, "kind": "occupancy", "value": occupied, "ts": clocks.wall.now() - 1}
        hub.pipeline.handle(topic, orjson.dumps(doc), 1, False)

    try:
        native(False)
        clocks.pass_(30)
        run(hub)
        clocks.step(-HOUR)
        clocks.pass_(5)
        native(True)
        state = hub.states.get(LANE)
        assert state is not None
        # On the rules' axis: the receive time there less the device's 1 s, not an hour before.
        assert state.last_seen == pytest.approx(hub.rule_clock.now() - 1, abs=0.01)
        assert seconds_until_alert(hub, clocks, within=300) is not None
    finally:
        hub.close()


def test_a_restart_after_the_clock_went_back_starts_from_where_the_rules_got_to(tmp_path: Path) -> None:
    clocks = Stepping(start=T0)
    settings = hub_settings(tmp_path, NO_BROKER)
    first = Hub(settings=settings, clock=clocks.wall, monotonic=clocks.monotonic)
    try:
        occupancy(first, False)
        clocks.pass_(30)
        run(first)
    finally:
        first.close()  # writes the floor (the running hub also does every few seconds)
    assert read_floor(Path(settings.data_dir) / FILE_NAME) == pytest.approx(T0 + 30)
    clocks.step(-HOUR)  # while the hub was down
    clocks.pass_(5)
    second = Hub(settings=settings, clock=clocks.wall, monotonic=clocks.monotonic)
    try:
        assert second.rule_clock.now() >= T0 + 30
        occupancy(second, True)
        assert seconds_until_alert(second, clocks, within=300) is not None
    finally:
        second.close()


def test_a_hub_on_a_bare_manual_clock_keeps_it_as_the_rules_clock(tmp_path: Path) -> None:
    """Tests and the bench pin time by hand: nothing of the real monotonic clock may move it."""
    clock = ManualClock(start=T0)
    hub = Hub(settings=hub_settings(tmp_path, NO_BROKER), clock=clock)
    try:
        assert hub.rule_clock is clock and hub.clock_floor is None
    finally:
        hub.close()


def test_a_demo_keeps_no_floor(tmp_path: Path) -> None:
    """A scenario moves the demo's clock hours on: the next demo must not start its rules there."""
    settings = hub_settings(tmp_path, NO_BROKER)
    (Path(settings.data_dir)).mkdir(parents=True, exist_ok=True)
    (Path(settings.data_dir) / FILE_NAME).write_text(f"{T0 + 6 * HOUR}\n")
    wall = ManualClock(start=T0)
    hub = Hub(settings=settings, clock=DemoClock(wall=wall), monotonic=Monotonic())
    try:
        assert isinstance(hub.rule_clock, SteadyClock) and hub.clock_floor is None
        assert hub.rule_clock.now() == T0
    finally:
        hub.close()
