"""The dashboards' gauges run in steps: the event loop that carries SOS presses is never held long.

The gauge writer once read every open case and walked every device in one go on the loop; with
a few hundred busy cases that was a stall of 150-200 ms in which presses waited
(docs/benchmarks.md, "Twenty-second pass").
"""

from __future__ import annotations

import asyncio
from pathlib import Path

import orjson
import pytest

from bench.run import STREAM_START, hub_settings
from hub.app import Hub
from hub.cases.model import CaseAction, Channel
from hub.casework.access import Actor
from hub.casework.service import READS_PER_STEP
from hub.clock import ManualClock
from hub.ingest import gauges
from hub.records import Role
from hub.steps import Steps, run_in_turns, run_through
from simulators import zigbee2mqtt as z2m
from simulators.community import generate


def busy_hub(tmp_path: Path) -> tuple[Hub, list[str]]:
    """A hub with an open SOS case for each of its Zigbee2MQTT buttons (the case ids)."""
    community = generate(seed=5, grids=2, buildings_per_grid=4, elders_per_building=12, parking_per_grid=1)
    file = tmp_path / "community.yaml"
    community.write(file)
    settings = hub_settings(
        broker_url="mqtt://127.0.0.1:1", data_dir=tmp_path / "data", community_file=file, client_id="gauge"
    )
    hub = Hub(settings=settings, clock=ManualClock(start=STREAM_START))
    for device in community.devices:
        if device.kind == "sos_button" and device.family.value == "zigbee2mqtt":
            doc = orjson.loads(z2m.sos_press(action=device.sos_action, battery=90.0, linkquality=120, ts=0))
            doc.pop("last_seen", None)
            hub.pipeline.handle(z2m.state_topic(device.id, base="zigbee2mqtt"), orjson.dumps(doc), 1, False)
    return hub, hub.cases.case_ids(limit=1000)


def turns(steps: Steps[object]) -> int:
    """How many times the job handed the loop back before it was done."""
    count = 0
    while True:
        try:
            next(steps)
        except StopIteration:
            return count
        count += 1


def act_on_all(hub: Hub, case_ids: list[str], action: CaseAction) -> None:
    for case_id in case_ids:
        case = hub.cases.load(case_id)
        assert case is not None and case.assignee is not None
        worker = Actor(case.assignee, Role.GRID_WORKER)
        hub.casework.act(case_id, action, actor=worker, channel=Channel.CONSOLE)


def test_the_open_case_count_reads_at_most_a_step_of_cases_between_turns(tmp_path: Path) -> None:
    hub, case_ids = busy_hub(tmp_path)
    try:
        assert len(case_ids) > 2 * READS_PER_STEP
        now = hub.clock.now()
        steps = len(case_ids) // READS_PER_STEP - 1
        # Nothing read yet: every case is read, a step of them at a time.
        assert turns(hub.casework.open_counts_steps(now)) >= steps
        assert turns(hub.casework.open_counts_steps(now)) == 0, "nothing changed: no case read, no turn"
        # Every case changes twice: read again in steps, and counted as a fresh reader counts.
        act_on_all(hub, case_ids, CaseAction.ACCEPT)
        act_on_all(hub, case_ids, CaseAction.ARRIVE)
        assert turns(hub.casework.open_counts_steps(now)) >= steps
        kept = hub.casework.open_counts(now)
        assert sum(kept.values()) == len(case_ids)
        assert all(hub.casework._open_read[c] == hub.cases.load(c) for c in case_ids)
        hub.casework._open_read = {}
        assert hub.casework.open_counts(now) == kept
    finally:
        hub.close()


def test_the_fleet_gauge_hands_the_loop_back_between_devices(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    hub, _ = busy_hub(tmp_path)
    try:
        devices = len(hub.registry.devices())
        run_through(hub.casework.open_counts_steps(hub.clock.now()))  # the cases read: no turn for them
        monkeypatch.setattr(gauges, "DEVICES_PER_STEP", 10)
        assert turns(hub.gauges.write_steps(hub.clock.now())) == (devices - 1) // 10
    finally:
        hub.close()


def test_other_work_runs_while_the_gauges_are_written(tmp_path: Path) -> None:
    hub, case_ids = busy_hub(tmp_path)
    ran: list[int] = []

    async def other() -> None:
        while True:
            ran.append(1)
            await asyncio.sleep(0)

    async def main() -> None:
        task = asyncio.create_task(other())
        await asyncio.sleep(0)
        before = len(ran)
        await run_in_turns(hub.gauges.write_steps(hub.clock.now()))
        task.cancel()
        assert len(ran) - before >= len(case_ids) // READS_PER_STEP - 1

    try:
        asyncio.run(main())
        assert run_through(hub.casework.open_counts_steps(hub.clock.now())) == hub.casework.open_counts(
            hub.clock.now()
        )
    finally:
        hub.close()
