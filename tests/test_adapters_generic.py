"""The safety-sensor profiles and the generic reading, table-tested on verbatim samples.

Each decoded sample (``tests/fixtures/samples/lorawan_decoded``, sources in SOURCES.md) is
wrapped in a TTS uplink and decoded twice: through its model's profile (named by the
registry) and with no profile at all (the generic reading, which must say why).
"""

from __future__ import annotations

from typing import Any

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from adapters import chirpstack_v4
from adapters.errors import DecodeError
from adapters.events import DeviceKind, EventKind, NoHints
from adapters.generic import findings
from adapters.profiles import load_profiles
from adapters.ttn_v3 import decode
from tests.support.samples import SAMPLES, Hints
from tests.test_adapters_ttn_v3 import DECODED

NOW = 1_790_000_000.0
PROFILES = load_profiles()
K = EventKind
TOPIC = "v3/app@ttn/devices/d1/up"


def envelope(decoded: Any) -> bytes:
    uplink = {"f_cnt": 7, "decoded_payload": decoded, "received_at": "2026-01-01T00:00:00Z"}
    return orjson.dumps({"uplink_message": uplink})


def decoded_sample(name: str) -> Any:
    return orjson.loads((SAMPLES / "lorawan_decoded" / f"{name}.json").read_bytes())


