"""Tests for hub.broker: pure codec/topic units, then the broker against paho, gmqtt and raw sockets."""

from __future__ import annotations

import asyncio
import contextlib
import socket
import threading
import time
from collections.abc import AsyncIterator, Callable
from typing import Any

import gmqtt
import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion

from hub.broker import EmbeddedBroker
from hub.broker.codec import (
    ConnectReturnCode,
    PacketType,
    Will,
    decode_remaining_length,
    encode_ack,
    encode_connect,
    encode_publish,
    encode_remaining_length,
    encode_subscribe,
    encode_unsubscribe,
    parse_connect,
    parse_publish,
    read_fixed_header,
)
from hub.broker.topics import SubscriptionTrie, is_valid_topic_filter, is_valid_topic_name, topic_matches
from hub.errors import (
    BrokerStateError,
    MalformedPacketError,
    ProtocolViolationError,
    UnsupportedProtocolError,
)

HOST = "127.0.0.1"

# ============================================================================ pure: codec


@pytest.mark.parametrize(
    ("value", "size"),
    [(0, 1), (127, 1), (128, 2), (16383, 2), (16384, 3), (2097151, 3), (2097152, 4), (268435455, 4)],
)
def test_remaining_length_edges(value: int, size: int) -> None:
    encoded = encode_remaining_length(value)
    assert len(encoded) == size
    assert decode_remaining_length(encoded, 0) == (value, size)
    assert decode_remaining_length(b"\x00" + encoded, 1) == (value, size + 1)
    assert decode_remaining_length(encoded[:-1], 0) is None  # incomplete, not malformed


def test_remaining_length_limits() -> None:
    with pytest.raises(ValueError, match="out of range"):
        encode_remaining_length(268435456)
    with pytest.raises(ValueError, match="out of range"):
        encode_remaining_length(-1)
    with pytest.raises(MalformedPacketError):
        decode_remaining_length(b"\xff\xff\xff\xff\x01", 0)
    assert read_fixed_header(b"\x30", 0) is None
    assert read_fixed_header(b"\x30\x80", 0) is None
    assert read_fixed_header(b"\x30\x80\x01", 0) == (0x30, 3, 128)


def test_publish_roundtrip() -> None:
    packet = encode_publish("a/b", b"xyz", qos=1, retain=True, dup=True, packet_id=513)
    first, start, length = read_fixed_header(packet, 0) or (0, 0, 0)
    assert first >> 4 == PacketType.PUBLISH
    assert start + length == len(packet)
    parsed = parse_publish(first & 0x0F, packet[start:])
    assert (parsed.topic, parsed.payload, parsed.qos, parsed.retain, parsed.dup, parsed.packet_id) == (
        "a/b",
        b"xyz",
        1,
        True,
        True,
        513,
    )


@pytest.mark.parametrize(
    ("flags", "body", "error"),
    [
        (0b0110, b"\x00\x01a\x00\x01", MalformedPacketError),  # QoS 3
        (0b1000, b"\x00\x01a", MalformedPacketError),  # DUP on QoS 0
        (0, b"\x00\x03a/+", MalformedPacketError),  # wildcard in topic name
        (0, b"\x00\x02\xff\xfe", MalformedPacketError),  # invalid UTF-8
        (0, b"\x00\x05ab", MalformedPacketError),  # truncated topic
        (0, b"\x00\x00", MalformedPacketError),  # empty topic
        (0b0010, b"\x00\x01a\x00\x00", ProtocolViolationError),  # packet id 0
    ],
)
def test_publish_decode_errors(flags: int, body: bytes, error: type[Exception]) -> None:
    with pytest.raises(error):
        parse_publish(flags, body)


def _body(packet: bytes) -> bytes:
    header = read_fixed_header(packet, 0)
    assert header is not None
    return packet[header[1] :]


def test_connect_roundtrip_and_password_not_in_repr() -> None:
    will = Will(topic="w/t", payload=b"gone", qos=1, retain=True)
    packet = encode_connect(
        "c1", clean_session=False, keepalive=30, username="u", password="hunter2", will=will
    )
    parsed = parse_connect(_body(packet))
    assert parsed.client_id == "c1"
    assert not parsed.clean_session
    assert parsed.keepalive == 30
    assert parsed.will == will
    assert parsed.username == "u"
    assert parsed.password == b"hunter2"
    assert "hunter2" not in repr(parsed)


def test_connect_protocol_levels() -> None:
    with pytest.raises(UnsupportedProtocolError):
        parse_connect(_body(encode_connect("c", protocol_level=5)))
    with pytest.raises(MalformedPacketError):
        parse_connect(_body(encode_connect("c", protocol_name="HTTP")))
    assert (
        parse_connect(_body(encode_connect("c", protocol_name="MQIsdp", protocol_level=3))).client_id == "c"
    )


