"""Bulk turns bounded by time: a backlog of slow messages is read in small chunks, none lost."""

from __future__ import annotations

import asyncio
import time

from hub.mqtt.client import HubMqttClient
from hub.mqtt.url import MqttUrl
from tests.helpers import eventually, publisher
from tests.support.servers import Broker

N = 1500


async def _turns(broker: Broker, *, turn_s: float | None, client_id: str) -> tuple[list[int], list[bytes]]:
    """Messages handled per event-loop turn while a QoS 1 backlog of N slow messages drains."""
    seen: list[bytes] = []
    current = [0]

    def slow(topic: str, payload: bytes, qos: int, retain: bool, dup: bool) -> None:
        seen.append(payload)
        current[0] += 1
        time.sleep(0.0005)  # a message that writes to the store on a busy machine

    def make() -> HubMqttClient:
        return HubMqttClient(
            url=MqttUrl.parse(broker.url),
            client_id=client_id,
            on_message=slow,
            subscriptions=["bulk/#"],
            turn_bytes=32 * 1024,
            turn_s=turn_s,
        )

    first = make()  # the persistent session, so the broker queues the backlog for it
    await first.connect()
    await asyncio.wait_for(first.subscribed.wait(), 5)
    await first.disconnect()
    gateway = await publisher(broker)
    for i in range(N):
        gateway.publish(f"bulk/d{i % 50}", b"%05d" % i + b"x" * 140, qos=1)
        if i % 200 == 0:
            await asyncio.sleep(0.01)
    await asyncio.sleep(0.5)
    second = make()
    counts: list[int] = []
    await second.connect()
    deadline = time.monotonic() + 30
    while len(seen) < N and time.monotonic() < deadline:
        await asyncio.sleep(0)  # one turn of the loop: at most one chunk of the backlog ran
        if current[0]:
            counts.append(current[0])
            current[0] = 0
    await second.disconnect()
    await gateway.disconnect()
    return counts, seen


async def test_time_bounded_turns_read_a_slow_backlog_in_small_chunks(mosquitto_broker: Broker) -> None:
    counts, seen = await _turns(mosquitto_broker, turn_s=0.002, client_id="turns-time")
    assert sorted(seen) == sorted(b"%05d" % i + b"x" * 140 for i in range(N)), "each message once"
    # The first read knows no rate yet (32 KiB); after it, ≈ 2 ms of 0.5 ms messages, ≥ 1 KiB.
    assert max(counts[2:]) <= 12, counts[:20]


async def test_without_a_time_bound_a_turn_is_a_whole_32_kib(mosquitto_broker: Broker) -> None:
    counts, seen = await _turns(mosquitto_broker, turn_s=None, client_id="turns-bytes")
    await eventually(lambda: len(seen) == N, within=1, what="the whole backlog")
    assert max(counts) > 100, counts[:20]