SOS = {"d1": DeviceKind.SOS_BUTTON}
# (sample, profile the registry names, device kinds, expected [(kind, value)])
PROFILED: list[tuple[str, str, dict[str, DeviceKind], list[tuple[EventKind, object]]]] = [
    ("adeunis_dry_contacts", "adeunis-dry-contacts", {}, [(K.DOOR_CLOSED, False)]),
    ("adeunis_motion_presence", "adeunis-motion", {}, [(K.MOTION, True)]),
    ("browan_tbdw100_door_closed", "browan-tbdw100", {}, [(K.DOOR_CLOSED, False), (K.BATTERY, None)]),
    ("browan_tbms100_occupied", "browan-tbms100", {}, [(K.MOTION, True), (K.BATTERY, None)]),
    (
        "browan_tbwl100_leak",
        "browan-tbwl100",
        {},
        [(K.WATER_LEAK, True), (K.BATTERY, None), (K.TEMPERATURE, 22.0), (K.HUMIDITY, 40.0)],
    ),
    ("dragino_lds01_door_closed", "dragino-lds01", {}, [(K.DOOR_CLOSED, False), (K.BATTERY, None)]),
    ("dragino_lwl02_door_mode", "dragino-lwl02", {}, [(K.DOOR_CLOSED, False), (K.BATTERY, None)]),
    ("elsys_ers_commented", "elsys-ers", {}, [(K.MOTION, True), (K.TEMPERATURE, 22.6), (K.HUMIDITY, 41.0)]),
    ("elsys_ers_eye", "elsys-ers-eye", {}, [(K.MOTION, True), (K.TEMPERATURE, 22.6), (K.HUMIDITY, 41.0)]),
    ("milesight_em300mld_readme", "milesight-em300-mld", {}, [(K.WATER_LEAK, False), (K.BATTERY, 92.0)]),
    (
        "milesight_em300sld_readme",
        "milesight-em300-sld",
        {},
        [(K.WATER_LEAK, False), (K.BATTERY, 92.0), (K.TEMPERATURE, 30.8), (K.HUMIDITY, 50.5)],
    ),
    (
        "milesight_em300sld_readme",
        "milesight-em300-zld",
        {},
        [(K.WATER_LEAK, False), (K.BATTERY, 92.0), (K.TEMPERATURE, 30.8), (K.HUMIDITY, 50.5)],
    ),
    ("milesight_ws156_readme", "milesight-ws156", SOS, [(K.SOS_PRESS, "single"), (K.BATTERY, 16.0)]),
    ("milesight_ws156_readme", "milesight-ws136", {}, [(K.BUTTON_PRESS, "single"), (K.BATTERY, 16.0)]),
    ("milesight_ws202_pir_trigger_codec", "milesight-ws202", {}, [(K.MOTION, True)]),
    ("milesight_ws202_readme", "milesight-ws202", {}, [(K.MOTION, True), (K.BATTERY, 16.0)]),
    (
        "milesight_ws203_readme",
        "milesight-ws203",
        {},
        [(K.MOTION, False), (K.BATTERY, 100.0), (K.TEMPERATURE, 30.8), (K.HUMIDITY, 50.5)],
    ),
    ("milesight_ws303_leak_codec", "milesight-ws303", {}, [(K.WATER_LEAK, True), (K.BATTERY, 100.0)]),
    ("milesight_ws303_readme_leak", "milesight-ws303", {}, [(K.WATER_LEAK, True), (K.BATTERY, 100.0)]),
    ("milesight_ws303_readme_normal", "milesight-ws303", {}, [(K.WATER_LEAK, False), (K.BATTERY, 100.0)]),
    # The door state is not in the profile (polarity unknown): battery only, so a heartbeat too.
    ("netvox_r311a_low_battery", "netvox-r311a", {}, [(K.BATTERY, None), (K.HEARTBEAT, None)]),
    (
        "netvox_r311w_leak",
        "netvox-r311w",
        {},
        [(K.WATER_LEAK, False), (K.WATER_LEAK, True), (K.BATTERY, None)],
    ),
    ("netvox_r312a_alarm", "netvox-r312a", {}, [(K.SOS_PRESS, "emergency"), (K.BATTERY, None)]),
    (
        "netvox_ra02a_fire_alarm",
        "netvox-ra02a",
        {},
        [(K.SMOKE, True), (K.TEMPERATURE, 120.0), (K.BATTERY, None)],
    ),
    ("netvox_ra02c_no_co_alarm", "netvox-ra02c", {}, [(K.GAS, False), (K.BATTERY, None)]),
    ("netvox_ra02g_tamper", "netvox-ra02g", {}, [(K.SMOKE, False), (K.TAMPER, True), (K.BATTERY, None)]),
    (
        "netvox_rb11e_occupied",
        "netvox-rb11e",
        {},
        [(K.MOTION, True), (K.TAMPER, False), (K.TEMPERATURE, 26.35), (K.BATTERY, None)],
    ),
    ("nwave_nps310sm_heartbeat", "nwave-nps310sm", {}, [(K.OCCUPANCY, False), (K.HEARTBEAT, None)]),
    ("nwave_nps310sm_parking_status", "nwave-nps310sm", {}, [(K.OCCUPANCY, True)]),
    (
        "tektelic_smart_room_periodic",
        "tektelic-smart-room-pir",
        {},
        [(K.TEMPERATURE, 1.0), (K.HUMIDITY, 20.0), (K.HEARTBEAT, None)],
    ),
]


@pytest.mark.parametrize(
    ("name", "model", "kinds", "expected"), PROFILED, ids=[f"{c[0]}-{c[1]}" for c in PROFILED]
)
def test_profile_on_verbatim_sample(
    name: str, model: str, kinds: dict[str, DeviceKind], expected: list[tuple[EventKind, object]]
) -> None:
    hints = Hints(kinds, models={"d1": model})
    events = decode(TOPIC, envelope(decoded_sample(name)), NOW, hints, base="v3", profiles=PROFILES)
    assert [(e.kind, e.value) for e in events] == expected
    assert all("profile" not in e.attrs for e in events)  # a profile won: no generic reading


def test_netvox_low_battery_text_is_volts_with_the_flag() -> None:
    hints = Hints(models={"d1": "netvox-r311a"})
    payload = envelope(decoded_sample("netvox_r311a_low_battery"))
    battery = decode(TOPIC, payload, NOW, hints, base="v3", profiles=PROFILES)[0]
    assert battery.attrs["volts"] == 2.3 and battery.attrs["battery_low"] is True


