"""Property tests: whatever arrives on a subscribed topic, decoding yields events or a
DecodeError (a quarantine record), never any other exception."""

from __future__ import annotations

import random
from pathlib import Path
from typing import Any

import orjson
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from adapters.errors import DecodeError
from adapters.events import DeviceKind, Event, NoHints
from adapters.router import AdapterRouter, Family, FamilySource
from tests.support.samples import SAMPLES

NOW = 1_790_000_000.0
FAMILIES = ("zigbee2mqtt", "ttn_v3", "chirpstack_v4", "chirpstack_v3", "tasmota", "lorawan_decoded")


class AllHints:
    """Every device is an SOS button with a profile: the paths with the most decoding."""

    def __init__(self, profile: str | None) -> None:
        self._profile = profile

    def device_kind(self, device_id: str) -> DeviceKind | None:
        return DeviceKind.SOS_BUTTON

    def device_profile(self, device_id: str) -> str | None:
        return self._profile

    def registered_id(self, device_id: str) -> str:
        return device_id


ROUTER_V4 = AdapterRouter(
    sources=[
        FamilySource(Family.ZIGBEE2MQTT, "zigbee2mqtt"),
        FamilySource(Family.ZIGBEE2MQTT, "zb6"),
        FamilySource(Family.ZIGBEE2MQTT, "zigbee"),
        FamilySource(Family.TTN_V3),
        FamilySource(Family.CHIRPSTACK_V4),
        FamilySource(Family.TASMOTA),
        FamilySource(Family.NATIVE),
    ]
)
ROUTER_V3 = AdapterRouter(sources=[FamilySource(Family.CHIRPSTACK_V3)], profiles=ROUTER_V4.profiles)
PROFILE_NAMES = [None, "nope", *(p.id for p in ROUTER_V4.profiles.profiles)]


def load_samples() -> list[tuple[str, str, bytes]]:
    out: list[tuple[str, str, bytes]] = []
    for family in FAMILIES:
        for path in sorted((SAMPLES / family).iterdir()):
            if path.suffix not in (".json", ".txt"):
                continue
            topic = path.with_suffix(".topic").read_text().strip()
            payload = path.read_bytes()
            if family == "lorawan_decoded":  # decoded objects only: wrap them like TTS does
                topic = "v3/app@ttn/devices/d1/up"
                payload = orjson.dumps({"uplink_message": {"decoded_payload": orjson.loads(payload)}})
            out.append((family, topic, payload))
    out.append(
        (
            "native",
            "linli/c1/devices/d1/events",
            b'[{"v":1,"kind":"battery","ts":1789999000,"value":5,"attrs":{"a":1}}]',
        )
    )
    return out


SAMPLE_LIST = load_samples()
TOPICS = sorted({t for _, t, _ in SAMPLE_LIST})


def check(topic: str, payload: bytes, profile: str | None = None) -> None:
    for router in (ROUTER_V3, ROUTER_V4) if topic.startswith("application/") else (ROUTER_V4,):
        for hints in (NoHints(), AllHints(profile)):
            try:
                events = router.decode(topic, payload, NOW, hints)
            except DecodeError as exc:
                assert isinstance(exc.reason, str) and exc.reason
                continue
            assert isinstance(events, list)
            assert all(isinstance(e, Event) for e in events)


def mutate(value: Any, rng: random.Random, depth: int = 0) -> Any:
    """Drop keys, change types, recurse; leaves most of the document intact."""
    replacements: list[Any] = [
        None,
        True,
        0,
        -1,
        1.5,
        1e300,
        "",
        "x",
        "ON",
        [],
        {},
        [1],
        {"a": 1},
        "1.0",
        2**63 - 1,
    ]
    if rng.random() < 0.15:
        return rng.choice(replacements)
    if isinstance(value, dict):
        out = {}
        for key, item in value.items():
            roll = rng.random()
            if roll < 0.1:
                continue  # drop the key
            out[key] = mutate(item, rng, depth + 1) if roll < 0.6 else item
        return out
    if isinstance(value, list):
        return [mutate(item, rng, depth + 1) for item in value if rng.random() > 0.1]
    return value


JSON = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-(2**63), 2**63 - 1)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=20),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=12), children, max_size=5)
    ),
    max_leaves=20,
)
FAST = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@FAST
@given(st.sampled_from(TOPICS), st.binary(max_size=200))
def test_random_bytes(topic: str, payload: bytes) -> None:
    check(topic, payload)


@FAST
@given(st.sampled_from(TOPICS), JSON, st.sampled_from(PROFILE_NAMES))
def test_random_json_values(topic: str, value: Any, profile: str | None) -> None:
    check(topic, orjson.dumps(value), profile)


@settings(max_examples=400, deadline=None)
@given(st.sampled_from(SAMPLE_LIST), st.randoms(use_true_random=False), st.sampled_from(PROFILE_NAMES))
def test_mutated_samples(sample: tuple[str, str, bytes], rng: random.Random, profile: str | None) -> None:
    _, topic, payload = sample
    try:
        doc = orjson.loads(payload)
    except orjson.JSONDecodeError:
        doc = payload.decode()
    check(topic, orjson.dumps(mutate(doc, rng)), profile)


@FAST
@given(st.sampled_from(SAMPLE_LIST), st.integers(min_value=0, max_value=400), st.sampled_from(PROFILE_NAMES))
def test_truncated_samples(sample: tuple[str, str, bytes], cut: int, profile: str | None) -> None:
    _, topic, payload = sample
    check(topic, payload[: cut % (len(payload) + 1)], profile)


@FAST
@given(st.text(max_size=60), st.binary(max_size=50))
def test_random_topics(topic: str, payload: bytes) -> None:
    check(topic, payload)


@FAST
@given(st.sampled_from(SAMPLE_LIST), st.sampled_from(["decoded_payload", "object"]), JSON)
def test_random_decoded_objects_through_every_profile(
    sample: tuple[str, str, bytes], where: str, value: Any
) -> None:
    # Random decoded objects through every profile: wrong types are DecodeErrors, not crashes.
    decoded = (
        value
        if isinstance(value, dict)
        else {"battery": value, "press": value, "occupied": value, "type": value}
    )
    if where == "decoded_payload":
        payload = orjson.dumps({"uplink_message": {"decoded_payload": decoded}})
        topic = "v3/a/devices/d1/up"
    else:
        payload = orjson.dumps({"deviceInfo": {"devEui": "ab"}, "object": decoded})
        topic = "application/a/device/ab/event/up"
    for profile in PROFILE_NAMES:
        check(topic, payload, profile)


def test_every_sample_family_is_fuzzed() -> None:
    assert {f for f, _, _ in SAMPLE_LIST} >= set(FAMILIES) | {"native"}
    assert Path(SAMPLES).is_dir()
