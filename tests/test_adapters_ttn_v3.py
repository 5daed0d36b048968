"""Table tests of The Things Stack v3 decoder on the verbatim samples, and of the device
profiles on the decoded-only LoRaWAN samples wrapped in a TTS envelope."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import orjson
import pytest

from adapters.errors import DecodeError
from adapters.events import DeviceKind, EventKind, NoHints
from adapters.profiles import ProfileSet, load_profiles
from adapters.ttn_v3 import decode
from tests.support.samples import SAMPLES, Hints, sample

NOW = 1_790_000_000.0  # 2026-09-21, after every sample's time
PROFILES = load_profiles()


def run(
    topic: str, payload: bytes, hints: Hints, profiles: ProfileSet = PROFILES
) -> list[tuple[str, EventKind, object]]:
    events = decode(topic, payload, NOW, hints, base="v3", profiles=profiles)
    assert all(e.family == "ttn_v3" for e in events)
    return [(e.device_id, e.kind, e.value) for e in events]


DEV = "eui-1000000000000001"
CASES: list[tuple[str, Hints, list[tuple[str, EventKind, object]]]] = [
    # Raw-only uplinks (no payload formatter): alive, and the best gateway's signal.
    (
        "tti_milesight_ws101_button_raw_packetbroker",
        Hints(),
        [(DEV, EventKind.HEARTBEAT, None), (DEV, EventKind.SIGNAL, -24.0)],
    ),
    (
        "tti_milesight_ws301_door_raw_packetbroker",
        Hints(),
        [(DEV, EventKind.HEARTBEAT, None), (DEV, EventKind.SIGNAL, -24.0)],
    ),
    # A decoded payload from a model with no profile: the generic reading finds the
    # temperature; a reading is not a state, so the uplink is still a heartbeat.
    (
        "tts_docs_uplink_example",
        Hints(),
        [
            ("dev1", EventKind.TEMPERATURE, 1.0),
            ("dev1", EventKind.HEARTBEAT, None),
            ("dev1", EventKind.SIGNAL, -35.0),
        ],
    ),
    ("tts_mqtt_doc_join_accept", Hints(), [("dev1", EventKind.HEARTBEAT, None)]),
    (
        "tts_mqtt_doc_uplink_no_decoder",
        Hints(),
        [("dev1", EventKind.HEARTBEAT, None), ("dev1", EventKind.SIGNAL, -35.0)],
    ),
    # occupied:false is kept in decoded_payload; no rx_metadata, so no signal.
    (
        "tts_simulated_bosch_parking_free",
        Hints(models={"dev1": "bosch-tps110"}),
        [("dev1", EventKind.OCCUPANCY, False)],
    ),
    # No registry model and no version_ids: the generic reading still finds the parking state.
    ("tts_simulated_bosch_parking_free", Hints(), [("dev1", EventKind.OCCUPANCY, False)]),
]


@pytest.mark.parametrize(
    ("name", "hints", "expected"), CASES, ids=[f"{c[0]}-{i}" for i, c in enumerate(CASES)]
)
def test_sample_decodes_to_documented_events(
    name: str, hints: Hints, expected: list[tuple[str, EventKind, object]]
) -> None:
    topic, payload = sample("ttn_v3", name)
    assert run(topic, payload, hints) == expected


def test_every_ttn_v3_sample_is_covered() -> None:
    names = {p.stem for p in (SAMPLES / "ttn_v3").iterdir() if p.suffix in (".json", ".txt")}
    assert names == {c[0] for c in CASES}


def test_simulated_uplink_is_flagged_and_zero_date_is_not_used() -> None:
    topic, payload = sample("ttn_v3", "tts_simulated_bosch_parking_free")
    (event,) = decode(
        topic, payload, NOW, Hints(models={"dev1": "bosch-tps110"}), base="v3", profiles=PROFILES
    )
    assert event.attrs["simulated"] is True
    assert event.ts == 1612467151.488210  # the outer received_at, not 0001-01-01
    assert event.attrs["f_cnt"] == 0  # left out by TTS when zero


def test_best_gateway_and_nanosecond_time() -> None:
    topic, payload = sample("ttn_v3", "tti_milesight_ws101_button_raw_packetbroker")
    heartbeat, signal = decode(topic, payload, NOW, NoHints(), base="v3", profiles=PROFILES)
    assert heartbeat.ts == pytest.approx(1684398325.906399)  # uplink_message.received_at
    assert signal.attrs["snr"] == 12.0
    assert signal.attrs["gateways"] == 2
    assert signal.attrs["f_cnt"] == 5017


def test_future_time_is_clamped() -> None:
    topic, payload = sample("ttn_v3", "tts_docs_uplink_example")
    early = 1581520545.0 - 3600
    events = decode(topic, payload, early, NoHints(), base="v3", profiles=PROFILES)
    assert all(e.ts == early and e.attrs["ts_clamped"] is True for e in events)


def test_slightly_future_time_becomes_the_receive_time() -> None:
    # Within the skew the network server's time used to be kept; now it is capped, unflagged.
    topic, payload = sample("ttn_v3", "tts_docs_uplink_example")
    received = 1581520545.0 - 120
    events = decode(topic, payload, received, NoHints(), base="v3", profiles=PROFILES)
    assert all(e.ts == received and "ts_clamped" not in e.attrs for e in events)


def test_open_source_topic_without_tenant() -> None:
    _, payload = sample("ttn_v3", "tts_docs_uplink_example")
    events = decode("v3/app1/devices/dev1/up", payload, NOW, NoHints(), base="v3", profiles=PROFILES)
    assert [e.kind for e in events] == [EventKind.TEMPERATURE, EventKind.HEARTBEAT, EventKind.SIGNAL]


def test_other_subtopics_are_ignored() -> None:
    assert (
        decode("v3/app1@ttn/devices/dev1/down/queued", b"{}", NOW, NoHints(), base="v3", profiles=PROFILES)
        == []
    )


@pytest.mark.parametrize(
    ("topic", "payload", "reason"),
    [
        ("v3/app1@ttn/devices/dev1/up", b"{nope", "malformed_json"),
        ("v3/app1@ttn/devices/dev1/up", b"[]", "not_an_object"),
        ("v3/app1@ttn/devices/dev1/up", b"{}", "missing_field"),
        ("v3/app1@ttn/devices/dev1/up", b'{"uplink_message": 3}', "wrong_type"),
        ("v3/app1@ttn/devices/dev1/up", b'{"uplink_message": {"decoded_payload": [1]}}', "wrong_type"),
        ("v3/app1@ttn/devices/dev1/up", b'{"uplink_message": {"rx_metadata": {}}}', "wrong_type"),
        ("v3/app1@ttn/devices/dev1/up", b'{"uplink_message": {"f_cnt": "x"}}', "wrong_type"),
        (
            "v3/app1@ttn/devices/dev1/up",
            b'{"end_device_ids": {"device_id": "other"}, "uplink_message": {}}',
            "bad_value",
        ),
        ("v3/app1@ttn/things/dev1/up", b"{}", "unknown_topic"),
    ],
)
def test_bad_messages_raise_decode_error(topic: str, payload: bytes, reason: str) -> None:
    with pytest.raises(DecodeError) as info:
        decode(topic, payload, NOW, NoHints(), base="v3", profiles=PROFILES)
    assert info.value.reason == reason
    assert info.value.topic == topic


def test_registry_naming_an_unknown_profile_is_quarantined() -> None:
    topic, payload = sample("ttn_v3", "tts_simulated_bosch_parking_free")
    with pytest.raises(DecodeError) as info:
        decode(topic, payload, NOW, Hints(models={"dev1": "acme-x1"}), base="v3", profiles=PROFILES)
    assert info.value.reason == "unknown_profile"


# -- lorawan_decoded: vendor decoder output through the profiles -----------------------------

TTS_IDS = {
    "bosch": ("bosch", "tps110"),
    "browan": ("browan", "tbpb100"),
    "dragino": ("dragino", "lds02"),
    "milesight_em400mud": ("milesight-iot", "em400-mud"),
    "milesight_ws101": ("milesight-iot", "ws101"),
    "milesight_ws301": ("milesight-iot", "ws301"),
    "nwave": ("nwave", "nps405"),
}


def envelope(decoded: Any, version_ids: tuple[str, str] | None) -> bytes:
    uplink: dict[str, Any] = {
        "f_port": 1,
        "f_cnt": 7,
        "decoded_payload": decoded,
        "received_at": "2026-01-01T00:00:00Z",
    }
    if version_ids is not None:
        uplink["version_ids"] = {"brand_id": version_ids[0], "model_id": version_ids[1]}
    return orjson.dumps({"end_device_ids": {"device_id": "d1"}, "uplink_message": uplink})


def decoded_sample(name: str) -> Any:
    return orjson.loads((SAMPLES / "lorawan_decoded" / f"{name}.json").read_bytes())


K = EventKind
SOS = {"d1": DeviceKind.SOS_BUTTON}
# (sample, device kinds, expected [(kind, value)]) — the profile comes from version_ids.
DECODED: list[tuple[str, dict[str, DeviceKind], list[tuple[EventKind, object]]]] = [
    ("bosch_tps110_heartbeat", {}, [(K.OCCUPANCY, True), (K.HEARTBEAT, None)]),
    ("bosch_tps110_parking_status", {}, [(K.OCCUPANCY, True)]),
    ("bosch_tps110_startup", {}, [(K.OCCUPANCY, True), (K.HEARTBEAT, None)]),
    ("browan_tbpb100_push_button", SOS, [(K.SOS_PRESS, "single"), (K.BATTERY, None)]),
    ("dragino_lds02_door_as_json", {}, [(K.DOOR_CLOSED, False), (K.BATTERY, None)]),
    ("milesight_em400mud_readme_alarm", {}, [(K.DISTANCE, 1601.0)]),
    ("milesight_em400mud_readme_lorawan", {}, [(K.DISTANCE, 2116.0), (K.TAMPER, True), (K.BATTERY, 92.0)]),
    ("milesight_ws101_decoder_output_generated", SOS, [(K.SOS_PRESS, "single"), (K.BATTERY, 16.0)]),
    ("milesight_ws101_readme_current", SOS, [(K.SOS_PRESS, "single"), (K.BATTERY, 16.0)]),
    # The 2024 decoder's field names map to the same events.
    ("milesight_ws101_readme_legacy_2024", SOS, [(K.SOS_PRESS, "single"), (K.BATTERY, 16.0)]),
    # Not installed as an SOS button: a plain press.
    ("milesight_ws101_readme_legacy_2024", {}, [(K.BUTTON_PRESS, "single"), (K.BATTERY, 16.0)]),
    # The decoder's output for the README bytes is "uninstalled": tamper.
    (
        "milesight_ws301_decoder_output_generated",
        {},
        [(K.DOOR_OPEN, True), (K.TAMPER, True), (K.BATTERY, 100.0)],
    ),
    ("milesight_ws301_readme_example", {}, [(K.DOOR_OPEN, True), (K.TAMPER, False), (K.BATTERY, 100.0)]),
    ("nwave_nps405_startup", {}, [(K.OCCUPANCY, False), (K.HEARTBEAT, None)]),
    ("nwave_nps405_user_registration", {}, [(K.OCCUPANCY, True)]),
]


def ids_for(name: str) -> tuple[str, str]:
    return next(v for k, v in TTS_IDS.items() if name.startswith(k))


@pytest.mark.parametrize(
    ("name", "kinds", "expected"), DECODED, ids=[f"{c[0]}-{i}" for i, c in enumerate(DECODED)]
)
def test_decoded_sample_through_profile(
    name: str, kinds: dict[str, DeviceKind], expected: list[tuple[EventKind, object]]
) -> None:
    payload = envelope(decoded_sample(name), ids_for(name))
    events = decode("v3/app@ttn/devices/d1/up", payload, NOW, Hints(kinds), base="v3", profiles=PROFILES)
    assert [(e.kind, e.value) for e in events] == expected
    assert all(e.attrs["f_cnt"] == 7 for e in events)


def test_every_lorawan_decoded_sample_is_covered() -> None:
    names = {p.stem for p in (SAMPLES / "lorawan_decoded").iterdir() if p.suffix == ".json"}
    assert {c[0] for c in DECODED} <= names  # the rest: tests/test_adapters_generic.py


def test_registry_model_selects_the_profile_without_version_ids() -> None:
    payload = envelope(decoded_sample("milesight_ws301_decoder_output_generated"), None)
    hints = Hints(models={"d1": "Milesight WS301"})
    events = decode("v3/app@ttn/devices/d1/up", payload, NOW, hints, base="v3", profiles=PROFILES)
    assert [e.kind for e in events] == [K.DOOR_OPEN, K.TAMPER, K.BATTERY]


def test_profile_attrs_and_units() -> None:
    payload = envelope(decoded_sample("bosch_tps110_startup"), ("bosch", "tps110"))
    _, startup = decode("v3/app@ttn/devices/d1/up", payload, NOW, NoHints(), base="v3", profiles=PROFILES)
    assert startup.attrs["startup"] is True
    assert startup.attrs["firmware"] == "0.29.2"
    assert startup.attrs["reset_cause"] == "system request"
    payload = envelope(decoded_sample("dragino_lds02_door_as_json"), ("dragino", "lds02"))
    door, battery = decode("v3/app@ttn/devices/d1/up", payload, NOW, NoHints(), base="v3", profiles=PROFILES)
    assert door.attrs["open_count"] == 9472
    assert battery.attrs["volts"] == pytest.approx(2.952)


@pytest.mark.parametrize(
    ("decoded", "reason"),
    [
        ({"magnet_status": 1}, "wrong_type"),
        ({"magnet_status": "ajar"}, "bad_value"),
        ({"battery": "full"}, "wrong_type"),
        ({"battery": True}, "wrong_type"),
        ({"tamper_status": False}, "wrong_type"),
    ],
)
def test_known_field_with_wrong_type_or_value(decoded: dict[str, object], reason: str) -> None:
    payload = envelope(decoded, ("milesight-iot", "ws301"))
    with pytest.raises(DecodeError) as info:
        decode("v3/app@ttn/devices/d1/up", payload, NOW, NoHints(), base="v3", profiles=PROFILES)
    assert info.value.reason == reason


def test_unknown_fields_are_ignored_and_null_is_unknown() -> None:
    payload = envelope({"magnet_status": None, "colour": "red", "battery": 50}, ("milesight-iot", "ws301"))
    events = decode("v3/app@ttn/devices/d1/up", payload, NOW, NoHints(), base="v3", profiles=PROFILES)
    assert [(e.kind, e.value) for e in events] == [(K.BATTERY, 50.0), (K.HEARTBEAT, None)]


def test_samples_folders_are_verbatim_copies() -> None:
    for family in ("ttn_v3", "lorawan_decoded"):
        shared = Path(__file__).parents[2] / "shared" / "samples" / family
        if not shared.exists():
            pytest.skip("shared/ is not beside this checkout")
        for path in shared.iterdir():
            assert (SAMPLES / family / path.name).read_bytes() == path.read_bytes()
