"""每日平安 (issue 18): the daily sign-of-life task, completed by the elder's own door, PIR or green
key as the ingest sees them, escalated only when a whole day passes without a sign, and scheduled
only for elders whose devices can give one (the register says why not). Pure rules first, then a
real hub on both store engines with a real broker and a Zigbee2MQTT door contact."""

from __future__ import annotations

import random
from datetime import datetime
from datetime import time as clock_time
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from adapters.events import DeviceKind, Event, EventKind
from hub.app import Hub
from hub.cases.care import CareFlag, Elder, TaskKind, care_from, due_at, load_care, same_due_until
from hub.casework.care_alerts import NO_SIGN_RULE
from hub.casework.elders import RegisterEntry, register
from hub.casework.signs import SIGN_EVENTS, NoSign, gives_sign, is_sign, sign_status
from hub.casework.visits import Visits
from hub.clock import ManualClock
from hub.community.model import Device, Resident
from tests.helpers import GRID, TOKEN, Phone, eventually, hub_settings, publisher
from tests.support.servers import Broker
from tests.test_case_flow import PRESS, call
from tests.test_visits import DOOR_OPEN, hub_with_phone

SHANGHAI = ZoneInfo("Asia/Shanghai")
PENDANT = Device(id="p-2", kind=DeviceKind.SOS_BUTTON, grid=GRID, model="Linli two-key pendant")
ONE_KEY = Device(id="p-1", kind=DeviceKind.SOS_BUTTON, grid=GRID, model="TS0215A")
PIR = Device(id="pir-1", kind=DeviceKind.MOTION_SENSOR, grid=GRID, model="RTCGQ11LM")
DOOR = Device(id="d-1", kind=DeviceKind.DOOR_SENSOR, grid=GRID, model="MCCGQ11LM")


def _event(device: Device, kind: EventKind, value: float | bool | str | None = None) -> Event:
    return Event(device_id=device.id, kind=kind, ts=PRESS, family="zigbee2mqtt", value=value)


def _entry(
    *devices: Device, flags: frozenset[CareFlag] = frozenset({CareFlag.LIVING_ALONE})
) -> RegisterEntry:
    elder = Elder(id="r9", community="110105001001", grid=GRID, flags=flags)
    return RegisterEntry(elder=elder, resident=Resident(id="r9", name="张三"), devices=devices)


def test_which_devices_and_events_give_a_sign() -> None:
    assert gives_sign(DOOR) and gives_sign(PIR) and gives_sign(PENDANT)
    # A one-key SOS button can only say "SOS": pressing it daily is no sign of life.
    assert not gives_sign(ONE_KEY)
    assert is_sign(PENDANT, _event(PENDANT, EventKind.SERVICE_REQUEST))
    assert not is_sign(ONE_KEY, _event(ONE_KEY, EventKind.SERVICE_REQUEST))
    assert not is_sign(PENDANT, _event(PENDANT, EventKind.BATTERY, 80.0))
    assert is_sign(DOOR, _event(DOOR, EventKind.DOOR_OPEN)) and is_sign(
        DOOR, _event(DOOR, EventKind.DOOR_CLOSED)
    )
    assert is_sign(PIR, _event(PIR, EventKind.OCCUPANCY, True)) and is_sign(
        PIR, _event(PIR, EventKind.MOTION)
    )
    # A PIR reporting that the room is empty says nothing about the elder.
    assert not is_sign(PIR, _event(PIR, EventKind.OCCUPANCY, False))
    assert not is_sign(DOOR, _event(DOOR, EventKind.HEARTBEAT))


def test_is_sign_is_gives_sign_and_the_kinds_events_for_every_combination() -> None:
    """``is_sign`` inlines ``gives_sign`` for the hot path: the same answer for every device kind,
    model, event kind and presence value."""
    for device_kind in DeviceKind:
        for model in ("Linli two-key pendant", "TS0215A"):
            device = Device(id="x-1", kind=device_kind, grid=GRID, model=model)
            for kind in EventKind:
                for value in (None, True, False, 1.0):
                    event = _event(device, kind, value)
                    expected = (
                        kind in SIGN_EVENTS.get(device_kind, frozenset())
                        and gives_sign(device)
                        and (
                            kind not in (EventKind.MOTION, EventKind.OCCUPANCY)
                            or value is None
                            or value is True
                        )
                    )
                    assert is_sign(device, event) == expected, (device_kind, model, kind, value)


