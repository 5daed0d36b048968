"""Per-community roots for The Things Stack v3, ChirpStack v4 and native topics (issue 13).

Two communities, each with its own TTS application, ChirpStack application and native level
under the shared bases: each community's owner subscribes to its roots only (checked with
the broker's own filter matching, then through a real Mosquitto with the per-community
sessions), and the router decodes every message whatever community it came from. The
registry refuses an application where a family has none, a source that would be every
community's, and a root claimed by two communities.
"""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import pytest

from adapters.events import NoHints
from adapters.router import AdapterRouter, Family, FamilySource
from hub.broker.topics import topic_matches
from hub.cluster.sessions import CommunitySessions
from hub.cluster.wiring import community_sources, community_topics
from hub.community.files import load_yaml, parse_yaml
from hub.community.registry import Registry
from hub.errors import RegistryError
from hub.mqtt.url import MqttUrl
from simulators.district import generate_district
from simulators.formats import chirpstack_v4 as chirpstack_format
from simulators.formats import native as native_format
from simulators.formats import ttn_v3 as ttn_format
from tests.helpers import eventually, publisher
from tests.support.samples import SAMPLES
from tests.support.servers import Broker

NOW = 1_790_000_000.0
A, B = "110105001001", "110105001002"
APPS = {
    A: {"ttn_v3": "app1@ttn", "chirpstack_v4": "ca739e26-7b67-4f14-b69e-d568c22a5a75"},
    B: {"ttn_v3": "app2@ttn", "chirpstack_v4": "17c82e96-be03-4f38-aef3-f83d48582d97"},
}


def community_yaml(code: str, sources: list[dict[str, str]]) -> dict[str, object]:
    return {
        "code": code,
        "name": f"社区{code[-1]}",
        "sources": sources,
        "grids": [{"code": f"{code}001", "name": "第一网格"}],
    }


def registry_yaml(sources: dict[str, list[dict[str, str]]]) -> str:
    return json.dumps({"communities": [community_yaml(code, s) for code, s in sources.items()]})


def own_sources(code: str) -> list[dict[str, str]]:
    return [
        {"family": "ttn_v3", "application": APPS[code]["ttn_v3"]},
        {"family": "chirpstack_v4", "application": APPS[code]["chirpstack_v4"]},
        {"family": "native", "application": code},
    ]


@pytest.fixture
def registry() -> Registry:
    return Registry(communities=parse_yaml(registry_yaml({A: own_sources(A), B: own_sources(B)}), file="t"))


def sample(name: str) -> bytes:
    return (SAMPLES / f"{name}.json").read_bytes()


def ttn_uplink(code: str) -> bytes:
    """The TTS documentation's uplink, sent by this community's device of its own application."""
    doc = json.loads(sample("ttn_v3/tts_docs_uplink_example"))
    doc["end_device_ids"]["device_id"] = f"dev-{code}"
    doc["end_device_ids"]["application_ids"]["application_id"] = APPS[code]["ttn_v3"].split("@")[0]
    return json.dumps(doc).encode()


def messages(code: str) -> list[tuple[str, bytes]]:
    """One message of each family, as the community's gateways publish them."""
    return [
        (f"v3/{APPS[code]['ttn_v3']}/devices/dev-{code}/up", ttn_uplink(code)),
        (
            f"application/{APPS[code]['chirpstack_v4']}/device/0101010101010101/event/status",
            sample("chirpstack_v4/docs_status_event"),
        ),
        (f"linli/{code}/devices/native-{code}/events", b'{"v":1,"kind":"heartbeat"}'),
    ]


def topics(registry: Registry, code: str) -> list[str]:
    return community_topics(
        registry, code, reply_subscription=lambda c: f"linli/{c}/workers/+/replies", hub_wide=[]
    )


def test_each_community_subscribes_to_its_own_applications(registry: Registry) -> None:
    assert topics(registry, A) == [
        "v3/app1@ttn/devices/+/up",
        "v3/app1@ttn/devices/+/join",
        "application/ca739e26-7b67-4f14-b69e-d568c22a5a75/device/+/event/+",
        f"linli/{A}/devices/+/events",
        f"linli/{A}/workers/+/replies",
    ]
    for code in (A, B):
        for topic, _ in messages(code):
            matched = {c for c in (A, B) if any(topic_matches(f, topic) for f in topics(registry, c))}
            assert matched == {code}, topic


