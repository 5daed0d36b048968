"""One client TCP connection: framing, batched writes, read pausing and timeouts.

Protocol decisions live in :mod:`hub.broker.core`; this module only turns bytes into
``(first byte, body)`` pairs and back, and exposes the transport's flow-control hooks.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
import time
from typing import TYPE_CHECKING

from hub.broker.codec import read_fixed_header
from hub.errors import BrokerError, MalformedPacketError

if TYPE_CHECKING:
    from hub.broker.codec import Will
    from hub.broker.core import BrokerCore
    from hub.broker.session import Session

_LOG = logging.getLogger("hub.broker")

WRITE_HIGH_WATER = 512 * 1024  # transport buffer above this → pause_writing → publishers are paused
WRITE_LOW_WATER = 128 * 1024
CONNECT_TIMEOUT_S = 10.0  # a connection must send CONNECT within this [MQTT-3.1.4] "reasonable time"


class Connection(asyncio.Protocol):
    """asyncio protocol for one client. Writes are coalesced: one ``transport.write`` per loop turn."""

    __slots__ = (
        "_buffer",
        "_core",
        "_flush_handle",
        "_loop",
        "_max_packet_size",
        "_pending",
        "_pending_len",
        "blocked_by",
        "client_id",
        "closing",
        "connected",
        "created",
        "keepalive",
        "last_received",
        "peer",
        "reading_paused",
        "session",
        "transport",
        "username",
        "will",
        "write_allowed",
        "write_paused",
    )

    def __init__(self, *, core: BrokerCore, loop: asyncio.AbstractEventLoop, max_packet_size: int) -> None:
        self._core = core
        self._loop = loop
        self._max_packet_size = max_packet_size
        self._buffer = bytearray()
        self._pending: list[bytes] = []
        self._pending_len = 0
        self._flush_handle: asyncio.Handle | None = None
        self.transport: asyncio.Transport | None = None
        self.peer = "?"
        self.client_id: str | None = None
        self.username: str | None = None  # as authenticated at CONNECT (the ACL subject)
        self.write_allowed: dict[str, bool] = {}  # ACL write decisions per topic (bounded)
        self.session: Session | None = None
        self.will: Will | None = None
        self.connected = False  # CONNECT accepted
        self.closing = False
        self.keepalive = 0
        self.created = self.last_received = time.monotonic()
        self.write_paused = False
        self.reading_paused = False
        self.blocked_by: set[Session] = set()  # congested sessions this publisher is paused for

    # ------------------------------------------------------------------ asyncio.Protocol

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport
        sock = transport.get_extra_info("socket")
        if sock is not None:
            with contextlib.suppress(OSError):  # not a TCP socket
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        peer = transport.get_extra_info("peername")
        if isinstance(peer, tuple) and len(peer) >= 2:
            self.peer = f"{peer[0]}:{peer[1]}"
        transport.set_write_buffer_limits(high=WRITE_HIGH_WATER, low=WRITE_LOW_WATER)
        self._core.connection_made(self)

    def data_received(self, data: bytes) -> None:
        if self.closing:
            return
        self.last_received = time.monotonic()
        buf: bytes | bytearray
        if self._buffer:
            self._buffer += data
            buf = self._buffer
        else:
            buf = data
        pos = 0
        end = len(buf)
        handle = self._core.handle_packet
        check = self._core.check_header
        try:
            while pos < end:
                header = read_fixed_header(buf, pos)
                if header is None:
                    break
                first, body_start, length = header
                check(self, first)
                if length + body_start - pos > self._max_packet_size:
                    raise MalformedPacketError(f"packet of {length} bytes exceeds max_packet_size")
                body_end = body_start + length
                if body_end > end:
                    break
                handle(self, first, bytes(buf[body_start:body_end]))
                pos = body_end
                if self.closing:
                    return
        except BrokerError as exc:
            self.fail(str(exc))
            return
        except Exception as exc:  # never let a client take the broker down
            _LOG.error(
                "mqtt: internal error on %s (%s): %r",
                self.peer,
                self.client_id,
                exc,
                exc_info=_LOG.isEnabledFor(logging.DEBUG),
            )
            self.fail("internal error")
            return
        if pos == end:
            if self._buffer:
                self._buffer = bytearray()
        elif buf is data:
            self._buffer = bytearray(data[pos:])
        else:
            del self._buffer[:pos]

    def eof_received(self) -> bool | None:
        return None  # close the transport

    def connection_lost(self, exc: Exception | None) -> None:
        self.closing = True
        if self._flush_handle is not None:
            self._flush_handle.cancel()
            self._flush_handle = None
        self._pending.clear()
        self._pending_len = 0
        self._core.connection_lost(self)

    def pause_writing(self) -> None:
        self.write_paused = True

    def resume_writing(self) -> None:
        self.write_paused = False
        self._core.subscriber_drained(self)

    # ------------------------------------------------------------------ used by the core

    def send(self, data: bytes) -> None:
        if self.closing:
            return
        self._pending.append(data)
        self._pending_len += len(data)
        if self._flush_handle is None:
            self._flush_handle = self._loop.call_soon(self.flush)

    def send_parts(self, head: bytes, packet_id: bytes, payload: bytes) -> None:
        if self.closing:
            return
        self._pending += (head, packet_id, payload)
        self._pending_len += len(head) + 2 + len(payload)
        if self._flush_handle is None:
            self._flush_handle = self._loop.call_soon(self.flush)

    def flush(self) -> None:
        self._flush_handle = None
        if self._pending and self.transport is not None and not self.transport.is_closing():
            data = b"".join(self._pending)
            self._pending.clear()
            self._pending_len = 0
            self.transport.write(data)

    def buffered(self) -> int:
        """Bytes waiting to reach the socket (our batch + the transport's buffer)."""
        transport_size = self.transport.get_write_buffer_size() if self.transport is not None else 0
        return self._pending_len + transport_size

    def pause_reading(self) -> None:
        if not self.reading_paused and not self.closing and self.transport is not None:
            self.reading_paused = True
            self.transport.pause_reading()

    def resume_reading(self) -> None:
        if self.reading_paused:
            self.reading_paused = False
            self.last_received = time.monotonic()  # paused time does not count against keepalive
            if not self.closing and self.transport is not None:
                self.transport.resume_reading()

    def close(self) -> None:
        """Flush pending output then close (the will, if any, is published in connection_lost)."""
        if self.closing:
            return
        self.flush()
        self.closing = True
        if self.transport is not None:
            self.transport.close()

    def abort(self) -> None:
        self.closing = True
        if self.transport is not None:
            self.transport.abort()

    def fail(self, reason: str) -> None:
        """Close because of a malformed packet / protocol violation: one log line, no traceback."""
        _LOG.warning("mqtt: closing %s (client %s): %s", self.peer, self.client_id, reason)
        self.close()

    def check_timeouts(self, now: float) -> None:
        """Keepalive: close after 1.5 x keepalive without any packet [MQTT-3.1.2-24]."""
        if self.closing or self.reading_paused:
            return
        if not self.connected:
            if now - self.created > CONNECT_TIMEOUT_S:
                self.fail("no CONNECT received in time")
            return
        if self.keepalive and now - self.last_received > 1.5 * self.keepalive:
            self.fail(f"keepalive of {self.keepalive}s expired")
