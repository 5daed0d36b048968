"""The hub's MQTT connection: gmqtt, with PUBACK sent only after a message is handled.

Why gmqtt: measured on these machines (Mosquitto on loopback, receive + JSON parse in one
process) gmqtt is the fastest Python client by far (handbook: ≈ 50 k msg/s against
paho-mqtt's ≈ 17 k and aiomqtt's ≈ 7 k; ``make bench`` measures ≈ 280 k msg/s for a bare
gmqtt consumer); the hub's goal of ≥ 40 k msg/s end to end rules out the others.

Why the hook: gmqtt either acknowledges a QoS 1 PUBLISH *before* calling ``on_message``
(optimistic) or only supports asynchronous handlers for late acks (a task per message).
The hub's handler is synchronous and cheap, so :class:`HubMqttClient` calls it first and
sends PUBACK after it returns. If handling raises (e.g. the store is unavailable), no
PUBACK is sent then: the message goes to ``on_unhandled`` with a callable that sends the
PUBACK later, once the hub's own retry handled it. MQTT 3.1.1 redelivers an unacknowledged
message only when the session resumes [MQTT-4.4.0-1], so without the hub's own retry a
message that failed once would wait for the next reconnect. The late PUBACK goes out only
on the connection the message arrived on: after a reconnect the broker redelivers it
itself, and a packet identifier from the old connection may name another message on the
new one [MQTT-2.3.1-4]. This relies on gmqtt internals, hence the exact pin in
``pyproject.toml`` and the test ``test_mqtt_client.py``.

Turns: gmqtt's read loop parses everything it has read (up to 64 KiB, a few hundred messages)
in one go, and reading from a full buffer does not yield to the event loop, so a backlog on
one connection would hold every other connection (the SOS priority lane, the notification
acknowledgements) for tens to hundreds of milliseconds. With ``turn_bytes`` the connection
reads at most that much per turn and yields to the loop before the next read. With ``turn_s``
as well, the next read is sized so that handling it takes about ``turn_s`` at the rate the
previous chunk was handled: bytes alone did not bound a turn's time (a chunk of messages that
each write to the store took seconds on a loaded machine, with an SOS press waiting behind it;
docs/benchmarks.md, "SOS latency split"). With ``defer_to`` (the bulk lane, given the SOS
lane's :meth:`HubMqttClient.waiting`) a chunk also waits, for up to :data:`MAX_DEFERRALS`
turns of the loop, while the other connection has bytes it has not read: the loop runs its
ready callbacks in order, so without this a press that reached the lane's socket waited for
two more bulk chunks (its socket's callback queued behind the next chunk, then the lane's
read behind the one after; docs/benchmarks.md, "Tenth pass").

PUBACKs of one chunk go out in one write: gmqtt writes each PUBACK to the socket as it is
made, a ``send`` on loopback TCP (3.7 µs of CPU alone) plus the broker's work to take it; with a
QoS 1 stream at full load a message cost the hub 48.5–56.1 µs of CPU that way against 40.7–44.1
µs with one write per chunk (docs/benchmarks.md, "Twenty-third pass").
While the read loop parses a chunk, the PUBACKs of the messages handled are collected, in the
order their PUBLISHes came, which MQTT requires [MQTT-4.6.0-2], and written together when the
chunk's parse returns. Nothing is acknowledged earlier than before, and a message is never
acknowledged before its handler returned: the write comes after the last handler of the chunk,
in the same callback, with no await in between.

Reconnects: gmqtt waits a fixed 6 s before every attempt; presses sent while the broker
was back but the hub not yet reconnected are at risk on a broker without persistence. So
the first attempt goes out after :data:`RECONNECT_FIRST_S`, then backs off exponentially
up to :data:`RECONNECT_MAX_S`.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import select
import ssl
import struct
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any

from gmqtt import Client, Message, Subscription
from gmqtt.mqtt.constants import MQTTv311
from gmqtt.mqtt.package import Package

from hub.errors import BrokerUnreachableError, MessageDeferred, MqttError
from hub.mqtt.url import MqttUrl

log = logging.getLogger(__name__)

#: (topic, payload, qos, retain, dup): ``dup`` is MQTT's DUP flag, set on a redelivery [MQTT-3.3.1-1].
MessageHandler = Callable[[str, bytes, int, bool, bool], None]


@dataclass(frozen=True, slots=True)
class Unhandled:
    """A message the handler could not take; ``ack`` sends its held PUBACK (``None`` for QoS 0)."""

    topic: str
    payload: bytes
    qos: int
    retain: bool
    ack: Callable[[], None] | None
    error: BaseException
    #: The broker's DUP flag: a retry must still say the message may have been handled before.
    dup: bool = False


UnhandledHandler = Callable[[Unhandled], None]


def marked_dup(error: BaseException) -> bool:
    """Whether a handler that refused the message said it may be a copy (``error.dup``), where
    the broker's DUP flag did not: the SOS lane guard's cold start (``hub.ingest.lanes``)."""
    return getattr(error, "dup", False) is True


#: The smallest read of a connection with time-bounded turns (≈ 5 sensor messages).
MIN_TURN_BYTES = 1024
#: At most this many loop turns a chunk waits for another connection's bytes: a flood on the
#: SOS lane's topics slows the bulk lane, it cannot stop it.
MAX_DEFERRALS = 8

#: PUBACK of MQTT 3.1.1: type 4, flags 0, remaining length 2, the packet identifier [MQTT-3.4].
_PUBACK = struct.Struct("!BBH")
_PUBACK_HEADER = 0x40

#: First reconnect attempt after a lost connection, then doubling up to the maximum.
RECONNECT_FIRST_S = 0.1
RECONNECT_MAX_S = 5.0


def _asks_to_wait(defer_to: Callable[[], bool]) -> bool:
    """``defer_to()``, and never an exception into gmqtt's read loop (which would stop reading)."""
    try:
        return defer_to()
    except Exception:
        log.exception("deferring to another connection failed; reading on")
        return False


