"""The visits scheduler's round on both store engines: in slices that give the event loop its
turns (at 100 000 devices one round covers 50 000 elders), making exactly the tasks the care
plans ask for — the same as the round run in one piece — and nothing twice."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

import hub.casework.visits as visits_module
from adapters.events import DeviceKind, Event, EventKind
from hub.app import Hub
from hub.cases.care import CareFile, CarePlan, Elder, TaskKind, next_task, plan_for
from hub.casework.elders import RegisterEntry
from hub.casework.signs import sign_status, source_device
from hub.clock import ManualClock
from hub.community.model import Device
from simulators.community import generate
from tests.helpers import hub_settings
from tests.support.servers import Broker
from tests.test_case_flow import PRESS

#: Elders per slice in these tests: a small community still takes several slices.
SLICE = 4


def registry_device(entry: RegisterEntry, device_id: str) -> Device:
    """The sign source's device, found again on the elder's entry."""
    device = source_device(entry, device_id)
    assert device is not None, (entry.elder.id, device_id)
    return device


def big_hub(tmp_path: Path, broker: Broker, store_url: str, *, at: float = PRESS) -> Hub:
    community = generate(seed=3, grids=2, buildings_per_grid=2, elders_per_building=4, parking_per_grid=1)
    registry = tmp_path / "generated.yaml"
    community.write(registry, as_json=True)
    settings = hub_settings(
        tmp_path, broker, community_file=str(registry), store={"url": store_url}, api_tokens=[]
    )
    return Hub(settings=settings, clock=ManualClock(start=at))


def expected(hub: Hub) -> set[tuple[str, TaskKind, float]]:
    """Straight from the care rules: each elder's planned kinds, first due after registration."""
    visits, now = hub.visits, hub.clock.now()
    wanted: set[tuple[str, TaskKind, float]] = set()
    for entry in visits.register():
        plan = plan_for(visits.care, entry.elder)
        for kind in (TaskKind.VISIT, TaskKind.CALL, TaskKind.SIGN_OF_LIFE):
            if kind not in plan.intervals:
                continue
            if kind is TaskKind.SIGN_OF_LIFE and sign_status(visits.care, entry) is not None:
                continue
            task = next_task(visits.care, entry.elder, kind, since=now, zone=hub.settings.timezone)
            assert task is not None
            wanted.add((task.elder, task.kind, task.due_at))
    return wanted


def stored(hub: Hub) -> set[tuple[str, TaskKind, float]]:
    tasks = hub.visits.visits.tasks(limit=100_000, signs_due_by=None)
    found = {(t.task.elder, t.task.kind, t.task.due_at) for t in tasks}
    assert len(found) == len(tasks), "one open task per elder and kind"
    return found


