"""``linli doctor``'s gateway round trip: does what a gateway publishes reach the hub's credential?

Why a round trip: Mosquitto with a plain ``acl_file`` checks reads per message at delivery,
not at SUBSCRIBE. It grants a filter the client may not read (SUBACK with the granted QoS,
MQTT 3.1.1 §3.9.3) and leaves every message on it out, silently. A hub denied a gateway's root
(a typo, a root the ACL does not cover) is connected, subscribed and ready — and each SOS
press from that gateway is dropped before it reaches the hub. Only a message sent and
received proves the path. The hub already treats a refused SUBACK (0x80) as not ready.

How: a listener logs in with the hub's credential — on a clean session of its own, never the
hub's client id, which would take a running hub's session over (MQTT 3.1.1 §3.1.4) — and
subscribes to the hub's gateway filters. Each credential the operator gives publishes one
QoS 1 probe per target topic (a topic each filter matches). A probe that reaches the listener
proves the filter; one the broker accepted and never delivered is the silent loss.

Publishers speak MQTT 5 where the broker does: a v5 PUBACK carries a reason code (MQTT 5.0
§3.4.2.1; 0x87 Not authorized), so "this credential may not publish here" — it is another
gateway's root; the hub's own credential rightly may not publish on gateway topics at all —
is told apart from "published, and the hub's credential did not get it". gmqtt 0.8.0 does not
parse that code, so :class:`_Publisher` reads it off the packet (the exact pin in
``pyproject.toml`` covers such hooks). A broker without MQTT 5 (the embedded one) makes gmqtt
fall back to 3.1.1, whose PUBACK says nothing [MQTT-3.3.5-2]: a probe that does not arrive
is then either not allowed or not delivered, and the finding says both.

Nothing is retained, so nothing is left on the gateway topics. A probe is a JSON array
``["linli-doctor", "<nonce>"]`` on a topic whose device level is ``linli-doctor``: every
decoder ignores or refuses it, and a running hub that receives it counts it
(:func:`is_probe`) instead of quarantining it.
"""

from __future__ import annotations

import asyncio
import contextlib
import secrets
import ssl
from collections.abc import Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from gmqtt import Client, Message, Subscription
from gmqtt.mqtt.constants import MQTTv50, MQTTv311

from hub.errors import MqttError
from hub.mqtt.url import MqttUrl

#: The device (and, where a topic has one, application) level of every probe topic.
PROBE_NAME = "linli-doctor"
#: Every probe payload starts with this; nothing a device sends does.
PROBE_MARK = b'["' + PROBE_NAME.encode() + b'",'
#: How long a probe may take to arrive before the doctor calls it lost (seconds).
ROUND_TRIP_TIMEOUT_S = 3.0
CONNECT_TIMEOUT_S = 10.0
#: SUBACK return code "Failure" (MQTT 3.1.1 §3.9.3) and the first v5 PUBACK error code (§3.4.2.1).
SUBACK_FAILURE = 0x80
PUBACK_ERROR = 0x80


#: A probe is the mark, a short nonce and ``"]``: nothing longer is taken for one, so a gateway
#: cannot hide bad input from the quarantine behind the mark.
PROBE_MAX_BYTES = 96


def is_probe(payload: bytes) -> bool:
    """Whether a message is a doctor's probe (the hub drops it, counted, instead of quarantining it)."""
    return len(payload) <= PROBE_MAX_BYTES and payload.startswith(PROBE_MARK) and payload.endswith(b'"]')


def probe_topic(topic_filter: str) -> str:
    """A topic ``topic_filter`` matches: each ``+`` level and a trailing ``#`` become :data:`PROBE_NAME`."""
    levels = topic_filter.split("/")
    return "/".join(PROBE_NAME if level in ("+", "#") else level for level in levels)


@dataclass(frozen=True, slots=True, kw_only=True)
class ProbeTarget:
    """One topic to publish a probe on, and the hub's subscription that should deliver it."""

    topic_filter: str
    topic: str


class Outcome(StrEnum):
    #: A probe reached the hub's credential.
    RECEIVED = "received"
    #: The broker accepted a probe (v5 PUBACK success) and did not deliver it: the silent loss.
    LOST = "lost"
    #: Nothing arrived and the broker does not say why (MQTT 3.1.1, or no PUBACK in time).
    UNCONFIRMED = "unconfirmed"
    #: Every given credential was refused the publish (v5 PUBACK ≥ 0x80): not checked.
    DENIED = "denied"
    #: The broker refused the hub's subscription itself (SUBACK 0x80).
    REFUSED = "refused"