def test_sign_status_says_why_an_elder_has_no_daily_task() -> None:
    care = load_care()
    assert sign_status(care, _entry(DOOR)) is None
    assert sign_status(care, _entry(ONE_KEY)) is NoSign.NO_DEVICE
    assert sign_status(care, _entry()) is NoSign.NO_DEVICE
    # Without a care flag the default plan has no daily sign (visits and calls only).
    assert sign_status(care, _entry(DOOR, flags=frozenset())) is NoSign.NOT_PLANNED
    # An override can switch it off for one resident.
    off = care_from(
        {
            **load_care().model_dump(mode="json"),
            "overrides": [{"resident": "r9", "plan": {"sign_of_life": None}}],
        }
    )
    assert sign_status(off, _entry(DOOR)) is NoSign.NOT_PLANNED
    assert NoSign.NO_DEVICE.text["zh"].startswith("没有能报平安的设备")


def _local(ts: float) -> tuple[str, int]:
    local = datetime.fromtimestamp(ts, SHANGHAI)
    return local.date().isoformat(), local.hour


def _missing(phone: Phone) -> list[tuple[str, int, str]]:
    return sorted(
        (topic.split("/")[-2], body["step"], body["visit"]["key"])
        for topic, body, _ in phone.messages
        if body.get("type") == "sign_of_life.missing"
    )


async def _visits(hub: Hub) -> list[dict[str, Any]]:
    status, body = await call(hub, "GET", "/api/visits", TOKEN)
    assert status == 200, body
    return list(body)


async def test_door_activity_completes_the_daily_sign_and_a_silent_day_escalates(
    tmp_path: Path, mosquitto_broker: Broker, store_url: str
) -> None:
    async with hub_with_phone(tmp_path, mosquitto_broker, store_url) as (hub, phone):
        first = await eventually(
            lambda: hub.visits.visits.open_task("r1", TaskKind.SIGN_OF_LIFE), what="r1's daily sign"
        )
        # Registered on Monday 02:13 local: a sign is due by 18:00 on Tuesday.
        assert _local(first.task.due_at) == ("2026-11-24", 18)
        status, elders = await call(hub, "GET", "/api/elders", TOKEN)
        assert status == 200 and [e["sign_of_life"] for e in elders if e["id"] == "r1"] == [None]
        # Not yet due: the sensors do this work, nobody's visit list shows it.
        assert [v for v in await _visits(hub) if v["kind"] == "sign_of_life"] == []
        gateway = await publisher(mosquitto_broker)

        async def door() -> None:
            # Opened and closed again: a door that only repeats its open state is no sign (the
            # state every report repeats, pipeline) — each real opening follows a closing.
            for state in (DOOR_OPEN, b'{"contact": true}'):
                seen = hub.pipeline.stats.events
                gateway.publish("zigbee2mqtt/door-1", state, qos=1)
                await eventually(lambda seen=seen: hub.pipeline.stats.events > seen, what="the door event")

        # A sign on the day the task opened does not move its due time (a day after that day).
        await door()
        same = hub.visits.visits.open_task("r1", TaskKind.SIGN_OF_LIFE)
        assert same is not None and same.key == first.key
        # Tuesday morning: the door completes Tuesday's sign; the next is due Wednesday 18:00.
        await hub.advance_clock(first.task.due_at - 9 * 3600)
        await door()
        done = hub.visits.visits.task(first.key)
        assert done is not None and done.done_at == hub.clock.now()
        second = hub.visits.visits.open_task("r1", TaskKind.SIGN_OF_LIFE)
        assert second is not None and _local(second.task.due_at) == ("2026-11-25", 18)
        # Nothing on Wednesday: at 18:00 the visitor (w-day, the grid's first worker) is told, once.
        await hub.advance_clock(second.task.due_at + 3600)
        await eventually(lambda: _missing(phone), what="the missing-sign reminder")
        assert _missing(phone) == [("w-day", 0, second.key)]
        # (The door's 24 h inactivity raised an urgent visit meanwhile: that one's reminders are its own.)
        assert not [
            b
            for _, b, _ in phone.messages
            if b.get("type") == "visit.escalate" and b["visit"]["kind"] == "sign_of_life"
        ]
        alert = hub.store.active_alert(NO_SIGN_RULE, "elder:r1")
        assert alert is not None and alert.severity == "info"
        (shown,) = [v for v in await _visits(hub) if v["kind"] == "sign_of_life"]
        assert shown["id"] and shown["light"] == "red"
        # 探访完成率 counts visits, not the sensors' daily signs.
        # Due so far: the two daily signs (one met, one missed) and the urgent visit the door's
        # 24 h inactivity raised; only that visit is counted.
        due = hub.visits.visits.tasks_due_between(PRESS, hub.clock.now())
        assert sorted(t.task.kind.value for t in due) == ["sign_of_life", "sign_of_life", "visit"]
        report = hub.visits.kpis(start=PRESS, end=hub.clock.now())
        assert (report.overall.due, report.overall.missed) == (1, 1)
        # The door opens late on Wednesday evening: the alert is resolved, Thursday's sign opens.
        await door()
        resolved = hub.store.alert(alert.id)
        assert resolved is not None and resolved.status == "resolved"
        third = hub.visits.visits.open_task("r1", TaskKind.SIGN_OF_LIFE)
        assert third is not None and _local(third.task.due_at) == ("2026-11-26", 18)
        # The grid leader's step (due + 1 d) is never sent for the task the door completed.
        await hub.advance_clock(third.task.due_at - 3600)
        assert _missing(phone) == [("w-day", 0, second.key)]
        await gateway.disconnect()


