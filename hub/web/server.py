"""The HTTP server: uvicorn serving the API in-process, as one named task of the hub's loop.

The hub binds the socket itself (so ``port: 0`` works and the bound port is known before
anything else starts, and a busy port is an ordinary ``OSError`` instead of uvicorn's
``sys.exit``), and uvicorn leaves the process's signals and logging configuration alone:
the hub and ``linli demo`` own those.

Must not import: ``hub.app``, ``hub.cli``.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import logging
import resource
import socket
from collections import Counter
from collections.abc import Callable, Collection, Generator
from dataclasses import dataclass, field
from typing import Any, ClassVar

import h11
import uvicorn
from uvicorn.protocols.http.h11_impl import H11Protocol

from hub.config import HttpSettings
from hub.errors import ConfigError
from hub.web.stream import TRANSPORT_EXTENSION

#: Open requests (event streams) get this long to finish when the hub stops.
SHUTDOWN_GRACE_S = 2.0
STARTUP_TIMEOUT_S = 10.0
#: Bytes a connection may have waiting in the hub's own write buffer before writes wait for the
#: socket (asyncio's default is 64 KiB): 1 000 stalled clients hold at most this much each.
WRITE_BUFFER_HIGH = 16 * 1024
#: Seconds a client has to finish a request's headers (see :class:`_Protocol`).
HEADERS_TIMEOUT_S = 20.0
#: Seconds a client has to send a request's whole body once its headers are in (see :class:`_Protocol`).
BODY_TIMEOUT_S = 30.0
#: Connections one server keeps open at once unless told otherwise (see :class:`_Protocol`).
MAX_CONNECTIONS = HttpSettings().max_connections
#: File descriptors the rest of the process needs besides the HTTP connections (the store, the
#: MQTT sessions, logs, the time-series client, the embedded broker's clients in ``linli demo``):
#: a cap closer than this to ``ulimit -n`` no longer protects them, and the start says so.
FD_RESERVE = 128
#: Refused connections are logged at most once per this long: a flood must not flood the log too.
REFUSED_LOG_EVERY_S = 60.0
#: h11's states of the client's side: waiting for a request, sending a request's body.
_IDLE = h11.IDLE
_SEND_BODY = h11.SEND_BODY

log = logging.getLogger(__name__)


def _uncapped(host: str, trusted: Collection[str]) -> bool:
    """Loopback (the reverse proxy on this host, the health check) and trusted proxies carry
    other people's connections: no per-address cap for them. A peer that is no IP address
    (a Unix socket) is local too."""
    if host in trusted:
        return True
    try:
        address = ipaddress.ip_address(host.split("%", 1)[0])  # an IPv6 zone id is no part of it
    except ValueError:
        return True
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        address = address.ipv4_mapped
    return address.is_loopback or str(address) in trusted


@dataclass(slots=True)
class ConnectionLimits:
    """One server's cap on open connections, and what its limits did (``/metrics``)."""

    max_connections: int
    #: Connections one client address may hold (0: no such cap); see :func:`_uncapped` for who is not capped.
    per_address: int = 0
    #: Addresses never capped per address besides loopback: ``http.trusted_proxies``.
    trusted: frozenset[str] = frozenset()
    #: Connections closed on arrival because ``max_connections`` were open, or their address
    #: held ``per_address`` (those also in :attr:`refused_per_address`).
    refused: int = 0
    refused_per_address: int = 0
    #: Open connections of each capped address (an address leaves when its last one closes).
    by_address: Counter[str] = field(default_factory=Counter)
    #: Connections closed by a deadline: ``headers`` not complete in time, ``body`` not complete in time.
    deadline_closes: dict[str, int] = field(default_factory=lambda: {"headers": 0, "body": 0})
    #: Loop time before which a refusal is counted but not logged, and the count logged last.
    _quiet_until: float = field(default=float("-inf"), init=False, repr=False)
    _logged: int = field(default=0, init=False, repr=False)

    def address_full(self, host: str) -> bool:
        """Whether ``host`` already holds its share (never for an uncapped one)."""
        return (
            bool(self.per_address)
            and self.by_address[host] >= self.per_address
            and not _uncapped(host, self.trusted)
        )

    def opened(self, host: str) -> bool:
        """Count a connection of ``host`` taken on; ``True`` if it is counted (to be :meth:`closed`)."""
        if not self.per_address or _uncapped(host, self.trusted):
            return False
        self.by_address[host] += 1
        return True

    def closed(self, host: str) -> None:
        left = self.by_address[host] - 1
        if left > 0:
            self.by_address[host] = left
        else:
            del self.by_address[host]

    def refuse(self, now: float, *, address: str | None = None) -> None:
        self.refused += 1
        if address is not None:
            self.refused_per_address += 1
        if now < self._quiet_until:
            return
        # The address is logged: it is the client's, which an operator needs to find the culprit.
        why = (
            f"one address ({address}) holds http.max_connections_per_address = {self.per_address}"
            if address is not None
            else f"at their cap (http.max_connections = {self.max_connections})"
        )
        log.warning(
            "HTTP connections %s: %d refused since the last report"
            " (linli_http_connections_refused_total); next report in %.0f s at the earliest",
            why,
            self.refused - self._logged,
            REFUSED_LOG_EVERY_S,
        )
        self._logged = self.refused
        self._quiet_until = now + REFUSED_LOG_EVERY_S


