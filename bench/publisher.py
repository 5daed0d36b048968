"""A raw-socket MQTT 3.1.1 publisher that is faster than any consumer it feeds.

Every PUBLISH (QoS 0, or QoS 1 with ``--qos 1``) is encoded up front into one byte string; the
publisher process then sends a hand-written CONNECT (with username/password), waits for
CONNACK, writes the whole stream with ``sendall`` and finally sends PINGREQ. The broker answers
PINGREQ only after it has read everything sent before it on the connection, so "PINGRESP
received" is the moment the broker has taken in all N messages: that is what the publisher's
rate is measured to.

QoS 1: the packet identifiers run 1…65 535 and wrap. A sender may reuse an identifier once its
PUBACK came [MQTT-2.3.1-3]; a broker acknowledges a QoS 1 PUBLISH as it takes it in and keeps no
state per identifier (Mosquitto, the embedded broker), so the stream does not wait for PUBACKs.
They are read and counted meanwhile by a thread of their own, so the broker never has to hold
them for a publisher that does not read.
"""

from __future__ import annotations

import socket
import struct
import threading
import time
from collections.abc import Iterable
from dataclasses import dataclass
from multiprocessing.connection import Connection
from pathlib import Path

from gmqtt.mqtt.package import Package

from hub.mqtt.client import split_packets
from simulators.mqtt_wire import encode_connect, encode_publish, read_packet, varint

CONNECT = 0x10
CONNACK = 0x20
PUBLISH_QOS0 = 0x30
PUBLISH_QOS1 = 0x32
PUBACK = 0x40
PINGREQ = b"\xc0\x00"
PINGRESP = 0xD0
DISCONNECT = b"\xe0\x00"
#: Bytes per ``sendall``: big enough that syscalls are not what limits the rate.
CHUNK = 256 * 1024


def encode_stream(messages: Iterable[tuple[str, bytes]], *, qos: int = 0) -> bytes:
    """All messages as one pre-encoded byte string, in order, as QoS 0 or QoS 1 PUBLISHes."""
    if qos == 0:
        return b"".join(encode_publish(topic, payload) for topic, payload in messages)
    if qos != 1:
        raise ValueError(f"the publisher sends QoS 0 or 1, not {qos}")
    out: list[bytes] = []
    for i, (topic, payload) in enumerate(messages):
        name = topic.encode()
        # Topic, packet identifier (never 0 [MQTT-2.3.1-1]), payload [MQTT-3.3.2].
        body = struct.pack("!H", len(name)) + name + struct.pack("!H", i % 65_535 + 1) + payload
        out.append(bytes([PUBLISH_QOS1]) + varint(len(body)) + body)
    return b"".join(out)


class _Acks(threading.Thread):
    """Reads what the broker sends back while the stream goes out: PUBACKs, counted, then PINGRESP."""

    def __init__(self, sock: socket.socket) -> None:
        super().__init__(name="bench-publisher-acks", daemon=True)
        self._sock = sock
        self.pubacks = 0
        self.last: int | None = None
        self.error: BaseException | None = None
        self.done = threading.Event()
        #: Set once PINGREQ is sent: the broker's silence counts against the socket's timeout
        #: only from then on (a long stream may take longer than that to send).
        self.asked = threading.Event()

    def _answer(self, package: Package) -> None:
        if package.cmd == PUBACK:
            self.pubacks += 1
        elif self.last is None:
            self.last = package.cmd

    def run(self) -> None:
        buffer = b""
        try:
            while self.last is None:
                try:
                    data = self._sock.recv(65_536)
                except TimeoutError:
                    if self.asked.is_set():
                        raise
                    continue
                if not data:
                    raise ConnectionError("broker closed the connection")
                buffer += data
                # Whole packets only, split as the hub splits what it reads.
                used = split_packets(buffer, lambda cmd, body: self._answer(Package(cmd, body)), self._answer)
                if used < 0:
                    raise ConnectionError("a malformed packet from the broker")
                buffer = buffer[used:]
        except BaseException as exc:  # reported by blast(), which waits for this thread
            self.error = exc
        finally:
            self.done.set()


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
    #: PUBACKs the broker sent back (QoS 1 streams; 0 for QoS 0).
    pubacks: int = 0