# ============================================================================ pure: topics

MATCH_TABLE = [
    ("sport/tennis/player1/#", "sport/tennis/player1", True),
    ("sport/tennis/player1/#", "sport/tennis/player1/ranking", True),
    ("sport/tennis/player1/#", "sport/tennis/player1/score/wimbledon", True),
    ("sport/#", "sport", True),
    ("#", "a/b/c", True),
    ("#", "/", True),
    ("sport/+", "sport", False),
    ("sport/+", "sport/", True),
    ("+/+", "/finance", True),
    ("/+", "/finance", True),
    ("+", "/finance", False),
    ("+/tennis/#", "sport/tennis/player1", True),
    ("a/+/c", "a/b/c", True),
    ("a/+/c", "a//c", True),
    ("a/+/c", "a/b/d", False),
    ("a/b", "a/b/c", False),
    ("a/b/c", "a/b", False),
    ("+/+/+", "a/b", False),
    ("ACCOUNTS", "Accounts", False),
    ("#", "$SYS/broker/load", False),  # [MQTT-4.7.2-1]
    ("+/broker/load", "$SYS/broker/load", False),
    ("$SYS/#", "$SYS/broker/load", True),
    ("$SYS/broker/+", "$SYS/broker/load", True),
    ("a/#", "a/$x", True),  # only a leading wildcard is special
]


@pytest.mark.parametrize(("topic_filter", "topic", "expected"), MATCH_TABLE)
def test_topic_matching_table(topic_filter: str, topic: str, expected: bool) -> None:
    assert topic_matches(topic_filter, topic) is expected
    trie: SubscriptionTrie[str] = SubscriptionTrie()
    trie.add(topic_filter, "k", 1)
    trie.add("unrelated/filter", "other", 0)
    assert (trie.match(topic) == (("k", 1),)) is expected


@pytest.mark.parametrize(
    ("topic_filter", "valid"),
    [
        ("a/b", True),
        ("#", True),
        ("a/#", True),
        ("+", True),
        ("+/a/+", True),
        ("/", True),
        ("a/#/b", False),
        ("a#", False),
        ("a/b#", False),
        ("a+/b", False),
        ("", False),
        ("a\x00b", False),
    ],
)
def test_topic_filter_validity(topic_filter: str, valid: bool) -> None:
    assert is_valid_topic_filter(topic_filter) is valid


def test_topic_name_validity() -> None:
    assert is_valid_topic_name("a/b/$c")
    assert not is_valid_topic_name("a/+")
    assert not is_valid_topic_name("a/#")
    assert not is_valid_topic_name("")


def test_trie_overlap_max_qos_and_prune() -> None:
    trie: SubscriptionTrie[str] = SubscriptionTrie()
    assert not trie.add("a/#", "k", 0)
    assert not trie.add("a/+", "k", 1)
    assert not trie.add("a/b", "j", 0)
    assert sorted(trie.match("a/b")) == [("j", 0), ("k", 1)]
    assert trie.add("a/+", "k", 0)  # replace
    assert sorted(trie.match("a/b")) == [("j", 0), ("k", 0)]
    assert trie.remove("a/#", "k")
    assert trie.remove("a/+", "k")
    assert not trie.remove("a/+", "k")
    assert trie.match("a/b") == (("j", 0),)
    assert trie.remove("a/b", "j")
    assert len(trie) == 0
    assert trie.match("a/b") == ()


# ============================================================================ helpers


async def wait_until(predicate: Callable[[], bool], within: float = 5.0, what: str = "condition") -> None:
    deadline = time.monotonic() + within
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.01)


@pytest.fixture
async def broker() -> AsyncIterator[EmbeddedBroker]:
    async with EmbeddedBroker(allow_anonymous=True) as running:
        yield running