class _Protocol(H11Protocol):
    """uvicorn's h11 protocol with a cap on open connections, a bounded write buffer, header and
    body deadlines and the transport in the scope.

    ASGI gives an application no way to end a connection whose writes are waiting for a client
    that stopped reading: the event stream needs ``transport.abort()`` for that (a ``close()``
    would wait for the unsent bytes forever), so each request's scope carries the transport
    under :data:`~hub.web.stream.TRANSPORT_EXTENSION`.

    Every open connection holds a file descriptor, and 1 100 of them took a default
    ``ulimit -n 1024`` and with it the health check and, with the embedded broker, the sensors'
    connections. Three limits keep them bounded in number and in time:

    * At most :attr:`ConnectionLimits.max_connections` open at once (per server; the event
      streams, which stay open, count among them): one more is closed as soon as it is accepted,
      before it reads or parses anything, so it holds its descriptor for one loop turn. uvicorn's
      own ``limit_concurrency`` is not that: it accepts the connection, waits for and parses a
      request and answers 503, so an idle or slow client keeps its descriptor all the same (and
      EventSource gives up for good on a 503, while it reconnects after a closed connection).
      Not accepting at all while full (pausing the listener) was not chosen either: new clients,
      the health check among them, would hang in the kernel's backlog instead of failing at once.
    * uvicorn times out an idle connection only after a response (keep-alive). One that never
      finishes its request headers, or sends nothing at all, stayed open for good (slow-loris):
      headers not complete within :attr:`headers_timeout_s` of the connection, or of the first
      byte after a response, close it, as nginx's ``client_header_timeout`` does.
    * A body was bounded in size (``http.max_body_bytes``), not in time: a byte every few seconds
      held a connection for days. Once the headers are in, the whole body must be in within
      :attr:`body_timeout_s`. Requests without a body (the event stream's ``GET``, keep-alive
      requests) are never timed; a response being written is not either. (uvicorn stops reading
      a body while 64 KiB of it wait for the app; the API reads its bodies before anything else,
      so no client is made late by that pause.)
    """

    #: Seconds a client has to finish a request's headers (nginx's default is 60, Apache's 20–40).
    headers_timeout_s = HEADERS_TIMEOUT_S
    #: Seconds for a request's whole body. nginx's ``client_body_timeout`` (60 s) is between two
    #: reads, which bounds nothing against a trickle (a byte a minute keeps a 64 KiB body open for
    #: 45 days); this one is for all of it. The API's bodies are a few KiB of JSON, at most
    #: ``http.max_body_bytes`` (64 KiB by default): 30 s is still 2 KiB/s, slower than a phone on 2G.
    body_timeout_s = BODY_TIMEOUT_S
    #: The server's cap and counters, set on the class :func:`_protocol_for` makes per server.
    limits: ClassVar[ConnectionLimits]

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        self._headers_deadline: asyncio.TimerHandle | None = None
        self._body_deadline: asyncio.TimerHandle | None = None
        limits = self.limits
        peer = transport.get_extra_info("peername")
        host = str(peer[0]) if isinstance(peer, tuple | list) and peer else ""
        # uvicorn's set of this server's open connections; it adds this one in connection_made.
        full = len(self.connections) >= limits.max_connections
        mine = not full and limits.address_full(host)
        self._refused = full or mine
        if self._refused:
            # Before uvicorn sees it: not in its connection set, no request cycle, no timers.
            transport.close()  # nothing written yet: the socket is closed on the next loop turn
            limits.refuse(self.loop.time(), address=host if mine else None)
            return
        self._counted_as = host if limits.opened(host) else None
        super().connection_made(transport)
        transport.set_write_buffer_limits(high=WRITE_BUFFER_HIGH)
        self._arm_headers_deadline()
        app = self.app

        async def with_transport(scope: Any, receive: Any, send: Any) -> None:
            scope.setdefault("extensions", {})[TRANSPORT_EXTENSION] = transport
            await app(scope, receive, send)

        self.app = with_transport

    def data_received(self, data: bytes) -> None:
        super().data_received(data)
        if self.conn.their_state is _IDLE:
            self._arm_headers_deadline()  # part of a request's headers (uvicorn's keep-alive is off now)
        elif self._headers_deadline is not None:
            self._headers_deadline.cancel()  # the request is in: its headers were in time
            self._headers_deadline = None
        self._follow_body()

    def on_response_complete(self) -> None:
        # A pipelined request waiting behind this response starts here, not in data_received:
        # its body is timed from now.
        super().on_response_complete()
        self._follow_body()

    def connection_lost(self, exc: Exception | None) -> None:
        if self._refused:
            return  # uvicorn never took it on: nothing of its own to tear down
        if self._counted_as is not None:
            self.limits.closed(self._counted_as)
            self._counted_as = None
        for deadline in (self._headers_deadline, self._body_deadline):
            if deadline is not None:
                deadline.cancel()
        self._headers_deadline = self._body_deadline = None
        super().connection_lost(exc)

    def _arm_headers_deadline(self) -> None:
        if self._headers_deadline is None:
            self._headers_deadline = self.loop.call_later(self.headers_timeout_s, self._headers_late)

    def _headers_late(self) -> None:
        self._headers_deadline = None
        if self.conn.their_state is _IDLE and not self.transport.is_closing():
            self.limits.deadline_closes["headers"] += 1
            self.transport.close()

    def _follow_body(self) -> None:
        """The body deadline runs exactly while the client is sending a request's body."""
        if self.conn.their_state is _SEND_BODY:
            if self._body_deadline is None:
                self._body_deadline = self.loop.call_later(self.body_timeout_s, self._body_late)
        elif self._body_deadline is not None:
            self._body_deadline.cancel()
            self._body_deadline = None

    def _body_late(self) -> None:
        self._body_deadline = None
        if self.conn.their_state is _SEND_BODY and not self.transport.is_closing():
            self.limits.deadline_closes["body"] += 1
            # abort, not close: the app may have answered already (a 401 before reading the body)
            # to a client that reads nothing either, and close() would wait for those bytes.
            # The app's pending receive() gets a disconnect.
            self.transport.abort()


