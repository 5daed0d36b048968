"""Broker counters and the immutable snapshot returned by ``EmbeddedBroker.stats()``."""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum


class DropReason(Enum):
    """Why a message was not delivered to one subscriber."""

    QOS0_SLOW_SUBSCRIBER = "qos0_slow_subscriber"  # online, write buffer past the QoS 0 bound
    QOS0_QUEUE_FULL = "qos0_queue_full"  # session queue at max_queued
    QOS1_QUEUE_FULL = "qos1_queue_full"  # session queue at max_queued and no QoS 0 left to evict


@dataclass(frozen=True, slots=True, kw_only=True)
class BrokerStats:
    """A snapshot of the broker's counters (all monotonic except the gauges noted)."""

    clients_connected: int  # gauge
    sessions: int  # gauge: online + offline persistent sessions
    messages_received: int  # PUBLISH packets received from clients (wills included)
    messages_sent: int  # PUBLISH packets written to clients (redeliveries included)
    messages_dropped: int  # sum of the dropped_* counters
    dropped_qos0_slow_subscriber: int
    dropped_qos0_queue_full: int
    dropped_qos1_queue_full: int
    retained_count: int  # gauge
    flow_control_pauses: int  # times a publisher's reading was paused for a slow subscriber
    publishes_denied: int = 0  # PUBLISH packets acknowledged and dropped by the ACL
    deliveries_denied: int = 0  # copies not sent to a subscriber the ACL does not let read

    def dropped(self, reason: DropReason) -> int:
        return {
            DropReason.QOS0_SLOW_SUBSCRIBER: self.dropped_qos0_slow_subscriber,
            DropReason.QOS0_QUEUE_FULL: self.dropped_qos0_queue_full,
            DropReason.QOS1_QUEUE_FULL: self.dropped_qos1_queue_full,
        }[reason]


class Counters:
    """Mutable counters owned by the broker core (not a value type)."""

    __slots__ = (
        "deliveries_denied",
        "drops",
        "flow_control_pauses",
        "messages_received",
        "messages_sent",
        "publishes_denied",
    )

    def __init__(self) -> None:
        self.messages_received = 0
        self.messages_sent = 0
        self.flow_control_pauses = 0
        self.publishes_denied = 0
        self.deliveries_denied = 0
        self.drops: dict[DropReason, int] = dict.fromkeys(DropReason, 0)
