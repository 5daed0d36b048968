"""Table test of the Zigbee2MQTT decoder on the verbatim samples in tests/fixtures/samples."""

from __future__ import annotations

import math
from pathlib import Path

import orjson
import pytest

from adapters._json import plausible_battery
from adapters.errors import DecodeError
from adapters.events import WHOLE_READINGS, DeviceKind, EventKind, NoHints
from adapters.zigbee2mqtt import decode, press_type
from tests.support.samples import SAMPLES, Hints
from tests.support.samples import sample as sample_of

NOW = 1_790_000_000.0  # 2026-09-21, after every sample's last_seen


def sample(name: str) -> tuple[str, bytes]:
    return sample_of("zigbee2mqtt", name)


def base_of(topic: str) -> str:
    return topic.split("/", 1)[0]


# (sample, hints, expected [(device, kind, value)])
CASES: list[tuple[str, dict[str, DeviceKind], list[tuple[str, EventKind, object]]]] = [
    (
        "tuya_ts0215a_sos_emergency",
        {},
        [
            ("0x847127fffe0542eb", EventKind.SOS_PRESS, "emergency"),
            ("0x847127fffe0542eb", EventKind.SIGNAL, 90.0),
        ],
    ),
    (
        "heiman_hs1eb_single_state",
        {"0x842e14fffee5488f": DeviceKind.SOS_BUTTON},
        [
            ("0x842e14fffee5488f", EventKind.SOS_PRESS, "single"),
            ("0x842e14fffee5488f", EventKind.BATTERY, 51.5),
            ("0x842e14fffee5488f", EventKind.SIGNAL, 192.0),
        ],
    ),
    (
        # The same Heiman press from a button not registered as an SOS button is a plain press.
        "heiman_hs1eb_single_state",
        {},
        [
            ("0x842e14fffee5488f", EventKind.BUTTON_PRESS, "single"),
            ("0x842e14fffee5488f", EventKind.BATTERY, 51.5),
            ("0x842e14fffee5488f", EventKind.SIGNAL, 192.0),
        ],
    ),
    (
        "tuya_ts0215a_sos_action_cleared",
        {},
        [("0x847127fffe0542eb", EventKind.SIGNAL, 90.0), ("0x847127fffe0542eb", EventKind.HEARTBEAT, None)],
    ),
    (
        "tuya_ts0601_sos_idle_action_null",
        {},
        [
            ("0xa4c13899607febd1", EventKind.BATTERY, 100.0),
            ("0xa4c13899607febd1", EventKind.SIGNAL, 14.0),
            ("0xa4c13899607febd1", EventKind.HEARTBEAT, None),
        ],
    ),
    ("tuya_ts0215a_sos_action_subtopic", {}, []),
    # Hazard exposes: a leak (with tamper false), smoke, natural gas and carbon monoxide.
    (
        "aqara_water_leak_true",
        {},
        [
            ("BAD_LEAK01", EventKind.TAMPER, False),
            ("BAD_LEAK01", EventKind.WATER_LEAK, True),
            ("BAD_LEAK01", EventKind.BATTERY, 100.0),
            ("BAD_LEAK01", EventKind.SIGNAL, 73.0),
        ],
    ),
    (
        "hb_z2m_smoke_true",
        {},
        [
            ("FRIENDLY_NAME", EventKind.TAMPER, False),
            ("FRIENDLY_NAME", EventKind.SMOKE, True),
            ("FRIENDLY_NAME", EventKind.BATTERY, None),
        ],
    ),
    ("hb_z2m_gas_true", {}, [("FRIENDLY_NAME", EventKind.GAS, True)]),
    ("hb_z2m_co_true", {}, [("FRIENDLY_NAME", EventKind.GAS, True)]),
    (
        # contact: false means OPEN; the friendly name contains a slash; base topic is zb6.
        "aqara_mccgq11lm_open",
        {},
        [
            ("h6/T1", EventKind.DOOR_OPEN, True),
            ("h6/T1", EventKind.BATTERY, 100.0),
            ("h6/T1", EventKind.SIGNAL, 153.0),
        ],
    ),
    (
        "aqara_motion_occupancy_true",
        {},
        [
            ("AZ_MOTION01", EventKind.MOTION, True),
            ("AZ_MOTION01", EventKind.BATTERY, 100.0),
            ("AZ_MOTION01", EventKind.SIGNAL, 86.0),
        ],
    ),
    ("docs_rtcgq01lm_occupancy", {}, [("FRIENDLY_NAME", EventKind.MOTION, True)]),
    ("docs_wxkg01lm_action_single", {}, [("FRIENDLY_NAME", EventKind.BUTTON_PRESS, "single")]),
    (
        "aqara_switch_action_with_endpoint_suffix",
        {},
        [
            ("AZ_SWITCH01", EventKind.BUTTON_PRESS, "single"),
            ("AZ_SWITCH01", EventKind.BATTERY, 100.0),
            ("AZ_SWITCH01", EventKind.SIGNAL, 76.0),
        ],
    ),
    (
        "aqara_wxkg11lm_report_without_action",
        {},
        [
            ("0x00158d00023dc252", EventKind.BATTERY, 100.0),
            ("0x00158d00023dc252", EventKind.SIGNAL, 73.0),
            ("0x00158d00023dc252", EventKind.HEARTBEAT, None),
        ],
    ),
    (
        "legacy_2018_leak_battery_as_string",
        {},
        [
            ("czujnikzalania1", EventKind.WATER_LEAK, False),  # dry: a state, so no heartbeat
            ("czujnikzalania1", EventKind.BATTERY, 100.0),
            ("czujnikzalania1", EventKind.SIGNAL, 99.0),
        ],
    ),
    ("device_availability_json_online", {}, [("MY_DEVICE", EventKind.ONLINE, True)]),
    ("device_availability_json_offline", {}, [("MY_DEVICE", EventKind.OFFLINE, False)]),
    ("bridge_state_json", {}, []),
    ("bridge_state_json_offline_lwt", {}, []),
    ("bridge_state_legacy_text", {}, []),
    ("bridge_event_device_joined", {}, []),
    ("bridge_event_device_leave", {}, []),
    ("bridge_devices_contact_expose_fragment", {}, []),
]


