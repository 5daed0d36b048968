"""Replay the TTN device repository's codec examples through the LoRaWAN decoders.

The outside world decodes with these codecs: The Things Stack installs them from
TheThingsNetwork/lorawan-devices and ChirpStack imports the same repository. Each example's
``output.data`` (tests/fixtures/lorawan_devices, with its source and commit) goes in as a TTS
``decoded_payload`` (profile from ``version_ids``) and as a ChirpStack v4 ``object`` (profile
from the device-profile name, numbers as protobuf doubles), and the events must mean what the
vendor's example says.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import orjson
import pytest

from adapters import chirpstack_v4, ttn_v3
from adapters.events import DeviceKind, EventKind
from adapters.profiles import load_profiles
from tests.support.samples import Hints

FIXTURES = Path(__file__).parent / "fixtures" / "lorawan_devices"
EXAMPLES: dict[str, dict[str, Any]] = {
    e["id"]: e for e in json.loads((FIXTURES / "codec_examples.json").read_text(encoding="utf-8"))
}
PROFILES = load_profiles()
NOW = 1_790_000_000.0
K = EventKind
SOS = DeviceKind.SOS_BUTTON
EUI = "0101010101010101"

#: The profile ChirpStack finds by device-profile name (TTS finds it from version_ids).
PROFILE_OF = {
    ("milesight-iot", "ws101"): "milesight-ws101",
    ("milesight-iot", "ws301"): "milesight-ws301",
    ("milesight-iot", "ws136"): "milesight-ws136",
    ("milesight-iot", "ws156"): "milesight-ws156",
    ("milesight-iot", "ws202"): "milesight-ws202",
    ("milesight-iot", "ws203"): "milesight-ws203",
    ("milesight-iot", "ws303"): "milesight-ws303",
    ("milesight-iot", "em300-mld"): "milesight-em300-mld",
    ("milesight-iot", "em300-sld"): "milesight-em300-sld",
    ("milesight-iot", "em300-zld"): "milesight-em300-zld",
    ("milesight-iot", "em400-mud"): "milesight-em400-mud",
    ("dragino", "lds01"): "dragino-lds01",
    ("dragino", "lds02"): "dragino-lds02",
    ("dragino", "lwl02"): "dragino-lwl02",
    ("dragino", "lds03a"): "dragino-lds03a",
    ("browan", "tbpb100"): "browan-tbpb100",
    ("browan", "tbdw100"): "browan-tbdw100",
    ("browan", "tbms100"): "browan-tbms100",
    ("browan", "tbwl100"): "browan-tbwl100",
    ("netvox", "r312a"): "netvox-r312a",
    ("netvox", "r312"): "netvox-r312",
    ("netvox", "r311a"): "netvox-r311a",
    ("nwave", "nps405sm"): "nwave-nps405",
    ("nwave", "nps405fm"): "nwave-nps405",
    ("nwave", "nps310sm"): "nwave-nps310sm",
    ("bosch", "tps110"): "bosch-tps110",
    ("elsys", "ers-eye"): "elsys-ers-eye",
}

HB = (K.HEARTBEAT, None)
# (example id, device kind in the registry, expected (kind, value) in order)
CASES: list[tuple[str, DeviceKind | None, list[tuple[EventKind, object]]]] = [
    # The repository's WS101 codec says `button: "short"`: an SOS on an SOS button.
    ("ws101-short", SOS, [(K.SOS_PRESS, "single")]),
    ("ws101-short", None, [(K.BUTTON_PRESS, "single")]),
    ("ws301-door-open", None, [(K.DOOR_OPEN, True)]),
    # `install: "no"`: taken off its mount.
    ("ws301-uninstalled", None, [(K.TAMPER, True)]),
    # The scene panels' codec gives only the button number: a single press.
    ("ws136-button", SOS, [(K.SOS_PRESS, "single")]),
    ("ws156-button", None, [(K.BUTTON_PRESS, "single")]),
    ("ws202-pir", None, [(K.MOTION, True)]),
    ("ws202-light", None, [HB]),
    (
        "ws203-vacant",
        None,
        [(K.MOTION, False), (K.BATTERY, 100.0), (K.TEMPERATURE, 30.8), (K.HUMIDITY, 50.5)],
    ),
    ("ws303-leak", None, [(K.WATER_LEAK, True), (K.BATTERY, 100.0)]),
    ("em300-mld-normal", None, [(K.WATER_LEAK, False), (K.BATTERY, 92.0)]),
    ("em300-mld-leak", None, [(K.WATER_LEAK, True), (K.BATTERY, 92.0)]),
    # The earlier SLD/ZLD codec: `water`.
    ("em300-sld-normal", None, [(K.WATER_LEAK, False)]),
    ("em300-sld-leak", None, [(K.WATER_LEAK, True)]),
    ("em300-zld-normal", None, [(K.WATER_LEAK, False)]),
    ("em300-zld-leak", None, [(K.WATER_LEAK, True)]),
    ("em400-mud", None, [(K.DISTANCE, 2116.0), (K.TAMPER, True), (K.BATTERY, 92.0)]),
    ("lds01-closed", None, [(K.DOOR_CLOSED, False), (K.BATTERY, None)]),
    ("lds02-closed", None, [(K.DOOR_CLOSED, False), (K.BATTERY, None)]),
    ("lwl02-door-mode", None, [(K.DOOR_CLOSED, False), (K.BATTERY, None)]),
    # fPort 4 is the LDS03A's configuration: alive, no state.
    ("lds03a-config", None, [HB]),
    ("tbpb100-pressed", SOS, [(K.SOS_PRESS, "single"), (K.BATTERY, None)]),
    ("tbdw100-closed", None, [(K.DOOR_CLOSED, False), (K.BATTERY, None)]),
    ("tbms100-occupied", None, [(K.MOTION, True), (K.BATTERY, None)]),
    (
        "tbwl100-leak",
        None,
        [(K.WATER_LEAK, True), (K.BATTERY, None), (K.TEMPERATURE, 22.0), (K.HUMIDITY, 40.0)],
    ),
    # R312A: `Alarm: 1` is the emergency press whatever the registry says.
    ("r312a-alarm", None, [(K.SOS_PRESS, "emergency"), (K.BATTERY, None)]),
    ("r312a-startup", SOS, [HB]),
    ("r312a-config-rsp", SOS, [HB]),
    ("r312a-read-config-rsp", SOS, [HB]),
    ("r312a-set-press-time-rsp", SOS, [HB]),
    ("r312a-get-press-time-rsp", SOS, [HB]),
    # R312 is a door bell: a plain press unless installed as an SOS button.
    ("r312-alarm", None, [(K.BUTTON_PRESS, "single"), (K.BATTERY, None)]),
    ("r312-alarm", SOS, [(K.SOS_PRESS, "single"), (K.BATTERY, None)]),
    ("r312-startup", SOS, [HB]),
    # R311A: the contact's polarity is the site's (profile comment); battery only.
    ("r311a-status", None, [(K.BATTERY, None), HB]),
    ("r311a-low-battery", None, [(K.BATTERY, None), HB]),
    ("r311a-startup", None, [HB]),
    ("r311a-config-rsp", None, [HB]),
    ("r311a-read-config-rsp", None, [HB]),
    ("nps405sm-parking", None, [(K.OCCUPANCY, True)]),
    ("nps405fm-registration", None, [(K.OCCUPANCY, True)]),
    ("nps405sm-heartbeat", None, [(K.OCCUPANCY, False), HB, (K.BATTERY, None), (K.TEMPERATURE, -10.0)]),
    ("nps405sm-startup", None, [(K.OCCUPANCY, False), HB]),
    ("nps310sm-parking", None, [(K.OCCUPANCY, True)]),
    ("nps310sm-heartbeat", None, [(K.OCCUPANCY, False), HB]),
    ("nps310sm-startup", None, [(K.OCCUPANCY, False), HB]),
    ("tps110-parking", None, [(K.OCCUPANCY, True)]),
    ("tps110-heartbeat", None, [(K.OCCUPANCY, True), HB]),
    ("tps110-startup", None, [(K.OCCUPANCY, True), HB]),
    ("ers-eye", None, [(K.MOTION, True), (K.TEMPERATURE, 22.6), (K.HUMIDITY, 41.0)]),
]


def tts(example: dict[str, Any], kind: DeviceKind | None) -> list[tuple[EventKind, object]]:
    uplink = {
        "f_port": example["fPort"],
        "f_cnt": 3,
        "frm_payload": "",
        "decoded_payload": example["data"],
        "version_ids": {"brand_id": example["brand_id"], "model_id": example["model_id"]},
        "received_at": "2026-01-01T00:00:00Z",
    }
    payload = orjson.dumps({"end_device_ids": {"device_id": "d1"}, "uplink_message": uplink})
    hints = Hints({"d1": kind} if kind else {})
    events = ttn_v3.decode("v3/app@ttn/devices/d1/up", payload, NOW, hints, base="v3", profiles=PROFILES)
    return [(e.kind, e.value) for e in events]


def chirpstack(example: dict[str, Any], kind: DeviceKind | None) -> list[tuple[EventKind, object]]:
    # protobuf Struct: every number is a double.
    obj = json.loads(json.dumps(example["data"]), parse_int=float)
    doc = {
        "deviceInfo": {
            "devEui": EUI,
            "deviceName": "d1",
            "applicationId": "app",
            "deviceProfileName": PROFILE_OF[(example["brand_id"], example["model_id"])],
        },
        "fPort": example["fPort"],
        "fCnt": 3,
        "time": "2026-01-01T00:00:00Z",
        "object": obj,
    }
    hints = Hints({EUI: kind} if kind else {})
    events = chirpstack_v4.decode(
        f"application/app/device/{EUI}/event/up",
        orjson.dumps(doc),
        NOW,
        hints,
        base="application",
        profiles=PROFILES,
    )
    return [(e.kind, e.value) for e in events]


@pytest.mark.parametrize(
    ("name", "kind", "expected"), CASES, ids=[f"{c[0]}-{i}" for i, c in enumerate(CASES)]
)
def test_repository_example_through_tts(
    name: str, kind: DeviceKind | None, expected: list[tuple[EventKind, object]]
) -> None:
    assert tts(EXAMPLES[name], kind) == expected


@pytest.mark.parametrize(
    ("name", "kind", "expected"), CASES, ids=[f"{c[0]}-{i}" for i, c in enumerate(CASES)]
)
def test_repository_example_through_chirpstack_v4(
    name: str, kind: DeviceKind | None, expected: list[tuple[EventKind, object]]
) -> None:
    assert chirpstack(EXAMPLES[name], kind) == expected


def test_every_example_is_replayed_and_every_model_has_its_profile() -> None:
    assert {c[0] for c in CASES} == set(EXAMPLES)
    for example in EXAMPLES.values():
        profile = PROFILES.for_tts(example["brand_id"], example["model_id"])
        assert profile is not None, example["id"]
        assert profile.id == PROFILE_OF[(example["brand_id"], example["model_id"])]


def test_examples_carry_their_source() -> None:
    for example in EXAMPLES.values():
        assert example["source"].startswith("vendor/") and example["source"].endswith("-codec.yaml")
        assert len(example["commit"]) == 40
        bytes.fromhex(example["bytes"])


def test_attrs_of_repository_examples() -> None:
    # The scene panel's button number, the registration tag's battery is not the sensor's.
    events = ttn_v3.decode(
        "v3/app@ttn/devices/d1/up",
        orjson.dumps(
            {
                "end_device_ids": {"device_id": "d1"},
                "uplink_message": {
                    "decoded_payload": EXAMPLES["ws156-button"]["data"],
                    "version_ids": {"brand_id": "milesight-iot", "model_id": "ws156"},
                },
            }
        ),
        NOW,
        Hints(),
        base="v3",
        profiles=PROFILES,
    )
    assert events[0].attrs["button"] == 1.0
    heartbeat = tts(EXAMPLES["nps405sm-heartbeat"], None)
    assert (K.BATTERY, None) in heartbeat


# -- decoder outputs the repository's examples do not show ------------------------------------
# Read from the codecs named in each profile's comment; each is the output for one frame.


@pytest.mark.parametrize(
    ("profile", "decoded", "expected"),
    [
        # ws303.js: `leak_status = bytes[i] === 0 ? 'no leak' : 'leak'` — every dry report.
        (
            "milesight-ws303",
            {"battery": 100, "leak_status": "no leak"},
            [(K.WATER_LEAK, False), (K.BATTERY, 100.0)],
        ),
        # ws101.js: 2 → "long", 3 → "double".
        ("milesight-ws101", {"button": "long"}, [(K.SOS_PRESS, "long")]),
        ("milesight-ws101", {"button": "double"}, [(K.SOS_PRESS, "double")]),
        # ws301.js: `install = bytes[i] === 0 ? "yes" : "no"`.
        ("milesight-ws301", {"door": "close", "install": "yes"}, [(K.DOOR_CLOSED, False), (K.TAMPER, False)]),
        # lds03a.js fPort 2: DOOR_OPEN_STATUS "OPEN"/"CLOSE", ALARM "TRUE"/"FALSE"; fPort 5: BAT.
        (
            "dragino-lds03a",
            {
                "ALARM": "FALSE",
                "DOOR_OPEN_STATUS": "OPEN",
                "DOOR_OPEN_TIMES": 5,
                "LAST_DOOR_OPEN_DURATION": 16,
            },
            [(K.DOOR_OPEN, True)],
        ),
        ("dragino-lds03a", {"ALARM": "FALSE", "DOOR_OPEN_STATUS": "CLOSE"}, [(K.DOOR_CLOSED, False)]),
        ("dragino-lds03a", {"SENSOR_MODEL": "LDS03A", "BAT": 3.1}, [(K.BATTERY, None), HB]),
        # rb02i_r718t_r312a_r312.js, earlier: the R312's press as `Doorbell`.
        (
            "netvox-r312",
            {"Device": "R312", "Volt": 3, "Doorbell": 1},
            [(K.SOS_PRESS, "single"), (K.BATTERY, None)],
        ),
        ("netvox-r312", {"Device": "R312", "Volt": 3, "Doorbell": 0}, [(K.BATTERY, None), HB]),
    ],
)
def test_codec_outputs_beyond_the_examples(
    profile: str, decoded: dict[str, object], expected: list[tuple[EventKind, object]]
) -> None:
    payload = orjson.dumps(
        {"end_device_ids": {"device_id": "d1"}, "uplink_message": {"decoded_payload": decoded}}
    )
    hints = Hints({"d1": SOS}, {"d1": profile})
    events = ttn_v3.decode("v3/app@ttn/devices/d1/up", payload, NOW, hints, base="v3", profiles=PROFILES)
    assert [(e.kind, e.value) for e in events] == expected