async def test_a_retained_or_foreign_event_is_no_sign(
    tmp_path: Path, mosquitto_broker: Broker, store_url: str
) -> None:
    async with hub_with_phone(tmp_path, mosquitto_broker, store_url) as (hub, _):
        first = await eventually(
            lambda: hub.visits.visits.open_task("r1", TaskKind.SIGN_OF_LIFE), what="r1's daily sign"
        )
        await hub.advance_clock(first.task.due_at - 3600)
        opened = Event(device_id="door-1", kind=EventKind.DOOR_OPEN, ts=hub.clock.now(), family="zigbee2mqtt")
        # The broker's retained copy of an old state is not the elder's activity today.
        hub.visits.on_event(opened, True)
        # Another household's sensor (the fire lane) is not his.
        hub.visits.on_event(
            Event(device_id="lane-b-1", kind=EventKind.OCCUPANCY, ts=hub.clock.now(), family="z", value=True)
        )
        still = hub.visits.visits.open_task("r1", TaskKind.SIGN_OF_LIFE)
        assert still is not None and still.key == first.key
        hub.visits.on_event(opened, False)
        assert hub.visits.visits.open_task("r1", TaskKind.SIGN_OF_LIFE).key != first.key  # type: ignore[union-attr]


async def test_a_later_sign_of_the_day_reads_nothing_and_the_memo_is_not_the_entry(
    tmp_path: Path, mosquitto_broker: Broker, store_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The elder's sign-of-life day is kept on his register entry (RegisterEntry's memo fields):
    a later sign that day is answered from it, and the entry still equals a fresh one."""
    async with hub_with_phone(tmp_path, mosquitto_broker, store_url) as (hub, _):
        first = await eventually(
            lambda: hub.visits.visits.open_task("r1", TaskKind.SIGN_OF_LIFE), what="r1's daily sign"
        )
        await hub.advance_clock(first.task.due_at - 9 * 3600)
        now = hub.clock.now()
        hub.visits.on_event(Event(device_id="door-1", kind=EventKind.DOOR_OPEN, ts=now, family="z2m"))
        following = hub.visits.visits.open_task("r1", TaskKind.SIGN_OF_LIFE)
        assert following is not None and following.key != first.key
        entry = hub.visits.sign_sources()["door-1"]
        assert entry.day_from == now < entry.day_until
        assert entry.sign_due == entry.day_due == following.task.due_at
        reads: list[str] = []
        original = hub.visits.visits.open_task

        def counted(elder: str, kind: TaskKind) -> object:
            reads.append(elder)
            return original(elder, kind)

        monkeypatch.setattr(hub.visits.visits, "open_task", counted)
        await hub.advance_clock(now + 3600)
        hub.visits.on_event(
            Event(device_id="door-1", kind=EventKind.DOOR_OPEN, ts=hub.clock.now(), family="z2m")
        )
        assert reads == []  # the same local day: the due time it gives is known, and stands
        # The memo takes no part in comparisons: the register built afresh equals the one in use.
        assert register(hub.registry) == hub.visits.register()


async def test_an_elder_without_a_sign_device_is_not_scheduled_and_the_register_says_why(
    tmp_path: Path, mosquitto_broker: Broker, store_url: str
) -> None:
    async with hub_with_phone(tmp_path, mosquitto_broker, store_url, door=False) as (hub, _):
        await eventually(lambda: hub.visits.visits.open_task("r1", TaskKind.VISIT), what="r1's weekly visit")
        assert hub.visits.visits.open_task("r1", TaskKind.SIGN_OF_LIFE) is None
        status, elders = await call(hub, "GET", "/api/elders", TOKEN)
        assert status == 200
        (r1,) = [e for e in elders if e["id"] == "r1"]
        assert r1["sign_of_life"] == NoSign.NO_DEVICE.text


def test_a_sign_on_the_same_local_day_gives_the_same_due_time() -> None:
    # What lets a second door event of the day skip the due-time arithmetic: until the next
    # local midnight (DST days included) due_at answers as for the day's first sign.
    rng = random.Random(5)
    for zone in ("Asia/Shanghai", "Europe/Berlin"):
        tz = ZoneInfo(zone)
        for start_local in (
            datetime(2026, 3, 28, 23, 30),
            datetime(2026, 3, 29, 0, 0),
            datetime(2026, 10, 25, 1, 15),
        ):
            start = start_local.replace(tzinfo=tz).timestamp()
            for interval in (86400.0, 2 * 86400.0, 7 * 86400.0):
                until = same_due_until(start, interval, zone=zone)
                first = due_at(start, interval, zone=zone, due_time=clock_time(18, 0))
                assert datetime.fromtimestamp(until, tz).time() == clock_time(0, 0)
                for t in [start, until - 1, *(rng.uniform(start, until) for _ in range(20))]:
                    assert due_at(t, interval, zone=zone, due_time=clock_time(18, 0)) == first
                assert due_at(until, interval, zone=zone, due_time=clock_time(18, 0)) > first
    # Shorter intervals are not rounded: the answer holds for the start alone.
    assert same_due_until(1.8e9, 3600.0, zone="Asia/Shanghai") == 1.8e9


def test_only_events_that_can_be_a_sign_reach_the_care_listener(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The pipeline asks the kind before it calls out (the listener is pure Python and the
    pipeline compiled: a call per battery or link-quality reading was ≈ 2 % of a message's
    instructions); every event of a sign kind still reaches it, retained or not."""
    heard: list[tuple[str, EventKind, bool]] = []

    def listening(self: Visits, event: Event, retain: bool = False) -> None:
        heard.append((event.device_id, event.kind, retain))

    monkeypatch.setattr(Visits, "on_event", listening)
    clock = ManualClock(start=1_795_371_180.0)
    hub = Hub(settings=hub_settings(tmp_path, Broker("127.0.0.1", 1, "u", "p")), clock=clock)
    try:
        handle = hub.pipeline.handle
        handle("zigbee2mqtt/door-1", b'{"contact": false, "battery": 90, "linkquality": 120}', 1)
        clock.advance(1)
        handle("zigbee2mqtt/door-1", b'{"contact": true, "battery": 90}', 1, True)
        clock.advance(1)
        handle("zigbee2mqtt/door-1", b'{"battery": 89, "linkquality": 100}', 1)
        assert heard == [
            ("door-1", EventKind.DOOR_OPEN, False),
            ("door-1", EventKind.DOOR_CLOSED, True),
        ]
        assert hub.pipeline.stats.events >= 6  # the others were handled, only not passed on
    finally:
        hub.close()