@pytest.mark.parametrize(
    ("name", "hints", "expected"), CASES, ids=[f"{c[0]}-{i}" for i, c in enumerate(CASES)]
)
def test_sample_decodes_to_documented_events(
    name: str, hints: dict[str, DeviceKind], expected: list[tuple[str, EventKind, object]]
) -> None:
    topic, payload = sample(name)
    events = decode(topic, payload, NOW, Hints(hints), base=base_of(topic))
    assert [(e.device_id, e.kind, e.value) for e in events] == expected
    assert all(e.family == "zigbee2mqtt" for e in events)


def test_every_zigbee2mqtt_sample_is_covered() -> None:
    names = {p.stem for p in (SAMPLES / "zigbee2mqtt").iterdir() if p.suffix in (".json", ".txt")}
    assert names == {c[0] for c in CASES}


def test_device_time_used_when_trustworthy_and_clamped_when_in_future() -> None:
    topic, payload = sample("aqara_motion_occupancy_true")  # last_seen 2024-01-09T23:22:22+00:00
    events = decode(topic, payload, NOW, NoHints(), base="zigbee2mqtt")
    assert events[0].ts == 1704842542.0
    assert "ts_clamped" not in events[0].attrs
    early = 1704842542.0 - 3600  # the device says it happened an hour after we received it
    events = decode(topic, payload, early, NoHints(), base="zigbee2mqtt")
    assert events[0].ts == early
    assert events[0].attrs["ts_clamped"] is True


