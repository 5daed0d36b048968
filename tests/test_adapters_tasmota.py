"""Table tests of the Tasmota decoder on the verbatim samples."""

from __future__ import annotations

from pathlib import Path

import pytest

from adapters.errors import DecodeError
from adapters.events import DeviceKind, Event, EventKind, NoHints
from adapters.profiles import load_profiles
from adapters.tasmota import decode
from tests.support.samples import SAMPLES, Hints, sample

NOW = 1_790_000_000.0
PROFILES = load_profiles()
K = EventKind


def run(topic: str, payload: bytes, hints: Hints | None = None, received: float = NOW) -> list[Event]:
    return decode(topic, payload, received, hints or NoHints(), base="", profiles=PROFILES)


# Default switch polarity: ON = circuit closed = magnet present = door CLOSED.
CASES: list[tuple[str, Hints, list[tuple[str, EventKind, object]]]] = [
    ("lwt_offline", Hints(), [("tasmota_XXXXXX", K.OFFLINE, False)]),
    ("lwt_online", Hints(), [("tasmota_XXXXXX", K.ONLINE, True)]),
    ("result_button_single_so73", Hints(), [("tasmota/button1", K.BUTTON_PRESS, "single")]),
    (
        "result_button_single_so73",
        Hints({"tasmota/button1": DeviceKind.SOS_BUTTON}),
        [("tasmota/button1", K.SOS_PRESS, "single")],
    ),
    ("result_switch_detached_so114", Hints(), [("tasmota/switch1", K.DOOR_CLOSED, False)]),
    (
        "sensor_deepsleep_two_switches",
        Hints(),
        [("demo-sensor/switch1", K.DOOR_OPEN, True), ("demo-sensor/switch2", K.DOOR_CLOSED, False)],
    ),
    ("sensor_switch1_off", Hints(), [("tasmota/switch1", K.DOOR_OPEN, True)]),
    ("sensor_switch1_on", Hints(), [("tasmota/switch1", K.DOOR_CLOSED, False)]),
    # A switch wired the other way round: the profile inverts it.
    (
        "sensor_switch1_on",
        Hints(models={"tasmota/switch1": "tasmota-switch-open-on"}),
        [("tasmota/switch1", K.DOOR_OPEN, True)],
    ),
    (
        "sensor_switch1_on",
        Hints(models={"tasmota/switch1": "tasmota-switch-motion"}),
        [("tasmota/switch1", K.MOTION, True)],
    ),
    # Wifi.Signal is dBm; Wifi.RSSI (86) is a quality percentage.
    ("state_heartbeat_wifi", Hints(), [("demo-sensor", K.HEARTBEAT, None), ("demo-sensor", K.SIGNAL, -57.0)]),
    # Tasmota's Contact: 0 = closed (the opposite of Zigbee2MQTT's contact: false = open).
    (
        "zigbee_ias_door_closed",
        Hints(),
        [("SonoffZB/0x662E", K.DOOR_CLOSED, False), ("SonoffZB/0x662E", K.SIGNAL, 157.0)],
    ),
    (
        "zigbee_occupancy_on",
        Hints(),
        [("SonoffZB/0x057B", K.MOTION, True), ("SonoffZB/0x057B", K.SIGNAL, 194.0)],
    ),
    (
        "zigbee_occupancy_on",
        Hints({"SonoffZB/0x057B": DeviceKind.PARKING_SENSOR}),
        [("SonoffZB/0x057B", K.OCCUPANCY, True), ("SonoffZB/0x057B", K.SIGNAL, 194.0)],
    ),
]


@pytest.mark.parametrize(
    ("name", "hints", "expected"), CASES, ids=[f"{c[0]}-{i}" for i, c in enumerate(CASES)]
)
def test_sample_decodes_to_documented_events(
    name: str, hints: Hints, expected: list[tuple[str, EventKind, object]]
) -> None:
    topic, payload = sample("tasmota", name)
    events = run(topic, payload, hints)
    assert [(e.device_id, e.kind, e.value) for e in events] == expected
    assert all(e.family == "tasmota" for e in events)


def test_every_tasmota_sample_is_covered() -> None:
    names = {p.stem for p in (SAMPLES / "tasmota").iterdir() if p.suffix in (".json", ".txt")}
    assert names == {c[0] for c in CASES}


def test_time_with_offset_is_used_and_naive_time_is_not() -> None:
    topic, payload = sample("tasmota", "sensor_deepsleep_two_switches")  # 2021-06-27T15:03:44+02:00
    assert run(topic, payload)[0].ts == 1624799024.0
    topic, payload = sample("tasmota", "sensor_switch1_on")  # no offset: local time of unknown zone
    assert run(topic, payload)[0].ts == NOW


