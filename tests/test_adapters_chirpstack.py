"""Table tests of the ChirpStack v4 and v3 decoders on the verbatim samples."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import orjson
import pytest

from adapters import chirpstack_v3, chirpstack_v4
from adapters.errors import DecodeError
from adapters.events import DeviceKind, Event, EventKind, NoHints
from adapters.profiles import load_profiles
from tests.support.samples import SAMPLES, Hints, sample

NOW = 1_790_000_000.0
PROFILES = load_profiles()
K = EventKind


def v4(topic: str, payload: bytes, hints: Any = None, received: float = NOW) -> list[Event]:
    return chirpstack_v4.decode(
        topic, payload, received, hints or NoHints(), base="application", profiles=PROFILES
    )


def v3(topic: str, payload: bytes, hints: Any = None) -> list[Event]:
    return chirpstack_v3.decode(
        topic, payload, NOW, hints or NoHints(), base="application", profiles=PROFILES
    )


D4 = "0101010101010101"
MS = "1000000000000001"
V4_CASES: list[tuple[str, list[tuple[str, EventKind, object]]]] = [
    ("docs_log_event_uplink_mic", [(D4, K.DEVICE_ERROR, "UPLINK_MIC")]),
    ("docs_status_event", [(D4, K.BATTERY, 88.3), (D4, K.SIGNAL, 10.0)]),
    ("docs_up_event", [(D4, K.HEARTBEAT, None), (D4, K.SIGNAL, -36.0)]),
    # No codec on the network server: raw data only, alive plus signal.
    ("milesight_ws101_button_up_no_codec", [(MS, K.HEARTBEAT, None), (MS, K.SIGNAL, -35.0)]),
    ("milesight_ws301_door_up_no_codec", [(MS, K.HEARTBEAT, None), (MS, K.SIGNAL, -35.0)]),
    ("real_log_event_uplink_codec_error", [("70b3d52dd300ed31", K.DEVICE_ERROR, "UPLINK_CODEC")]),
]


@pytest.mark.parametrize(("name", "expected"), V4_CASES, ids=[c[0] for c in V4_CASES])
def test_v4_sample_decodes_to_documented_events(
    name: str, expected: list[tuple[str, EventKind, object]]
) -> None:
    topic, payload = sample("chirpstack_v4", name)
    events = v4(topic, payload)
    assert [(e.device_id, e.kind, e.value) for e in events] == expected
    assert all(e.family == "chirpstack_v4" for e in events)


def test_every_chirpstack_v4_sample_is_covered() -> None:
    names = {p.stem for p in (SAMPLES / "chirpstack_v4").iterdir() if p.suffix == ".json"}
    assert names == {c[0] for c in V4_CASES}


def test_log_event_attrs() -> None:
    topic, payload = sample("chirpstack_v4", "real_log_event_uplink_codec_error")
    (event,) = v4(topic, payload)
    assert event.attrs["level"] == "ERROR"
    assert event.attrs["code"] == "UPLINK_CODEC"
    assert event.ts == pytest.approx(1706351398.221817)


def test_info_log_is_ignored() -> None:
    topic, payload = sample("chirpstack_v4", "docs_log_event_uplink_mic")
    doc = orjson.loads(payload)
    doc["level"] = "INFO"
    assert v4(topic, orjson.dumps(doc)) == []
    del doc["level"]  # proto3 JSON omits the zero value, INFO
    assert v4(topic, orjson.dumps(doc)) == []


def with_object(name: str, obj: dict[str, Any], profile_name: str) -> tuple[str, bytes]:
    topic, payload = sample("chirpstack_v4", name)
    doc = orjson.loads(payload)
    doc["object"] = obj
    doc["deviceInfo"]["deviceProfileName"] = profile_name
    return topic, orjson.dumps(doc)


def test_object_with_device_profile_name_and_struct_doubles() -> None:
    # protobuf Struct: every number is a double; the integer DOOR_OPEN_STATUS arrives as 1.0.
    decoded = orjson.loads((SAMPLES / "lorawan_decoded" / "dragino_lds02_door_as_json.json").read_bytes())
    decoded = {k: float(v) for k, v in decoded.items()}
    decoded["DOOR_OPEN_STATUS"] = 1.0
    topic, payload = with_object("milesight_ws301_door_up_no_codec", decoded, "Dragino LDS02")
    events = v4(topic, payload)
    assert [(e.kind, e.value) for e in events] == [(K.DOOR_OPEN, True), (K.BATTERY, None), (K.SIGNAL, -35.0)]


def test_sos_press_from_object_via_registry() -> None:
    decoded = {"battery": 16, "button_event": {"status": "short press", "msgid": 877838}}
    topic, payload = with_object(
        "milesight_ws101_button_up_no_codec", decoded, "Chirpstack default device profile"
    )
    hints = Hints({MS: DeviceKind.SOS_BUTTON}, {MS: "milesight-ws101"})
    events = v4(topic, payload, hints)
    assert [(e.kind, e.value) for e in events] == [
        (K.SOS_PRESS, "single"),
        (K.BATTERY, 16.0),
        (K.SIGNAL, -35.0),
    ]
    assert "msgid" not in events[0].attrs


def test_integer_field_rejects_fractional_double() -> None:
    topic, payload = with_object(
        "milesight_ws301_door_up_no_codec", {"DOOR_OPEN_STATUS": 0.5}, "dragino-lds02"
    )
    with pytest.raises(DecodeError) as info:
        v4(topic, payload)
    assert info.value.reason == "wrong_type"


def test_v4_future_time_is_clamped() -> None:
    topic, payload = sample("chirpstack_v4", "docs_status_event")
    early = 1658136906.0 - 3600
    events = v4(topic, payload, received=early)
    assert all(e.ts == early and e.attrs["ts_clamped"] is True for e in events)


def test_v4_slightly_future_time_becomes_the_receive_time() -> None:
    # Within the skew the network server's time used to be kept; now it is capped, unflagged.
    topic, payload = sample("chirpstack_v4", "docs_status_event")
    received = 1658136906.0 - 120
    events = v4(topic, payload, received=received)
    assert events and all(e.ts == received and "ts_clamped" not in e.attrs for e in events)


def test_v4_join_and_ignored_events() -> None:
    topic, payload = sample("chirpstack_v4", "docs_up_event")
    join = topic.replace("/event/up", "/event/join")
    assert [(e.kind, e.attrs["join"]) for e in v4(join, payload)] == [(K.HEARTBEAT, True)]
    assert v4(topic.replace("/event/up", "/event/txack"), b"not even json") == []


@pytest.mark.parametrize(
    "name",
    ["as_v3_json_v3_status", "as_v3_json_v3_up", "as_v3_protobuf_json_up", "real_v3_up_no_codec_multi_gw"],
)
def test_v3_payloads_on_a_v4_decoder_quarantine_cleanly(name: str) -> None:
    topic, payload = sample("chirpstack_v3", name)
    with pytest.raises(DecodeError) as info:
        v4(topic, payload)
    assert info.value.reason == "missing_field"


@pytest.mark.parametrize(
    ("event", "payload", "reason"),
    [
        ("up", b"{", "malformed_json"),
        ("up", b"3", "not_an_object"),
        ("up", b'{"deviceInfo": 1}', "wrong_type"),
        ("up", b'{"deviceInfo": {}}', "missing_field"),
        ("up", b'{"deviceInfo": {"devEui": "ab"}, "object": "x"}', "wrong_type"),
        ("up", b'{"deviceInfo": {"devEui": "ab"}, "rxInfo": [1]}', "wrong_type"),
        ("status", b'{"deviceInfo": {"devEui": "ab"}, "batteryLevel": "x"}', "wrong_type"),
        ("log", b'{"deviceInfo": {"devEui": "ab"}, "level": "LOUD"}', "bad_value"),
        ("log", b'{"deviceInfo": {"devEui": "ab"}, "code": 3}', "wrong_type"),
    ],
)
def test_v4_bad_messages(event: str, payload: bytes, reason: str) -> None:
    topic = f"application/x/device/ab/event/{event}"
    with pytest.raises(DecodeError) as info:
        v4(topic, payload)
    assert info.value.reason == reason


def test_v4_bad_topic() -> None:
    with pytest.raises(DecodeError) as info:
        v4("application/x/gateway/ab/event/up", b"{}")
    assert info.value.reason == "unknown_topic"


@pytest.mark.parametrize("event", ["up", "status", "log", "join"])
def test_v4_dev_eui_must_match_topic(event: str) -> None:
    # The topic's DevEUI is what the broker authorised; the payload used to win, so a message
    # on one device's topic recorded an event for another (registered) device.
    topic, payload = sample("chirpstack_v4", "docs_up_event")
    topic = topic.replace("/event/up", f"/event/{event}")
    other = payload.replace(b'"devEui": "0101010101010101"', b'"devEui": "0202020202020202"')
    assert other != payload
    with pytest.raises(DecodeError) as info:
        v4(topic, other)
    assert info.value.reason == "bad_value" and "does not match the topic" in info.value.detail


def test_v4_dev_eui_compares_case_blind() -> None:
    topic, payload = sample("chirpstack_v4", "docs_up_event")
    upper = payload.replace(b'"devEui": "0101010101010101"', b'"devEui": "0101010101010A0B"')
    events = v4(topic.replace("/0101010101010101/", "/0101010101010a0b/"), upper)
    assert events and all(e.device_id == "0101010101010a0b" for e in events)
    lower = payload.replace(b'"devEui": "0101010101010101"', b'"devEui": "0101010101010a0b"')
    events = v4(topic.replace("/0101010101010101/", "/0101010101010A0B/"), lower)
    assert events and all(e.device_id == "0101010101010a0b" for e in events)


# -- ChirpStack v3 ----------------------------------------------------------------------------

D3 = "0202020202020202"
V3_CASES: list[tuple[str, Hints, list[tuple[str, EventKind, object]]]] = [
    ("as_v3_json_v3_status", Hints(), [(D3, K.BATTERY, 75.5), (D3, K.SIGNAL, 6.0)]),
    ("as_v3_json_v3_up", Hints(), [(D3, K.HEARTBEAT, None), (D3, K.SIGNAL, -57.0)]),
    ("as_v3_protobuf_json_up", Hints(), [(D3, K.HEARTBEAT, None), (D3, K.SIGNAL, -48.0)]),
    # Four gateways heard one uplink: one signal event, not four.
    (
        "real_v3_up_no_codec_multi_gw",
        Hints(),
        [("dd66013157845f5c", K.HEARTBEAT, None), ("dd66013157845f5c", K.SIGNAL, 50.0)],
    ),
]


@pytest.mark.parametrize(("name", "hints", "expected"), V3_CASES, ids=[c[0] for c in V3_CASES])
def test_v3_sample_decodes_to_documented_events(
    name: str, hints: Hints, expected: list[tuple[str, EventKind, object]]
) -> None:
    topic, payload = sample("chirpstack_v3", name)
    events = v3(topic, payload, hints)
    assert [(e.device_id, e.kind, e.value) for e in events] == expected
    assert all(e.family == "chirpstack_v3" for e in events)


def test_every_chirpstack_v3_sample_is_covered() -> None:
    names = {p.stem for p in (SAMPLES / "chirpstack_v3").iterdir() if p.suffix == ".json"}
    assert names == {c[0] for c in V3_CASES}


def test_v3_object_json_string_is_parsed_a_second_time() -> None:
    topic, payload = sample("chirpstack_v3", "as_v3_protobuf_json_up")
    doc = orjson.loads(payload)
    doc["objectJSON"] = orjson.dumps({"magnet_status": "close", "battery": 90}).decode()
    events = v3(topic, orjson.dumps(doc), Hints(models={D3: "WS301"}))
    assert [(e.kind, e.value) for e in events] == [
        (K.DOOR_CLOSED, False),
        (K.BATTERY, 90.0),
        (K.SIGNAL, -48.0),
    ]
    doc["objectJSON"] = "{broken"
    with pytest.raises(DecodeError) as info:
        v3(topic, orjson.dumps(doc))
    assert info.value.reason == "malformed_json"


def test_v3_base64_dev_eui_must_match_topic() -> None:
    topic, payload = sample("chirpstack_v3", "as_v3_protobuf_json_up")
    with pytest.raises(DecodeError) as info:
        v3(topic.replace(D3, "0303030303030303"), payload)
    assert info.value.reason == "bad_value"


def test_v3_multi_gateway_picks_best_snr() -> None:
    topic, payload = sample("chirpstack_v3", "real_v3_up_no_codec_multi_gw")
    signal = v3(topic, payload)[-1]
    assert signal.attrs["gateways"] == 4
    assert signal.attrs["snr"] == 5.5


def test_samples_folders_are_verbatim_copies() -> None:
    for family in ("chirpstack_v4", "chirpstack_v3"):
        shared = Path(__file__).parents[2] / "shared" / "samples" / family
        if not shared.exists():
            pytest.skip("shared/ is not beside this checkout")
        for path in shared.iterdir():
            assert (SAMPLES / family / path.name).read_bytes() == path.read_bytes()


@pytest.mark.parametrize("level", [-1.0, 255.0, 1e300])
def test_impossible_battery_level_is_dropped_and_named(level: float) -> None:
    topic, payload = sample("chirpstack_v4", "docs_status_event")
    doc = orjson.loads(payload)
    doc["batteryLevel"] = level
    battery, signal = v4(topic, orjson.dumps(doc))
    assert battery.kind is K.BATTERY and battery.value is None and "implausible" in battery.attrs
    assert signal.kind is K.SIGNAL and signal.value == 10.0
