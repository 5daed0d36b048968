"""The hub: built once at start-up from settings, every part passed in, every loop a named task."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence
from dataclasses import asdict
from pathlib import Path
from typing import Any

from aiohttp import web

from adapters.router import AdapterRouter, FamilySource
from hub.api import Api
from hub.bus import AlertBus
from hub.clock import Clock, SystemClock
from hub.config import Settings
from hub.device_state import DeviceStates
from hub.dispatch import Dispatcher
from hub.mqtt_client import HubMqttClient
from hub.pipeline import Pipeline
from hub.quarantine import Quarantine
from hub.registry import Registry
from hub.registry_io import load_yaml
from hub.routing import Routing
from hub.store import Store
from rules.evaluator import Evaluator
from rules.loader import BUILTIN_PACKS, load_packs
from rules.model import Rule
from rules.state import MemoryState

log = logging.getLogger(__name__)

QUARANTINE_FLUSH_S = 1.0
SUBSCRIBE_TIMEOUT_S = 10.0


def _ignore(topic: str, payload: bytes, qos: int, retain: bool) -> None:
    """The outbound connection subscribes to nothing."""


class Hub:
    """Owns the store, the MQTT session, the pipeline, the dispatcher and the HTTP server."""

    def __init__(
        self,
        *,
        settings: Settings,
        clock: Clock | None = None,
        registry: Registry | None = None,
        rules: Sequence[Rule] | None = None,
    ) -> None:
        self.settings = settings
        self.clock = clock or SystemClock()
        if rules is None:
            rules = load_packs(settings.rule_paths or (BUILTIN_PACKS,))
        self.rules = tuple(rules)
        self.store = Store(path=Path(settings.data_dir) / "linli.sqlite3")
        if registry is None:
            if settings.community_file is not None:
                # Idempotent: an unchanged file changes nothing; a changed one updates in place.
                self.store.save_communities(load_yaml(settings.community_file), at=self.clock.now())
            registry = Registry(communities=self.store.communities(), unassigned=self.store.unassigned())
        self.registry = registry
        self.bus = AlertBus()
        self.states = DeviceStates()
        self.quarantine = Quarantine(store=self.store)
        self.adapters = AdapterRouter(
            sources=[FamilySource(s.family, s.base_topic) for s in settings.sources]
        )
        self.routing = Routing(registry=registry, zone=settings.zone, topic_prefix=settings.mqtt.topic_prefix)
        self.evaluator = Evaluator(rules=self.rules, state=MemoryState())
        self.mqtt = HubMqttClient(
            url=settings.mqtt.parsed_url,
            client_id=settings.mqtt.client_id,
            on_message=self._on_message,
            subscriptions=self.adapters.subscriptions(),
            tls_ca_file=str(settings.mqtt.tls_ca_file) if settings.mqtt.tls_ca_file else None,
        )
        # Notifications leave on their own connection: on the ingest connection their PUBACKs
        # would queue behind any backlog of sensor traffic, delaying an SOS notification.
        self.outbound = HubMqttClient(
            url=settings.mqtt.parsed_url,
            client_id=f"{settings.mqtt.client_id}-out",
            on_message=_ignore,
            subscriptions=[],
            tls_ca_file=str(settings.mqtt.tls_ca_file) if settings.mqtt.tls_ca_file else None,
        )
        self.dispatcher = Dispatcher(store=self.store, mqtt=self.outbound, clock=self.clock)
        self.pipeline = Pipeline(
            adapters=self.adapters,
            registry=registry,
            evaluator=self.evaluator,
            store=self.store,
            routing=self.routing,
            clock=self.clock,
            quarantine=self.quarantine,
            states=self.states,
            bus=self.bus,
            on_notifications=self.dispatcher.wake,
            max_payload_bytes=settings.mqtt.max_payload_bytes,
        )
        self.api = Api(
            store=self.store,
            bus=self.bus,
            tokens=settings.api_tokens,
            stats=self.stats,
            timezone=settings.timezone,
            registry=registry,
            states=self.states,
            clock=self.clock,
        )
        self._tasks: list[asyncio.Task[None]] = []
        self._runner: web.AppRunner | None = None
        self.http_port: int | None = None

    def _on_message(self, topic: str, payload: bytes, qos: int, retain: bool) -> None:
        self.pipeline.handle(topic, payload, qos, retain)

    def stats(self) -> dict[str, Any]:
        return {
            "pipeline": asdict(self.pipeline.stats),
            "quarantine": dict(self.quarantine.counts),
            "devices_seen": len(self.states),
            "unassigned_devices": len(self.registry.unassigned),
            "notifications_delivered": self.dispatcher.delivered,
            "notification_failures": self.dispatcher.failed_attempts,
            "mqtt_connected": self.mqtt.connected.is_set(),
            "mqtt_subscribed": self.mqtt.subscribed.is_set(),
            "mqtt_outbound_connected": self.outbound.connected.is_set(),
            "mqtt_handler_errors": self.mqtt.handler_errors,
        }

    async def start(self) -> None:
        if not self.settings.api_tokens:
            log.warning("no API tokens configured: the API and console will refuse every request")
        self._runner = web.AppRunner(self.api.app(), access_log=None, shutdown_timeout=2.0)
        await self._runner.setup()
        site = web.TCPSite(self._runner, self.settings.http.host, self.settings.http.port)
        await site.start()
        server = site._server
        sockets = getattr(server, "sockets", None) or []
        self.http_port = sockets[0].getsockname()[1] if sockets else self.settings.http.port
        # Deliver what an earlier run left pending before anything new arrives.
        self._tasks.append(asyncio.create_task(self.dispatcher.run(), name="linli-dispatcher"))
        self._tasks.append(asyncio.create_task(self._flush_quarantine(), name="linli-quarantine-flush"))
        await self.outbound.connect()
        await self.mqtt.connect()
        try:
            await asyncio.wait_for(self.mqtt.subscribed.wait(), SUBSCRIBE_TIMEOUT_S)
        except TimeoutError:
            log.error(
                "no SUBACK from the broker within %.0f s; messages may not arrive yet", SUBSCRIBE_TIMEOUT_S
            )
        log.info(
            "hub running: MQTT %s, HTTP http://%s:%s, %d rules, %d devices registered",
            self.settings.mqtt.parsed_url.redacted(),
            self.settings.http.host,
            self.http_port,
            len(self.rules),
            sum(len(c.devices) for c in self.registry.communities),
        )

    async def _flush_quarantine(self) -> None:
        while True:
            await asyncio.sleep(QUARANTINE_FLUSH_S)
            self.quarantine.flush()

    async def stop(self) -> None:
        """Stop taking messages, then cancel and await every task, then close the store."""
        for client in (self.mqtt, self.outbound):
            try:
                await client.disconnect()
            except Exception:
                log.exception("error while disconnecting from MQTT")
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            try:
                await task
            except asyncio.CancelledError:
                pass
            except Exception:
                log.exception("task %s failed", task.get_name())
        self._tasks.clear()
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None
        self.quarantine.flush()
        self.store.close()

    async def __aenter__(self) -> Hub:
        try:
            await self.start()
        except BaseException:
            await self.stop()
            raise
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()
