"""The hub's own MQTT 3.1.1 PUBLISH parser against gmqtt's, packet for packet.

``HubMqttClient`` replaces gmqtt's ``_handle_publish_packet`` with a leaner one for QoS 0 and 1
(hub/mqtt/client.py). Both are run here on the same generated packets, well-formed and not:
the handler must see the same (topic, payload, QoS, retain, DUP), the same PUBACKs must go
out, and a packet gmqtt refuses must be refused the same way.
"""

from __future__ import annotations

from typing import Any
from unittest import mock

from gmqtt.mqtt.constants import MQTTv50, MQTTv311
from gmqtt.mqtt.handler import MqttPackageHandler
from gmqtt.mqtt.protocol import MQTTProtocol
from hypothesis import given, settings
from hypothesis import strategies as st

from hub.mqtt.client import HubMqttClient, split_packets
from hub.mqtt.url import MqttUrl

Seen = list[tuple[object, ...]]


#: gmqtt's own handler, as the reference (called on the hooked handler object).
GMQTT_PUBLISH = MqttPackageHandler._handle_publish_packet


def _handler(version: int = MQTTv311) -> tuple[Any, Seen]:
    """A hooked handler; ``seen`` gets what it dispatches, its PUBACKs and ``("gmqtt",)`` each
    time the hook hands a packet to gmqtt's own handler."""
    seen: Seen = []

    def handler(topic: str, payload: bytes, qos: int, retain: bool, dup: bool) -> None:
        seen.append(("message", topic, payload, qos, retain, dup))
        if payload.startswith(b"fail"):
            raise OSError("store unavailable")  # not acknowledged: no PUBACK

    def counted(self: Any, cmd: int, raw: bytes) -> None:
        seen.append(("gmqtt",))
        GMQTT_PUBLISH(self, cmd, raw)

    # The hook keeps the handler it found at construction as its fallback: count its calls.
    with mock.patch.object(MqttPackageHandler, "_handle_publish_packet", counted):
        client = HubMqttClient(
            url=MqttUrl.parse("mqtt://127.0.0.1:1"),
            client_id="parse-test",
            on_message=handler,
            subscriptions=[],
        )
    package_handler = client._client._package_handler
    package_handler._connection_state.protocol_version = version  # as connect() sets it
    package_handler._send_puback = lambda mid: seen.append(("puback", mid))
    return package_handler, seen  # its hooks hold the client


def _run(publish: Any, cmd: int, raw: bytes, seen: Seen) -> Seen:
    seen.clear()
    try:
        publish(cmd, raw)
    except Exception as exc:  # gmqtt's read loop logs these (MqttPackageHandler.__call__)
        seen.append(("raised", type(exc).__name__))
    return list(seen)


def packet(topic: bytes, payload: bytes, qos: int, mid: int, delta: int = 0) -> bytes:
    """A PUBLISH's variable header and payload [MQTT-3.3.2]: topic length, topic, identifier.

    ``delta`` makes the length field lie by that much (the split moves, or runs past the end).
    """
    head = max(0, len(topic) + delta).to_bytes(2, "big") + topic
    return head + (mid.to_bytes(2, "big") if qos else b"") + payload


topics = st.one_of(
    st.text(min_size=0, max_size=40).map(lambda t: t.encode()),
    st.binary(min_size=0, max_size=12),  # mostly not UTF-8
    st.sampled_from([b"zigbee2mqtt/0x00158d0001", "linli/社区/devices/d1/events".encode(), b"\xff\xfe"]),
)
payloads = st.one_of(st.binary(max_size=64), st.sampled_from([b"", b"fail", b'{"action":"emergency"}']))