def split_packets(
    data: bytes, publish: Callable[[int, bytes], None], put_package: Callable[[Package], None]
) -> int:
    """Hand every whole packet in ``data`` on, in order; returns the bytes used (-1: malformed).

    A packet is a fixed header — the type and flags byte, then the remaining length as a
    variable byte integer of at most four bytes [MQTT-2.2.3] — and that many bytes. PUBLISH
    (type 3) goes to ``publish(cmd, body)``; an exception there is logged and the next packet
    goes on, as gmqtt's handler does. Anything else goes to ``put_package``. What follows the
    last whole packet is left for the next read, as gmqtt's ``_read_packet`` does.

    Public for the bench's raw publisher, which reads the broker's PUBACKs with it.
    """
    size = len(data)
    at = 0
    while size - at >= 2:
        head = at + 1
        length = 0
        shift = 0
        while True:
            if head >= size:
                return at  # the length is not all here yet
            byte = data[head]
            head += 1
            length |= (byte & 0x7F) << shift
            if not byte & 0x80:
                break
            shift += 7
            if shift > 21:
                return -1  # a fifth length byte: malformed [MQTT-2.2.3]; gmqtt's loop drops the connection
        end = head + length
        if end > size:
            break
        cmd = data[at]
        body = data[head:end]
        at = end
        if cmd & 0xF0 == 0x30:
            try:
                publish(cmd, body)
            except Exception:
                log.exception("MQTT PUBLISH (0x%02x) not handled", cmd)
        else:
            put_package(Package(cmd, body))
    return at


