"""Raw LoRaWAN bytes (no codec on the network server): read by the profile's codec, or an SOS
button's uplink is quarantined as ``undecoded_uplink`` — never a press read as a heartbeat.

Found in review: the verbatim WS101 presses as TTS and ChirpStack v4 deliver them without a
codec (``AXUQ/y4B``: battery 16 %, short press) became heartbeats of a registered SOS button.
"""

from __future__ import annotations

from pathlib import Path

import orjson
import pytest

from adapters.errors import DecodeError
from adapters.events import DeviceKind, EventKind
from adapters.raw import RawCodec, decode_raw
from adapters.router import AdapterRouter, Family, FamilySource
from tests.helpers import GRID
from tests.support.samples import Hints, sample
from tests.test_deveui_case import _hub

PRESS = 1_795_371_180.0
RAW_SAMPLES = [
    (Family.TTN_V3, "ttn_v3", "tti_milesight_ws101_button_raw_packetbroker", "eui-1000000000000001"),
    (Family.CHIRPSTACK_V4, "chirpstack_v4", "milesight_ws101_button_up_no_codec", "1000000000000001"),
]


def test_milesight_channels_read_as_the_vendor_decoder_does() -> None:
    assert decode_raw(RawCodec.MILESIGHT, bytes.fromhex("017510ff2e01")) == (
        {"battery": 16, "press": "short"},
        None,
    )
    # Device information after power-on is skipped; a long and a double press.
    info = bytes.fromhex("ff0101ff090110ff0a0102ff0f00ff0bff")
    assert decode_raw(RawCodec.MILESIGHT, info + bytes.fromhex("ff2e02")) == ({"press": "long"}, None)
    assert decode_raw(RawCodec.MILESIGHT, bytes.fromhex("ff2e03"))[0] == {"press": "double"}
    # What comes before an unknown or cut pair stands; the rest is named.
    fields, unread = decode_raw(RawCodec.MILESIGHT, bytes.fromhex("ff2e01" + "0367"))
    assert fields == {"press": "short"} and unread is not None and "0x03 type 0x67" in unread
    fields, unread = decode_raw(RawCodec.MILESIGHT, bytes.fromhex("0175"))
    assert fields == {} and unread is not None and "cut short" in unread
    assert decode_raw(RawCodec.MILESIGHT, b"") == ({}, None)


@pytest.mark.parametrize(("family", "folder", "name", "device"), RAW_SAMPLES)
def test_a_raw_ws101_press_is_an_sos_on_a_registered_button(
    family: Family, folder: str, name: str, device: str
) -> None:
    topic, payload = sample(folder, name)
    router = AdapterRouter(sources=[FamilySource(family)])
    hints = Hints({device: DeviceKind.SOS_BUTTON}, {device: "milesight-ws101"})
    events = router.decode(topic, payload, PRESS, hints)
    kinds = [e.kind for e in events]
    assert kinds.count(EventKind.SOS_PRESS) == 1
    battery = next(e for e in events if e.kind is EventKind.BATTERY)
    assert battery.value == 16.0


@pytest.mark.parametrize(("family", "folder", "name", "device"), RAW_SAMPLES)
def test_an_sos_buttons_bytes_nobody_decodes_are_quarantined_with_its_heartbeat(
    family: Family, folder: str, name: str, device: str
) -> None:
    topic, payload = sample(folder, name)
    router = AdapterRouter(sources=[FamilySource(family)])
    with pytest.raises(DecodeError) as caught:
        router.decode(topic, payload, PRESS, Hints({device: DeviceKind.SOS_BUTTON}))  # no profile
    assert caught.value.reason == "undecoded_uplink"
    assert [e.kind for e in caught.value.salvaged] == [EventKind.HEARTBEAT]
    # Another kind of device without a codec: a heartbeat, as every uplink is a sign of life.
    events = router.decode(topic, payload, PRESS, Hints({device: DeviceKind.DOOR_SENSOR}))
    assert [e.kind for e in events if e.kind is not EventKind.SIGNAL] == [EventKind.HEARTBEAT]


def test_bad_raw_bytes_are_quarantined_and_what_was_read_stands() -> None:
    topic, payload = sample("ttn_v3", "tti_milesight_ws101_button_raw_packetbroker")
    router = AdapterRouter(sources=[FamilySource(Family.TTN_V3)])
    hints = Hints(
        {"eui-1000000000000001": DeviceKind.SOS_BUTTON}, {"eui-1000000000000001": "milesight-ws101"}
    )
    doc = orjson.loads(payload)
    for raw, reason in (("!!", "bad_value"), (7, "wrong_type")):
        doc["uplink_message"]["frm_payload"] = raw
        with pytest.raises(DecodeError, match="frm_payload") as caught:
            router.decode(topic, orjson.dumps(doc), PRESS, hints)
        assert caught.value.reason == reason
    doc["uplink_message"]["frm_payload"] = "/y4BA2cBAQ=="  # ff2e01 (a press), then an unknown pair
    with pytest.raises(DecodeError, match="unknown Milesight channel") as caught:
        router.decode(topic, orjson.dumps(doc), PRESS, hints)
    assert EventKind.SOS_PRESS in [e.kind for e in caught.value.salvaged]


def test_the_hub_files_the_raw_press_as_an_sos_case(tmp_path: Path) -> None:
    hub = _hub(tmp_path, "1000000000000001")  # a WS101 registered as an SOS button
    try:
        hub._on_message(*sample("chirpstack_v4", "milesight_ws101_button_up_no_codec"), 1, False)
        cases = [hub.cases.load(i) for i in hub.cases.case_ids()]
        (sos,) = [c for c in cases if c is not None and c.category == "sos"]
        assert sos.grid == GRID  # (and its 16 % battery is a case of its own)
        assert not hub.quarantine.counts
    finally:
        hub.store.close()