@settings(max_examples=400, deadline=None)
@given(
    topic=topics,
    payload=payloads,
    qos=st.integers(0, 3),
    mid=st.integers(0, 0xFFFF),
    dup=st.booleans(),
    retain=st.booleans(),
    cut=st.one_of(st.none(), st.integers(0, 80)),
    delta=st.one_of(st.just(0), st.integers(-3, 3)),
    version=st.sampled_from([MQTTv311, MQTTv50]),  # a 5.0 session is gmqtt's alone
)
def test_the_hub_parser_gives_what_gmqtt_gives(
    topic: bytes,
    payload: bytes,
    qos: int,
    mid: int,
    dup: bool,
    retain: bool,
    cut: int | None,
    delta: int,
    version: int,
) -> None:
    handler, seen = _handler(version)
    cmd = 0x30 | (0x08 if dup else 0) | (qos << 1) | (0x01 if retain else 0)
    raw = packet(topic, payload, min(qos, 2), mid, delta)
    if cut is not None:
        raw = raw[:cut]  # truncated, or a length prefix that claims more than there is
    ours = _run(handler._handle_publish_packet, cmd, raw, seen)
    theirs = _run(lambda c, r: GMQTT_PUBLISH(handler, c, r), cmd, raw, seen)
    took_gmqtt = ("gmqtt",) in ours
    assert [x for x in ours if x != ("gmqtt",)] == theirs
    try:
        text = topic.decode()
    except UnicodeDecodeError:
        text = ""
    if version == MQTTv311 and qos < 2 and cut is None and delta == 0 and text:
        assert not took_gmqtt, "a well-formed 3.1.1 QoS 0/1 PUBLISH is the hub's to parse"
    if version != MQTTv311 or qos >= 2:
        assert took_gmqtt, "QoS 2 and other protocol versions stay gmqtt's"


def test_the_replacement_is_installed_and_takes_the_common_packets() -> None:
    handler, seen = _handler()
    assert handler._handle_publish_packet.__name__ == "publish_v311"
    raw = packet(b"zigbee2mqtt/door", b'{"contact":false}', 1, 7)
    assert _run(handler._handle_publish_packet, 0x3B, raw, seen) == [  # QoS 1, DUP, RETAIN
        ("message", "zigbee2mqtt/door", b'{"contact":false}', 1, True, True),
        ("puback", 7),
    ]
    assert _run(handler._handle_publish_packet, 0x32, packet(b"t", b"fail", 1, 9), seen) == [
        ("message", "t", b"fail", 1, False, False)  # not handled: no PUBACK (the hub retries)
    ]
    assert _run(handler._handle_publish_packet, 0x30, packet(b"t", b"x", 0, 0), seen) == [
        ("message", "t", b"x", 0, False, False)
    ]


# -- the chunk splitter (hub.mqtt.client.split_packets) against gmqtt's _read_packet ------------


def _varint(n: int) -> bytes:
    out = bytearray()
    while True:
        byte, n = n & 0x7F, n >> 7
        out.append(byte | (0x80 if n else 0))
        if not n:
            return bytes(out)


def _gmqtt_split(data: bytes) -> tuple[int, list[tuple[int, bytes]]]:
    """What gmqtt's ``_read_packet`` hands on for ``data``, and the bytes it says it used."""
    got: list[tuple[int, bytes]] = []
    protocol = MQTTProtocol.__new__(MQTTProtocol)
    protocol._connection = mock.Mock(put_package=lambda pkg: got.append((pkg.cmd, bytes(pkg.data))))
    used = MQTTProtocol._read_packet(protocol, data)
    return used, got


_packet = st.tuples(
    st.sampled_from([0x30, 0x31, 0x32, 0x3A, 0x20, 0x40, 0x90, 0xD0]),
    st.binary(max_size=300) | st.binary(min_size=16_384, max_size=16_500),
)


@settings(max_examples=300, deadline=None)
@given(packets=st.lists(_packet, max_size=12), cut=st.integers(min_value=0, max_value=8))
def test_chunks_split_as_gmqtt_splits_them(packets: list[tuple[int, bytes]], cut: int) -> None:
    data = b"".join(bytes([cmd]) + _varint(len(body)) + body for cmd, body in packets)
    data = data[: max(0, len(data) - cut)]  # a chunk may end inside a packet
    got: list[tuple[int, bytes]] = []
    used = split_packets(
        data,
        lambda cmd, body: got.append((cmd, bytes(body))),
        lambda pkg: got.append((pkg.cmd, bytes(pkg.data))),
    )
    assert (used, got) == _gmqtt_split(data)


def test_a_failing_publish_handler_does_not_stop_the_chunk_and_bad_lengths_are_refused() -> None:
    got: list[bytes] = []

    def publish(cmd: int, body: bytes) -> None:
        if body == b"boom":
            raise ValueError("boom")
        got.append(body)

    data = b"".join(b"\x30" + _varint(len(b)) + b for b in (b"a", b"boom", b"c"))
    assert split_packets(data, publish, got.append) == len(data)
    assert got == [b"a", b"c"]
    # A remaining length of five bytes is malformed [MQTT-2.2.3]: gmqtt drops the connection.
    assert split_packets(b"\x30\xff\xff\xff\xff\x01", publish, got.append) == -1
