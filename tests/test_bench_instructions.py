"""Smoke run of ``bench.instructions`` with tiny N: the harness works and its count is repeatable.

Not a speed test: nothing is compared with a target. What makes the harness worth having on a
noisy machine is that the same code gives the same count, so two runs of this tree must agree
closely, and the count must cover the measured messages only (not start-up).
"""

from __future__ import annotations

import shutil
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from adapters.events import Event, EventKind
from bench.instructions import InstructionsError, collected, measure, parse_without, taken_away
from bench.run import measure_pipeline
from hub.app import Hub
from hub.clock import ManualClock
from hub.ingest.device_state import DeviceStates
from hub.ingest.pipeline import Pipeline
from tests.conftest import server_missing
from tests.support.bench_stream import bench_stream

#: It takes stages away by patching the measured tree's classes: compiled ones cannot be patched.
pytestmark = pytest.mark.pure_only("patches hot-path classes to take stages away")

REPO = Path(__file__).resolve().parent.parent


def test_callgrinds_summary_line_is_read() -> None:
    assert collected("==41== Events : Ir\n==41== Collected : 608067324\n==41== I refs: 608,067,324\n") == (
        608067324
    )
    with pytest.raises(InstructionsError):
        collected("valgrind: failed to start tool 'callgrind'")


def test_without_names_a_stage_and_maybe_kinds() -> None:
    assert parse_without("rules") == ("rules", None)
    assert parse_without("events:signal,battery") == ("events", frozenset({"signal", "battery"}))
    for bad in ("decode", "rules:", "rules:,", ""):
        with pytest.raises(InstructionsError):
            parse_without(bad)
    with pytest.raises(InstructionsError, match="batery"), taken_away(["rules:batery"]):
        pass


def _counts(tmp: Path, specs: list[str]) -> dict[str, int]:
    stream, settings = bench_stream(tmp, 3000, client_id="linli-bench-without")
    with taken_away(specs):
        _, counts = measure_pipeline(stream, settings)
    return counts


def test_each_stage_taken_away_is_gone_and_put_back_after(tmp_path: Path) -> None:
    full = _counts(tmp_path / "full", [])
    assert full["signals"] > 0 and full["events"] > full["messages"]
    no_signal = _counts(tmp_path / "events", ["events:signal"])
    # Every report carries a link quality: one event fewer per message, nothing else changes.
    assert no_signal["events"] == full["events"] - full["messages"]
    assert no_signal["signals"] == full["signals"]
    assert _counts(tmp_path / "rules", ["rules"])["signals"] == 0
    # Without the battery rules: the door, parking and SOS rules still decide.
    battery_only = _counts(tmp_path / "battery", ["rules:battery"])
    assert 0 < battery_only["signals"] < full["signals"]
    # Put back: the same counts as before.
    assert _counts(tmp_path / "again", []) == full


def test_device_state_and_health_points_taken_away_by_kind() -> None:
    battery = Event("d1", EventKind.BATTERY, 100.0, "zigbee2mqtt", 50.0)
    signal = Event("d1", EventKind.SIGNAL, 100.0, "zigbee2mqtt", 80)
    # Unbound: the throttle only needs the device states (it keeps its dues there).
    pipeline = Pipeline.__new__(Pipeline)
    with taken_away(["device_state:battery", "health_points:battery"]):
        pipeline._states = states = DeviceStates()
        assert states.record(battery) is None
        assert states.get("d1") is None
        state = states.record(signal)
        assert state is not None and states.get("d1") is state
        assert not pipeline._health_point_due(battery, state)
        assert pipeline._health_point_due(signal, state)
    pipeline._states = states = DeviceStates()
    state = states.record(battery)
    assert state is not None and states.get("d1") is state
    assert pipeline._health_point_due(battery, state)
    # The event's own time is kept, not a due time of its own: no float per device and kind.
    assert state.battery_charted is battery.ts
    assert not pipeline._health_point_due(battery, state), "one point per interval"
    # Without a device state (taken away) every point is charted.
    assert pipeline._health_point_due(battery, None)


def test_the_same_code_counts_the_same_and_only_the_measured_messages() -> None:
    if shutil.which("valgrind") is None:
        server_missing("valgrind is not installed (scripts/system-deps installs it)")
    # Two runs side by side (start-up under valgrind is most of each run's time), then one
    # without the link-quality events.
    with ThreadPoolExecutor(max_workers=2) as pool:
        first, second, fewer = pool.map(
            lambda spec: measure(REPO, messages=60, warmup=300, seed=1, without=spec),
            [(), (), ("events:signal",)],
        )
    assert fewer["events_per_msg"] == pytest.approx(first["events_per_msg"] - 1.0, abs=0.01)
    assert fewer["instructions_per_msg"] < first["instructions_per_msg"]
    # Two, three events a Zigbee2MQTT report (the reading, battery, link quality).
    assert 2.0 <= first["events_per_msg"] <= 3.0
    count = first["instructions_per_msg"]
    assert abs(count - second["instructions_per_msg"]) <= 0.02 * count
    # Per message, not per run: start-up (imports, the community, the hub: billions of
    # instructions) is outside the count; a message is some hundreds of thousands.
    assert 20_000 <= count <= 2_000_000


def test_with_the_device_state_taken_away_the_rules_keep_each_event_s_own_time(tmp_path: Path) -> None:
    """The pipeline hands the rules the device state's object of a report's time only when the
    device state recorded the event: taken away, its stamp is another event's (or none)."""
    stream, settings = bench_stream(tmp_path, 4, client_id="linli-stamp-taken-away")
    hub = Hub(settings=settings, clock=ManualClock(start=2_000_000_000.0))
    try:
        with taken_away(["device_state"]):
            for topic, payload in stream:
                hub.pipeline.handle(topic, payload)
        state = hub.evaluator.state
        slots = [slot for key in state.slot_keys() if (slot := state.get(key)) is not None]
        times = [slot.last_ts for slot in slots if slot.last_ts is not None]  # not the armed deadlines
        assert times and all(1e9 < t < 3e9 for t in times), times
    finally:
        hub.close()