class Paho:
    """A threaded paho-mqtt 2.x client driven from async tests without blocking the loop."""

    def __init__(
        self,
        port: int,
        client_id: str = "",
        *,
        clean_session: bool = True,
        username: str | None = None,
        password: str | None = None,
    ) -> None:
        self.port = port
        self.client = mqtt.Client(
            CallbackAPIVersion.VERSION2,
            client_id=client_id,
            clean_session=clean_session,
            protocol=mqtt.MQTTv311,
            reconnect_on_failure=False,
        )
        if username is not None:
            self.client.username_pw_set(username, password)
        self.lock = threading.Lock()
        self.messages: list[mqtt.MQTTMessage] = []
        self.connack: tuple[bool, int] | None = None
        self.granted: dict[int, list[int]] = {}
        self.disconnected = False
        self.client.on_connect = self._on_connect
        self.client.on_message = self._on_message
        self.client.on_subscribe = self._on_subscribe
        self.client.on_disconnect = self._on_disconnect

    def _on_connect(self, _c: Any, _u: Any, flags: Any, reason: Any, _p: Any) -> None:
        self.connack = (bool(flags.session_present), int(reason.value))

    def _on_message(self, _c: Any, _u: Any, message: mqtt.MQTTMessage) -> None:
        with self.lock:
            self.messages.append(message)

    def _on_subscribe(self, _c: Any, _u: Any, mid: int, codes: Any, _p: Any) -> None:
        self.granted[mid] = [int(code.value) for code in codes]

    def _on_disconnect(self, *_args: Any) -> None:
        self.disconnected = True

    def payloads(self, topic: str | None = None) -> list[bytes]:
        with self.lock:
            return [bytes(m.payload) for m in self.messages if topic is None or m.topic == topic]

    async def connect(self, *, keepalive: int = 60) -> tuple[bool, int]:
        self.client.connect_async(HOST, self.port, keepalive=keepalive)
        self.client.loop_start()
        await wait_until(lambda: self.connack is not None or self.disconnected, what="CONNACK")
        assert self.connack is not None
        return self.connack

    async def subscribe(self, topic: str, qos: int = 0) -> list[int]:
        _rc, mid = self.client.subscribe(topic, qos)
        assert mid is not None
        await wait_until(lambda: mid in self.granted, what="SUBACK")
        return self.granted[mid]

    async def publish(self, topic: str, payload: bytes, qos: int = 0, *, retain: bool = False) -> None:
        info = self.client.publish(topic, payload, qos=qos, retain=retain)
        await wait_until(info.is_published, what="publish ack")

    async def close(self) -> None:
        if self.client.is_connected():
            self.client.disconnect()
        await asyncio.to_thread(self.client.loop_stop)