class HubMqttClient:
    """One MQTT 3.1.1 session: subscriptions in, QoS 1 publishes out with awaitable PUBACKs.

    The session is persistent (``clean_session=False``) so the broker queues QoS 1
    messages while the hub is down or restarting.
    """

    def __init__(
        self,
        *,
        url: MqttUrl,
        client_id: str,
        on_message: MessageHandler,
        subscriptions: list[str],
        tls_ca_file: str | None = None,
        keepalive: int = 30,
        on_unhandled: UnhandledHandler | None = None,
        turn_bytes: int | None = None,
        turn_s: float | None = None,
        defer_to: Callable[[], bool] | None = None,
    ) -> None:
        self._on_unhandled = on_unhandled
        self._turn_bytes = turn_bytes
        self._turn_s = turn_s
        self._defer_to = defer_to
        self._url = url
        self._client_id = client_id
        self._handler = on_message
        self._subscriptions = subscriptions
        self._keepalive = keepalive
        self._ssl: ssl.SSLContext | bool = False
        if url.tls:
            self._ssl = ssl.create_default_context(cafile=tls_ca_file)
        self._client = Client(client_id, clean_session=False, optimistic_acknowledgement=True)
        self._client.on_message = self._on_message
        self._client.on_connect = self._on_connect
        self._client.on_disconnect = self._on_disconnect
        self._client.on_subscribe = self._on_subscribe
        if url.username is not None:
            self._client.set_auth_credentials(url.username, url.password)
        #: PUBACKs of the chunk being parsed, written when its parse returns (``None``: no chunk
        #: is being parsed, so a PUBACK is written at once). See :meth:`_parse_chunks`.
        self._pending_acks: list[bytes] | None = None
        self._install_hooks()
        self._acks: dict[int, asyncio.Future[None]] = {}
        self.connected = asyncio.Event()
        #: Set once the broker has acknowledged every subscription (SUBACK), i.e. ready to receive.
        self.subscribed = asyncio.Event()
        #: Filters the last SUBACK refused (0x80): the broker sends nothing on them.
        self.refused: tuple[str, ...] = ()
        #: Messages handed to the handler on this session (all connections).
        self.received = 0
        self.handler_errors = 0
        #: Successful (re)connections after the first: the ``mqtt_reconnects`` metric.
        self.reconnects = 0
        self._connections = 0
        self._reconnect_attempts = 0
        self._closing = False
        #: A first :meth:`connect` succeeded (from then on gmqtt reconnects by itself).
        self.started = False
        self._install_backoff()

    def _install_hooks(self) -> None:
        handler = self._client._package_handler
        client = self._client

        def qos1_ack_after_handling(mid: int, packet: bytes, topic: str, properties: dict[str, Any]) -> None:
            retain, dup = bool(properties.get("retain")), bool(properties.get("dup"))
            if self._dispatch(topic, packet, 1, retain, mid=mid, dup=dup):
                self._puback(mid)

        handler._handle_qos_1_publish_packet = qos1_ack_after_handling
        gmqtt_publish = handler._handle_publish_packet
        dispatch = self._dispatch
        puback = self._puback

        def publish_v311(cmd: int, raw: bytes) -> None:
            """One PUBLISH packet of MQTT 3.1.1, in place of gmqtt's ``_handle_publish_packet``.

            The same result for a well-formed QoS 0 or 1 PUBLISH: the fixed header's flags are
            DUP (bit 3), QoS (bits 2–1) and RETAIN (bit 0) [MQTT-3.3.1]; the variable header is
            the topic (two length bytes, UTF-8) and, for QoS 1, the packet identifier
            [MQTT-3.3.2]; 3.1.1 has no properties; the rest is the payload [MQTT-3.3.3]. Without
            gmqtt's per-message costs: ``struct`` format strings, a properties dict, a debug log
            call and ``inspect.iscoroutinefunction`` (docs/benchmarks.md, "Twelfth pass").
            Anything else (QoS 2, which the hub never subscribes with; a truncated packet; an
            empty or non-UTF-8 topic; a session that is not 3.1.1) goes to gmqtt's own handler,
            which behaves as before.
            ``tests/test_mqtt_publish_v311.py`` compares the two on generated packets.
            """
            qos = (cmd >> 1) & 0x03
            size = len(raw)
            if size >= 2 and qos < 2 and handler._connection_state.protocol_version == MQTTv311:
                end = 2 + (raw[0] << 8 | raw[1])
                body = end + 2 * qos  # after the packet identifier (QoS 1)
                if end > 2 and body <= size:
                    try:
                        topic = raw[2:end].decode()
                    except UnicodeDecodeError:
                        pass
                    else:
                        if qos == 0:
                            dispatch(topic, raw[body:], 0, bool(cmd & 0x01))
                            return
                        mid = raw[end] << 8 | raw[end + 1]
                        if dispatch(topic, raw[body:], 1, bool(cmd & 0x01), mid=mid, dup=bool(cmd & 0x08)):
                            puback(mid)
                        return
            gmqtt_publish(cmd, raw)

        handler._handle_publish_packet = publish_v311
        original_remove = client._remove_message_from_queue

        def on_ack(mid: int) -> None:
            original_remove(mid)
            future = self._acks.pop(mid, None)
            if future is not None and not future.done():
                future.set_result(None)

        # Called by gmqtt when PUBACK/PUBCOMP for one of our publishes arrives.
        handler._remove_message_from_queue = on_ack

    def _install_backoff(self) -> None:
        client = self._client
        original = client.reconnect

        async def reconnect(delay: bool = False) -> None:
            if delay:
                attempt = self._reconnect_attempts
                self._reconnect_attempts += 1
                client.reconnect_delay = min(RECONNECT_MAX_S, RECONNECT_FIRST_S * 2**attempt)
            await original(delay=delay)

        # gmqtt calls both: the handler when the connection drops, the client's own
        # attribute after a failed attempt.
        client.reconnect = reconnect
        client._package_handler._reconnect_callback = reconnect

    def _dispatch(
        self, topic: str, payload: bytes, qos: int, retain: bool, *, mid: int | None = None, dup: bool = False
    ) -> bool:
        self.received += 1
        try:
            self._handler(topic, payload, qos, retain, dup)
        except MessageDeferred as exc:
            self._hand_over(Unhandled(topic, payload, qos, retain, None, exc, dup or marked_dup(exc)), mid)
            return False
        except Exception as exc:
            # The handler quarantines bad input itself; reaching here means the hub could not
            # record the message (store failure). Do not acknowledge now.
            self.handler_errors += 1
            log.exception("message on %r not handled; the hub retries it", topic)
            self._hand_over(Unhandled(topic, payload, qos, retain, None, exc, dup or marked_dup(exc)), mid)
            return False
        return True

    def _hand_over(self, message: Unhandled, mid: int | None) -> None:
        if self._on_unhandled is None:
            return  # the broker redelivers on the next session
        ack = None
        if mid is not None:
            ack = functools.partial(self._late_puback, mid, self._client._connection)
        self._on_unhandled(replace(message, ack=ack))

    def _late_puback(self, mid: int, connection: object) -> None:
        """PUBACK for a message handled late, only on the connection it came on."""
        if self._client._connection is connection and self.connected.is_set():
            self._puback(mid)

    def _puback(self, mid: int) -> None:
        """Acknowledge a handled QoS 1 message: with its chunk's others, or at once outside a chunk."""
        pending = self._pending_acks
        if pending is not None:
            pending.append(_PUBACK.pack(_PUBACK_HEADER, 2, mid))
        else:
            self._client._package_handler._send_puback(mid)

    def _parse_chunks(self, protocol: Any) -> None:
        """Each chunk this connection's read loop read, parsed here; its PUBACKs in one write after it.

        gmqtt's read loop hands each chunk to ``protocol._read_packet``, which splits it into
        packets and passes each through four calls (``put_package``, the handler's
        ``__call__`` and ``_handle_packet`` with its debug log, then the packet type's handler),
        with a ``Package`` object and two clock reads each: 1.22 µs a message against 0.50 µs
        here, measured on chunks of 200 (docs/benchmarks.md, "Twenty-third pass"). Here
        PUBLISH packets go straight to their handler (the hub's ``publish_v311``, which hands
        anything unusual to gmqtt's own), in order; every other packet (CONNACK, SUBACK,
        PUBACK, PINGRESP…) goes through ``put_package`` as before, as does everything when this
        connection is no longer the current one (gmqtt drops those). The keep-alive clocks are
        read once a chunk. The PUBACKs the handlers made are collected meanwhile and written
        once the chunk is done (or failed). A connection that is closing gets none: its
        messages are redelivered in the next session, as when gmqtt's own write finds the
        socket closed.
        """
        if getattr(protocol, "_linli_acks", False):
            return
        parse = protocol._read_packet

        def read_packet(data: bytes) -> int:
            connection = protocol._connection
            handler = connection._handler
            if handler.current_connection is not connection:
                return int(parse(data))
            outer = self._pending_acks
            pending: list[bytes] = []
            self._pending_acks = pending
            try:
                connection._last_data_in = time.monotonic()
                return split_packets(data, handler._handle_publish_packet, connection.put_package)
            finally:
                handler._last_msg_in = time.monotonic()
                self._pending_acks = outer
                if pending:
                    transport = protocol._transport
                    if transport is not None and not transport.is_closing():
                        protocol.write_data(b"".join(pending))

        protocol._read_packet = read_packet
        protocol._linli_acks = True

    def _on_message(
        self, client: Client, topic: str, payload: bytes, qos: int, properties: dict[str, Any]
    ) -> int:
        # QoS 0 (and QoS 2, which the hub does not subscribe with) arrive here.
        self._dispatch(topic, payload, qos, bool(properties.get("retain")))
        return 0

    def _on_connect(self, client: Client, flags: int, rc: int, properties: dict[str, Any]) -> None:
        log.info("connected to MQTT broker %s as %s", self._url.redacted(), self._client_id)
        self._connections += 1
        self.reconnects = self._connections - 1
        self._reconnect_attempts = 0
        self._parse_chunks(client._connection._protocol)
        if self._turn_bytes is not None:
            self._bound_reads(client._connection._protocol, self._turn_bytes, self._turn_s, self._defer_to)
        self.connected.set()
        if self._subscriptions:
            # One SUBSCRIBE for all filters, so one SUBACK says we are ready.
            client.subscribe([Subscription(topic, qos=1) for topic in self._subscriptions])
        else:
            self.subscribed.set()

    def waiting(self) -> bool:
        """Bytes for this session that its read loop has not taken yet (in its buffer or socket)."""
        connection = self._client._connection
        protocol = getattr(connection, "_protocol", None)
        if protocol is None:
            return False
        if getattr(protocol._stream_reader, "_buffer", None):
            return True
        transport = protocol._transport
        sock = transport.get_extra_info("socket") if transport is not None else None
        if sock is None or transport.is_closing():
            return False
        try:
            # poll, not select: a hub with many HTTP clients has descriptors past select's 1 024.
            poller = select.poll()
            poller.register(sock.fileno(), select.POLLIN)
            return bool(poller.poll(0))
        except (OSError, ValueError):  # closed under us: nothing to wait for
            return False

    @staticmethod
    def _bound_reads(
        protocol: Any,
        turn_bytes: int,
        turn_s: float | None = None,
        defer_to: Callable[[], bool] | None = None,
    ) -> None:
        """Each read of this connection's read loop: at most ``turn_bytes``, after a turn of the loop.

        With ``turn_s``: at most what the previous chunk's handling rate gets through in that
        time (never below :data:`MIN_TURN_BYTES`, so a slow chunk cannot stall the intake).
        With ``defer_to``: not while it says another connection has bytes waiting (up to
        :data:`MAX_DEFERRALS` turns).
        """
        if getattr(protocol, "_linli_turns", False):
            return
        original = protocol.read
        loop = asyncio.get_running_loop()
        last = {"at": 0.0, "bytes": 0}

        async def read(n: int = -1) -> bytes:
            size = turn_bytes
            if turn_s is not None and last["bytes"]:
                # Handling the last chunk took this long (its parse and every message's handler).
                spent = max(loop.time() - last["at"], 1e-6)
                size = max(MIN_TURN_BYTES, min(turn_bytes, int(last["bytes"] * turn_s / spent)))
            await asyncio.sleep(0)  # the other connections and tasks run between chunks
            if defer_to is not None:
                for _ in range(MAX_DEFERRALS):
                    if not _asks_to_wait(defer_to):
                        break
                    await asyncio.sleep(0)  # its socket's callback, then its read loop, run first
            data: bytes = await original(size if n < 0 else min(n, size))
            last["at"], last["bytes"] = loop.time(), len(data)
            return data

        protocol.read = read
        protocol._linli_turns = True

    def _on_subscribe(
        self, client: Client, mid: int, granted_qos: list[int], properties: dict[str, Any]
    ) -> None:
        refused = [t for t, q in zip(self._subscriptions, granted_qos, strict=False) if q >= 0x80]
        if refused:
            log.error("the broker refused the subscription(s) %s (check its ACL)", refused)
        # Kept for readiness: nothing on these topics will ever arrive on this session.
        self.refused = tuple(refused)
        self.subscribed.set()

    def _on_disconnect(self, client: Client, packet: bytes, exc: BaseException | None = None) -> None:
        self.connected.clear()
        self.subscribed.clear()
        if not self._closing:
            log.warning("disconnected from MQTT broker %s; reconnecting", self._url.redacted())

    async def connect(self) -> None:
        try:
            await self._client.connect(
                self._url.host, self._url.port, ssl=self._ssl, keepalive=self._keepalive, version=MQTTv311
            )
        except (TimeoutError, OSError) as exc:
            raise BrokerUnreachableError(
                f"cannot connect to MQTT broker {self._url.redacted()}: {exc}"
            ) from exc
        except Exception as exc:  # gmqtt raises its own MQTTConnectError for refusals
            raise MqttError(f"MQTT broker {self._url.redacted()} refused the connection: {exc}") from exc
        self.started = True

    async def connect_until_up(self) -> None:
        """:meth:`connect`, tried again with the reconnect backoff while the broker cannot be reached.

        For a start before the broker is up: once connected, gmqtt's own reconnects take over.
        A refusal (credentials, client id) still raises: waiting cannot fix it.
        """
        delay = RECONNECT_FIRST_S
        while not self.started:
            try:
                await self.connect()
            except BrokerUnreachableError as exc:
                log.warning("%s; trying again in %.1f s", exc, delay)
                await asyncio.sleep(delay)
                delay = min(RECONNECT_MAX_S, delay * 2)

    async def disconnect(self) -> None:
        self._closing = True
        await self._client.disconnect()
        for future in self._acks.values():
            if not future.done():
                future.set_exception(MqttError("disconnected before the broker acknowledged"))
        self._acks.clear()

    def _forget(self, message_id: int, future: asyncio.Future[None]) -> None:
        if self._acks.get(message_id) is future:
            del self._acks[message_id]

    def publish(
        self, topic: str, payload: bytes, *, qos: int = 1, retain: bool = False
    ) -> asyncio.Future[None]:
        """Publish; the future completes when the broker acknowledges (at once for QoS 0)."""
        loop = asyncio.get_running_loop()
        future: asyncio.Future[None] = loop.create_future()
        if not self.connected.is_set():
            future.set_exception(MqttError("not connected to the MQTT broker"))
            return future
        message_id, package = self._client._connection.publish(
            Message(topic, payload, qos=qos, retain=retain)
        )
        if qos > 0:
            # Keep it for gmqtt's own resend after a reconnect, as Client.publish does.
            self._client._persistent_storage.push_message(message_id, package)
            self._acks[message_id] = future
            # A caller that gives up (timeout) cancels the future; forget it then.
            future.add_done_callback(functools.partial(self._forget, message_id))
        else:
            future.set_result(None)
        return future