def test_slightly_future_last_seen_becomes_the_receive_time() -> None:
    # A door report dated ahead of its arrival made the real opening after it look old to
    # the duration trigger (a fire exit held open was never alerted): the hub caps it.
    topic, payload = sample("aqara_motion_occupancy_true")  # last_seen 2024-01-09T23:22:22+00:00
    received = 1704842542.0 - 299
    events = decode(topic, payload, received, NoHints(), base="zigbee2mqtt")
    assert all(e.ts == received and "ts_clamped" not in e.attrs for e in events)
    at_ms = orjson.dumps({"contact": False, "last_seen": int((NOW + 120) * 1000)})
    (event, *_) = decode("zigbee2mqtt/door", at_ms, NOW, NoHints(), base="zigbee2mqtt")
    assert event.kind is EventKind.DOOR_OPEN and event.ts == NOW and "ts_clamped" not in event.attrs


def test_voltage_reported_in_volts() -> None:
    topic, payload = sample("aqara_mccgq11lm_open")
    battery = next(
        e for e in decode(topic, payload, NOW, NoHints(), base="zb6") if e.kind is EventKind.BATTERY
    )
    assert battery.attrs["volts"] == pytest.approx(3.035)


def test_parking_sensor_occupancy_is_occupancy_not_motion() -> None:
    events = decode(
        "zigbee2mqtt/p1",
        b'{"occupancy": true}',
        NOW,
        Hints({"p1": DeviceKind.PARKING_SENSOR}),
        base="zigbee2mqtt",
    )
    assert [(e.kind, e.value) for e in events] == [(EventKind.OCCUPANCY, True)]


@pytest.mark.parametrize(
    ("payload", "reason"),
    [
        (b"{not json", "malformed_json"),
        (b"[1, 2]", "not_an_object"),
        (b'"text"', "not_an_object"),
        (b'{"contact": "yes"}', "wrong_type"),
        (b'{"battery": "full"}', "wrong_type"),
        (b'{"battery": true}', "wrong_type"),
        (b'{"action": 5}', "wrong_type"),
        (b'{"linkquality": [1]}', "wrong_type"),
    ],
)
def test_bad_payloads_raise_decode_error_with_reason(payload: bytes, reason: str) -> None:
    with pytest.raises(DecodeError) as info:
        decode("zigbee2mqtt/dev", payload, NOW, NoHints(), base="zigbee2mqtt")
    assert info.value.reason == reason
    assert info.value.topic == "zigbee2mqtt/dev"


def test_bad_availability_value() -> None:
    with pytest.raises(DecodeError) as info:
        decode("zigbee2mqtt/dev/availability", b"maybe", NOW, NoHints(), base="zigbee2mqtt")
    assert info.value.reason == "bad_value"


@pytest.mark.parametrize(
    ("action", "expected"),
    [
        ("single", "single"),
        ("single_right", "single"),
        ("double", "double"),
        ("hold", "long"),
        ("long", "long"),
        ("emergency", "emergency"),
        ("sos", "emergency"),
        ("triple", "single"),
    ],
)
def test_press_types(action: str, expected: str) -> None:
    assert press_type(action).value == expected


def test_samples_folder_is_a_verbatim_copy() -> None:
    shared = Path(__file__).parents[2] / "shared" / "samples" / "zigbee2mqtt"
    if not shared.exists():
        pytest.skip("shared/ is not beside this checkout")
    for path in shared.iterdir():
        assert (SAMPLES / "zigbee2mqtt" / path.name).read_bytes() == path.read_bytes()


@pytest.mark.parametrize(
    ("report", "dropped"),
    [
        ({"battery": -1}, "battery -1 %"),
        ({"battery": "-3"}, "battery -3 %"),
        ({"battery": 1e300}, "battery 1e+300 %"),
        ({"voltage": -5}, "battery -0.005 V"),
        ({"voltage": 150_000}, "battery 150 V"),
    ],
)
def test_impossible_battery_readings_are_dropped_and_named(report: dict[str, object], dropped: str) -> None:
    # -1 raised the battery-low alerts, 1e300 cleared them: neither is a reading. The field
    # is dropped, the rest of the report (the door) still counts, and attrs say what went.
    payload = orjson.dumps({"contact": False, "linkquality": 80, **report})
    events = decode("zigbee2mqtt/door", payload, NOW, NoHints(), base="zigbee2mqtt")
    assert [e.kind for e in events] == [EventKind.DOOR_OPEN, EventKind.BATTERY, EventKind.SIGNAL]
    battery = events[1]
    assert battery.value is None and "volts" not in battery.attrs
    assert str(battery.attrs["implausible"]).startswith(dropped)
    fine = decode("zigbee2mqtt/door", b'{"battery": 0, "voltage": 2900}', NOW, NoHints(), base="zigbee2mqtt")
    assert fine[0].value == 0.0 and fine[0].attrs == {"volts": 2.9}


