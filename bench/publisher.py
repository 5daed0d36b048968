"""A raw-socket MQTT 3.1.1 publisher that is faster than any consumer it feeds.

Every PUBLISH (QoS 0) is encoded up front into one byte string; the publisher process then
sends a hand-written CONNECT (with username/password), waits for CONNACK, writes the whole
stream with ``sendall`` and finally sends PINGREQ. The broker answers PINGREQ only after it
has read everything sent before it on the connection, so "PINGRESP received" is the moment
the broker has taken in all N messages: that is what the publisher's rate is measured to.
"""

from __future__ import annotations

import socket
import struct
import time
from collections.abc import Iterable
from dataclasses import dataclass
from multiprocessing.connection import Connection
from pathlib import Path

CONNECT = 0x10
CONNACK = 0x20
PUBLISH_QOS0 = 0x30
PINGREQ = b"\xc0\x00"
PINGRESP = 0xD0
DISCONNECT = b"\xe0\x00"
#: Bytes per ``sendall``: big enough that syscalls are not what limits the rate.
CHUNK = 256 * 1024


def remaining_length(n: int) -> bytes:
    """MQTT variable-length integer (1-4 bytes)."""
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
    """CONNECT, protocol level 4 (3.1.1), clean session, optional username/password."""
    flags = 0x02  # clean session
    payload = _utf8(client_id)
    if username is not None:
        flags |= 0x80
        payload += _utf8(username)
        if password is not None:
            flags |= 0x40
            payload += _utf8(password)
    variable = _utf8("MQTT") + bytes([4, flags]) + struct.pack("!H", keepalive)
    body = variable + payload
    return bytes([CONNECT]) + remaining_length(len(body)) + body


def encode_publish(topic: str, payload: bytes) -> bytes:
    """PUBLISH, QoS 0, not retained (no packet identifier at QoS 0)."""
    body = _utf8(topic) + payload
    return bytes([PUBLISH_QOS0]) + remaining_length(len(body)) + body


def encode_stream(messages: Iterable[tuple[str, bytes]]) -> bytes:
    """All messages as one pre-encoded byte string, in order."""
    return b"".join(encode_publish(topic, payload) for topic, payload in messages)


def _recv_exact(sock: socket.socket, n: int) -> bytes:
    data = b""
    while len(data) < n:
        chunk = sock.recv(n - len(data))
        if not chunk:
            raise ConnectionError("broker closed the connection")
        data += chunk
    return data


def _read_packet(sock: socket.socket) -> tuple[int, bytes]:
    first = _recv_exact(sock, 1)[0]
    length, mult = 0, 1
    while True:
        byte = _recv_exact(sock, 1)[0]
        length += (byte & 0x7F) * mult
        if not byte & 0x80:
            break
        mult *= 128
    return first, _recv_exact(sock, length) if length else b""


@dataclass(frozen=True, slots=True)
class PublishResult:
    messages: int
    bytes_sent: int
    seconds: float
    #: Messages per second until the broker had read them all (PINGRESP).
    msg_s: float
    #: ``time.perf_counter()`` at the first byte and at PINGRESP (CLOCK_MONOTONIC on Linux,
    #: so comparable with the consumer process's timestamps).
    started: float
    finished: float


def blast(
    *, host: str, port: int, username: str | None, password: str | None, stream: bytes, messages: int
) -> PublishResult:
    """Connect, send ``stream`` (``messages`` pre-encoded PUBLISH packets) and time it."""
    with socket.create_connection((host, port), timeout=30) as sock:
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        sock.sendall(encode_connect(f"linli-bench-pub-{time.monotonic_ns()}", username, password))
        kind, body = _read_packet(sock)
        if kind != CONNACK or len(body) != 2 or body[1] != 0:
            raise ConnectionError(f"CONNECT refused: packet 0x{kind:02x} {body!r}")
        view = memoryview(stream)
        start = time.perf_counter()
        for offset in range(0, len(view), CHUNK):
            sock.sendall(view[offset : offset + CHUNK])
        sock.sendall(PINGREQ)
        kind, _ = _read_packet(sock)
        end = time.perf_counter()
        seconds = end - start
        if kind != PINGRESP:
            raise ConnectionError(f"expected PINGRESP, got packet 0x{kind:02x}")
        sock.sendall(DISCONNECT)
    return PublishResult(
        messages, len(stream), seconds, messages / seconds if seconds > 0 else 0.0, start, end
    )


def publisher_main(
    host: str,
    port: int,
    username: str | None,
    password: str | None,
    stream_file: str,
    messages: int,
    reply: Connection,
) -> None:
    """Process entry point: read the pre-encoded stream, blast it, send a ``PublishResult`` back."""
    stream = Path(stream_file).read_bytes()
    try:
        result: PublishResult | str = blast(
            host=host, port=port, username=username, password=password, stream=stream, messages=messages
        )
    except Exception as exc:
        result = f"{type(exc).__name__}: {exc}"
    reply.send(result)
    reply.close()
