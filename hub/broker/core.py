"""Broker state and protocol logic: sessions, subscriptions, retained messages, routing, flow control.

Everything here runs on the event loop thread, synchronously inside ``data_received``: there is no
per-message task. Delivery QoS is ``min(publish QoS, granted QoS)`` and the broker grants at most
QoS 1 (a QoS 2 request gets SUBACK 1), so outbound traffic only needs PUBACK bookkeeping; inbound
QoS 2 is fully supported (PUBREC/PUBREL/PUBCOMP, delivered once per packet id).

Flow control (nothing lost for QoS 1): when a subscriber is congested — its transport buffer is
above the high-water mark (``pause_writing``) or its QoS 1 queue (messages waiting for an inflight
slot) is above ``QUEUE_HIGH_WATER`` — every other connection that publishes to it gets
``pause_reading()`` until the subscriber drains (transport resumed and queue ≤ ``QUEUE_LOW_WATER``).
TCP then pushes back on the publishing clients. To avoid deadlock, a congested subscriber's own
connection is never paused (it must keep reading PUBACKs), and neither is a connection that
publishes to itself.
"""

from __future__ import annotations

import hmac
import logging
import uuid
from collections.abc import Mapping
from typing import TYPE_CHECKING

from hub.broker.acl import Access, AclRules
from hub.broker.codec import (
    PINGRESP_PACKET,
    SUBACK_FAILURE,
    ConnectReturnCode,
    PacketType,
    Will,
    check_fixed_flags,
    encode_ack,
    encode_connack,
    encode_suback,
    parse_connect,
    parse_publish,
    parse_subscribe,
    parse_unsubscribe,
    publish_head,
    read_packet_id,
    with_dup,
)
from hub.broker.session import Outgoing, Session
from hub.broker.stats import BrokerStats, Counters, DropReason
from hub.broker.topics import SubscriptionTrie, is_valid_topic_filter, topic_matches
from hub.errors import MalformedPacketError, ProtocolViolationError, UnsupportedProtocolError

if TYPE_CHECKING:
    from hub.broker.connection import Connection

_LOG = logging.getLogger("hub.broker")

MAX_GRANTED_QOS = 1  # documented downgrade: QoS 2 subscriptions are granted QoS 1 [MQTT-3.9.3]
QUEUE_HIGH_WATER = 1_000  # queued QoS 1 messages above which a subscriber counts as congested
QUEUE_LOW_WATER = 100
QOS0_DROP_BYTES = 16 * 1024 * 1024
READ_CACHE_SIZE = 4_096  # ACL decisions cached per session (reads) and connection (writes)  # QoS 0 to an online subscriber is dropped only past this backlog

_PUBLISH = int(PacketType.PUBLISH)
_PUBACK = int(PacketType.PUBACK)


