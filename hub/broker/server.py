"""``EmbeddedBroker``: the listener, its lifecycle and the keepalive checker task."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Mapping
from types import TracebackType

from hub.broker.acl import AclRules
from hub.broker.codec import MAX_PACKET_ID, MAX_REMAINING_LENGTH
from hub.broker.connection import Connection
from hub.broker.core import BrokerCore
from hub.broker.stats import BrokerStats
from hub.errors import BrokerConfigError, BrokerStateError

_LOG = logging.getLogger("hub.broker")

KEEPALIVE_TICK_S = 0.25


class EmbeddedBroker:
    """An in-process MQTT 3.1.1 broker on one TCP listener.

    ``users`` maps user names to passwords; anonymous clients are refused unless
    ``allow_anonymous``. ``max_inflight`` bounds unacknowledged QoS 1 messages per subscriber,
    ``max_queued`` bounds each session's queue, ``max_packet_size`` bounds inbound packets.
    ``acl`` (Mosquitto ``acl_file`` semantics, :mod:`hub.broker.acl`) restricts what each user
    may publish and receive; without it every authenticated client may do anything.
    """

    def __init__(
        self,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        users: Mapping[str, str] | None = None,
        allow_anonymous: bool = False,
        max_inflight: int = 100,
        max_queued: int = 100_000,
        max_packet_size: int = 1 << 20,
        acl: AclRules | None = None,
    ) -> None:
        if not 1 <= max_inflight < MAX_PACKET_ID:
            raise BrokerConfigError(f"max_inflight must be in 1..{MAX_PACKET_ID - 1}")
        if max_queued < 1:
            raise BrokerConfigError("max_queued must be >= 1")
        if not 2 <= max_packet_size <= MAX_REMAINING_LENGTH + 5:
            raise BrokerConfigError("max_packet_size out of range")
        if not 0 <= port <= 65_535:
            raise BrokerConfigError("port must be in 0..65535")
        self._host = host
        self._requested_port = port
        self._max_packet_size = max_packet_size
        self._core = BrokerCore(
            users=dict(users or {}),
            allow_anonymous=allow_anonymous,
            max_inflight=max_inflight,
            max_queued=max_queued,
            acl=acl,
        )
        self._server: asyncio.Server | None = None
        self._port: int | None = None
        self._keepalive_task: asyncio.Task[None] | None = None
        self._stopped = False

    async def start(self) -> None:
        """Bind the listener (``port=0`` picks a free port) and start the keepalive checker."""
        if self._server is not None or self._stopped:
            raise BrokerStateError("EmbeddedBroker.start() called twice")
        loop = asyncio.get_running_loop()
        core = self._core
        max_packet_size = self._max_packet_size

        def factory() -> Connection:
            return Connection(core=core, loop=loop, max_packet_size=max_packet_size)

        self._server = await loop.create_server(factory, self._host, self._requested_port, reuse_address=True)
        self._port = int(self._server.sockets[0].getsockname()[1])
        self._keepalive_task = asyncio.create_task(self._keepalive_loop(), name="broker-keepalive")
        _LOG.info("mqtt: embedded broker listening on %s:%d", self._host, self._port)

    @property
    def port(self) -> int:
        """The bound port; only valid after :meth:`start`."""
        if self._port is None:
            raise BrokerStateError("EmbeddedBroker.port read before start()")
        return self._port

    async def stop(self) -> None:
        """Close the listener and every client connection; cancel and await the broker's tasks."""
        if self._stopped:
            return
        self._stopped = True
        self._core.stopping = True  # no wills while shutting down
        if self._server is not None:
            self._server.close()
        for conn in list(self._core.connections):
            conn.flush()
            conn.abort()
        task = self._keepalive_task
        self._keepalive_task = None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        if self._server is not None:
            await self._server.wait_closed()
        # Let the transports run their connection_lost callbacks.
        for _ in range(3):
            if not self._core.connections:
                break
            await asyncio.sleep(0)
        _LOG.info("mqtt: embedded broker stopped")

    async def __aenter__(self) -> EmbeddedBroker:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        await self.stop()

    def stats(self) -> BrokerStats:
        return self._core.stats()

    async def _keepalive_loop(self) -> None:
        while True:
            await asyncio.sleep(KEEPALIVE_TICK_S)
            now = time.monotonic()
            for conn in list(self._core.connections):
                conn.check_timeouts(now)