async def test_a_round_in_slices_yields_to_the_loop_and_makes_what_the_plans_ask(
    tmp_path: Path, mosquitto_broker: Broker, store_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(visits_module, "SLICE", SLICE)
    hub = big_hub(tmp_path, mosquitto_broker, store_url)
    try:
        elders = len(hub.visits.register())
        assert elders > 3 * SLICE, "the community must take several slices"
        turns = 0

        async def other_work() -> None:
            nonlocal turns
            while True:
                turns += 1
                await asyncio.sleep(0)

        beside = asyncio.create_task(other_work(), name="test-other-work")
        made = await hub.visits.schedule_in_slices()
        beside.cancel()
        with pytest.raises(asyncio.CancelledError):
            await beside
        slices = -(-elders // SLICE)
        assert turns >= slices - 1, f"the loop ran other work {turns} times in a round of {slices} slices"
        want = expected(hub)
        assert made == len(want) > elders, (
            "a visit and a call per elder, signs of life where a device gives one"
        )
        assert stored(hub) == want
        # The same round again, in one piece or in slices, finds nothing missing.
        assert hub.visits.schedule() == 0
        assert await hub.visits.schedule_in_slices() == 0
        assert stored(hub) == want
    finally:
        hub.close()


async def test_a_register_built_beside_the_first_round_is_the_one_the_round_works_on(
    tmp_path: Path, mosquitto_broker: Broker, store_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The register page builds the register while the first sliced round is building its own:
    the round goes on with the kept one, whose entries then hold each elder's memo (plan, kinds),
    so each elder's plan is worked out once, not once for the round's list and again for the
    kept one."""
    monkeypatch.setattr(visits_module, "SLICE", SLICE)
    planned: list[str] = []

    def counted(care: CareFile, elder: Elder) -> CarePlan:
        planned.append(elder.id)
        return plan_for(care, elder)  # the care rules' own, which visits imports

    monkeypatch.setattr(visits_module, "plan_for", counted)
    hub = big_hub(tmp_path, mosquitto_broker, store_url)
    try:
        built: list[list[RegisterEntry]] = []

        async def register_page() -> None:
            await asyncio.sleep(0)  # the round is between two of its first slices now
            built.append(hub.visits.register())

        beside = asyncio.create_task(register_page(), name="test-register-page")
        await hub.visits.schedule_in_slices()
        await beside
        (kept,) = built
        assert len(kept) > 3 * SLICE, "the community must take several slices"
        assert hub.visits.register() is kept
        assert all(entry.kinds is not None and entry.plan is not None for entry in kept)
        assert sorted(planned) == sorted(entry.elder.id for entry in kept)
    finally:
        hub.close()


async def test_the_whole_round_makes_the_same_tasks_as_the_sliced_one(
    tmp_path: Path, mosquitto_broker: Broker, store_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(visits_module, "SLICE", SLICE)
    hub = big_hub(tmp_path, mosquitto_broker, store_url)
    try:
        assert hub.visits.schedule() == len(expected(hub))
        assert stored(hub) == expected(hub)
    finally:
        hub.close()


async def test_the_scheduler_task_reports_its_first_round(
    tmp_path: Path, mosquitto_broker: Broker, store_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(visits_module, "SLICE", SLICE)
    hub = big_hub(tmp_path, mosquitto_broker, store_url)
    try:
        assert not hub.visits.first_round.is_set()
        runner = asyncio.create_task(hub.visits.run(), name="linli-visits")
        await asyncio.wait_for(hub.visits.first_round.wait(), 30)
        assert stored(hub) == expected(hub)
        runner.cancel()
        with pytest.raises(asyncio.CancelledError):
            await runner
    finally:
        hub.close()


async def test_a_sign_of_life_before_the_register_is_built_is_taken_by_the_first_round(
    tmp_path: Path, mosquitto_broker: Broker, store_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """After a restart the backlog arrives before the first round built the register: the
    door's sign waits for the round instead of building the register inside the backlog."""
    monkeypatch.setattr(visits_module, "SLICE", SLICE)
    before = big_hub(tmp_path, mosquitto_broker, store_url)
    try:
        before.visits.schedule()
        device_id, entry = next(
            (d, found)
            for d, found in before.visits.sign_sources().items()
            if registry_device(found, d).kind is DeviceKind.DOOR_SENSOR
        )
        first = before.visits.visits.open_task(entry.elder.id, TaskKind.SIGN_OF_LIFE)
        assert first is not None
    finally:
        before.close()
    # The next process, an hour before the task falls due: the elder opens his door.
    hub = big_hub(tmp_path, mosquitto_broker, store_url, at=first.task.due_at - 3600)
    try:
        opened = Event(
            device_id=device_id, kind=EventKind.DOOR_OPEN, ts=hub.clock.now(), family="zigbee2mqtt"
        )
        hub.visits.on_event(opened)
        kept = hub.visits.visits.open_task(entry.elder.id, TaskKind.SIGN_OF_LIFE)
        assert kept is not None and kept.key == first.key, "no register yet: nothing done on the hot path"
        await hub.visits.schedule_in_slices()
        done = hub.visits.visits.task(first.key)
        assert done is not None and done.done_at == opened.ts
        following = hub.visits.visits.open_task(entry.elder.id, TaskKind.SIGN_OF_LIFE)
        assert following is not None and following.task.due_at > first.task.due_at
    finally:
        hub.close()


async def test_signs_held_for_a_round_that_keeps_failing_stay_bounded(
    tmp_path: Path,
    mosquitto_broker: Broker,
    store_url: str,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """The store is down when the hub starts: the first round cannot read it, and the door events
    of the backlog and of every hour after must not pile up in memory until it can. Two per
    device and local day are kept, and the round that finally runs does with them what it would
    have done with all of them: the day's first sign completes the task, the next one is due
    after the day of the newest sign."""
    monkeypatch.setattr(visits_module, "SLICE", SLICE)
    before = big_hub(tmp_path, mosquitto_broker, store_url)
    try:
        before.visits.schedule()
        doors = [
            (d, found)
            for d, found in before.visits.sign_sources().items()
            if registry_device(found, d).kind is DeviceKind.DOOR_SENSOR
        ]
        assert len(doors) >= 2
        firsts = {
            entry.elder.id: before.visits.visits.open_task(entry.elder.id, TaskKind.SIGN_OF_LIFE)
            for _, entry in doors
        }
    finally:
        before.close()
    (device_id, entry), (other_id, _) = doors[0], doors[1]
    first = firsts[entry.elder.id]
    assert first is not None
    start = first.task.due_at - 3600
    hub = big_hub(tmp_path, mosquitto_broker, store_url, at=start)
    clock = hub.clock
    assert isinstance(clock, ManualClock)
    failing = True

    def open_kinds(real=hub.visits.visits.open_kinds):  # type: ignore[no-untyped-def]
        if failing:
            raise OSError("database is down")
        return real()

    monkeypatch.setattr(hub.visits.visits, "open_kinds", open_kinds)
    try:
        opened: list[Event] = []
        for minute in range(0, 3 * 24 * 60, 10):  # three days, a door event every 10 minutes
            clock.set(start + minute * 60)
            for dev in (device_id, other_id):
                event = Event(device_id=dev, kind=EventKind.DOOR_OPEN, ts=clock.now(), family="zigbee2mqtt")
                hub.visits.on_event(event)
                if dev == device_id:
                    opened.append(event)
            if minute % 120 == 0:
                with pytest.raises(OSError):
                    await hub.visits.schedule_in_slices()
        # Three or four local days (the start is an hour before a due time, not at midnight).
        assert len(hub.visits._early_signs) <= 2 * 2 * 4, "two per device and local day"
        failing = False
        await hub.visits.schedule_in_slices()
        assert not hub.visits._early_signs
        done = hub.visits.visits.task(first.key)
        assert done is not None and done.done_at == opened[0].ts, "the first sign completed the open task"
        following = hub.visits.visits.open_task(entry.elder.id, TaskKind.SIGN_OF_LIFE)
        assert following is not None
        plan = plan_for(hub.visits.care, entry.elder)
        wanted = next_task(
            hub.visits.care,
            entry.elder,
            TaskKind.SIGN_OF_LIFE,
            since=opened[-1].ts,
            zone=hub.settings.timezone,
        )
        assert plan.intervals and wanted is not None
        assert following.task.due_at == wanted.due_at, "the newest sign sets the next due time"
    finally:
        hub.close()

    # Past the hard bound the oldest go first, and it is said.
    monkeypatch.setattr(visits_module, "EARLY_SIGNS_MAX", 5)
    hub = big_hub(tmp_path, mosquitto_broker, store_url, at=start)
    try:
        with caplog.at_level("WARNING", logger=visits_module.__name__):
            for day in range(8):
                at = start + day * 86400
                hub.clock.set(at)  # type: ignore[attr-defined]
                hub.visits.on_event(
                    Event(device_id=device_id, kind=EventKind.DOOR_OPEN, ts=at, family="zigbee2mqtt")
                )
        kept = hub.visits._early_signs.held_rows()
        assert len(kept) == 5
        assert [at for _, at, _ in kept] == [start + d * 86400 for d in range(3, 8)], "the newest kept"
        assert "signs of life dropped" in caplog.text
    finally:
        hub.close()


async def test_elders_with_equal_flags_plans_and_kinds_share_one_object_of_each(
    tmp_path: Path, mosquitto_broker: Broker, store_url: str
) -> None:
    # 50 000 elders have a handful of distinct flag sets, plans and kind lists; one object of
    # each per elder was ≈ 25 MB at 100 000 devices (docs/benchmarks.md, "Twenty-ninth pass").
    hub = big_hub(tmp_path, mosquitto_broker, store_url)
    try:
        hub.visits.schedule()
        entries = hub.visits.register()
        visits = hub.visits
        by_flags: dict[frozenset[object], list[object]] = {}
        for entry in entries:
            by_flags.setdefault(entry.elder.flags, []).append(entry.elder.flags)
        assert len(entries) > len(by_flags), "the community must repeat a flag set"
        for same in by_flags.values():
            assert all(flags is same[0] for flags in same)
        plans = [visits._plan(entry) for entry in entries]
        kinds = [visits._planned(entry) for entry in entries]
        for objects in (plans, kinds):
            firsts: dict[object, object] = {}
            for item in objects:
                key = tuple(item.intervals.items()) if hasattr(item, "intervals") else item
                assert firsts.setdefault(key, item) is item
            assert len(firsts) < len(entries)
        # Shared, and still each elder's own plan: the care rules' answer for him.
        assert all(p == plan_for(visits.care, e.elder) for p, e in zip(plans, entries, strict=True))
    finally:
        hub.close()


async def test_elders_signing_the_same_day_share_one_object_of_each_time_of_their_memo(
    tmp_path: Path, mosquitto_broker: Broker, store_url: str
) -> None:
    # The memo's day bounds and due times are a handful of instants a day: a float of each
    # elder's own for three of them was 3.9 MB at 50 000 elders (docs/benchmarks.md,
    # "Thirty-eighth pass"). The due times are still the ones the tasks in the store carry.
    hub = big_hub(tmp_path, mosquitto_broker, store_url)
    try:
        hub.visits.schedule()
        sources = hub.visits.sign_sources()
        doors = {entry.elder.id: device for device, entry in sources.items()}
        assert len(doors) > 2, "the community must have several elders with a sign source"
        now = hub.clock.now()
        for device in doors.values():
            # Each sign's time an object of its own, as each message's is.
            hub.visits.on_event(Event(device_id=device, kind=EventKind.DOOR_OPEN, ts=now + 0.0, family="z2m"))
        entries = [sources[device] for device in doors.values()]
        for name in ("day_until", "day_due", "sign_due"):
            times = [getattr(entry, name) for entry in entries]
            assert all(t is times[0] for t in times), name
        for entry in entries:
            task = hub.visits.visits.open_task(entry.elder.id, TaskKind.SIGN_OF_LIFE)
            assert task is not None and task.task.due_at == entry.sign_due == entry.day_due
    finally:
        hub.close()
