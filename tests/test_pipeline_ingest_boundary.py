"""What the MQTT ingest boundary must not believe (an adversarial review, reproduced in process).

Each test drives ``Pipeline.handle`` on a real :class:`Hub` (no broker connection) with a
message that a device, a gateway or anyone with publish rights could send, and checks that
the hub's view of the registered device is not bent by it.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import orjson
import pytest

from bench.run import hub_settings as bench_settings
from hub.app import Hub
from hub.clock import ManualClock
from hub.community.files import load_yaml
from hub.community.registry import Registry
from hub.ingest.pipeline import owned_roots, root_claim
from simulators.district import generate_district
from tests.helpers import COMMUNITY, GRID, REGISTRY, SOS_BUTTON, hub_settings
from tests.support.servers import Broker

NOW = 1_795_371_180.0  # 2026-11-23 02:13:00 Asia/Shanghai
NODE = "tasmota_552812"
#: A fire-exit contact wired to a Tasmota node's first input: the node's LWT is its liveness.
EXIT = f"{NODE}/switch1"
WITH_NODE = REGISTRY + (
    f'      - {{id: "{EXIT}", kind: door_sensor, model: tasmota-switch-default, grid: "{GRID}"}}\n'
)


@pytest.fixture
async def hub(tmp_path: Path) -> AsyncIterator[Hub]:
    community = tmp_path / "with-node.yaml"
    community.write_text(WITH_NODE, encoding="utf-8")
    settings = hub_settings(tmp_path, Broker("127.0.0.1", 1, "u", "p"), community_file=str(community))
    hub = Hub(settings=settings, clock=ManualClock(start=NOW))
    try:
        yield hub
    finally:
        hub.close()


def native(device_id: str, doc: dict[str, object], community: str = COMMUNITY) -> tuple[str, bytes]:
    return f"linli/{community}/devices/{device_id}/events", orjson.dumps(doc)


async def test_a_press_dated_ahead_does_not_make_the_real_presses_late(hub: Hub) -> None:
    # An SOS dated now+299 s used to be believed: the device's last event and the rule slots
    # stood five minutes ahead, so the real press a minute later was "late" for the rules.
    clock = hub.clock
    assert isinstance(clock, ManualClock)
    hub.pipeline.handle(
        *native(SOS_BUTTON, {"v": 1, "kind": "sos_press", "value": "single", "ts": NOW + 299})
    )
    state = hub.states.get(SOS_BUTTON)
    assert state is not None and state.last_seen == NOW
    clock.advance(60)
    hub.pipeline.handle(*native(SOS_BUTTON, {"v": 1, "kind": "sos_press", "value": "single"}))
    assert state.last_seen == NOW + 60
    assert hub.pipeline.stats.quarantined == 0


async def test_only_the_node_s_own_family_speaks_for_its_children(hub: Hub) -> None:
    # An unregistered id's heartbeat/online/signal is forwarded to its registered children
    # (Tasmota's LWT for node/switch1). It used to be for any family and any community, so a
    # native event under a made-up community or a Zigbee2MQTT availability with the node's
    # name kept a dead fire-exit sensor "alive".
    assert hub.registry.children(NODE) == [EXIT]
    hub.pipeline.handle(*native(NODE, {"v": 1, "kind": "heartbeat"}, community="999999999999"))
    hub.pipeline.handle(*native(NODE, {"v": 1, "kind": "online"}))
    hub.pipeline.handle(f"zigbee2mqtt/{NODE}/availability", b'{"state": "online"}')
    assert hub.states.get(EXIT) is None
    hub.pipeline.handle(f"tele/{NODE}/LWT", b"Online")
    state = hub.states.get(EXIT)
    assert state is not None and state.online and state.family == "tasmota"


async def test_an_impossible_battery_is_quarantined_and_raises_nothing(hub: Hub) -> None:
    # {"battery": -1} raised the battery-low alerts, {"voltage": -5} the voltage ones. The
    # readings are dropped, the fact is quarantined with its reason, the door still counts.
    for report in (b'{"contact": false, "battery": -1}', b'{"battery": "-3"}', b'{"voltage": -5}'):
        hub.pipeline.handle(f"zigbee2mqtt/{SOS_BUTTON}", report)
    assert [a.rule for a in hub.store.alerts()] == []
    assert hub.quarantine.counts == {"implausible_value": 3}
    assert hub.pipeline.stats.implausible_readings == 3
    state = hub.states.get(SOS_BUTTON)
    assert state is not None and state.battery is None and "door_open" in state.last


async def test_a_communitys_gateway_root_speaks_for_that_community_only(tmp_path: Path) -> None:
    # Community B's Zigbee2MQTT and Tasmota roots naming community A's devices: someone with
    # B's gateway credentials publishing under A's ids. Quarantined, never A's alert; A's own
    # root and the hub-wide one still work.
    district = generate_district(communities=2, seed=3, grids=1, buildings_per_grid=1, elders_per_building=2)
    path = tmp_path / "district.yaml"
    district.write(path)
    a, b = sorted({d.community for d in district.devices})
    button = next(d.id for d in district.devices if d.community == a and d.kind == "sos_button")
    settings = bench_settings(
        broker_url="mqtt://127.0.0.1:1", data_dir=tmp_path / "data", community_file=path, client_id="t"
    )
    hub = Hub(settings=settings, clock=ManualClock(start=NOW))
    try:
        press = orjson.dumps({"action": "emergency"})
        hub.pipeline.handle(f"zigbee2mqtt-{b}/{button}", press, 1, False)
        hub.pipeline.handle(f"site-{b}/tele/{button}/STATE", b'{"POWER":"ON"}', 1, False)
        assert hub.store.alerts() == []
        assert hub.pipeline.stats.community_mismatches == 2
        hub.quarantine.flush()
        reasons = {(r.topic, r.reason) for r in hub.store.quarantine()}
        assert (f"zigbee2mqtt-{b}/{button}", "community_mismatch") in reasons
        assert hub.states.get(button) is None, "nothing of the foreign message reached the device"

        hub.pipeline.handle(f"zigbee2mqtt-{a}/{button}", press, 1, False)  # its own gateway
        (alert,) = hub.store.alerts()
        assert (alert.device_id, alert.community) == (button, a)
    finally:
        hub.close()


async def test_a_device_id_with_the_groups_prefix_is_refused(hub: Hub) -> None:
    # "unassigned:<root>" names the hub's own group of unregistered devices behind a gateway:
    # a device calling itself that raised alerts on the group and merged into it.
    press = orjson.dumps({"action": "emergency"})
    hub.pipeline.handle(f"zigbee2mqtt/unassigned:linli/{COMMUNITY}/devices", press, 1, False)
    topic, doc = native("unassigned:zigbee2mqtt", {"v": 1, "kind": "sos_press"})
    hub.pipeline.handle(topic, doc, 1, False)
    assert hub.store.alerts() == []
    assert hub.quarantine.counts == {"reserved_id": 2}
    hub.pipeline.handle("zigbee2mqtt/0xdeadbeef00000001", press, 1, False)  # a real stranger still raises
    (alert,) = hub.store.alerts()
    assert alert.subject == "unassigned:zigbee2mqtt"


def test_a_districts_roots_are_found_by_their_first_level(tmp_path: Path) -> None:
    # ≈ 6 roots a community: a district's message is compared with its own level's few, not all.
    district = generate_district(communities=12, seed=5, grids=1, buildings_per_grid=1, elders_per_building=1)
    district.write(tmp_path / "district.yaml")
    roots = owned_roots(Registry(communities=load_yaml(tmp_path / "district.yaml")))
    assert sum(len(entries) for entries in roots.values()) >= 12 * 5
    assert max(len(entries) for level, entries in roots.items() if level.startswith("zigbee2mqtt")) == 1
    for level, entries in roots.items():  # only the claim: no hub needed
        for prefix, community in entries:
            assert prefix.split("/", 1)[0] == level
            assert root_claim(roots, f"{prefix}some-device") == community
    assert root_claim(roots, "zigbee2mqtt/0x00158d0001") is None  # a hub-wide root claims nothing
