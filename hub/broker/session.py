"""Per-client-id session state: subscriptions, inflight and queued outbound messages [MQTT-3.1.2.4]."""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass
from typing import TYPE_CHECKING

from hub.broker.codec import MAX_PACKET_ID

if TYPE_CHECKING:
    from hub.broker.connection import Connection


@dataclass(frozen=True, slots=True, kw_only=True)
class Outgoing:
    """One outbound PUBLISH minus its packet id: ``head`` (fixed header + topic) and ``payload``.

    The same instance (and so the same bytes objects) is shared by every subscriber that receives
    the message at that QoS; only the 2-byte packet id differs per subscriber for QoS 1.
    """

    head: bytes
    payload: bytes
    qos: int


class Session:
    """State that outlives a connection when ``clean_session`` is 0 [MQTT-3.1.2-4].

    ``inflight`` holds QoS 1 messages sent and not yet PUBACKed (insertion-ordered, resent with DUP
    on reconnect [MQTT-4.4.0-1]); ``queue1`` holds QoS 1 messages waiting for an inflight slot;
    ``queue0`` holds QoS 0 messages only while the client is offline.
    """

    __slots__ = (
        "blocked_publishers",
        "clean",
        "client_id",
        "conn",
        "inflight",
        "next_packet_id",
        "overflow_warned",
        "qos2_received",
        "queue0",
        "queue1",
        "read_allowed",
        "subscriptions",
        "username",
    )

    def __init__(self, *, client_id: str, clean: bool, username: str | None = None) -> None:
        self.client_id = client_id
        #: Who owns the session: a persistent session is never resumed by another user.
        self.username = username
        #: ACL read decisions per topic name (bounded; cleared on every CONNECT).
        self.read_allowed: dict[str, bool] = {}
        self.clean = clean
        self.conn: Connection | None = None
        self.subscriptions: dict[str, int] = {}
        self.inflight: dict[int, Outgoing] = {}
        self.queue1: deque[Outgoing] = deque()
        self.queue0: deque[Outgoing] = deque()
        self.qos2_received: set[int] = set()  # inbound QoS 2 ids between PUBREC and PUBREL
        self.next_packet_id = 1
        self.blocked_publishers: set[Connection] = set()
        self.overflow_warned = False

    def queued(self) -> int:
        return len(self.queue0) + len(self.queue1)

    def allocate_packet_id(self) -> int:
        """The next packet id not currently inflight (caller guarantees inflight < 65535)."""
        packet_id = self.next_packet_id
        inflight = self.inflight
        while packet_id in inflight:
            packet_id = packet_id + 1 if packet_id < MAX_PACKET_ID else 1
        self.next_packet_id = packet_id + 1 if packet_id < MAX_PACKET_ID else 1
        return packet_id