# (sample, expected [(kind, value, field, rule)]) with no profile: the generic reading.
GENERIC: list[tuple[str, list[tuple[EventKind, object, str | None, str | None]]]] = [
    # Issue 16: a Dragino door sensor whose profile name matches nothing still has its state.
    (
        "dragino_lds01_door_closed",
        [
            (K.BATTERY, None, "BAT_V", "battery.volts_named"),
            (K.DOOR_CLOSED, False, "DOOR_OPEN_STATUS", "door.open_named"),
        ],
    ),
    # Browan's bare `status` is never guessed: only health, then a heartbeat.
    (
        "browan_tbdw100_door_closed",
        [(K.BATTERY, None, "battery", "battery.magnitude_volts"), (K.HEARTBEAT, None, None, None)],
    ),
    (
        "milesight_ws303_readme_leak",
        [
            (K.BATTERY, 100.0, "battery", "battery.magnitude_percent"),
            (K.WATER_LEAK, True, "leakage_status", "water_leak.word"),
        ],
    ),
    (
        "netvox_ra02a_fire_alarm",
        [
            (K.BATTERY, None, "Volt", "battery.volts_named"),
            (K.SMOKE, True, "FireAlarm", "smoke.word"),
            (K.TEMPERATURE, 120.0, "Temp", "temperature.named"),
        ],
    ),
    (
        "netvox_ra02c_no_co_alarm",
        [(K.BATTERY, None, "Volt", "battery.volts_named"), (K.GAS, False, "COAlarm", "gas.word")],
    ),
    ("nwave_nps310sm_parking_status", [(K.OCCUPANCY, True, "occupied", "occupancy.flag")]),
    # Two probes, one leak: a single water_leak event, true because one probe is wet.
    (
        "netvox_r311w_leak",
        [
            (K.BATTERY, None, "Volt", "battery.volts_named"),
            (K.WATER_LEAK, True, "WaterLeak_1,WaterLeak_2", "water_leak.word"),
        ],
    ),
    ("milesight_ws202_pir_trigger_codec", [(K.MOTION, True, "pir", "motion.word")]),
    (
        "adeunis_motion_presence",
        [(K.MOTION, True, "bytes.presenceDetectedWhenSending", "motion.flag")],
    ),
    # Netvox R312A's `Alarm` is too generic a word: not read as an SOS without the profile.
    (
        "netvox_r312a_alarm",
        [(K.BATTERY, None, "Volt", "battery.volts_named"), (K.HEARTBEAT, None, None, None)],
    ),
]


@pytest.mark.parametrize(("name", "expected"), GENERIC, ids=[c[0] for c in GENERIC])
def test_generic_reading_on_verbatim_sample(
    name: str, expected: list[tuple[EventKind, object, str | None, str | None]]
) -> None:
    events = decode(TOPIC, envelope(decoded_sample(name)), NOW, NoHints(), base="v3", profiles=PROFILES)
    got = [(e.kind, e.value, e.attrs.get("field"), e.attrs.get("rule")) for e in events]
    assert got == expected
    assert all(e.attrs["profile"] == "generic" for e in events if e.attrs.get("field"))


def test_every_new_sample_is_covered() -> None:
    names = {p.stem for p in (SAMPLES / "lorawan_decoded").iterdir() if p.suffix == ".json"}
    assert names == {c[0] for c in PROFILED} | {c[0] for c in DECODED}


def test_a_matching_profile_wins_over_the_generic_reading() -> None:
    payload = orjson.dumps(
        {
            "uplink_message": {
                "decoded_payload": decoded_sample("dragino_lds01_door_closed"),
                "version_ids": {"brand_id": "dragino", "model_id": "lds01"},
            }
        }
    )
    events = decode(TOPIC, payload, NOW, NoHints(), base="v3", profiles=PROFILES)
    assert [e.kind for e in events] == [K.DOOR_CLOSED, K.BATTERY]
    assert all("profile" not in e.attrs for e in events)