def test_wifi_quality_and_zigbee_name_attrs() -> None:
    topic, payload = sample("tasmota", "state_heartbeat_wifi")
    signal = run(topic, payload)[1]
    assert signal.attrs == {"unit": "dBm", "quality_pct": 86.0}
    topic, payload = sample("tasmota", "zigbee_ias_door_closed")
    assert run(topic, payload)[0].attrs["name"] == "door_sensor"


def test_prefixed_base_topic() -> None:
    _, payload = sample("tasmota", "lwt_online")
    events = decode("site1/tele/t1/LWT", payload, NOW, NoHints(), base="site1", profiles=PROFILES)
    assert [(e.device_id, e.kind) for e in events] == [("t1", K.ONLINE)]


@pytest.mark.parametrize(
    ("topic", "payload"),
    [
        ("tele/t1/INFO1", b"{}"),
        ("stat/t1/POWER", b"ON"),
        ("stat/t1/RESULT", b'{"POWER":"ON"}'),
        ("stat/t1/RESULT", b'{"Button1":{"Action":"CLEAR"}}'),
    ],
)
def test_ignored_messages(topic: str, payload: bytes) -> None:
    assert run(topic, payload) == []


def test_sensor_without_inputs_is_a_heartbeat() -> None:
    events = run("tele/t1/SENSOR", b'{"Time":"2021-01-01T00:00:00","AM2301":{"Temperature":21.0}}')
    assert [(e.device_id, e.kind) for e in events] == [("t1", K.HEARTBEAT)]


@pytest.mark.parametrize(
    ("topic", "payload", "reason"),
    [
        ("tele/t1/LWT", b"Maybe", "bad_value"),
        ("tele/t1/SENSOR", b"{", "malformed_json"),
        ("tele/t1/SENSOR", b'{"Switch1": "AJAR"}', "bad_value"),
        ("tele/t1/SENSOR", b'{"Switch1": 1}', "wrong_type"),
        ("tele/t1/SENSOR", b'{"ZbReceived": []}', "wrong_type"),
        ("tele/t1/SENSOR", b'{"ZbReceived": {"0x1": {"Contact": 2}}}', "bad_value"),
        ("tele/t1/SENSOR", b'{"ZbReceived": {"0x1": {"Contact": "x"}}}', "wrong_type"),
        ("tele/t1/STATE", b'{"Wifi": 3}', "wrong_type"),
        ("stat/t1/RESULT", b'{"Button1": "SINGLE"}', "wrong_type"),
        ("stat/t1/RESULT", b'{"Button1": {"Action": "SPIN"}}', "bad_value"),
        ("cmnd/t1/POWER", b"ON", "unknown_topic"),
        ("tele/LWT", b"Online", "unknown_topic"),
    ],
)
def test_bad_messages(topic: str, payload: bytes, reason: str) -> None:
    with pytest.raises(DecodeError) as info:
        run(topic, payload)
    assert info.value.reason == reason


def test_unknown_switch_profile_is_quarantined() -> None:
    topic, payload = sample("tasmota", "sensor_switch1_on")
    with pytest.raises(DecodeError) as info:
        run(topic, payload, Hints(models={"tasmota/switch1": "nope"}))
    assert info.value.reason == "unknown_profile"


def test_samples_folder_is_a_verbatim_copy() -> None:
    shared = Path(__file__).parents[2] / "shared" / "samples" / "tasmota"
    if not shared.exists():
        pytest.skip("shared/ is not beside this checkout")
    for path in shared.iterdir():
        assert (SAMPLES / "tasmota" / path.name).read_bytes() == path.read_bytes()


def test_slightly_future_time_becomes_the_receive_time() -> None:
    # Tasmota's `Time` with an offset (TimeZone set) is a device time like any other: one
    # ahead of the receive time is capped at it, unflagged within the skew, flagged beyond.
    ahead = b'{"Time":"2026-09-21T14:15:20+00:00","Wifi":{"RSSI":80,"Signal":-60}}'
    device = 1790000000.0 + 120  # NOW is 2026-09-21T14:13:20Z
    near = run("tele/t1/STATE", ahead, received=device - 120)
    assert all(e.ts == device - 120 and "ts_clamped" not in e.attrs for e in near)
    far = run("tele/t1/STATE", ahead, received=device - 3600)
    assert all(e.ts == device - 3600 and e.attrs["ts_clamped"] is True for e in far)


def test_impossible_zigbee_battery_readings_are_dropped_and_named() -> None:
    payload = (
        b'{"ZbReceived":{"0x662E":{"Device":"0x662E","Contact":1,"BatteryPercentage":-1,"BatteryVoltage":0}}}'
    )
    events = run("tele/zb/SENSOR", payload)
    assert [e.kind for e in events] == [K.DOOR_OPEN, K.BATTERY]
    battery = events[1]
    assert battery.value is None and "volts" not in battery.attrs
    assert "battery -1 %" in str(battery.attrs["implausible"]) and "battery 0 V" in str(
        battery.attrs["implausible"]
    )
