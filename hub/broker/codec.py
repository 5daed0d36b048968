"""MQTT 3.1.1 control-packet encoding and decoding: pure functions, no I/O.

Decoders take the body of one packet (the bytes after the fixed header) and raise
:class:`MalformedPacketError` / :class:`ProtocolViolationError` for anything invalid, never
``IndexError`` or ``UnicodeDecodeError``. Encoders return ready-to-write ``bytes``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import IntEnum

from hub.broker.topics import is_valid_topic_name
from hub.errors import MalformedPacketError, ProtocolViolationError, UnsupportedProtocolError

MAX_REMAINING_LENGTH = 268_435_455  # 4 bytes of varint [MQTT-2.2.3]
MAX_PACKET_ID = 65_535
PROTOCOL_LEVEL_311 = 4
PROTOCOL_LEVEL_31 = 3


class PacketType(IntEnum):
    """Control packet types, the high nibble of the first byte [MQTT-2.2.1]."""

    CONNECT = 1
    CONNACK = 2
    PUBLISH = 3
    PUBACK = 4
    PUBREC = 5
    PUBREL = 6
    PUBCOMP = 7
    SUBSCRIBE = 8
    SUBACK = 9
    UNSUBSCRIBE = 10
    UNSUBACK = 11
    PINGREQ = 12
    PINGRESP = 13
    DISCONNECT = 14


class ConnectReturnCode(IntEnum):
    """CONNACK return codes [MQTT-3.2.2.3]."""

    ACCEPTED = 0
    UNACCEPTABLE_PROTOCOL_VERSION = 1
    IDENTIFIER_REJECTED = 2
    SERVER_UNAVAILABLE = 3
    BAD_USERNAME_OR_PASSWORD = 4
    NOT_AUTHORIZED = 5


SUBACK_FAILURE = 0x80

# Required low-nibble flags for every type except PUBLISH [MQTT-2.2.2-1], [MQTT-2.2.2-2].
_REQUIRED_FLAGS: dict[int, int] = {
    PacketType.CONNECT: 0,
    PacketType.CONNACK: 0,
    PacketType.PUBACK: 0,
    PacketType.PUBREC: 0,
    PacketType.PUBREL: 2,
    PacketType.PUBCOMP: 0,
    PacketType.SUBSCRIBE: 2,
    PacketType.SUBACK: 0,
    PacketType.UNSUBSCRIBE: 2,
    PacketType.UNSUBACK: 0,
    PacketType.PINGREQ: 0,
    PacketType.PINGRESP: 0,
    PacketType.DISCONNECT: 0,
}

PINGREQ_PACKET = b"\xc0\x00"
PINGRESP_PACKET = b"\xd0\x00"
DISCONNECT_PACKET = b"\xe0\x00"


@dataclass(frozen=True, slots=True, kw_only=True)
class Will:
    """The will message carried by CONNECT [MQTT-3.1.2.5]."""

    topic: str
    payload: bytes
    qos: int
    retain: bool


@dataclass(frozen=True, slots=True, kw_only=True)
class Connect:
    """A decoded CONNECT packet. ``password`` is excluded from ``repr`` so it never reaches a log."""

    protocol_name: str
    protocol_level: int
    clean_session: bool
    keepalive: int
    client_id: str
    will: Will | None
    username: str | None
    password: bytes | None = field(repr=False)


@dataclass(frozen=True, slots=True, kw_only=True)
class Publish:
    """A decoded PUBLISH packet; ``topic_bytes`` is the UTF-8 topic as received (reused when forwarding)."""

    topic: str
    topic_bytes: bytes
    payload: bytes
    qos: int
    retain: bool
    dup: bool
    packet_id: int | None


@dataclass(frozen=True, slots=True, kw_only=True)
class Subscribe:
    packet_id: int
    requests: tuple[tuple[str, int], ...]


@dataclass(frozen=True, slots=True, kw_only=True)
class Unsubscribe:
    packet_id: int
    filters: tuple[str, ...]


# --------------------------------------------------------------------------- fixed header


def encode_remaining_length(length: int) -> bytes:
    """The variable-length "Remaining Length" of the fixed header [MQTT-2.2.3]."""
    if not 0 <= length <= MAX_REMAINING_LENGTH:
        raise ValueError(f"remaining length {length} out of range")
    if length < 128:
        return bytes((length,))
    out = bytearray()
    while True:
        digit = length & 0x7F
        length >>= 7
        if length:
            out.append(digit | 0x80)
        else:
            out.append(digit)
            return bytes(out)


def decode_remaining_length(buf: bytes | bytearray, pos: int) -> tuple[int, int] | None:
    """Decode the varint at ``buf[pos:]``: ``(value, position after it)``, or ``None`` if incomplete.

    More than four length bytes is malformed [MQTT-2.2.3].
    """
    value = 0
    shift = 0
    end = len(buf)
    for i in range(pos, pos + 4):
        if i >= end:
            return None
        byte = buf[i]
        value |= (byte & 0x7F) << shift
        if byte < 0x80:
            return value, i + 1
        shift += 7
    raise MalformedPacketError("remaining length longer than 4 bytes")


def read_fixed_header(buf: bytes | bytearray, pos: int) -> tuple[int, int, int] | None:
    """``(first byte, body start, body length)`` of the packet at ``buf[pos:]`` or ``None`` if incomplete."""
    if len(buf) - pos < 2:
        return None
    decoded = decode_remaining_length(buf, pos + 1)
    if decoded is None:
        return None
    length, body_start = decoded
    return buf[pos], body_start, length


def check_fixed_flags(packet_type: int, flags: int) -> None:
    """Validate the reserved fixed-header flags of a non-PUBLISH packet [MQTT-2.2.2-2]."""
    required = _REQUIRED_FLAGS.get(packet_type)
    if required is None:
        raise MalformedPacketError(f"reserved packet type {packet_type}")
    if flags != required:
        raise MalformedPacketError(f"invalid flags {flags:#x} for packet type {packet_type}")


# --------------------------------------------------------------------------- field readers


def _read_u16(body: bytes, pos: int) -> tuple[int, int]:
    if pos + 2 > len(body):
        raise MalformedPacketError("truncated 16-bit field")
    return (body[pos] << 8) | body[pos + 1], pos + 2


def _read_binary(body: bytes, pos: int) -> tuple[bytes, int]:
    length, pos = _read_u16(body, pos)
    end = pos + length
    if end > len(body):
        raise MalformedPacketError("truncated length-prefixed field")
    return body[pos:end], end


def decode_utf8(raw: bytes) -> str:
    """Strict UTF-8 (no surrogates) and no U+0000 [MQTT-1.5.3-1], [MQTT-1.5.3-2]."""
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise MalformedPacketError("invalid UTF-8 string") from exc
    if "\x00" in text:
        raise MalformedPacketError("U+0000 in UTF-8 string")
    return text


def _read_str(body: bytes, pos: int) -> tuple[str, int]:
    raw, pos = _read_binary(body, pos)
    return decode_utf8(raw), pos


def read_packet_id(body: bytes) -> int:
    """Body of PUBACK/PUBREC/PUBREL/PUBCOMP/UNSUBACK: exactly a non-zero packet id."""
    if len(body) != 2:
        raise MalformedPacketError("acknowledgement body must be 2 bytes")
    packet_id = (body[0] << 8) | body[1]
    if packet_id == 0:
        raise ProtocolViolationError("packet identifier 0 [MQTT-2.3.1-1]")
    return packet_id


# --------------------------------------------------------------------------- decoders


def parse_connect(body: bytes) -> Connect:
    """Decode a CONNECT body.

    Raises :class:`UnsupportedProtocolError` for a known protocol name at an unsupported level
    (the caller answers CONNACK 1 [MQTT-3.1.2-2]) and :class:`MalformedPacketError` for an
    unknown protocol name (close without CONNACK [MQTT-3.1.2-1]).
    """
    name_raw, pos = _read_binary(body, 0)
    if pos >= len(body):
        raise MalformedPacketError("CONNECT truncated before protocol level")
    level = body[pos]
    pos += 1
    if name_raw == b"MQTT":
        if level != PROTOCOL_LEVEL_311:
            raise UnsupportedProtocolError(name="MQTT", level=level)
    elif name_raw == b"MQIsdp":
        if level != PROTOCOL_LEVEL_31:
            raise UnsupportedProtocolError(name="MQIsdp", level=level)
    else:
        raise MalformedPacketError(f"unknown protocol name {name_raw[:16]!r}")
    if pos + 3 > len(body):
        raise MalformedPacketError("CONNECT truncated in variable header")
    flags = body[pos]
    keepalive = (body[pos + 1] << 8) | body[pos + 2]
    pos += 3
    if flags & 0x01:
        raise MalformedPacketError("CONNECT reserved flag set [MQTT-3.1.2-3]")
    clean_session = bool(flags & 0x02)
    will_flag = bool(flags & 0x04)
    will_qos = (flags >> 3) & 0x03
    will_retain = bool(flags & 0x20)
    password_flag = bool(flags & 0x40)
    username_flag = bool(flags & 0x80)
    if not will_flag and (will_qos or will_retain):
        raise MalformedPacketError("will QoS/retain without will flag [MQTT-3.1.2-11], [MQTT-3.1.2-15]")
    if will_qos == 3:
        raise MalformedPacketError("will QoS 3 [MQTT-3.1.2-14]")
    if password_flag and not username_flag:
        raise MalformedPacketError("password without user name [MQTT-3.1.2-22]")

    client_id, pos = _read_str(body, pos)
    will: Will | None = None
    if will_flag:
        will_topic, pos = _read_str(body, pos)
        will_payload, pos = _read_binary(body, pos)
        if not is_valid_topic_name(will_topic):
            raise MalformedPacketError("invalid will topic")
        will = Will(topic=will_topic, payload=will_payload, qos=will_qos, retain=will_retain)
    username: str | None = None
    password: bytes | None = None
    if username_flag:
        username, pos = _read_str(body, pos)
    if password_flag:
        password, pos = _read_binary(body, pos)
    if pos != len(body):
        raise MalformedPacketError("trailing bytes after CONNECT payload")
    return Connect(
        protocol_name=name_raw.decode("ascii"),
        protocol_level=level,
        clean_session=clean_session,
        keepalive=keepalive,
        client_id=client_id,
        will=will,
        username=username,
        password=password,
    )


def parse_publish(flags: int, body: bytes) -> Publish:
    """Decode a PUBLISH body; topic validity (no wildcards) is checked here [MQTT-3.3.2-2]."""
    qos = (flags >> 1) & 0x03
    if qos == 3:
        raise MalformedPacketError("PUBLISH QoS 3 [MQTT-3.3.1-4]")
    dup = bool(flags & 0x08)
    if dup and qos == 0:
        raise MalformedPacketError("DUP set on QoS 0 PUBLISH [MQTT-3.3.1-2]")
    topic_bytes, pos = _read_binary(body, 0)
    topic = decode_utf8(topic_bytes)
    if not topic or "+" in topic or "#" in topic:
        raise MalformedPacketError("invalid PUBLISH topic name [MQTT-3.3.2-2], [MQTT-4.7.3-1]")
    packet_id: int | None = None
    if qos:
        packet_id, pos = _read_u16(body, pos)
        if packet_id == 0:
            raise ProtocolViolationError("PUBLISH packet identifier 0 [MQTT-2.3.1-1]")
    return Publish(
        topic=topic,
        topic_bytes=topic_bytes,
        payload=body[pos:],
        qos=qos,
        retain=bool(flags & 0x01),
        dup=dup,
        packet_id=packet_id,
    )


def parse_subscribe(body: bytes) -> Subscribe:
    """Decode SUBSCRIBE; at least one filter [MQTT-3.8.3-3], reserved QoS bits zero [MQTT-3-8.3-4]."""
    packet_id, pos = _read_u16(body, 0)
    if packet_id == 0:
        raise ProtocolViolationError("SUBSCRIBE packet identifier 0 [MQTT-2.3.1-1]")
    requests: list[tuple[str, int]] = []
    while pos < len(body):
        topic_filter, pos = _read_str(body, pos)
        if pos >= len(body):
            raise MalformedPacketError("SUBSCRIBE filter without requested QoS")
        requested = body[pos]
        pos += 1
        if requested > 2:
            raise MalformedPacketError("SUBSCRIBE requested QoS byte invalid [MQTT-3-8.3-4]")
        requests.append((topic_filter, requested))
    if not requests:
        raise ProtocolViolationError("SUBSCRIBE without topic filters [MQTT-3.8.3-3]")
    return Subscribe(packet_id=packet_id, requests=tuple(requests))


def parse_unsubscribe(body: bytes) -> Unsubscribe:
    """Decode UNSUBSCRIBE; at least one filter [MQTT-3.10.3-2]."""
    packet_id, pos = _read_u16(body, 0)
    if packet_id == 0:
        raise ProtocolViolationError("UNSUBSCRIBE packet identifier 0 [MQTT-2.3.1-1]")
    filters: list[str] = []
    while pos < len(body):
        topic_filter, pos = _read_str(body, pos)
        filters.append(topic_filter)
    if not filters:
        raise ProtocolViolationError("UNSUBSCRIBE without topic filters [MQTT-3.10.3-2]")
    return Unsubscribe(packet_id=packet_id, filters=tuple(filters))


# --------------------------------------------------------------------------- encoders


def _u16(value: int) -> bytes:
    return value.to_bytes(2, "big")


def _string(raw: bytes) -> bytes:
    return _u16(len(raw)) + raw


def encode_connack(*, session_present: bool, return_code: ConnectReturnCode) -> bytes:
    return bytes((0x20, 2, 1 if session_present else 0, int(return_code)))


def encode_ack(packet_type: PacketType, packet_id: int) -> bytes:
    """PUBACK, PUBREC, PUBREL (flags 0b0010), PUBCOMP or UNSUBACK."""
    first = (int(packet_type) << 4) | (2 if packet_type == PacketType.PUBREL else 0)
    return bytes((first, 2, packet_id >> 8, packet_id & 0xFF))


def encode_suback(packet_id: int, return_codes: list[int] | tuple[int, ...]) -> bytes:
    body = _u16(packet_id) + bytes(return_codes)
    return b"\x90" + encode_remaining_length(len(body)) + body


def publish_head(topic_bytes: bytes, payload_len: int, *, qos: int, retain: bool) -> bytes:
    """Fixed header + topic of a PUBLISH: the bytes shared by every copy sent at one QoS.

    A full packet is ``head + payload`` (QoS 0) or ``head + packet_id(2 bytes) + payload``.
    """
    remaining = 2 + len(topic_bytes) + (2 if qos else 0) + payload_len
    first = 0x30 | (qos << 1) | (1 if retain else 0)
    return bytes((first,)) + encode_remaining_length(remaining) + _u16(len(topic_bytes)) + topic_bytes


def with_dup(head: bytes) -> bytes:
    """The same PUBLISH head with the DUP flag set (redelivery) [MQTT-3.3.1-1]."""
    return bytes((head[0] | 0x08,)) + head[1:]


def encode_publish(
    topic: str,
    payload: bytes,
    *,
    qos: int = 0,
    retain: bool = False,
    dup: bool = False,
    packet_id: int | None = None,
) -> bytes:
    """A whole PUBLISH packet (clients, tests, benchmark)."""
    head = publish_head(topic.encode("utf-8"), len(payload), qos=qos, retain=retain)
    if dup:
        head = with_dup(head)
    if qos:
        if packet_id is None:
            raise ValueError("QoS > 0 PUBLISH needs a packet id")
        return head + _u16(packet_id) + payload
    return head + payload


def encode_connect(
    client_id: str,
    *,
    clean_session: bool = True,
    keepalive: int = 60,
    username: str | None = None,
    password: str | None = None,
    will: Will | None = None,
    protocol_name: str = "MQTT",
    protocol_level: int = PROTOCOL_LEVEL_311,
) -> bytes:
    """A CONNECT packet (client side: tests and benchmark)."""
    flags = 0x02 if clean_session else 0
    payload = _string(client_id.encode("utf-8"))
    if will is not None:
        flags |= 0x04 | (will.qos << 3) | (0x20 if will.retain else 0)
        payload += _string(will.topic.encode("utf-8")) + _string(will.payload)
    if username is not None:
        flags |= 0x80
        payload += _string(username.encode("utf-8"))
    if password is not None:
        flags |= 0x40
        payload += _string(password.encode("utf-8"))
    body = _string(protocol_name.encode("utf-8")) + bytes((protocol_level, flags)) + _u16(keepalive) + payload
    return b"\x10" + encode_remaining_length(len(body)) + body


def encode_subscribe(packet_id: int, requests: list[tuple[str, int]]) -> bytes:
    """A SUBSCRIBE packet (client side: tests and benchmark)."""
    body = _u16(packet_id) + b"".join(_string(f.encode("utf-8")) + bytes((q,)) for f, q in requests)
    return b"\x82" + encode_remaining_length(len(body)) + body


def encode_unsubscribe(packet_id: int, filters: list[str]) -> bytes:
    """An UNSUBSCRIBE packet (client side: tests)."""
    body = _u16(packet_id) + b"".join(_string(f.encode("utf-8")) for f in filters)
    return b"\xa2" + encode_remaining_length(len(body)) + body
