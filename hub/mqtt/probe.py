"""``linli doctor``'s boundary probe: try, from outside, what a stolen sensor password could do.

A configuration file can say the broker has ACLs; only trying proves it. With a sensor's
(gateway's) credential the probe (1) publishes a worker reply while the hub's credential
listens on the reply topics, and (2) subscribes to everything under the prefix while the
hub's credential publishes a notification. Either arriving means the broker lets a sensor
silence an SOS or read elders' data: FAIL.

The probe's messages use the person and community ``linli-doctor`` (no real case or person),
so a running hub that receives the probe reply only quarantines it (``reply_unauthenticated``)
and a probe notification reaches nobody's phone.
"""

from __future__ import annotations

import asyncio
import contextlib
import secrets
import ssl
from collections.abc import Awaitable
from dataclasses import dataclass
from typing import Any

from gmqtt import Client, Subscription
from gmqtt.mqtt.constants import MQTTv311

from hub.errors import MqttError
from hub.mqtt.url import MqttUrl

#: How long the probe waits for a message the broker should not deliver (seconds).
SETTLE_S = 1.0
CONNECT_TIMEOUT_S = 10.0
PROBE_PAYLOAD = b'{"probe": "linli doctor: this message must not be delivered"}'


@dataclass(frozen=True, slots=True, kw_only=True)
class ProbeFinding:
    ok: bool
    message: str

    def __str__(self) -> str:
        return f"[{'ok' if self.ok else 'FAIL'}] {self.message}"


class _Probe:
    """One throw-away, clean-session client that records what it receives."""

    def __init__(self, url: MqttUrl, role: str, tls_ca_file: str | None) -> None:
        self.url = url
        self.received: list[str] = []
        self.subscribed = asyncio.Event()
        self.client = Client(f"linli-doctor-{role}-{secrets.token_hex(4)}", clean_session=True)
        if url.username is not None:
            self.client.set_auth_credentials(url.username, url.password)
        self.client.on_message = self._on_message
        self.client.on_subscribe = lambda *args: self.subscribed.set()
        self._ssl: ssl.SSLContext | bool = (
            ssl.create_default_context(cafile=tls_ca_file) if url.tls else False
        )

    def _on_message(self, client: Any, topic: str, payload: bytes, qos: int, properties: Any) -> int:
        if payload == PROBE_PAYLOAD:
            self.received.append(topic)
        return 0

    async def connect(self, *topics: str) -> None:
        try:
            await asyncio.wait_for(
                self.client.connect(self.url.host, self.url.port, ssl=self._ssl, version=MQTTv311),
                CONNECT_TIMEOUT_S,
            )
        except Exception as exc:  # gmqtt raises its own errors for refusals
            raise MqttError(f"cannot connect to {self.url.redacted()}: {exc or 'timeout'}") from exc
        if topics:
            self.client.subscribe([Subscription(t, qos=1) for t in topics])
            await asyncio.wait_for(self.subscribed.wait(), CONNECT_TIMEOUT_S)

    async def close(self) -> None:
        with contextlib.suppress(Exception):
            await self.client.disconnect()


async def _quietly(awaitable: Awaitable[None]) -> None:
    with contextlib.suppress(Exception):
        await awaitable


async def probe_boundary(
    *,
    hub_url: MqttUrl,
    sensor_url: MqttUrl,
    reply_topic: str,
    reply_filter: str,
    notification_topic: str,
    read_filter: str,
    tls_ca_file: str | None = None,
    settle_s: float = SETTLE_S,
) -> list[ProbeFinding]:
    """Two findings: may the sensor write a reply, may it read a notification."""
    hub = _Probe(hub_url, "hub", tls_ca_file)
    sensor = _Probe(sensor_url, "sensor", tls_ca_file)
    try:
        await hub.connect(reply_filter)
        await sensor.connect(read_filter, "#")
        sensor.client.publish(reply_topic, PROBE_PAYLOAD, qos=1)
        hub.client.publish(notification_topic, PROBE_PAYLOAD, qos=1)
        await asyncio.sleep(settle_s)
    finally:
        await _quietly(sensor.close())
        await _quietly(hub.close())
    who = sensor_url.username or "anonymous"
    return [
        ProbeFinding(
            ok=not hub.received,
            message=(
                f"sensor credential {who!r} could publish a worker reply on {reply_topic} (the broker lacks ACLs)"
                if hub.received
                else f"sensor credential {who!r} cannot publish a worker reply"
            ),
        ),
        ProbeFinding(
            ok=not sensor.received,
            message=(
                f"sensor credential {who!r} received a notification on {sensor.received[0]}"
                if sensor.received
                else f"sensor credential {who!r} cannot read notifications"
            ),
        ),
    ]