async def test_a_sign_the_open_task_already_covers_takes_no_transaction(
    tmp_path: Path, mosquitto_broker: Broker, store_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Each elder's first sign after a start mostly finds the day's task standing: one read
    decides it, and no transaction is opened (on SQLite BEGIN IMMEDIATE took the write lock for
    it, on PostgreSQL BEGIN and COMMIT were two of its three round trips). A sign that moves
    the task still writes, in a transaction."""
    async with hub_with_phone(tmp_path, mosquitto_broker, store_url) as (hub, _):
        first = await eventually(
            lambda: hub.visits.visits.open_task("r1", TaskKind.SIGN_OF_LIFE), what="r1's daily sign"
        )
        store = hub.visits._store
        opened: list[int] = []
        original = store.transaction

        def counted(**kwargs: Any) -> Any:
            opened.append(1)
            return original(**kwargs)

        monkeypatch.setattr(store, "transaction", counted)
        # The day the task opened: its due time stands.
        hub.visits.on_event(
            Event(device_id="door-1", kind=EventKind.DOOR_OPEN, ts=hub.clock.now(), family="z2m")
        )
        assert opened == []
        assert hub.visits.sign_sources()["door-1"].sign_due == first.task.due_at
        same = hub.visits.visits.open_task("r1", TaskKind.SIGN_OF_LIFE)
        assert same is not None and same.key == first.key
        # Next day, before the task is due: the sign completes it and opens the next one.
        await hub.advance_clock(first.task.due_at - 3600)
        opened.clear()  # the rounds the clock ran
        hub.visits.on_event(
            Event(device_id="door-1", kind=EventKind.DOOR_OPEN, ts=hub.clock.now(), family="z2m")
        )
        assert opened == [1]
        following = hub.visits.visits.open_task("r1", TaskKind.SIGN_OF_LIFE)
        assert following is not None and following.key != first.key