def test_the_router_decodes_every_communitys_messages(registry: Registry) -> None:
    # Community roots next to the hub-wide defaults: the more specific root claims the topic.
    router = AdapterRouter(
        sources=[FamilySource(Family.TTN_V3), FamilySource(Family.NATIVE), *community_sources(registry)]
    )
    for code in (A, B):
        decoded = {topic: router.decode(topic, payload, NOW, NoHints()) for topic, payload in messages(code)}
        families = [{e.family for e in events} for events in decoded.values()]
        assert families == [{"ttn_v3"}, {"chirpstack_v4"}, {"native"}]
        native = decoded[f"linli/{code}/devices/native-{code}/events"]
        assert [e.device_id for e in native] == [f"native-{code}"]
    # Another application under a shared base is not a community's: only the hub-wide source has it.
    alone = AdapterRouter(sources=community_sources(registry))
    with pytest.raises(Exception, match="no adapter") as info:
        alone.decode("v3/app3@ttn/devices/d/up", sample("ttn_v3/tts_docs_uplink_example"), NOW, NoHints())
    assert getattr(info.value, "reason", None) == "unknown_topic"


@pytest.mark.parametrize(
    ("sources", "message"),
    [
        (
            {A: [{"family": "zigbee2mqtt", "application": "x"}]},
            "zigbee2mqtt topics have no application level",
        ),
        ({A: [{"family": "ttn_v3"}]}, "needs an application: the default root is every community's"),
        ({A: [{"family": "tasmota"}]}, "needs a base_topic"),
        (
            {A: [{"family": "native", "application": B}]},
            f"native source's application is its own code, not {B}",
        ),
        ({A: [{"family": "ttn_v3", "application": "a/b"}]}, "should match pattern"),
        (
            {A: own_sources(A), B: [{"family": "ttn_v3", "application": "app1@ttn"}]},
            f"communities {A} and {B} both have gateway topics v3/app1@ttn/devices/+/up",
        ),
    ],
)
def test_the_registry_refuses_a_root_that_is_not_one_communitys(
    sources: dict[str, list[dict[str, str]]], message: str
) -> None:
    with pytest.raises(RegistryError, match=message.replace("/", ".").replace("'", ".").replace("+", ".")):
        parse_yaml(registry_yaml(sources), file="community.yaml")


async def test_each_owner_receives_only_its_communitys_messages(
    registry: Registry, mosquitto_broker: Broker, tmp_path: Path
) -> None:
    received: dict[str, list[str]] = {A: [], B: []}
    router = AdapterRouter(sources=community_sources(registry))
    decoded: list[str] = []
    nodes: dict[str, CommunitySessions] = {}
    for code in (A, B):

        def on_message(
            topic: str, payload: bytes, qos: int, retain: bool, dup: bool, code: str = code
        ) -> None:
            received[code].append(topic)
            decoded.extend(e.device_id for e in router.decode(topic, payload, NOW, NoHints()))

        nodes[code] = CommunitySessions(
            url=MqttUrl.parse(mosquitto_broker.url),
            topics=lambda community: topics(registry, community),
            on_message=on_message,
            on_unhandled=lambda unhandled: None,
            on_fenced=lambda community: None,
        )
        await nodes[code].open(code)
    gateway = await publisher(mosquitto_broker)
    try:
        sent = {code: messages(code) for code in (A, B)}
        for code in (A, B):
            for topic, payload in sent[code]:
                gateway.publish(topic, payload, qos=1)
        # A message of an application no community has: nobody's.
        gateway.publish("v3/app3@ttn/devices/d/up", sample("ttn_v3/tts_docs_uplink_example"), qos=1)
        await eventually(lambda: len(received[A]) + len(received[B]) >= 6, within=10, what="six messages")
        await asyncio.sleep(0.5)
    finally:
        await gateway.disconnect()
        for sessions in nodes.values():
            await sessions.close_all()
    assert {code: sorted(t) for code, t in received.items()} == {
        code: sorted(topic for topic, _ in sent[code]) for code in (A, B)
    }
    assert {f"native-{A}", f"native-{B}", f"dev-{A}", f"dev-{B}"} <= set(decoded)


def test_the_simulated_districts_gateways_publish_under_their_communitys_roots(tmp_path: Path) -> None:
    district = generate_district(communities=3)
    district.write(tmp_path / "district.yaml")
    registry = Registry(communities=load_yaml(tmp_path / "district.yaml"))  # the registry's own checks
    codes = [c.code for c in registry.communities]
    assert len(codes) == 3
    for code in codes:
        device = next(d for d in district.devices if d.community == code)
        published = [
            ttn_format.topic(device, "up"),
            chirpstack_format.topic(device, "up"),
            native_format.topic(device),
        ]
        for topic in published:
            matched = {c for c in codes if any(topic_matches(f, topic) for f in topics(registry, c))}
            assert matched == {code}, topic