@pytest.mark.parametrize(
    "decoded",
    [{"contact": 1}, {"door": True}, {"reed_state": 0}, {"water_leak": "maybe"}, {"smoke": 7}],
)
def test_ambiguous_polarity_is_quarantined_with_the_field(decoded: dict[str, Any]) -> None:
    with pytest.raises(DecodeError) as info:
        decode(TOPIC, envelope(decoded), NOW, NoHints(), base="v3", profiles=PROFILES)
    assert info.value.reason == "ambiguous_polarity"
    assert next(iter(decoded)) in info.value.detail


def test_words_decide_polarity_where_names_do_not() -> None:
    events = decode(TOPIC, envelope({"door": "open"}), NOW, NoHints(), base="v3", profiles=PROFILES)
    assert [(e.kind, e.attrs["rule"]) for e in events] == [(K.DOOR_OPEN, "door.word")]


def test_a_pir_occupancy_is_motion_on_a_motion_sensor() -> None:
    hints = Hints({"d1": DeviceKind.MOTION_SENSOR})
    events = decode(TOPIC, envelope({"occupancy": "occupied"}), NOW, hints, base="v3", profiles=PROFILES)
    assert [(e.kind, e.value) for e in events] == [(K.MOTION, True)]


def test_history_arrays_are_not_the_current_state() -> None:
    assert findings({"history": [{"leakage_status": "leak"}]}) == []


_scalars = st.one_of(
    st.none(), st.booleans(), st.integers(-5, 5000), st.floats(allow_nan=True), st.text(max_size=12)
)
_keys = st.one_of(
    st.sampled_from(
        ["contact", "door_open_status", "occupied", "leak", "smoke", "gas", "fall", "sos", "press",
         "battery", "BAT_V", "temperature", "humidity", "pir", "tamper", "status", "bytes"]
    ),
    st.text(max_size=10),
)  # fmt: skip
_payloads = st.recursive(
    st.dictionaries(_keys, _scalars, max_size=6),
    lambda inner: st.dictionaries(
        _keys, st.one_of(_scalars, inner, st.lists(_scalars, max_size=2)), max_size=5
    ),
    max_leaves=12,
)


@settings(max_examples=300, deadline=None)
@given(_payloads)
def test_generic_reader_gives_events_or_a_quarantine_reason(decoded: dict[str, Any]) -> None:
    try:
        events = decode(TOPIC, envelope(decoded), NOW, NoHints(), base="v3", profiles=PROFILES)
    except DecodeError as exc:
        assert exc.reason in {"ambiguous_polarity", "wrong_type", "malformed_json"}
        return
    assert events and all(e.device_id == "d1" for e in events)
    for e in events:
        if "field" in e.attrs:
            assert e.attrs["profile"] == "generic" and isinstance(e.attrs["rule"], str)


def test_chirpstack_door_sensor_with_unmatched_profile_name_reads_generically() -> None:
    """Issue 16's second miss: other codec keys than the shipped LDS02 profile, unknown profile name."""
    doc = {
        "deviceInfo": {"devEui": "A840410000000001", "deviceProfileName": "Dragino door v1.3"},
        "object": {"door_open_status": 1.0, "BatV": 3.05},
    }
    events = chirpstack_v4.decode(
        "application/app/device/a840410000000001/event/up",
        orjson.dumps(doc),
        NOW,
        NoHints(),
        base="application",
        profiles=PROFILES,
    )
    got = [(e.kind, e.value, e.attrs.get("field"), e.attrs.get("rule")) for e in events]
    assert got == [
        (K.DOOR_OPEN, True, "door_open_status", "door.open_named"),
        (K.BATTERY, None, "BatV", "battery.volts_named"),
    ]
