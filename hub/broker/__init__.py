"""Embedded MQTT 3.1.1 broker (asyncio, in-process) for ``linli demo`` and small sites.

Owns: the MQTT wire protocol (``codec``), topic filters and the subscription trie (``topics``),
client sessions (``session``), per-connection I/O (``connection``), broker state and routing
(``core``) and the listener lifecycle (``server``). Public API: :class:`EmbeddedBroker`,
:class:`BrokerStats`, :class:`DropReason` and the ``BrokerError`` family.

Must not import: other hub modules (but :mod:`hub.errors`, where its errors are rooted),
adapters, rules, dashboards or simulators: it depends only on the standard library, so the hub
can talk to it exactly like to Mosquitto.

Deliberate limits: outbound QoS is at most 1 (QoS 2 subscriptions are granted QoS 1; inbound
QoS 2 is handled exactly-once), sessions live in memory only, no TLS. Per-user topic ACLs
(``acl``) follow Mosquitto's ``acl_file`` semantics, so one generated file serves both brokers.
"""

from __future__ import annotations

from hub.broker.acl import Access, AclRules
from hub.broker.server import EmbeddedBroker
from hub.broker.stats import BrokerStats, DropReason
from hub.errors import (
    BrokerConfigError,
    BrokerError,
    BrokerStateError,
    MalformedPacketError,
    ProtocolViolationError,
    UnsupportedProtocolError,
)

__all__ = [
    "Access",
    "AclRules",
    "BrokerConfigError",
    "BrokerError",
    "BrokerStateError",
    "BrokerStats",
    "DropReason",
    "EmbeddedBroker",
    "MalformedPacketError",
    "ProtocolViolationError",
    "UnsupportedProtocolError",
]