class BrokerCore:
    """All broker state. Owned by :class:`hub.broker.server.EmbeddedBroker`."""

    def __init__(
        self,
        *,
        users: Mapping[str, str],
        allow_anonymous: bool,
        max_inflight: int,
        max_queued: int,
        acl: AclRules | None = None,
    ) -> None:
        self._users = {name: password.encode("utf-8") for name, password in users.items()}
        #: ``None``: every authenticated client may read and write every topic (no acl_file).
        self._acl = acl
        self._allow_anonymous = allow_anonymous
        self._max_inflight = max_inflight
        self._max_queued = max_queued
        self.connections: set[Connection] = set()
        self._sessions: dict[str, Session] = {}
        self._trie: SubscriptionTrie[str] = SubscriptionTrie()
        self._retained: dict[str, Outgoing] = {}  # topic → message as delivered on subscribe (retain=1)
        self._counters = Counters()
        self._clients_connected = 0
        self.stopping = False

    # ------------------------------------------------------------------ lifecycle hooks

    def connection_made(self, conn: Connection) -> None:
        self.connections.add(conn)

    def connection_lost(self, conn: Connection) -> None:
        self.connections.discard(conn)
        for congested in conn.blocked_by:
            congested.blocked_publishers.discard(conn)
        conn.blocked_by.clear()
        session = conn.session
        if conn.connected:
            self._clients_connected -= 1
        if session is not None and session.conn is conn:
            self._detach(session)
        conn.session = None
        will = conn.will
        conn.will = None
        if will is not None and not self.stopping:
            # Not preceded by DISCONNECT: I/O error, keepalive, protocol error, takeover [MQTT-3.1.2-8].
            _LOG.info("mqtt: publishing will of %s on %s", conn.client_id, will.topic)
            self._publish_will(will, conn.username, conn.client_id)

    def _detach(self, session: Session) -> None:
        session.conn = None
        self._release_publishers(session)
        if session.clean:
            self._discard_session(session)  # [MQTT-3.1.2-6]

    def _discard_session(self, session: Session) -> None:
        for topic_filter in session.subscriptions:
            self._trie.remove(topic_filter, session.client_id)
        session.subscriptions.clear()
        if self._sessions.get(session.client_id) is session:
            del self._sessions[session.client_id]

    def subscriber_drained(self, conn: Connection) -> None:
        session = conn.session
        if session is not None and session.blocked_publishers:
            self._maybe_release(session)

    def stats(self) -> BrokerStats:
        drops = self._counters.drops
        return BrokerStats(
            clients_connected=self._clients_connected,
            sessions=len(self._sessions),
            messages_received=self._counters.messages_received,
            messages_sent=self._counters.messages_sent,
            messages_dropped=sum(drops.values()),
            dropped_qos0_slow_subscriber=drops[DropReason.QOS0_SLOW_SUBSCRIBER],
            dropped_qos0_queue_full=drops[DropReason.QOS0_QUEUE_FULL],
            dropped_qos1_queue_full=drops[DropReason.QOS1_QUEUE_FULL],
            retained_count=len(self._retained),
            flow_control_pauses=self._counters.flow_control_pauses,
            publishes_denied=self._counters.publishes_denied,
            deliveries_denied=self._counters.deliveries_denied,
        )

    # ------------------------------------------------------------------ ACL

    def _may_write(self, username: str | None, client_id: str | None, topic: str) -> bool:
        acl = self._acl
        return acl is None or acl.allows(username, client_id or "", topic, Access.WRITE)

    def _may_publish(self, conn: Connection, topic: str) -> bool:
        """:meth:`_may_write` cached per connection and topic (a gateway reuses its few topics)."""
        if self._acl is None:
            return True
        cache = conn.write_allowed
        allowed = cache.get(topic)
        if allowed is None:
            if len(cache) >= READ_CACHE_SIZE:
                cache.clear()
            allowed = cache[topic] = self._may_write(conn.username, conn.client_id, topic)
        return allowed

    def _may_read(self, session: Session, topic: str) -> bool:
        """Checked per delivered copy (Mosquitto's semantics), cached per session and topic."""
        acl = self._acl
        if acl is None:
            return True
        cache = session.read_allowed
        allowed = cache.get(topic)
        if allowed is None:
            if len(cache) >= READ_CACHE_SIZE:
                cache.clear()
            allowed = cache[topic] = acl.allows(session.username, session.client_id, topic, Access.READ)
        if not allowed:
            self._counters.deliveries_denied += 1
        return allowed

    # ------------------------------------------------------------------ dispatch

    def check_header(self, conn: Connection, first: int) -> None:
        """Validate a fixed header as soon as it arrives, before waiting for the body."""
        packet_type = first >> 4
        if not conn.connected and packet_type != PacketType.CONNECT:
            raise ProtocolViolationError("first packet must be CONNECT [MQTT-3.1.0-1]")
        if packet_type != _PUBLISH:
            check_fixed_flags(packet_type, first & 0x0F)

    def handle_packet(self, conn: Connection, first: int, body: bytes) -> None:
        """Handle one complete packet whose header passed :meth:`check_header`."""
        packet_type = first >> 4
        if packet_type == _PUBLISH:
            self._on_publish(conn, first & 0x0F, body)
            return
        if packet_type == _PUBACK:
            self._on_puback(conn, read_packet_id(body))
        elif packet_type == PacketType.CONNECT:
            if conn.connected:
                raise ProtocolViolationError("second CONNECT [MQTT-3.1.0-2]")
            self._on_connect(conn, body)
        elif packet_type == PacketType.PUBREL:
            packet_id = read_packet_id(body)
            assert conn.session is not None
            conn.session.qos2_received.discard(packet_id)  # [MQTT-4.3.3-2] method A: forget the id
            conn.send(encode_ack(PacketType.PUBCOMP, packet_id))
        elif packet_type == PacketType.SUBSCRIBE:
            self._on_subscribe(conn, body)
        elif packet_type == PacketType.UNSUBSCRIBE:
            self._on_unsubscribe(conn, body)
        elif packet_type == PacketType.PINGREQ:
            if body:
                raise MalformedPacketError("PINGREQ with a body")
            conn.send(PINGRESP_PACKET)
        elif packet_type == PacketType.DISCONNECT:
            if body:
                raise MalformedPacketError("DISCONNECT with a body")
            conn.will = None  # [MQTT-3.14.4-3]
            conn.close()
        else:
            # CONNACK, SUBACK, UNSUBACK, PINGRESP are server→client; PUBREC/PUBCOMP only answer
            # outbound QoS 2, which this broker never sends.
            raise ProtocolViolationError(f"unexpected {PacketType(packet_type).name} from a client")

    # ------------------------------------------------------------------ CONNECT

    def _authenticate(self, username: str | None, password: bytes | None) -> ConnectReturnCode:
        if username is None:
            return ConnectReturnCode.ACCEPTED if self._allow_anonymous else ConnectReturnCode.NOT_AUTHORIZED
        expected = self._users.get(username)
        # Compare even for unknown users so timing does not reveal which user names exist.
        matches = hmac.compare_digest(password or b"", expected if expected is not None else b"\x00" * 16)
        if expected is None or password is None or not matches:
            return ConnectReturnCode.BAD_USERNAME_OR_PASSWORD
        return ConnectReturnCode.ACCEPTED

    def _refuse(self, conn: Connection, code: ConnectReturnCode, reason: str) -> None:
        _LOG.info("mqtt: refusing %s: %s", conn.peer, reason)
        # Refused: session present 0 [MQTT-3.2.2-4], then close [MQTT-3.2.2-5].
        conn.send(encode_connack(session_present=False, return_code=code))
        conn.close()

    def _on_connect(self, conn: Connection, body: bytes) -> None:
        try:
            packet = parse_connect(body)
        except UnsupportedProtocolError as exc:
            self._refuse(conn, ConnectReturnCode.UNACCEPTABLE_PROTOCOL_VERSION, str(exc))  # [MQTT-3.1.2-2]
            return
        code = self._authenticate(packet.username, packet.password)
        if code != ConnectReturnCode.ACCEPTED:
            self._refuse(conn, code, f"{code.name} (user {packet.username!r})")
            return
        conn.username = packet.username
        client_id = packet.client_id
        if not client_id:
            if not packet.clean_session:
                self._refuse(conn, ConnectReturnCode.IDENTIFIER_REJECTED, "empty client id")  # [MQTT-3.1.3-8]
                return
            client_id = f"auto-{uuid.uuid4().hex}"  # [MQTT-3.1.3-6]
        conn.client_id = client_id

        existing = self._sessions.get(client_id)
        if self._acl is not None and existing is not None and existing.username != packet.username:
            # A client id is not a credential: another user may neither kick the owner off
            # (a sensor password taking over the hub's session) nor inherit its queued messages,
            # nor discard them while the owner is away (found in review: a worker's login took
            # `linli-hub` during a restart, the queued SOS presses were thrown away and the hub
            # was refused while it stayed). A persistent session stays its user's.
            if existing.conn is not None or not existing.clean:
                self._refuse(conn, ConnectReturnCode.IDENTIFIER_REJECTED, f"client id {client_id!r} in use")
                return
            self._discard_session(existing)
            existing = None
        if existing is not None and existing.conn is not None:
            old = existing.conn
            _LOG.info("mqtt: client id %s taken over by %s; closing %s", client_id, conn.peer, old.peer)
            self._detach_for_takeover(existing, old)  # [MQTT-3.1.4-2]
        session_present = False
        if existing is not None and not packet.clean_session and not existing.clean:
            session = existing
            session_present = True
        else:
            if existing is not None:
                self._discard_session(existing)
            session = Session(client_id=client_id, clean=packet.clean_session, username=packet.username)
            self._sessions[client_id] = session
        session.clean = packet.clean_session
        session.username = packet.username
        session.read_allowed.clear()
        session.overflow_warned = False

        conn.connected = True
        self._clients_connected += 1
        conn.keepalive = packet.keepalive
        conn.will = packet.will
        conn.session = session
        session.conn = conn
        conn.send(encode_connack(session_present=session_present, return_code=ConnectReturnCode.ACCEPTED))
        if session_present:
            self._resume_session(session, conn)

    def _detach_for_takeover(self, session: Session, old: Connection) -> None:
        # The old connection's will stays on it and is published from its connection_lost.
        session.conn = None
        self._release_publishers(session)
        old.session = None
        old.close()

    def _resume_session(self, session: Session, conn: Connection) -> None:
        """Resend unacknowledged QoS 1 with DUP and original ids [MQTT-4.4.0-1], then the queues."""
        counters = self._counters
        for packet_id, out in session.inflight.items():
            conn.send_parts(with_dup(out.head), packet_id.to_bytes(2, "big"), out.payload)
            counters.messages_sent += 1
        queue0 = session.queue0
        while queue0:
            out = queue0.popleft()
            conn.send_parts(out.head, b"", out.payload)
            counters.messages_sent += 1
        self._pump(session, conn)

    # ------------------------------------------------------------------ PUBLISH

    def _on_publish(self, conn: Connection, flags: int, body: bytes) -> None:
        packet = parse_publish(flags, body)
        self._counters.messages_received += 1
        qos = packet.qos
        if not self._may_publish(conn, packet.topic):
            # Acknowledged and dropped [MQTT-3.3.5-2], as Mosquitto does; nothing is routed
            # or retained, and the client learns nothing about which topics exist.
            self._counters.publishes_denied += 1
            _LOG.info("mqtt: %s (user %r) may not publish on %r", conn.client_id, conn.username, packet.topic)
            if qos == 1 and packet.packet_id is not None:
                conn.send(encode_ack(PacketType.PUBACK, packet.packet_id))
            elif qos == 2 and packet.packet_id is not None:
                conn.send(encode_ack(PacketType.PUBREC, packet.packet_id))
            return
        if qos == 0:
            self._route(conn, packet.topic, packet.topic_bytes, packet.payload, qos=0, retain=packet.retain)
            return
        packet_id = packet.packet_id
        assert packet_id is not None
        if qos == 1:
            self._route(conn, packet.topic, packet.topic_bytes, packet.payload, qos=1, retain=packet.retain)
            conn.send(encode_ack(PacketType.PUBACK, packet_id))
            return
        session = conn.session
        assert session is not None
        # QoS 2, method A [MQTT-4.3.3-2]: deliver on first receipt, remember the id until PUBREL so
        # a retransmitted PUBLISH (DUP) with the same id is acknowledged but not delivered again.
        if packet_id not in session.qos2_received:
            session.qos2_received.add(packet_id)
            self._route(conn, packet.topic, packet.topic_bytes, packet.payload, qos=2, retain=packet.retain)
        conn.send(encode_ack(PacketType.PUBREC, packet_id))

    def _publish_will(self, will: Will, username: str | None, client_id: str | None) -> None:
        self._counters.messages_received += 1
        if not self._may_write(username, client_id, will.topic):
            self._counters.publishes_denied += 1
            return
        topic_bytes = will.topic.encode("utf-8")
        self._route(None, will.topic, topic_bytes, will.payload, qos=will.qos, retain=will.retain)

    def _store_retained(self, topic: str, topic_bytes: bytes, payload: bytes, qos: int) -> None:
        if not payload:
            # A zero-byte retained message deletes the retained message for the topic [MQTT-3.3.1-10].
            self._retained.pop(topic, None)
            return
        stored_qos = min(qos, MAX_GRANTED_QOS)
        head = publish_head(topic_bytes, len(payload), qos=stored_qos, retain=True)
        self._retained[topic] = Outgoing(
            head=head, payload=payload, qos=stored_qos
        )  # replaces [MQTT-3.3.1-5]

    def _route(
        self,
        publisher: Connection | None,
        topic: str,
        topic_bytes: bytes,
        payload: bytes,
        *,
        qos: int,
        retain: bool,
    ) -> None:
        if retain:
            self._store_retained(topic, topic_bytes, payload, qos)
        targets = self._trie.match(topic)
        if not targets:
            return
        sessions = self._sessions
        counters = self._counters
        acl_on = self._acl is not None
        out0: Outgoing | None = None
        out1: Outgoing | None = None
        for client_id, granted in targets:
            session = sessions.get(client_id)
            if session is None:  # pragma: no cover - trie and sessions are kept in step
                continue
            if acl_on and not self._may_read(session, topic):
                continue
            effective = qos if qos < granted else granted
            conn = session.conn
            # Forwarded copies have RETAIN 0 [MQTT-3.3.1-9]; heads are encoded once per QoS.
            if effective == 0:
                if out0 is None:
                    head0 = publish_head(topic_bytes, len(payload), qos=0, retain=False)
                    out0 = Outgoing(head=head0, payload=payload, qos=0)
                if conn is None:
                    self._enqueue_offline(session, out0)
                    continue
                if conn.write_paused and conn.buffered() > QOS0_DROP_BYTES:
                    counters.drops[DropReason.QOS0_SLOW_SUBSCRIBER] += 1
                else:
                    conn.send_parts(out0.head, b"", payload)
                    counters.messages_sent += 1
            else:
                if out1 is None:
                    head1 = publish_head(topic_bytes, len(payload), qos=1, retain=False)
                    out1 = Outgoing(head=head1, payload=payload, qos=1)
                if conn is None:
                    self._enqueue_offline(session, out1)
                    continue
                self._deliver1(session, conn, out1)
            if (
                publisher is not None
                and publisher is not conn
                and publisher.session is not session
                and (conn.write_paused or len(session.queue1) > QUEUE_HIGH_WATER)
            ):
                self._block(publisher, session)

    def _deliver1(self, session: Session, conn: Connection, out: Outgoing) -> None:
        if not session.queue1 and len(session.inflight) < self._max_inflight:
            packet_id = session.allocate_packet_id()
            session.inflight[packet_id] = out
            conn.send_parts(out.head, packet_id.to_bytes(2, "big"), out.payload)
            self._counters.messages_sent += 1
            return
        if len(session.queue1) >= self._max_queued:
            self._drop_oldest_qos1(session)
        session.queue1.append(out)

    def _enqueue_offline(self, session: Session, out: Outgoing) -> None:
        """Bounded offline queue: evict the oldest QoS 0 first, then the oldest QoS 1 (counted, logged)."""
        if session.queued() >= self._max_queued:
            if session.queue0:
                session.queue0.popleft()
                self._counters.drops[DropReason.QOS0_QUEUE_FULL] += 1
            elif out.qos == 0:
                self._counters.drops[DropReason.QOS0_QUEUE_FULL] += 1
                return
            else:
                self._drop_oldest_qos1(session)
        if out.qos == 0:
            session.queue0.append(out)
        else:
            session.queue1.append(out)

    def _drop_oldest_qos1(self, session: Session) -> None:
        session.queue1.popleft()
        self._counters.drops[DropReason.QOS1_QUEUE_FULL] += 1
        if not session.overflow_warned:
            session.overflow_warned = True
            _LOG.warning(
                "mqtt: queue of client %s reached max_queued=%d; dropping oldest QoS 1 messages",
                session.client_id,
                self._max_queued,
            )

    def _on_puback(self, conn: Connection, packet_id: int) -> None:
        session = conn.session
        if session is None or session.inflight.pop(packet_id, None) is None:
            return  # unknown id: ignore (e.g. a duplicate PUBACK)
        if session.queue1:
            self._pump(session, conn)
        if session.blocked_publishers:
            self._maybe_release(session)

    def _pump(self, session: Session, conn: Connection) -> None:
        queue1 = session.queue1
        inflight = session.inflight
        limit = self._max_inflight
        sent = 0
        while queue1 and len(inflight) < limit:
            out = queue1.popleft()
            packet_id = session.allocate_packet_id()
            inflight[packet_id] = out
            conn.send_parts(out.head, packet_id.to_bytes(2, "big"), out.payload)
            sent += 1
        self._counters.messages_sent += sent

    # ------------------------------------------------------------------ flow control

    def _block(self, publisher: Connection, congested: Session) -> None:
        own = publisher.session
        if own is not None and own.blocked_publishers:
            return  # it is itself congested: it must keep reading its PUBACKs (deadlock avoidance)
        if congested in publisher.blocked_by:
            return
        publisher.blocked_by.add(congested)
        first_blocked = not congested.blocked_publishers
        congested.blocked_publishers.add(publisher)
        if not publisher.reading_paused:
            publisher.pause_reading()
            self._counters.flow_control_pauses += 1
        subscriber = congested.conn
        if first_blocked and subscriber is not None and subscriber.blocked_by:
            # The congested subscriber was itself paused as a publisher: resume it so it can ack.
            for other in subscriber.blocked_by:
                other.blocked_publishers.discard(subscriber)
            subscriber.blocked_by.clear()
            subscriber.resume_reading()

    def _maybe_release(self, session: Session) -> None:
        conn = session.conn
        if conn is not None and (conn.write_paused or len(session.queue1) > QUEUE_LOW_WATER):
            return
        self._release_publishers(session)

    def _release_publishers(self, session: Session) -> None:
        publishers = session.blocked_publishers
        if not publishers:
            return
        session.blocked_publishers = set()
        for publisher in publishers:
            publisher.blocked_by.discard(session)
            if not publisher.blocked_by:
                publisher.resume_reading()

    # ------------------------------------------------------------------ SUBSCRIBE / UNSUBSCRIBE

    def _on_subscribe(self, conn: Connection, body: bytes) -> None:
        packet = parse_subscribe(body)
        session = conn.session
        assert session is not None
        codes: list[int] = []
        granted_filters: list[tuple[str, int]] = []
        for topic_filter, requested in packet.requests:
            if not is_valid_topic_filter(topic_filter):
                codes.append(SUBACK_FAILURE)  # [MQTT-3.9.3]: 0x80 for a filter we cannot accept
                continue
            granted = min(requested, MAX_GRANTED_QOS)
            session.subscriptions[topic_filter] = granted
            self._trie.add(topic_filter, session.client_id, granted)
            codes.append(granted)
            granted_filters.append((topic_filter, granted))
        conn.send(encode_suback(packet.packet_id, codes))  # one code per filter, in order [MQTT-3.8.4-5]
        # Retained messages matching each new (or replaced) subscription, RETAIN 1 [MQTT-3.3.1-6].
        for topic_filter, granted in granted_filters:
            for topic, out in self._retained.items():
                if not topic_matches(topic_filter, topic) or not self._may_read(session, topic):
                    continue
                self._deliver_retained(session, conn, topic, out, granted)

    def _deliver_retained(
        self, session: Session, conn: Connection, topic: str, out: Outgoing, granted: int
    ) -> None:
        if out.qos <= granted:
            message = out
        else:
            head = publish_head(topic.encode("utf-8"), len(out.payload), qos=granted, retain=True)
            message = Outgoing(head=head, payload=out.payload, qos=granted)
        if message.qos == 0:
            conn.send_parts(message.head, b"", message.payload)
            self._counters.messages_sent += 1
        else:
            self._deliver1(session, conn, message)

    def _on_unsubscribe(self, conn: Connection, body: bytes) -> None:
        packet = parse_unsubscribe(body)
        session = conn.session
        assert session is not None
        for topic_filter in packet.filters:
            if session.subscriptions.pop(topic_filter, None) is not None:
                self._trie.remove(topic_filter, session.client_id)
        conn.send(
            encode_ack(PacketType.UNSUBACK, packet.packet_id)
        )  # even if nothing matched [MQTT-3.10.4-5]
