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
import socket
from collections.abc import Callable, Generator
from typing import Any

import h11
import uvicorn
from uvicorn.protocols.http.h11_impl import H11Protocol

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
#: h11's "waiting for a request" state (uvicorn's protocol runs on h11).
_IDLE = h11.IDLE


class _Protocol(H11Protocol):
    """uvicorn's h11 protocol with a bounded write buffer, a header deadline and the transport
    in the scope.

    ASGI gives an application no way to end a connection whose writes are waiting for a client
    that stopped reading: the event stream needs ``transport.abort()`` for that (a ``close()``
    would wait for the unsent bytes forever), so each request's scope carries the transport
    under :data:`~hub.web.stream.TRANSPORT_EXTENSION`.

    uvicorn times out an idle connection only after a response (keep-alive). One that never
    finishes its request headers, or sends nothing at all, stayed open for good: 1 100 of them
    took a default ``ulimit -n 1024`` and with it the health check and, with the embedded
    broker, the sensors' connections (slow-loris). Headers not complete within
    :attr:`headers_timeout_s` of the connection, or of the first byte after a response, close
    the connection, as nginx's ``client_header_timeout`` does.
    """

    #: Seconds a client has to finish a request's headers (nginx's default is 60, Apache's 20–40).
    headers_timeout_s = HEADERS_TIMEOUT_S

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        transport.set_write_buffer_limits(high=WRITE_BUFFER_HIGH)
        self._headers_deadline: asyncio.TimerHandle | None = None
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

    def connection_lost(self, exc: Exception | None) -> None:
        if self._headers_deadline is not None:
            self._headers_deadline.cancel()
            self._headers_deadline = None
        super().connection_lost(exc)

    def _arm_headers_deadline(self) -> None:
        if self._headers_deadline is None:
            self._headers_deadline = self.loop.call_later(self.headers_timeout_s, self._headers_late)

    def _headers_late(self) -> None:
        self._headers_deadline = None
        if self.conn.their_state is _IDLE and not self.transport.is_closing():
            self.transport.close()


class _Server(uvicorn.Server):
    @contextlib.contextmanager
    def capture_signals(self) -> Generator[None, None, None]:
        # The hub (and `linli demo`) handle SIGINT/SIGTERM; uvicorn must not take them over.
        yield


class HttpServer:
    def __init__(self, *, app: Any, host: str, port: int, on_stop: Callable[[], None] = lambda: None) -> None:
        self._app = app
        self._host = host
        self._port = port
        self._on_stop = on_stop
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

    async def start(self) -> int:
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
            http=_Protocol,
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