@dataclass(frozen=True, slots=True, kw_only=True)
class RoundTrip:
    target: ProbeTarget
    outcome: Outcome
    #: The user names whose probes decided the outcome (the publisher that got through, or all tried).
    publishers: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True, kw_only=True)
class RoundTripReport:
    results: tuple[RoundTrip, ...]
    #: Credentials that could not connect: ``(user, why)``; their probes were not sent.
    unreachable: tuple[tuple[str, str], ...] = ()


@dataclass(slots=True, kw_only=True)
class _Probe:
    target: ProbeTarget
    user: str
    nonce: str
    #: PUBACK reason code (v5); 0 for a 3.1.1 PUBACK; ``None`` before it arrives.
    code: int | None = None
    v5: bool = False
    received: bool = False


def _ssl(url: MqttUrl, tls_ca_file: str | None) -> ssl.SSLContext | bool:
    return ssl.create_default_context(cafile=tls_ca_file) if url.tls else False


def _user(url: MqttUrl) -> str:
    return url.username or "anonymous"


class _Listener:
    """The hub's credential on a throw-away clean session, subscribed to the hub's filters."""

    def __init__(self, *, url: MqttUrl, filters: Sequence[str], tls_ca_file: str | None) -> None:
        self.url = url
        self.filters = list(filters)
        self.nonces: set[str] = set()
        self.refused: set[str] = set()
        self._subscribed = asyncio.Event()
        self.client = Client(f"{PROBE_NAME}-hub-{secrets.token_hex(4)}", clean_session=True)
        if url.username is not None:
            self.client.set_auth_credentials(url.username, url.password)
        self.client.on_message = self._on_message
        self.client.on_subscribe = self._on_subscribe
        self._tls = _ssl(url, tls_ca_file)

    def _on_message(self, client: Any, topic: str, payload: bytes, qos: int, properties: Any) -> int:
        if is_probe(payload):
            self.nonces.add(payload[len(PROBE_MARK) :].strip(b' "]').decode("ascii", "replace"))
        return 0

    def _on_subscribe(self, client: Any, mid: int, granted: Sequence[int], properties: Any) -> None:
        self.refused = {f for f, q in zip(self.filters, granted, strict=False) if q >= SUBACK_FAILURE}
        self._subscribed.set()

    async def start(self) -> None:
        # MQTT 3.1.1, as the hub itself connects: the ACL is judged for what the hub sees.
        await _connect(self.client, self.url, self._tls, MQTTv311)
        self.client.subscribe([Subscription(f, qos=1) for f in self.filters])
        await asyncio.wait_for(self._subscribed.wait(), CONNECT_TIMEOUT_S)


class _Publisher:
    """One given credential; records each probe's PUBACK reason code (MQTT 5) by packet id."""

    def __init__(self, *, url: MqttUrl, tls_ca_file: str | None) -> None:
        self.url = url
        self.client = Client(f"{PROBE_NAME}-gw-{secrets.token_hex(4)}", clean_session=True)
        if url.username is not None:
            self.client.set_auth_credentials(url.username, url.password)
        # A broker without MQTT 5 answers CONNACK 1; gmqtt then retries with 3.1.1 after this delay.
        self.client.reconnect_delay = 0
        self._tls = _ssl(url, tls_ca_file)
        self._pending: dict[int, _Probe] = {}
        handler = self.client._package_handler
        original = handler._handle_puback_packet

        def puback(cmd: int, packet: bytes) -> None:
            # Packet id, then (v5 only, and omitted for 0x00 Success) the reason code (§3.4.2.1).
            probe = self._pending.pop(int.from_bytes(packet[:2], "big"), None)
            if probe is not None:
                probe.code = packet[2] if probe.v5 and len(packet) > 2 else 0
            original(cmd, packet)

        handler._handle_puback_packet = puback

    @property
    def v5(self) -> bool:
        return bool(self.client._connection_state.protocol_version >= MQTTv50)

    async def start(self) -> None:
        await _connect(self.client, self.url, self._tls, MQTTv50)

    def publish(self, probe: _Probe) -> None:
        probe.v5 = self.v5
        payload = PROBE_MARK + b'"' + probe.nonce.encode("ascii") + b'"]'
        # Not Client.publish: the packet id is needed, and a probe is never resent on reconnect.
        mid, _ = self.client._connection.publish(Message(probe.target.topic, payload, qos=1))
        self._pending[mid] = probe


