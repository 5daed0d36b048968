"""MQTT 3.1.1 packets by hand, for publishers that must be faster than any client library.

Only what the load generator and the benchmarks send and read: CONNECT, PUBLISH (QoS 0),
SUBSCRIBE, and reading one packet off a socket (OASIS MQTT 3.1.1, section 2: fixed header
with the variable-length "remaining length").
"""

from __future__ import annotations

import socket
import struct


def varint(n: int) -> bytes:
    """The remaining-length encoding: 7 bits a byte, high bit set on all but the last (§2.2.3)."""
    out = bytearray()
    while True:
        byte, n = n % 128, n // 128
        out.append(byte | 0x80 if n else byte)
        if not n:
            return bytes(out)


def _utf8(text: str) -> bytes:
    data = text.encode("utf-8")
    return struct.pack("!H", len(data)) + data


def encode_connect(client_id: str, username: str | None, password: str | None, keepalive: int = 60) -> bytes:
    """CONNECT, protocol level 4 (3.1.1), clean session, optional username/password (§3.1)."""
    flags = 0x02
    payload = _utf8(client_id)
    if username is not None:
        flags |= 0x80
        payload += _utf8(username)
        if password is not None:
            flags |= 0x40
            payload += _utf8(password)
    body = _utf8("MQTT") + bytes([4, flags]) + struct.pack("!H", keepalive) + payload
    return b"\x10" + varint(len(body)) + body


def encode_publish(topic: str, payload: bytes) -> bytes:
    """PUBLISH, QoS 0, not retained: no packet identifier (§3.3)."""
    body = _utf8(topic) + payload
    return b"\x30" + varint(len(body)) + body


def encode_subscribe(topic: str, packet_id: int = 1) -> bytes:
    body = struct.pack("!H", packet_id) + _utf8(topic) + b"\x00"
    return b"\x82" + varint(len(body)) + body


def _recv_exact(sock: socket.socket, n: int) -> bytes:
    data = b""
    while len(data) < n:
        chunk = sock.recv(n - len(data))
        if not chunk:
            raise ConnectionError("broker closed the connection")
        data += chunk
    return data


def read_packet(sock: socket.socket) -> tuple[int, bytes]:
    """One packet: (first byte of the fixed header, the rest)."""
    first = _recv_exact(sock, 1)[0]
    length, mult = 0, 1
    while True:
        byte = _recv_exact(sock, 1)[0]
        length += (byte & 0x7F) * mult
        if not byte & 0x80:
            break
        mult *= 128
    return first, _recv_exact(sock, length) if length else b""