class Raw:
    """A hand-driven MQTT connection over asyncio streams, for exact-byte scenarios."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader = reader
        self.writer = writer

    @classmethod
    async def open(cls, port: int, *, limit: int = 1 << 16) -> Raw:
        reader, writer = await asyncio.open_connection(HOST, port, limit=limit)
        return cls(reader, writer)

    async def send(self, data: bytes) -> None:
        self.writer.write(data)
        await self.writer.drain()

    async def read_packet(self, within: float = 5.0) -> tuple[int, bytes]:
        async def read() -> tuple[int, bytes]:
            first = (await self.reader.readexactly(1))[0]
            length, shift = 0, 0
            while True:
                byte = (await self.reader.readexactly(1))[0]
                length |= (byte & 0x7F) << shift
                shift += 7
                if byte < 0x80:
                    break
            return first, await self.reader.readexactly(length)

        return await asyncio.wait_for(read(), within)

    async def connect(self, client_id: str, **kwargs: Any) -> tuple[bool, int]:
        await self.send(encode_connect(client_id, **kwargs))
        first, body = await self.read_packet()
        assert first == 0x20
        assert len(body) == 2
        return bool(body[0] & 1), body[1]

    async def subscribe(self, topic: str, qos: int, packet_id: int = 1) -> list[int]:
        await self.send(encode_subscribe(packet_id, [(topic, qos)]))
        first, body = await self.read_packet()
        assert first == 0x90
        assert body[:2] == packet_id.to_bytes(2, "big")
        return list(body[2:])

    async def closed_by_peer(self, within: float = 5.0) -> bool:
        """Whether the broker closes the connection within ``within`` s; the socket is closed after."""
        try:
            data = await asyncio.wait_for(self.reader.read(65536), within)
            while data:
                data = await asyncio.wait_for(self.reader.read(65536), within)
        except ConnectionError:
            return True  # reset counts as closed
        except TimeoutError:
            return False
        finally:
            self.writer.close()
        return True

    def abort(self) -> None:
        self.writer.transport.abort()

    async def close(self) -> None:
        self.writer.close()
        with contextlib.suppress(ConnectionError):
            await self.writer.wait_closed()


def publish_fields(first: int, body: bytes) -> tuple[str, bytes, int, bool, bool, int | None]:
    assert first >> 4 == PacketType.PUBLISH
    packet = parse_publish(first & 0x0F, body)
    return packet.topic, packet.payload, packet.qos, packet.retain, packet.dup, packet.packet_id


# ============================================================================ broker: lifecycle & auth


async def test_port_before_start_and_context_manager() -> None:
    broker = EmbeddedBroker()
    with pytest.raises(BrokerStateError):
        _ = broker.port
    async with broker:
        assert broker.port > 0
        assert broker.stats().clients_connected == 0


async def test_auth_accept_and_refuse() -> None:
    async with EmbeddedBroker(users={"alice": "s3cret"}) as broker:
        good = Paho(broker.port, "good", username="alice", password="s3cret")
        assert await good.connect() == (False, 0)
        await good.close()

        for kwargs, code in [
            ({}, ConnectReturnCode.NOT_AUTHORIZED),  # anonymous refused by default
            ({"username": "alice", "password": "wrong"}, ConnectReturnCode.BAD_USERNAME_OR_PASSWORD),
            ({"username": "alice"}, ConnectReturnCode.BAD_USERNAME_OR_PASSWORD),
            ({"username": "mallory", "password": "s3cret"}, ConnectReturnCode.BAD_USERNAME_OR_PASSWORD),
        ]:
            raw = await Raw.open(broker.port)
            assert await raw.connect("x", **kwargs) == (False, code)
            assert await raw.closed_by_peer()
            await raw.close()

        paho_refused = Paho(broker.port, "anon")
        _present, paho_code = await paho_refused.connect()
        assert paho_code != 0
        await paho_refused.close()
        assert broker.stats().clients_connected == 0


async def test_protocol_level_and_client_id_rules(broker: EmbeddedBroker) -> None:
    raw = await Raw.open(broker.port)
    assert await raw.connect("v5", protocol_level=5) == (
        False,
        ConnectReturnCode.UNACCEPTABLE_PROTOCOL_VERSION,
    )
    assert await raw.closed_by_peer()
    raw = await Raw.open(broker.port)
    assert await raw.connect("", clean_session=False) == (False, ConnectReturnCode.IDENTIFIER_REJECTED)
    assert await raw.closed_by_peer()
    raw = await Raw.open(broker.port)
    assert await raw.connect("", clean_session=True) == (False, 0)
    await raw.close()
    raw = await Raw.open(broker.port)
    assert await raw.connect("old", protocol_name="MQIsdp", protocol_level=3) == (False, 0)
    await raw.close()


# ============================================================================ broker: pub/sub


async def test_pubsub_qos0_and_qos1_paho(broker: EmbeddedBroker) -> None:
    sub = Paho(broker.port, "sub")
    pub = Paho(broker.port, "pub")
    await sub.connect()
    await pub.connect()
    assert await sub.subscribe("sensors/+/temp", 1) == [1]
    await pub.publish("sensors/a/temp", b"q0", 0)
    await pub.publish("sensors/b/temp", b"q1", 1)
    await pub.publish("sensors/b/humidity", b"no", 1)
    await wait_until(lambda: len(sub.messages) == 2, what="two messages")
    with sub.lock:
        got = sorted((m.topic, m.payload, m.qos) for m in sub.messages)
    assert got == [("sensors/a/temp", b"q0", 0), ("sensors/b/temp", b"q1", 1)]
    await sub.close()
    await pub.close()
    stats = broker.stats()
    assert stats.messages_received == 3
    assert stats.messages_sent == 2
    assert stats.messages_dropped == 0


async def test_pubsub_qos1_gmqtt_subscriber(broker: EmbeddedBroker) -> None:
    received: list[tuple[str, bytes, int]] = []

    def on_message(_client: Any, topic: str, payload: bytes, qos: int, _props: Any) -> int:
        received.append((topic, payload, qos))
        return 0

    subacks: list[tuple[int, ...]] = []

    def on_subscribe(_client: Any, _mid: int, granted: tuple[int, ...], _props: Any) -> None:
        subacks.append(tuple(granted))

    sub = gmqtt.Client("gsub")
    sub.on_message = on_message
    sub.on_subscribe = on_subscribe
    await sub.connect(HOST, broker.port, version=gmqtt.constants.MQTTv311)
    sub.subscribe("home/#", qos=1)
    await wait_until(lambda: subacks == [(1,)], what="gmqtt SUBACK")
    pub = Paho(broker.port, "pub")
    await pub.connect()
    for i in range(50):
        await pub.publish(f"home/{i % 3}", str(i).encode(), 1)
    await wait_until(lambda: len(received) == 50, what="50 messages")
    assert [int(p) for _t, p, _q in received] == list(range(50))
    assert {q for _t, _p, q in received} == {1}
    await pub.close()
    await sub.disconnect()


async def test_overlapping_subscriptions_deliver_once_with_max_qos(broker: EmbeddedBroker) -> None:
    sub = Paho(broker.port, "sub")
    await sub.connect()
    await sub.subscribe("a/#", 0)
    await sub.subscribe("a/+/c", 1)
    await sub.subscribe("a/b/c", 0)
    pub = Paho(broker.port, "pub")
    await pub.connect()
    await pub.publish("a/b/c", b"x", 1)
    await pub.publish("a/z", b"y", 1)
    await wait_until(lambda: len(sub.messages) >= 2, what="messages")
    await asyncio.sleep(0.2)
    with sub.lock:
        got = sorted((m.topic, m.qos) for m in sub.messages)
    assert got == [("a/b/c", 1), ("a/z", 0)]
    await sub.close()
    await pub.close()


async def test_dollar_topics_not_matched_by_leading_wildcard(broker: EmbeddedBroker) -> None:
    wild = Paho(broker.port, "wild")
    dollar = Paho(broker.port, "dollar")
    pub = Paho(broker.port, "pub")
    for client in (wild, dollar, pub):
        await client.connect()
    await wild.subscribe("#", 0)
    await wild.subscribe("+/status", 0)
    await dollar.subscribe("$SYS/#", 0)
    await pub.publish("$SYS/status", b"s", 1)
    await pub.publish("plain/status", b"p", 1)
    await wait_until(lambda: len(dollar.messages) == 1 and len(wild.messages) == 1, what="routing")
    await asyncio.sleep(0.2)
    assert wild.payloads() == [b"p"]
    assert dollar.payloads() == [b"s"]
    for client in (wild, dollar, pub):
        await client.close()


async def test_unsubscribe(broker: EmbeddedBroker) -> None:
    raw = await Raw.open(broker.port)
    await raw.connect("u1")
    assert await raw.subscribe("x/#", 1) == [1]
    assert await raw.subscribe("x/a/#/b", 0, packet_id=2) == [0x80]  # invalid filter → failure code
    await raw.send(encode_unsubscribe(3, ["x/#", "never/subscribed"]))
    assert await raw.read_packet() == (0xB0, b"\x00\x03")
    pub = Paho(broker.port, "pub")
    await pub.connect()
    await pub.publish("x/y", b"gone", 1)
    await raw.send(b"\xc0\x00")  # PINGREQ: the next packet must be PINGRESP, not the publish
    assert await raw.read_packet() == (0xD0, b"")
    await pub.close()
    await raw.close()


async def test_retained_set_replace_delete(broker: EmbeddedBroker) -> None:
    pub = Paho(broker.port, "pub")
    await pub.connect()
    await pub.publish("door/1", b"open", 1, retain=True)
    await pub.publish("door/1", b"closed", 1, retain=True)  # replaces
    await pub.publish("door/2", b"open", 0, retain=True)
    await wait_until(lambda: broker.stats().retained_count == 2, what="retained")

    sub = Paho(broker.port, "sub")
    await sub.connect()
    assert await sub.subscribe("door/+", 1) == [1]
    await wait_until(lambda: len(sub.messages) == 2, what="retained delivery")
    with sub.lock:
        got = sorted((m.topic, m.payload, m.retain, m.qos) for m in sub.messages)
    assert got == [("door/1", b"closed", True, 1), ("door/2", b"open", True, 0)]

    await pub.publish("door/1", b"live", 1)  # not retained: forwarded with retain 0
    await pub.publish("door/1", b"", 1, retain=True)  # deletes
    await wait_until(lambda: len(sub.messages) == 4, what="live messages")
    with sub.lock:
        assert [(m.payload, m.retain) for m in sub.messages[2:]] == [(b"live", False), (b"", False)]
    assert broker.stats().retained_count == 1

    late = Paho(broker.port, "late")
    await late.connect()
    await late.subscribe("door/#", 1)
    await wait_until(lambda: len(late.messages) == 1, what="door/2 only")
    await asyncio.sleep(0.2)
    assert late.payloads() == [b"open"]
    for client in (pub, sub, late):
        await client.close()


# ============================================================================ broker: will, keepalive, takeover


async def test_will_on_abnormal_close_not_on_disconnect(broker: EmbeddedBroker) -> None:
    watcher = Paho(broker.port, "watcher")
    await watcher.connect()
    await watcher.subscribe("wills/#", 1)

    clean = await Raw.open(broker.port)
    await clean.connect("polite", will=Will(topic="wills/polite", payload=b"bye", qos=1, retain=False))
    await clean.send(b"\xe0\x00")  # DISCONNECT
    assert await clean.closed_by_peer()

    rude = await Raw.open(broker.port)
    await rude.connect("rude", will=Will(topic="wills/rude", payload=b"crashed", qos=1, retain=True))
    rude.abort()  # no DISCONNECT

    await wait_until(lambda: len(watcher.messages) == 1, what="will")
    await asyncio.sleep(0.2)
    assert watcher.payloads() == [b"crashed"]
    assert broker.stats().retained_count == 1  # will retain flag honoured
    await watcher.close()


async def test_keepalive_expiry_closes_and_fires_will(broker: EmbeddedBroker) -> None:
    watcher = Paho(broker.port, "watcher")
    await watcher.connect()
    await watcher.subscribe("wills/#", 0)
    idle = await Raw.open(broker.port)
    started = time.monotonic()
    await idle.connect(
        "idle", keepalive=1, will=Will(topic="wills/idle", payload=b"timeout", qos=0, retain=False)
    )
    assert await idle.closed_by_peer(within=5)
    elapsed = time.monotonic() - started
    assert 1.4 <= elapsed <= 4.0  # 1.5 x keepalive [MQTT-3.1.2-24]
    await wait_until(lambda: watcher.payloads() == [b"timeout"], what="keepalive will")

    alive = await Raw.open(broker.port)
    await alive.connect("alive", keepalive=1)
    for _ in range(4):  # PINGREQ keeps it open past 1.5 s
        await asyncio.sleep(0.5)
        await alive.send(b"\xc0\x00")
        assert await alive.read_packet() == (0xD0, b"")
    await alive.close()
    await watcher.close()


async def test_client_id_takeover(broker: EmbeddedBroker) -> None:
    first = await Raw.open(broker.port)
    assert await first.connect("same", clean_session=False) == (False, 0)
    assert await first.subscribe("t", 1) == [1]
    second = await Raw.open(broker.port)
    assert await second.connect("same", clean_session=False) == (True, 0)  # [MQTT-3.1.4-2]
    assert await first.closed_by_peer()
    await wait_until(lambda: broker.stats().clients_connected == 1, what="one client")
    pub = Paho(broker.port, "pub")
    await pub.connect()
    await pub.publish("t", b"to-second", 1)
    topic, payload, qos, _retain, _dup, _pid = publish_fields(*await second.read_packet())
    assert (topic, payload, qos) == ("t", b"to-second", 1)
    await pub.close()
    await second.close()


# ============================================================================ broker: sessions


async def test_persistent_session_redelivery_and_session_present(broker: EmbeddedBroker) -> None:
    sub = Paho(broker.port, "persist", clean_session=False)
    assert await sub.connect() == (False, 0)
    await sub.subscribe("alarms/#", 1)
    await sub.close()  # clean DISCONNECT; session kept
    await wait_until(lambda: broker.stats().clients_connected == 0, what="disconnect")

    pub = Paho(broker.port, "pub")
    await pub.connect()
    for i in range(5):
        await pub.publish(f"alarms/{i}", f"a{i}".encode(), 1)
    await pub.publish("alarms/q0", b"zero", 0)  # QoS 0 is queued too while offline

    again = Paho(broker.port, "persist", clean_session=False)
    assert await again.connect() == (True, 0)
    await wait_until(lambda: len(again.messages) == 6, what="redelivery")
    assert sorted(again.payloads()) == sorted([b"a0", b"a1", b"a2", b"a3", b"a4", b"zero"])
    assert [p for p in again.payloads() if p.startswith(b"a")] == [b"a0", b"a1", b"a2", b"a3", b"a4"]
    await again.close()

    fresh = Paho(broker.port, "persist", clean_session=True)  # clean session discards it
    assert await fresh.connect() == (False, 0)
    await fresh.close()
    await pub.close()
    await wait_until(lambda: broker.stats().sessions == 0, what="session discarded")


async def test_unacked_qos1_redelivered_with_dup(broker: EmbeddedBroker) -> None:
    sub = await Raw.open(broker.port)
    await sub.connect("dupsub", clean_session=False)
    await sub.subscribe("d", 1)
    pub = Paho(broker.port, "pub")
    await pub.connect()
    await pub.publish("d", b"one", 1)
    await pub.publish("d", b"two", 1)
    first = publish_fields(*await sub.read_packet())
    second = publish_fields(*await sub.read_packet())
    assert first[1] == b"one"
    assert not first[4]
    await sub.send(encode_ack(PacketType.PUBACK, first[5] or 0))  # ack only the first
    await asyncio.sleep(0.05)
    sub.abort()

    again = await Raw.open(broker.port)
    assert await again.connect("dupsub", clean_session=False) == (True, 0)
    topic, payload, qos, _retain, dup, packet_id = publish_fields(*await again.read_packet())
    assert (topic, payload, qos, dup, packet_id) == ("d", b"two", 1, True, second[5])
    await again.send(encode_ack(PacketType.PUBACK, packet_id or 0))
    await again.send(b"\xc0\x00")
    assert await again.read_packet() == (0xD0, b"")  # nothing else was pending
    await again.close()
    await pub.close()


async def test_offline_queue_bounded_drops_oldest_and_counts(caplog: pytest.LogCaptureFixture) -> None:
    async with EmbeddedBroker(allow_anonymous=True, max_queued=3) as broker:
        sub = await Raw.open(broker.port)
        await sub.connect("small", clean_session=False)
        await sub.subscribe("q", 1)
        await sub.send(b"\xe0\x00")
        await sub.closed_by_peer()
        pub = Paho(broker.port, "pub")
        await pub.connect()
        await pub.publish("q", b"0-first", 0)
        for i in range(4):
            await pub.publish("q", f"1-{i}".encode(), 1)
        stats = broker.stats()
        assert stats.dropped_qos0_queue_full == 1  # QoS 0 evicted first
        assert stats.dropped_qos1_queue_full == 1
        assert sum("dropping oldest QoS 1" in r.message for r in caplog.records) == 1
        again = await Raw.open(broker.port)
        assert await again.connect("small", clean_session=False) == (True, 0)
        got = []
        for _ in range(3):
            _t, payload, _q, _r, _d, packet_id = publish_fields(*await again.read_packet())
            got.append(payload)
            await again.send(encode_ack(PacketType.PUBACK, packet_id or 0))
        assert got == [b"1-1", b"1-2", b"1-3"]
        await again.close()
        await pub.close()


# ============================================================================ broker: QoS 2 inbound


async def test_qos2_inbound_handshake_delivers_once(broker: EmbeddedBroker) -> None:
    sub = Paho(broker.port, "sub")
    await sub.connect()
    assert await sub.subscribe("q2/#", 2) == [1]  # granted at most QoS 1 (documented downgrade)

    raw = await Raw.open(broker.port)
    await raw.connect("q2pub")
    packet = encode_publish("q2/raw", b"once", qos=2, packet_id=7)
    await raw.send(packet)
    assert await raw.read_packet() == (0x50, b"\x00\x07")  # PUBREC
    await raw.send(encode_publish("q2/raw", b"once", qos=2, dup=True, packet_id=7))  # retransmission
    assert await raw.read_packet() == (0x50, b"\x00\x07")
    await raw.send(encode_ack(PacketType.PUBREL, 7))
    assert await raw.read_packet() == (0x70, b"\x00\x07")  # PUBCOMP
    await raw.send(encode_publish("q2/raw", b"again", qos=2, packet_id=7))  # id reusable after PUBCOMP
    assert await raw.read_packet() == (0x50, b"\x00\x07")
    await raw.send(encode_ack(PacketType.PUBREL, 7))
    assert await raw.read_packet() == (0x70, b"\x00\x07")

    pub = Paho(broker.port, "pahoq2")
    await pub.connect()
    await pub.publish("q2/paho", b"paho", 2)

    await wait_until(lambda: len(sub.messages) == 3, what="qos2 messages")
    await asyncio.sleep(0.2)
    with sub.lock:
        assert [(m.topic, m.payload, m.qos) for m in sub.messages] == [
            ("q2/raw", b"once", 1),
            ("q2/raw", b"again", 1),
            ("q2/paho", b"paho", 1),
        ]
    await raw.close()
    await pub.close()
    await sub.close()


# ============================================================================ broker: robustness


@pytest.mark.parametrize(
    "garbage",
    [
        b"\xff\xff\xff\xff\xff\xff",  # reserved type 15 / overlong remaining length
        b"GET / HTTP/1.1\r\nHost: x\r\n\r\n",
        b"\x30\x05\x00\x01a",  # PUBLISH before CONNECT
        b"\x10\x03\x00\x04MQ",  # truncated CONNECT
        encode_connect("ok") + b"\x82\x00",  # SUBSCRIBE without packet id
        encode_connect("ok") + b"\x80\x05\x00\x01\x00\x01a",  # SUBSCRIBE with wrong flags
        encode_connect("ok") + b"\x32\x03\x00\x01a",  # QoS 1 PUBLISH missing packet id
        encode_connect("ok") + encode_connect("again"),  # second CONNECT
        bytes(range(256)) * 4,
    ],
)
async def test_malformed_input_closes_only_that_connection(
    broker: EmbeddedBroker,
    garbage: bytes,
    caplog: pytest.LogCaptureFixture,
    capsys: pytest.CaptureFixture[str],
) -> None:
    sub = Paho(broker.port, "sub")
    pub = Paho(broker.port, "pub")
    await sub.connect()
    await pub.connect()
    await sub.subscribe("ok", 1)

    bad = await Raw.open(broker.port)
    await bad.send(garbage)
    assert await bad.closed_by_peer()

    await pub.publish("ok", b"still fine", 1)
    await wait_until(lambda: sub.payloads() == [b"still fine"], what="delivery after garbage")
    assert broker.stats().clients_connected == 2
    assert not any(r.exc_info for r in caplog.records)
    assert "Traceback" not in capsys.readouterr().err
    await sub.close()
    await pub.close()


async def test_oversized_packet_is_refused() -> None:
    async with EmbeddedBroker(allow_anonymous=True, max_packet_size=1024) as broker:
        raw = await Raw.open(broker.port)
        await raw.connect("big")
        await raw.send(encode_publish("t", b"x" * 2000))
        assert await raw.closed_by_peer()


async def test_stop_closes_clients_and_leaves_no_tasks() -> None:
    broker = EmbeddedBroker(allow_anonymous=True)
    await broker.start()
    raws = [await Raw.open(broker.port) for _ in range(3)]
    for index, raw in enumerate(raws):
        await raw.connect(f"c{index}")
    silent = await Raw.open(broker.port)  # connected at TCP level, never sent CONNECT
    sub = Paho(broker.port, "sub")
    await sub.connect()
    await broker.stop()
    pending = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
    assert not [t for t in pending if t.get_name().startswith("broker-")]
    assert not pending
    for raw in [*raws, silent]:
        assert await raw.closed_by_peer()
    await wait_until(lambda: sub.disconnected, what="paho disconnected")
    await sub.close()
    with socket.socket() as probe:
        assert probe.connect_ex((HOST, broker.port)) != 0
    await broker.stop()  # idempotent


# ============================================================================ broker: flow control


async def test_slow_subscriber_gets_every_qos1_message_in_order(broker: EmbeddedBroker) -> None:
    total = 20_000
    sub = await Raw.open(broker.port, limit=1024)  # a tiny stream buffer: stops reading almost at once
    await sub.connect("slow")
    assert await sub.subscribe("flood", 1) == [1]

    pub = Paho(broker.port, "fast")
    pub.client.max_inflight_messages_set(500)
    await pub.connect()
    acked = 0

    def on_publish(*_args: Any) -> None:
        nonlocal acked
        acked += 1

    pub.client.on_publish = on_publish
    for i in range(total):
        pub.client.publish("flood", i.to_bytes(4, "big") + b"x" * 60, qos=1)

    # The subscriber is not reading: the broker must pause the publisher, not buffer or drop.
    await wait_until(lambda: broker.stats().flow_control_pauses > 0, within=10, what="publisher paused")
    await asyncio.sleep(0.5)
    stalled = broker.stats().messages_received
    await asyncio.sleep(0.5)
    assert broker.stats().messages_received == stalled < total
    assert acked < total

    expected = 0
    while expected < total:
        topic, payload, qos, _retain, dup, packet_id = publish_fields(*await sub.read_packet(within=10))
        assert (topic, qos, dup) == ("flood", 1, False)
        assert int.from_bytes(payload[:4], "big") == expected
        expected += 1
        sub.writer.write(encode_ack(PacketType.PUBACK, packet_id or 0))
        if expected % 500 == 0:
            await sub.writer.drain()
    await wait_until(lambda: acked == total, within=10, what="publisher finished")
    stats = broker.stats()
    assert stats.messages_received == total
    assert stats.messages_dropped == 0
    await pub.close()
    await sub.close()


async def test_slow_qos0_subscriber_pauses_publisher_instead_of_dropping(broker: EmbeddedBroker) -> None:
    total = 5_000
    sub = await Raw.open(broker.port, limit=1024)
    await sub.connect("slow0")
    await sub.subscribe("bulk", 0)
    pub = await Raw.open(broker.port)
    await pub.connect("bulkpub")
    payload = b"y" * 4000
    blob = b"".join(encode_publish("bulk", i.to_bytes(4, "big") + payload) for i in range(total))
    pub.writer.write(blob)  # 20 MB, far more than socket buffers hold
    await wait_until(lambda: broker.stats().flow_control_pauses > 0, within=10, what="publisher paused")
    for i in range(total):
        _topic, body, qos, _r, _d, _pid = publish_fields(*await sub.read_packet(within=10))
        assert qos == 0
        assert int.from_bytes(body[:4], "big") == i
    assert broker.stats().messages_dropped == 0
    await pub.close()
    await sub.close()