def test_common_battery_readings_are_one_object_per_value() -> None:
    # A hub keeps every device's last reading: whole percents and millivolt voltages are one
    # float object each (adapters._json), on the compiled build too (make unit-compiled).
    def battery(payload: bytes) -> tuple[object, object]:
        (event,) = [
            e
            for e in decode("zigbee2mqtt/door", payload, NOW, NoHints(), base="zigbee2mqtt")
            if e.kind is EventKind.BATTERY
        ]
        return event.value, event.attrs.get("volts")

    first = battery(b'{"battery": 80, "voltage": 3100}')
    second = battery(b'{"battery": 80.0, "voltage": 3100.0}')
    assert first == second == (80.0, 3.1)
    assert first[0] is second[0] and first[1] is second[1]
    assert first[0] is WHOLE_READINGS[80]  # the device state's whole numbers: one table
    # Not a common reading: the device's own value, unrounded.
    odd = battery(b'{"battery": 80.5, "voltage": 3100.4}')
    assert odd == (80.5, 3.1004) and odd[0] is not first[0] and odd[1] is not first[1]
    own = 80.5
    assert plausible_battery(own, None, {})[0] is own  # passed through, not boxed anew
    assert battery(b'{"battery": 99, "voltage": 12600}') == (99.0, 12.6)  # a 12 V pack: its own
    # The good reading beside an impossible one (firmware's -1 "unknown") is shared too.
    assert battery(b'{"battery": -1, "voltage": 3100}')[1] is first[1]
    # Zero keeps its sign: -0.0 is not made the shared 0.0.
    (zero, _) = battery(b'{"battery": -0.0}')
    assert zero == 0.0 and math.copysign(1.0, zero) == -1.0


# -- zigbee-herdsman-converters: emergency buttons on the IAS zone converters -------------------
# Koenkk/zigbee-herdsman-converters df7200535e381f70023013f96791e424b6ac7b0e,
# src/converters/fromZigbee.ts: `command_status_change_notification_action` maps zone status
# {0: "off", 1: "single", 2: "double", 3: "hold"} (Heiman HS1EB/HS1EB-E "Smart emergency
# button", ORVIBO SE21, src/devices/heiman.ts and orvibo.ts: `e.action(["off", "single",
# "double", "hold"])`); `ias_sos_alarm_2` publishes {sos, tamper, battery_low} (Feibit SEB01ZB
# "SOS button", src/devices/feibit.ts: `[e.sos(), e.battery_low(), e.tamper(), e.battery()]`).


def test_emergency_button_at_rest_is_not_an_sos() -> None:
    # Zone status 0 on an SOS button used to be an SOS press ("off" read as a single press).
    payload = orjson.dumps({"action": "off", "battery": 100, "linkquality": 120})
    hints = Hints({"sos-1": DeviceKind.SOS_BUTTON})
    events = decode("zigbee2mqtt/sos-1", payload, NOW, hints, base="zigbee2mqtt")
    assert [e.kind for e in events] == [EventKind.BATTERY, EventKind.SIGNAL, EventKind.HEARTBEAT]
    # The same button's presses still are SOS presses.
    for action, press in (("single", "single"), ("double", "double"), ("hold", "long")):
        (event,) = decode(
            "zigbee2mqtt/sos-1", orjson.dumps({"action": action}), NOW, hints, base="zigbee2mqtt"
        )
        assert (event.kind, event.value) == (EventKind.SOS_PRESS, press)
    # On a remote, "off" is the off button: a plain press, as before.
    (event,) = decode("zigbee2mqtt/remote", b'{"action": "off"}', NOW, NoHints(), base="zigbee2mqtt")
    assert (event.kind, event.attrs["action"]) == (EventKind.BUTTON_PRESS, "off")


