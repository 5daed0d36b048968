"""The router: family defaults, subscriptions and first-level dispatch."""

from __future__ import annotations

import pytest

from adapters.errors import DecodeError
from adapters.events import EventKind, NoHints
from adapters.router import AdapterRouter, Family, FamilySource
from tests.support.samples import SAMPLES

NOW = 1_790_000_000.0


def test_zigbee2mqtt_construction_is_unchanged() -> None:
    router = AdapterRouter(sources=[FamilySource(Family.ZIGBEE2MQTT, "zigbee2mqtt")])
    assert router.subscriptions() == ["zigbee2mqtt/#"]
    assert len(router.profiles) == 0  # no profiled family: nothing loaded


def test_default_bases_and_subscriptions() -> None:
    router = AdapterRouter(sources=[FamilySource(f, "") for f in Family if f is not Family.CHIRPSTACK_V3])
    assert router.subscriptions() == [
        "zigbee2mqtt/#",
        "v3/+/devices/+/up",
        "v3/+/devices/+/join",
        "application/+/device/+/event/+",
        "tele/#",
        "stat/#",
        "linli/+/devices/+/events",
    ]
    assert len(router.profiles) > 0


def test_tasmota_prefix() -> None:
    assert FamilySource(Family.TASMOTA, "site1").subscriptions() == ["site1/tele/#", "site1/stat/#"]


@pytest.mark.parametrize(
    ("family", "sample"),
    [
        (Family.ZIGBEE2MQTT, "zigbee2mqtt/tuya_ts0215a_sos_emergency"),
        (Family.TTN_V3, "ttn_v3/tts_docs_uplink_example"),
        (Family.CHIRPSTACK_V4, "chirpstack_v4/docs_status_event"),
        (Family.CHIRPSTACK_V3, "chirpstack_v3/as_v3_json_v3_status"),
        (Family.TASMOTA, "tasmota/lwt_online"),
        (Family.TASMOTA, "tasmota/result_button_single_so73"),
    ],
)
def test_dispatch_reaches_the_family(family: Family, sample: str) -> None:
    topic = (SAMPLES / f"{sample}.topic").read_text().strip()
    payload = next(
        p for p in (SAMPLES / f"{sample}.json", SAMPLES / f"{sample}.txt") if p.exists()
    ).read_bytes()
    router = AdapterRouter(sources=[FamilySource(Family.ZIGBEE2MQTT, "zb6"), FamilySource(family, "")])
    events = router.decode(topic, payload, NOW, NoHints())
    assert events
    assert {e.family for e in events} == {family.value}


def test_native_dispatch_and_unknown_topic() -> None:
    router = AdapterRouter(sources=[FamilySource(Family.NATIVE)])
    events = router.decode("linli/c1/devices/d1/events", b'{"v":1,"kind":"heartbeat"}', NOW, NoHints())
    assert [e.kind for e in events] == [EventKind.HEARTBEAT]
    with pytest.raises(DecodeError) as info:
        router.decode("zigbee2mqtt/x", b"{}", NOW, NoHints())
    assert info.value.reason == "unknown_topic"