def _protocol_for(limits: ConnectionLimits) -> type[_Protocol]:
    """The protocol class of one server. uvicorn makes each connection's protocol from the class
    it was given, with no arguments of ours, so each server's limits ride on a subclass of its own."""

    class Protocol(_Protocol):
        pass

    Protocol.limits = limits
    return Protocol


class _Server(uvicorn.Server):
    @contextlib.contextmanager
    def capture_signals(self) -> Generator[None, None, None]:
        # The hub (and `linli demo`) handle SIGINT/SIGTERM; uvicorn must not take them over.
        yield


class HttpServer:
    def __init__(
        self,
        *,
        app: Any,
        host: str,
        port: int,
        max_connections: int = MAX_CONNECTIONS,
        max_connections_per_address: int = 0,
        trusted_proxies: Collection[str] = (),
        on_stop: Callable[[], None] = lambda: None,
    ) -> None:
        self._app = app
        self._host = host
        self._port = port
        self._on_stop = on_stop
        self.limits = ConnectionLimits(
            max_connections, per_address=max_connections_per_address, trusted=frozenset(trusted_proxies)
        )
        self._server: _Server | None = None
        self._task: asyncio.Task[None] | None = None
        self.port: int | None = None

    def _bind(self) -> socket.socket:
        try:
            family = socket.getaddrinfo(self._host, self._port, type=socket.SOCK_STREAM)[0][0]
            sock = socket.create_server((self._host, self._port), family=family, backlog=128)
        except OSError as exc:
            raise ConfigError(
                f"cannot listen on {self._host}:{self._port}: {exc.strerror or exc}", key="http.port"
            ) from None
        # Accepted connections inherit this on Linux. asyncio sets it only on sockets whose
        # ``proto`` is IPPROTO_TCP, which ours (proto 0) is not: without it Nagle and delayed ACK
        # add ~40 ms to every response (headers and body leave in two writes).
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        sock.setblocking(False)
        return sock

    @property
    def open_connections(self) -> int:
        """Connections open now (event streams included): what :attr:`limits` caps."""
        return 0 if self._server is None else len(self._server.server_state.connections)

    def _check_fd_limit(self) -> None:
        soft, _hard = resource.getrlimit(resource.RLIMIT_NOFILE)
        cap = self.limits.max_connections
        if soft != resource.RLIM_INFINITY and cap + FD_RESERVE > soft:
            log.warning(
                "http.max_connections = %d leaves fewer than %d of the process's %d file descriptors"
                " (ulimit -n) to the rest of the hub: lower it, or raise the limit (systemd: LimitNOFILE=)",
                cap,
                FD_RESERVE,
                soft,
            )

    async def start(self) -> int:
        self._check_fd_limit()
        sock = self._bind()
        self.port = int(sock.getsockname()[1])
        config = uvicorn.Config(
            self._app,
            log_config=None,
            log_level="warning",
            access_log=False,
            lifespan="off",
            server_header=False,
            proxy_headers=False,
            timeout_graceful_shutdown=int(SHUTDOWN_GRACE_S),
            # Longer than uvicorn's 5 s: a client pausing between requests must not race the close.
            timeout_keep_alive=30,
            ws="none",
            http=_protocol_for(self.limits),
        )
        self._server = _Server(config)
        self._task = asyncio.create_task(self._server.serve(sockets=[sock]), name="linli-http")
        async with asyncio.timeout(STARTUP_TIMEOUT_S):
            while not self._server.started:
                if self._task.done():
                    sock.close()
                    self._task.result()
                    raise ConfigError(f"HTTP server on {self._host}:{self.port} did not start", key="http")
                await asyncio.sleep(0.01)
        return self.port

    async def stop(self) -> None:
        if self._server is None or self._task is None:
            return
        self._on_stop()
        self._server.should_exit = True
        try:
            await asyncio.wait_for(asyncio.shield(self._task), SHUTDOWN_GRACE_S + 3)
        except TimeoutError:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        self._server = None
        self._task = None
