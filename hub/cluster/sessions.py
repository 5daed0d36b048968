"""One persistent MQTT session per owned community, its client id the community's.

The client id ``linli-c-<community>`` is the partition's identity at the broker, not the
node's: with ``clean_session=False`` the broker keeps the community's subscriptions and the
QoS 1 presses queued while nobody owned it, and hands them to whichever node connects with
that id next; a second connection with the same id makes the broker disconnect the first
[MQTT-3.1.4-2], so a zombie owner loses the session. Each session is the hub's own
:class:`~hub.mqtt.client.HubMqttClient` (PUBACK only after the message was handled), with
the app's one ingest handler.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable

from hub.errors import FencedError, MqttError, NotStoredError
from hub.mqtt.client import HubMqttClient, MessageHandler, Unhandled, UnhandledHandler
from hub.mqtt.url import MqttUrl

log = logging.getLogger(__name__)

#: How long opening a session waits for the broker's SUBACK before going on regardless.
SUBSCRIBE_TIMEOUT_S = 10.0


def session_client_id(community: str) -> str:
    return f"linli-c-{community}"


def fenced_community(error: BaseException) -> str | None:
    """The community a refused write was fenced for (directly, or under a held retry)."""
    if isinstance(error, NotStoredError):
        error = error.cause
    return error.community if isinstance(error, FencedError) else None


class CommunitySessions:
    """Opens and closes the per-community sessions the lease loop asks for."""

    def __init__(
        self,
        *,
        url: MqttUrl,
        topics: Callable[[str], list[str]],
        on_message: MessageHandler,
        on_unhandled: UnhandledHandler,
        on_fenced: Callable[[str], None],
        tls_ca_file: str | None = None,
    ) -> None:
        self._url = url
        self._topics = topics
        self._on_message = on_message
        self._on_unhandled = on_unhandled
        self._on_fenced = on_fenced
        self._tls_ca_file = tls_ca_file
        self._clients: dict[str, HubMqttClient] = {}

    @property
    def open_communities(self) -> frozenset[str]:
        return frozenset(self._clients)

    def subscribed(self, community: str) -> bool:
        client = self._clients.get(community)
        return client is not None and client.subscribed.is_set()

    def _unhandled(self, message: Unhandled) -> None:
        community = fenced_community(message.error)
        if community is not None:
            # Not acknowledged and not retried here: this node lost the community, and the
            # broker gives the message to the session's next owner.
            self._on_fenced(community)
            return
        self._on_unhandled(message)

    async def open(self, community: str) -> None:
        if community in self._clients:
            return
        client = HubMqttClient(
            url=self._url,
            client_id=session_client_id(community),
            on_message=self._on_message,
            subscriptions=self._topics(community),
            tls_ca_file=self._tls_ca_file,
            on_unhandled=self._unhandled,
        )
        self._clients[community] = client
        try:
            await client.connect()
        except MqttError:
            del self._clients[community]
            raise
        try:
            await asyncio.wait_for(client.subscribed.wait(), SUBSCRIBE_TIMEOUT_S)
        except TimeoutError:
            log.error("no SUBACK for community %s within %.0f s", community, SUBSCRIBE_TIMEOUT_S)
        log.info("community %s: session %s open", community, session_client_id(community))

    async def close(self, community: str) -> None:
        """Disconnect cleanly; the broker keeps the session (and what arrives) for the next owner."""
        client = self._clients.pop(community, None)
        if client is None:
            return
        try:
            await client.disconnect()
        except (MqttError, OSError):
            log.exception("community %s: session did not close cleanly", community)
        log.info("community %s: session closed", community)

    async def close_all(self) -> None:
        for community in sorted(self._clients):
            await self.close(community)
