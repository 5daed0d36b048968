"""Bulk turns bounded by time: a backlog of slow messages is read in small chunks, none lost."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import Any

from hub.mqtt.client import HubMqttClient, MessageHandler
from hub.mqtt.url import MqttUrl
from tests.helpers import eventually, publish_queued, publisher
from tests.support.servers import Broker

N = 1500


def bulk_client(
    broker: Broker,
    *,
    client_id: str,
    on_message: MessageHandler,
    turn_s: float | None,
    defer_to: Callable[[], bool] | None = None,
) -> HubMqttClient:
    """A bulk-lane session as the hub makes it: ``bulk/#``, 32 KiB turns."""
    return HubMqttClient(
        url=MqttUrl.parse(broker.url),
        client_id=client_id,
        on_message=on_message,
        subscriptions=["bulk/#"],
        turn_bytes=32 * 1024,
        turn_s=turn_s,
        defer_to=defer_to,
    )


async def queue_backlog(broker: Broker, session: HubMqttClient) -> Any:
    """N QoS 1 messages queued at the broker for ``session``'s persistent session, while it is
    away; returns a connected publisher (the caller disconnects it)."""
    await session.connect()
    await asyncio.wait_for(session.subscribed.wait(), 5)
    await session.disconnect()
    await publish_queued(broker, [(f"bulk/d{i % 50}", b"%05d" % i + b"x" * 140) for i in range(N)])
    return await publisher(broker)


async def _turns(broker: Broker, *, turn_s: float | None, client_id: str) -> tuple[list[int], list[bytes]]:
    """Messages handled per event-loop turn while a QoS 1 backlog of N slow messages drains."""
    seen: list[bytes] = []
    current = [0]

    def slow(topic: str, payload: bytes, qos: int, retain: bool, dup: bool) -> None:
        seen.append(payload)
        current[0] += 1
        time.sleep(0.0005)  # a message that writes to the store on a busy machine

    def make() -> HubMqttClient:
        return bulk_client(broker, client_id=client_id, on_message=slow, turn_s=turn_s)

    gateway = await queue_backlog(broker, make())
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


async def _press_during_backlog(broker: Broker, *, defer: bool, tag: str) -> int:
    """Bulk messages handled between a press reaching the SOS lane's socket and its handling."""
    order: list[str] = []

    def slow(topic: str, payload: bytes, qos: int, retain: bool, dup: bool) -> None:
        order.append("bulk")
        time.sleep(0.0005)

    def press(topic: str, payload: bytes, qos: int, retain: bool, dup: bool) -> None:
        order.append("press")

    lane = HubMqttClient(
        url=MqttUrl.parse(broker.url), client_id=f"lane-{tag}", on_message=press, subscriptions=["sos/#"]
    )

    def make() -> HubMqttClient:
        return bulk_client(
            broker,
            client_id=f"bulk-{tag}",
            on_message=slow,
            turn_s=0.002,
            defer_to=lane.waiting if defer else None,
        )

    gateway = await queue_backlog(broker, make())
    await lane.connect()
    await asyncio.wait_for(lane.subscribed.wait(), 5)
    bulk = make()
    await bulk.connect()
    try:
        await eventually(lambda: len(order) >= 200, what="the backlog draining")
        gateway.publish("sos/button-1", b'{"action": "emergency"}', qos=1)
        # The loop stays busy (no await) until the press has reached the lane's socket.
        deadline = time.monotonic() + 5
        while not lane.waiting() and time.monotonic() < deadline:
            time.sleep(0.005)  # noqa: ASYNC251 - blocking on purpose: the loop must not turn
        assert lane.waiting()
        before = len(order)
        await eventually(lambda: "press" in order, what="the press")
        assert not lane.waiting()
        return order.index("press") - before
    finally:
        await bulk.disconnect()
        await lane.disconnect()
        await gateway.disconnect()


async def test_a_press_on_the_sos_lane_goes_before_the_next_bulk_chunk(mosquitto_broker: Broker) -> None:
    assert await _press_during_backlog(mosquitto_broker, defer=True, tag="defer") == 0


async def test_without_deferring_a_press_waits_behind_bulk_chunks(mosquitto_broker: Broker) -> None:
    # What the deferral removes (the loop runs ready callbacks in order): at least a chunk first.
    assert await _press_during_backlog(mosquitto_broker, defer=False, tag="plain") >= 3


async def test_a_lane_that_always_has_bytes_slows_the_bulk_lane_but_never_stops_it(
    mosquitto_broker: Broker,
) -> None:
    seen: list[bytes] = []
    bulk = bulk_client(
        mosquitto_broker,
        client_id="bulk-starved",
        on_message=lambda topic, payload, qos, retain, dup: seen.append(payload),
        turn_s=0.002,
        defer_to=lambda: True,  # a flood on the SOS lane's topics, never drained
    )
    await bulk.connect()
    await asyncio.wait_for(bulk.subscribed.wait(), 5)
    gateway = await publisher(mosquitto_broker)
    try:
        for i in range(N):
            gateway.publish(f"bulk/d{i % 50}", b"%05d" % i, qos=1)
        await eventually(lambda: len(seen) == N, what="every bulk message")
        assert sorted(seen) == [b"%05d" % i for i in range(N)]
    finally:
        await bulk.disconnect()
        await gateway.disconnect()