def blast(
    *, host: str, port: int, username: str | None, password: str | None, stream: bytes, messages: int
) -> PublishResult:
    """Connect, send ``stream`` (``messages`` pre-encoded PUBLISH packets) and time it."""
    with socket.create_connection((host, port), timeout=30) as sock:
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        sock.sendall(encode_connect(f"linli-bench-pub-{time.monotonic_ns()}", username, password))
        kind, body = read_packet(sock)
        if kind != CONNACK or len(body) != 2 or body[1] != 0:
            raise ConnectionError(f"CONNECT refused: packet 0x{kind:02x} {body!r}")
        view = memoryview(stream)
        acks = _Acks(sock)
        acks.start()
        start = time.perf_counter()
        for offset in range(0, len(view), CHUNK):
            sock.sendall(view[offset : offset + CHUNK])
        sock.sendall(PINGREQ)
        acks.asked.set()
        if not acks.done.wait((sock.gettimeout() or 30.0) + 1.0):
            raise ConnectionError("no PINGRESP from the broker")
        end = time.perf_counter()
        seconds = end - start
        if acks.error is not None:
            raise ConnectionError(f"reading the broker's answers: {acks.error}")
        if acks.last != PINGRESP:
            raise ConnectionError(f"expected PINGRESP, got packet 0x{acks.last or 0:02x}")
        sock.sendall(DISCONNECT)
    return PublishResult(
        messages, len(stream), seconds, messages / seconds if seconds > 0 else 0.0, start, end, acks.pubacks
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


def paced(
    *,
    host: str,
    port: int,
    username: str | None,
    password: str | None,
    packets: list[bytes],
    rate: float,
    seconds: float,
    tick: float = 0.005,
) -> PublishResult:
    """Send pre-encoded PUBLISH packets at ``rate`` per second for ``seconds``, cycling through them.

    The background load of the latency bench: every ``tick`` it writes the packets that are due
    by then, so the rate holds on average over any 10 ms and the loop ends by itself.
    """
    with socket.create_connection((host, port), timeout=30) as sock:
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        sock.sendall(encode_connect(f"linli-bench-bg-{time.monotonic_ns()}", username, password))
        kind, body = read_packet(sock)
        if kind != CONNACK or len(body) != 2 or body[1] != 0:
            raise ConnectionError(f"CONNECT refused: packet 0x{kind:02x} {body!r}")
        start = time.perf_counter()
        sent = sent_bytes = 0
        i = 0
        while True:
            now = time.perf_counter()
            elapsed = now - start
            if elapsed >= seconds:
                break
            due = int(elapsed * rate) - sent
            if due > 0:
                chunk = []
                for _ in range(due):
                    chunk.append(packets[i])
                    i = (i + 1) % len(packets)
                data = b"".join(chunk)
                sock.sendall(data)
                sent += due
                sent_bytes += len(data)
            time.sleep(tick)
        sock.sendall(PINGREQ)
        read_packet(sock)
        end = time.perf_counter()
        sock.sendall(DISCONNECT)
    return PublishResult(sent, sent_bytes, end - start, sent / (end - start), start, end)


def paced_main(
    host: str,
    port: int,
    username: str | None,
    password: str | None,
    packets: list[bytes],
    rate: float,
    seconds: float,
    reply: Connection,
) -> None:
    """Process entry point for :func:`paced`."""
    try:
        result: PublishResult | str = paced(
            host=host,
            port=port,
            username=username,
            password=password,
            packets=packets,
            rate=rate,
            seconds=seconds,
        )
    except Exception as exc:
        result = f"{type(exc).__name__}: {exc}"
    reply.send(result)
    reply.close()