def test_ias_sos_alarm_is_an_sos_press() -> None:
    # `sos: true` carried no `action` and used to be a heartbeat: the SOS was lost.
    payload = orjson.dumps(
        {"sos": True, "tamper": False, "battery_low": False, "battery": 100, "linkquality": 90}
    )
    events = decode("zigbee2mqtt/seb01zb", payload, NOW, NoHints(), base="zigbee2mqtt")
    assert [(e.kind, e.value) for e in events] == [
        (EventKind.SOS_PRESS, "emergency"),
        (EventKind.TAMPER, False),
        (EventKind.BATTERY, 100.0),
        (EventKind.SIGNAL, 90.0),
    ]
    assert events[0].attrs["action"] == "sos"
    # sos false (the release, or a battery report) is not a press; tamper and battery_low count.
    payload = orjson.dumps({"sos": False, "tamper": True, "battery_low": True})
    events = decode("zigbee2mqtt/seb01zb", payload, NOW, NoHints(), base="zigbee2mqtt")
    assert [(e.kind, e.value) for e in events] == [(EventKind.TAMPER, True), (EventKind.BATTERY, None)]
    assert events[1].attrs["battery_low"] is True
    # One press is one event: an `action` and the `sos` bit together are one SOS.
    payload = orjson.dumps({"action": "emergency", "sos": True})
    events = decode("zigbee2mqtt/seb01zb", payload, NOW, NoHints(), base="zigbee2mqtt")
    assert [e.kind for e in events] == [EventKind.SOS_PRESS]
    with pytest.raises(DecodeError) as info:
        decode("zigbee2mqtt/seb01zb", b'{"sos": "ON"}', NOW, NoHints(), base="zigbee2mqtt")
    assert info.value.reason == "wrong_type"


def test_every_fact_of_one_report_is_an_event_in_the_documented_order() -> None:
    # The rarer facts (press, occupancy, tamper, hazards) are looked for only when the report
    # has one of their keys: with all of them, and with each alone, each is still an event, in
    # the order press, door, occupancy, tamper, hazards, battery, link quality.
    rare = {
        "action": "single",
        "occupancy": True,
        "tamper": False,
        "water_leak": True,
        "smoke": False,
        "gas": True,
        "carbon_monoxide": False,
        "fall": True,
    }
    common = {"contact": False, "battery": 80, "voltage": 2900, "linkquality": 120}
    kinds = [
        EventKind.BUTTON_PRESS,
        EventKind.DOOR_OPEN,
        EventKind.MOTION,
        EventKind.TAMPER,
        EventKind.WATER_LEAK,
        EventKind.SMOKE,
        EventKind.GAS,
        EventKind.GAS,
        EventKind.FALL,
        EventKind.BATTERY,
        EventKind.SIGNAL,
    ]
    events = decode("zigbee2mqtt/dev", orjson.dumps({**rare, **common}), NOW, NoHints(), base="zigbee2mqtt")
    assert [e.kind for e in events] == kinds
    assert events[7].attrs == {"gas": "carbon_monoxide"}
    for key, value in rare.items():
        one = decode(
            "zigbee2mqtt/dev", orjson.dumps({key: value, **common}), NOW, NoHints(), base="zigbee2mqtt"
        )
        assert len(one) == 4, key  # the fact, the door, the battery, the link quality
    sos = decode("zigbee2mqtt/dev", orjson.dumps({"sos": True}), NOW, NoHints(), base="zigbee2mqtt")
    assert [e.kind for e in sos] == [EventKind.SOS_PRESS]
    health = decode("zigbee2mqtt/dev", orjson.dumps({"battery": 80}), NOW, NoHints(), base="zigbee2mqtt")
    assert [e.kind for e in health] == [EventKind.BATTERY, EventKind.HEARTBEAT]