async def _connect(client: Client, url: MqttUrl, tls: ssl.SSLContext | bool, version: int) -> None:
    try:
        await asyncio.wait_for(
            client.connect(url.host, url.port, ssl=tls, version=version), CONNECT_TIMEOUT_S
        )
    except Exception as exc:  # gmqtt raises its own errors for refusals
        raise MqttError(f"cannot connect to {url.redacted()}: {exc or 'timeout'}") from exc


async def _close(client: Client) -> None:
    with contextlib.suppress(Exception):
        await client.disconnect()


def _settled(probes: Sequence[_Probe], listener: _Listener, targets: Sequence[ProbeTarget]) -> bool:
    """Every target either reached the hub or has each of its probes refused by the broker."""
    by_target: dict[ProbeTarget, list[_Probe]] = {}
    for probe in probes:
        by_target.setdefault(probe.target, []).append(probe)
    for target in targets:
        mine = by_target.get(target, [])
        if target.topic_filter in listener.refused or any(p.received for p in mine):
            continue
        if not mine or not all(p.v5 and p.code is not None and p.code >= PUBACK_ERROR for p in mine):
            return False
    return True


def _outcome(target: ProbeTarget, probes: Sequence[_Probe], refused: set[str]) -> RoundTrip:
    if target.topic_filter in refused:
        return RoundTrip(target=target, outcome=Outcome.REFUSED)
    users = tuple(dict.fromkeys(p.user for p in probes))
    got = [p.user for p in probes if p.received]
    if got:
        return RoundTrip(target=target, outcome=Outcome.RECEIVED, publishers=(got[0],))
    accepted = [p.user for p in probes if p.v5 and p.code is not None and p.code < PUBACK_ERROR]
    if accepted:
        return RoundTrip(target=target, outcome=Outcome.LOST, publishers=tuple(dict.fromkeys(accepted)))
    if probes and all(p.v5 and p.code is not None for p in probes):
        return RoundTrip(target=target, outcome=Outcome.DENIED, publishers=users)
    return RoundTrip(target=target, outcome=Outcome.UNCONFIRMED, publishers=users)


@dataclass(slots=True, kw_only=True)
class _Run:
    probes: list[_Probe] = field(default_factory=list)
    unreachable: list[tuple[str, str]] = field(default_factory=list)


async def round_trip(
    *,
    hub_url: MqttUrl,
    publishers: Sequence[MqttUrl],
    targets: Sequence[ProbeTarget],
    tls_ca_file: str | None = None,
    timeout_s: float = ROUND_TRIP_TIMEOUT_S,
) -> RoundTripReport:
    """Publish a probe on each target as each of ``publishers``; report what the hub's credential got.

    Raises :class:`MqttError` when the hub's credential cannot connect or subscribe; a
    publisher that cannot connect is reported in :attr:`RoundTripReport.unreachable`.
    """
    filters = list(dict.fromkeys(t.topic_filter for t in targets))
    if not targets:
        return RoundTripReport(results=())
    listener = _Listener(url=hub_url, filters=filters, tls_ca_file=tls_ca_file)
    started: list[_Publisher] = []
    run = _Run()
    try:
        try:
            await listener.start()
        except TimeoutError as exc:
            raise MqttError(f"no SUBACK from {hub_url.redacted()} within {CONNECT_TIMEOUT_S:.0f} s") from exc
        for url in publishers:
            publisher = _Publisher(url=url, tls_ca_file=tls_ca_file)
            try:
                await publisher.start()
            except MqttError as exc:
                run.unreachable.append((_user(url), str(exc)))
                await _close(publisher.client)
                continue
            started.append(publisher)
            for target in targets:
                if target.topic_filter in listener.refused:
                    continue
                probe = _Probe(target=target, user=_user(url), nonce=secrets.token_hex(8))
                run.probes.append(probe)
                publisher.publish(probe)
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout_s
        while started:
            for probe in run.probes:
                probe.received = probe.received or probe.nonce in listener.nonces
            if _settled(run.probes, listener, targets) or loop.time() >= deadline:
                break
            await asyncio.sleep(0.02)
    finally:
        for publisher in started:
            await _close(publisher.client)
        await _close(listener.client)
    if not started:
        return RoundTripReport(results=(), unreachable=tuple(run.unreachable))
    results = tuple(
        _outcome(target, [p for p in run.probes if p.target == target], listener.refused)
        for target in targets
    )
    return RoundTripReport(results=results, unreachable=tuple(run.unreachable))
