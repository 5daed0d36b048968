"""The behaviour model over a simulated week: rhythms, rarity, heartbeats and batteries."""

from __future__ import annotations

import itertools
from collections import Counter
from datetime import datetime
from zoneinfo import ZoneInfo

from simulators.behaviour import Behaviour, BehaviourConfig, simulate
from simulators.community import generate
from simulators.types import Act

SH = ZoneInfo("Asia/Shanghai")
START = datetime(2026, 3, 2, tzinfo=SH).timestamp()
WEEK = 7 * 86400.0
COMMUNITY = generate(seed=1, grids=3, buildings_per_grid=2, elders_per_building=6)
EMISSIONS = simulate(COMMUNITY.devices, start=START, end=START + WEEK, config=BehaviourConfig(seed=1))
DEVICES = {d.id: d for d in COMMUNITY.devices}


def hour(ts: float) -> int:
    return datetime.fromtimestamp(ts, SH).hour


def test_deterministic_and_independent_of_how_time_is_stepped() -> None:
    again = simulate(COMMUNITY.devices, start=START, end=START + 86400, config=BehaviourConfig(seed=1))
    stepped = Behaviour(devices=COMMUNITY.devices, start=START, config=BehaviourConfig(seed=1))
    pieces = [e for t in range(600, 86401, 600) for e in stepped.emissions(START + t)]
    first_day = [e for e in EMISSIONS if e.at <= START + 86400]
    assert again == first_day == pieces


def test_household_doors_peak_morning_and_evening_and_are_rare_at_night() -> None:
    opens = Counter(
        hour(e.at) for e in EMISSIONS if e.act is Act.DOOR_OPEN and DEVICES[e.device].household is not None
    )
    morning = sum(opens[h] for h in (6, 7, 8)) / 3
    evening = sum(opens[h] for h in (17, 18, 19)) / 3
    midday = sum(opens[h] for h in (13, 14, 15, 16)) / 4
    night = sum(opens[h] for h in range(5)) / 5
    assert morning > 2 * midday and evening > 2 * midday
    assert night < midday / 5


def test_entrances_are_busier_than_homes_and_fire_exits_rare() -> None:
    by_kind = Counter(DEVICES[e.device].place_kind or "home" for e in EMISSIONS if e.act is Act.DOOR_OPEN)
    homes = sum(1 for d in COMMUNITY.devices if d.kind == "door_sensor" and d.household)
    entrances = sum(1 for d in COMMUNITY.devices if d.place_kind == "entrance")
    assert by_kind["entrance"] / entrances > 5 * by_kind["home"] / homes
    assert by_kind["fire_exit"] < by_kind["entrance"] / 50


def test_parking_follows_commuting() -> None:
    spaces = {d.id for d in COMMUNITY.devices if d.place_kind == "parking_space"}
    leaves = Counter(hour(e.at) for e in EMISSIONS if e.act is Act.FREE and e.device in spaces)
    arrives = Counter(hour(e.at) for e in EMISSIONS if e.act is Act.OCCUPIED and e.device in spaces)
    assert leaves[7] + leaves[8] > sum(leaves[h] for h in range(10, 17))
    assert sum(arrives[h] for h in (17, 18, 19)) > sum(arrives[h] for h in range(0, 7))


def test_sos_presses_are_rare_and_false_presses_rarer() -> None:
    year = simulate(
        COMMUNITY.devices,
        start=START,
        end=START + 365 * 86400,
        config=BehaviourConfig(
            seed=2,
            doors=False,
            parking=False,
            heartbeats=False,
            offline_per_day=0,
            battery_drain=False,
            broken_gateways=0,
            tamper_per_day=0,
        ),
    )
    acts = Counter(e.act for e in year)
    buttons = sum(1 for d in COMMUNITY.devices if d.kind == "sos_button")
    assert 4 * buttons < acts[Act.SOS_PRESS] < 24 * buttons  # about one a month per button
    assert 0 < acts[Act.FALSE_PRESS] < acts[Act.SOS_PRESS] / 2
    assert acts[Act.SERVICE_REQUEST] > 0


def test_heartbeats_come_at_each_devices_interval() -> None:
    beats: dict[str, list[float]] = {}
    for e in EMISSIONS:
        if e.act is Act.HEARTBEAT:
            beats.setdefault(e.device, []).append(e.at)
    checked = 0
    for device_id, times in beats.items():
        gaps = [b - a for a, b in itertools.pairwise(times)]
        interval = DEVICES[device_id].heartbeat_s
        regular = [g for g in gaps if g < 1.5 * interval]  # longer gaps: offline or dead
        assert all(abs(g - interval) <= 0.021 * interval for g in regular), device_id
        checked += 1
    assert checked > 0.8 * len(DEVICES)


def test_batteries_drain_and_some_die() -> None:
    config = BehaviourConfig(seed=3, fast_drain_share=0.2, doors=False, parking=False)
    behaviour = Behaviour(devices=COMMUNITY.devices, start=START, config=config)
    first = {d.id: behaviour.battery(d.id, START) for d in COMMUNITY.devices}
    emissions = behaviour.emissions(START + 30 * 86400)
    drained = [
        d
        for d in COMMUNITY.devices
        if d.battery_powered and behaviour.battery(d.id, START + 86400) < first[d.id]
    ]
    assert len(drained) == sum(1 for d in COMMUNITY.devices if d.battery_powered)
    dead = [d for d in COMMUNITY.devices if behaviour.is_dead(d.id)]
    assert dead
    for device in dead:
        last = max(e.at for e in emissions if e.device == device.id)
        assert not [e for e in emissions if e.device == device.id and e.at > last]
    levels = [e.messages for e in emissions if e.act is Act.BATTERY]
    assert levels


def test_offline_tamper_and_garbage_happen() -> None:
    acts = Counter(e.act for e in EMISSIONS)
    assert acts[Act.OFFLINE] > 0 and acts[Act.ONLINE] > 0
    assert acts[Act.GARBAGE] > 50
    garbage_gateways = {DEVICES[e.device].gateway for e in EMISSIONS if e.act is Act.GARBAGE}
    assert len(garbage_gateways) == 1


def test_silenced_devices_say_nothing() -> None:
    behaviour = Behaviour(devices=COMMUNITY.devices, start=START, config=BehaviourConfig.quiet())
    victim = COMMUNITY.devices[0].id
    behaviour.silence(victim)
    emissions = behaviour.emissions(START + 86400)
    assert not [e for e in emissions if e.device == victim]
    assert {e.act for e in emissions} <= {Act.HEARTBEAT, Act.BATTERY}
