"""Every family's simulated payloads, decoded by the hub's own adapters into the intended events.

This is the proof that simulator and hub agree on the wire formats.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from adapters.errors import DecodeError
from adapters.events import DeviceKind, Event, EventKind
from adapters.router import AdapterRouter, FamilySource
from adapters.router import Family as HubFamily
from simulators import formats
from simulators.community import SimDevice, generate
from simulators.types import Act, Family, Reading, UnsupportedActError

TS = 1_772_409_180.0  # 2026-03-02T07:53:00+08:00
ROUTER = AdapterRouter(sources=[FamilySource(f) for f in HubFamily if f is not HubFamily.CHIRPSTACK_V3])
COMMUNITY = generate(
    seed=3,
    grids=2,
    buildings_per_grid=3,
    elders_per_building=4,
    parking_per_grid=3,
    safety_devices=1,
    mix="z2m=1,ttn=1,chirpstack=1,tasmota=1,native=1",
)


class Hints:
    def __init__(self, devices: tuple[SimDevice, ...]) -> None:
        self._devices = {d.id: d for d in devices}

    def device_kind(self, device_id: str) -> DeviceKind | None:
        d = self._devices.get(device_id)
        return DeviceKind(d.kind) if d else None

    def device_profile(self, device_id: str) -> str | None:
        d = self._devices.get(device_id)
        return (d.model or None) if d else None

    def registered_id(self, device_id: str) -> str:
        return device_id


HINTS = Hints(COMMUNITY.devices)


def decode(device: SimDevice, act: Act, reading: Reading | None = None) -> list[Event]:
    events: list[Event] = []
    for message in formats.build(device, act, reading or Reading(battery_pct=55.0), TS):
        events += ROUTER.decode(message.topic, message.payload, TS, HINTS)
    return events


def kinds(events: list[Event], device_id: str) -> set[EventKind]:
    return {e.kind for e in events if e.device_id == device_id}


def representatives() -> Iterator[SimDevice]:
    """One device per (family, kind, model)."""
    seen: set[tuple[Family, str, str]] = set()
    for d in COMMUNITY.devices:
        key = (d.family, d.kind, d.model)
        if key not in seen:
            seen.add(key)
            yield d


DEVICES = list(representatives())
#: What each act must produce on the device (besides signal/battery extras).
EXPECTED: dict[Act, tuple[EventKind, object]] = {
    Act.SOS_PRESS: (EventKind.SOS_PRESS, None),
    Act.FALSE_PRESS: (EventKind.SOS_PRESS, None),
    Act.SERVICE_REQUEST: (EventKind.SERVICE_REQUEST, None),
    Act.DOOR_OPEN: (EventKind.DOOR_OPEN, True),
    Act.DOOR_CLOSE: (EventKind.DOOR_CLOSED, False),
    Act.OCCUPIED: (EventKind.OCCUPANCY, True),
    Act.FREE: (EventKind.OCCUPANCY, False),
    Act.HEARTBEAT: (EventKind.HEARTBEAT, None),
    Act.TAMPER: (EventKind.TAMPER, True),
    Act.TAMPER_CLEAR: (EventKind.TAMPER, False),
    Act.OFFLINE: (EventKind.OFFLINE, False),
    Act.ONLINE: (EventKind.ONLINE, True),
    Act.SMOKE: (EventKind.SMOKE, True),
    Act.GAS: (EventKind.GAS, True),
    Act.WATER_LEAK: (EventKind.WATER_LEAK, True),
    Act.FALL: (EventKind.FALL, True),
    Act.MOTION: (EventKind.MOTION, True),
}


def test_the_community_has_every_family_and_kind() -> None:
    combos = {(d.family, d.kind) for d in DEVICES}
    for family in Family:
        assert any(f is family for f, _ in combos), family
    assert (Family.TASMOTA, "door_sensor") in combos
    assert {(Family.TTN_V3, k) for k in ("sos_button", "door_sensor", "parking_sensor")} <= combos
    assert {(Family.CHIRPSTACK_V4, k) for k in ("sos_button", "door_sensor", "parking_sensor")} <= combos
    safety = {"smoke_detector", "gas_detector", "water_leak_sensor", "motion_sensor", "fall_detector"}
    assert safety <= {k for _, k in combos}


def test_every_safety_act_is_simulated() -> None:
    simulated = {c.values[1] for c in CASES}
    assert {Act.SMOKE, Act.GAS, Act.WATER_LEAK, Act.FALL, Act.MOTION} <= simulated


CASES = [
    pytest.param(d, act, id=f"{d.family.value}-{d.model}-{act.value}")
    for d in DEVICES
    for act in Act
    if act in EXPECTED and formats.supports(d, act)
]


@pytest.mark.parametrize(("device", "act"), CASES)
def test_acts_decode_to_the_intended_event(device: SimDevice, act: Act) -> None:
    events = decode(device, act)
    kind, value = EXPECTED[act]
    subject = device.id
    if act in (Act.OFFLINE, Act.ONLINE) and device.family is Family.TASMOTA:
        subject = device.id.split("/", 1)[0]  # the LWT is the node's
    if act is Act.ONLINE and device.family in (Family.TTN_V3, Family.CHIRPSTACK_V4):
        kind, value = EventKind.HEARTBEAT, None  # LoRaWAN: back online = a (re)join
        assert any(e.attrs.get("join") is True for e in events)
    if act is Act.HEARTBEAT and device.family is Family.TASMOTA:
        # TelePeriod: the switch re-reports its state (its sign of life), the node its STATE.
        kind, value = EventKind.DOOR_CLOSED, False
        assert EventKind.HEARTBEAT in kinds(events, device.id.split("/", 1)[0])
    if act is Act.HEARTBEAT and device.model == "Milesight WS303":
        # The periodic report carries the leakage status (README: 017564 030000): a re-sync.
        kind, value = EventKind.WATER_LEAK, False
    matching = [e for e in events if e.device_id == subject and e.kind is kind]
    assert matching, f"{act} gave {[(e.device_id, e.kind.value, e.value) for e in events]}"
    if value is not None:
        assert matching[0].value == value
    assert all(e.family == device.family.value for e in events)
    assert matching[0].ts == pytest.approx(TS, abs=1.0)


@pytest.mark.parametrize("device", DEVICES, ids=lambda d: f"{d.family.value}-{d.model}")
def test_every_device_can_heartbeat_and_go_offline_or_silent(device: SimDevice) -> None:
    assert formats.supports(device, Act.HEARTBEAT)
    events = decode(device, Act.HEARTBEAT)
    assert events and all(e.device_id.startswith(device.id.split("/", 1)[0]) for e in events)
    assert formats.supports(device, Act.ONLINE)


@pytest.mark.parametrize(
    "device",
    [d for d in DEVICES if formats.supports(d, Act.BATTERY)],
    ids=lambda d: f"{d.family.value}-{d.model}",
)
def test_battery_reports_percent_and_volts_where_the_format_has_them(device: SimDevice) -> None:
    events = [e for e in decode(device, Act.BATTERY, Reading(battery_pct=8.0)) if e.kind is EventKind.BATTERY]
    assert events, device
    assert events[0].value == pytest.approx(8.0, abs=0.6)
    if device.family in (Family.ZIGBEE2MQTT, Family.NATIVE):
        assert events[0].attrs["volts"] == pytest.approx(2.5, abs=0.01)


@pytest.mark.parametrize("device", DEVICES, ids=lambda d: f"{d.family.value}-{d.model}")
def test_garbage_is_refused_by_the_decoder(device: SimDevice) -> None:
    for nonce in range(8):
        for message in formats.build(device, Act.GARBAGE, Reading(nonce=nonce), TS):
            with pytest.raises(DecodeError):
                ROUTER.decode(message.topic, message.payload, TS, HINTS)


def test_sos_presses_go_at_qos_1_and_availability_is_retained() -> None:
    for d in DEVICES:
        if formats.supports(d, Act.SOS_PRESS):
            assert formats.build(d, Act.SOS_PRESS, Reading(), TS)[0].qos == 1
        if d.family is Family.ZIGBEE2MQTT:
            message = formats.build(d, Act.OFFLINE, Reading(), TS)[0]
            assert message.retain and message.topic.endswith("/availability")


def test_unsupported_acts_raise() -> None:
    tasmota = next(d for d in DEVICES if d.family is Family.TASMOTA)
    with pytest.raises(UnsupportedActError):
        formats.build(tasmota, Act.BATTERY, Reading(), TS)
    lora = next(d for d in DEVICES if d.family is Family.TTN_V3)
    assert not formats.supports(lora, Act.OFFLINE)


def test_lorawan_payloads_carry_the_vendor_bytes() -> None:
    ws301 = next(d for d in DEVICES if d.family is Family.TTN_V3 and d.model == "Milesight WS301")
    message = formats.build(ws301, Act.DOOR_OPEN, Reading(battery_pct=100.0), TS)[0]
    assert b'"frm_payload":"AXVkAwABBAAA"' in message.payload  # battery 100, open, installed
    assert message.topic.startswith("v3/linli-110105001001@ttn/devices/eui-")
