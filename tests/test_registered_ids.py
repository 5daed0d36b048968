"""A reporting device is named by the registry's own id object, not by its message's topic slice.

What the hub keeps per reporting device (its state, its series tags) is keyed by the event's
``device_id``. Each decoder slices the id out of the topic: kept as it was, that slice was a
second copy of every registered id, ≈ 70 bytes a device at 10⁵ devices (issue 14). Equal
strings would pass any ``==`` test, so these check identity.
"""

from __future__ import annotations

from pathlib import Path

import orjson
import pytest

from adapters.router import AdapterRouter, Family, FamilySource
from hub.app import Hub
from hub.clock import ManualClock
from tests.helpers import COMMUNITY, SOS_BUTTON, hub_settings
from tests.support.samples import SAMPLES, Hints, sample
from tests.support.servers import Broker

NOW = 1_795_371_180.0


class Registered(Hints):
    """Hints whose registered id is another object than the decoder's (equal) string."""

    def __init__(self) -> None:
        super().__init__()
        self.handed: list[str] = []

    def registered_id(self, device_id: str) -> str:
        copy = (device_id + ".")[:-1]  # an equal string, never the argument itself
        self.handed.append(copy)
        return copy


ROUTERS = {
    Family.ZIGBEE2MQTT: AdapterRouter(
        sources=[FamilySource(Family.ZIGBEE2MQTT, base) for base in ("zigbee2mqtt", "zb6", "zigbee")]
    ),
    **{
        f: AdapterRouter(sources=[FamilySource(f)])
        for f in (Family.TTN_V3, Family.CHIRPSTACK_V4, Family.TASMOTA)
    },
    Family.CHIRPSTACK_V3: AdapterRouter(sources=[FamilySource(Family.CHIRPSTACK_V3)]),
}
CASES = [
    (family, topic_file.stem)
    for family in ROUTERS
    for topic_file in sorted((SAMPLES / family.value).glob("*.topic"))
]


@pytest.mark.parametrize(("family", "name"), CASES)
def test_each_decoder_names_the_device_with_the_registry_s_id(family: Family, name: str) -> None:
    topic, payload = sample(family.value, name)
    hints = Registered()
    events = ROUTERS[family].decode(topic, payload, NOW, hints)
    handed = {id(s) for s in hints.handed}
    assert all(id(event.device_id) in handed for event in events), [e.device_id for e in events]


def test_a_native_event_names_the_device_with_the_registry_s_id() -> None:
    router = AdapterRouter(sources=[FamilySource(Family.NATIVE)])
    hints = Registered()
    topic = f"linli/{COMMUNITY}/devices/{SOS_BUTTON}/events"
    (event,) = router.decode(topic, orjson.dumps({"v": 1, "kind": "heartbeat"}), NOW, hints)
    assert event.device_id is hints.handed[-1]


def test_a_reporting_device_s_state_is_kept_under_the_registry_s_id(tmp_path: Path) -> None:
    settings = hub_settings(tmp_path, Broker("127.0.0.1", 1, "u", "p"))
    hub = Hub(settings=settings, clock=ManualClock(start=NOW))
    try:
        registered = hub.registry.subject(SOS_BUTTON).device_id
        topic = f"zigbee2mqtt/{SOS_BUTTON}"
        assert topic[len("zigbee2mqtt/") :] is not registered  # the slice is a copy of its own
        hub.pipeline.handle(topic, b'{"contact": false, "battery": 90, "linkquality": 120}')
        state = hub.states.get(SOS_BUTTON)
        # Held on the registry's subject, no table keyed by the slice; so are the series tags.
        assert state is not None and hub.registry.subject(SOS_BUTTON).state is state
        assert SOS_BUTTON not in hub.states._states
        assert hub.registry.subject(SOS_BUTTON).memo is hub.registry.series_info(registered)
    finally:
        hub.close()
