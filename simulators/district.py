"""Several communities in one registry file, each with its own gateway topic roots.

A street or district runs one Zigbee2MQTT instance per community (its own ``base_topic``),
Tasmota nodes with a per-community topic prefix, one The Things Stack and one ChirpStack
application per community, and native devices under ``linli/<community>/``; the registry's
``sources`` says which roots belong to which community, so a cluster of hubs can split the communities between nodes
(issue 13). Each community is :func:`simulators.community.generate` with its own seed and
sequence number; ids that are per-community in one file (people, residents, households,
buildings, places) are prefixed with ``c<seq>-`` so they stay unique in the district.
"""

from __future__ import annotations

from typing import Any

from simulators.community import (
    SimCommunity,
    chirpstack_application,
    from_document,
    generate,
    ttn_application,
)
from simulators.formats.ttn_v3 import TENANT
from simulators.types import Family

#: Mostly Zigbee2MQTT and Tasmota, as the cluster bench's streams assume; every family has its
#: per-community roots in :func:`roots` all the same.
DISTRICT_MIX = "zigbee2mqtt=0.85,tasmota=0.15"
_REFERENCES = frozenset({"id", "household", "resident", "place", "lot"})


def roots(code: str) -> list[dict[str, str]]:
    return [
        {"family": Family.ZIGBEE2MQTT.value, "base_topic": f"zigbee2mqtt-{code}"},
        {"family": Family.TASMOTA.value, "base_topic": f"site-{code}"},
        # The application level under the shared base (v3/…, application/…, linli/…).
        {"family": Family.TTN_V3.value, "application": f"{ttn_application(code)}@{TENANT}"},
        {"family": Family.CHIRPSTACK_V4.value, "application": chirpstack_application(code)},
        {"family": Family.NATIVE.value, "application": code},
    ]


def _prefixed(node: Any, prefix: str, *, in_devices: bool = False) -> Any:
    if isinstance(node, list):
        return [_prefixed(item, prefix, in_devices=in_devices) for item in node]
    if not isinstance(node, dict):
        return node
    result: dict[str, Any] = {}
    for key, value in node.items():
        if key in _REFERENCES and isinstance(value, str) and not (in_devices and key == "id"):
            result[key] = prefix + value
        else:
            result[key] = _prefixed(value, prefix, in_devices=in_devices or key == "devices")
    return result


def generate_district(*, communities: int, seed: int = 1, **options: Any) -> SimCommunity:
    """``communities`` communities (sequence 001…), each generated as one, with its own roots."""
    if not 1 <= communities <= 999:
        raise ValueError("communities must be between 1 and 999")
    documents: list[dict[str, Any]] = []
    for n in range(1, communities + 1):
        one = generate(
            seed=seed * 1000 + n, community_seq=f"{n:03d}", name=f"第{n}社区", mix=DISTRICT_MIX, **options
        )
        for community in one.communities:
            renamed = _prefixed(community, f"c{n:03d}-")
            renamed["sources"] = roots(str(community["code"]))
            documents.append(renamed)
    return from_document({"version": 1, "communities": documents})
