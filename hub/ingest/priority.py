"""The priority lane's topics: where the registered SOS-capable devices publish.

Computed from the registry and the enabled sources (the configured ``sources`` plus each
community's own gateway roots), exact topics only, so the lane never receives bulk traffic:

* Zigbee2MQTT: ``<base>/<friendly name>`` (the device id is the friendly name);
* Linli's own JSON: ``<base>/<community>/devices/<id>/events``.

The other families (TTN, ChirpStack, Tasmota) name a device by an application id or a
gateway topic the registry does not hold; their buttons stay on the bulk lane (documented in
docs/benchmarks.md). The registry is loaded when the hub starts, so the topics are computed
then; a changed community file takes effect on the restart that imports it.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from adapters.events import DeviceKind
from adapters.router import Family, FamilySource
from hub.community.registry import Registry

#: Device kinds whose messages are urgent for a person: the one-button call (一键通) and the
#: fall detector. Smoke and gas detectors are not on the lane (they report often).
PRIORITY_KINDS = frozenset({DeviceKind.SOS_BUTTON, DeviceKind.FALL_DETECTOR})


def priority_topics(registry: Registry, sources: Sequence[FamilySource]) -> list[str]:
    """Exact topics of the registered SOS-capable devices, each once, in registry order."""
    topics: dict[str, None] = {}
    for community in registry.communities:
        own = [s.as_family_source(community.code) for s in community.sources]
        for device in community.devices:
            if device.kind not in PRIORITY_KINDS:
                continue
            for topic in _device_topics(device.id, community.code, [*sources, *own]):
                topics.setdefault(topic, None)
    return list(topics)


def _device_topics(device_id: str, community: str, sources: Iterable[FamilySource]) -> list[str]:
    out: list[str] = []
    if any(c in device_id for c in "+#"):
        return out  # a wildcard in a name would subscribe to other devices' traffic
    for source in sources:
        if source.family is Family.ZIGBEE2MQTT:
            out.append(f"{source.base}/{device_id}")
        elif source.family is Family.NATIVE:
            out.append(f"{source.base}/{community}/devices/{device_id}/events")
    return out
