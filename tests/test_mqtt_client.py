"""PUBACK only after the message is handled: a message the hub failed to record is redelivered."""

from __future__ import annotations

import asyncio
import time

from hub.mqtt.client import HubMqttClient
from hub.mqtt.url import MqttUrl
from tests.helpers import eventually, publisher
from tests.support.servers import Broker


def client(broker: Broker, handler: object) -> HubMqttClient:
    return HubMqttClient(
        url=MqttUrl.parse(broker.url), client_id="ack-test", on_message=handler, subscriptions=["t/#"]
    )  # type: ignore[arg-type]


async def test_unhandled_qos1_message_is_redelivered_and_handled_one_is_not(mosquitto_broker: Broker) -> None:
    seen: list[bytes] = []
    failing = True

    def handler(topic: str, payload: bytes, qos: int, retain: bool, dup: bool) -> None:
        seen.append(payload)
        if failing and payload == b"sos":
            raise OSError("store unavailable")

    first = client(mosquitto_broker, handler)
    await first.connect()
    await asyncio.wait_for(first.subscribed.wait(), 5)
    gateway = await publisher(mosquitto_broker)
    gateway.publish("t/a", b"reading", qos=1)
    gateway.publish("t/b", b"sos", qos=1)
    await eventually(lambda: len(seen) == 2, what="both messages")
    assert first.handler_errors == 1
    await first.disconnect()

    failing = False
    seen.clear()
    second = client(mosquitto_broker, handler)  # same client id: the persistent session resumes
    await second.connect()
    await eventually(lambda: seen == [b"sos"], what="redelivery of the unacknowledged message")
    await asyncio.sleep(0.3)
    assert seen == [b"sos"], "the acknowledged message must not come back"
    await second.disconnect()
    await gateway.disconnect()


async def test_publish_future_completes_on_puback(mosquitto_broker: Broker) -> None:
    hub_client = client(mosquitto_broker, lambda *a: None)
    await hub_client.connect()
    await eventually(hub_client.connected.is_set)
    await asyncio.wait_for(hub_client.publish("out/x", b"{}", qos=1), 5)
    await hub_client.disconnect()


async def test_publish_when_disconnected_fails_fast(mosquitto_broker: Broker) -> None:
    hub_client = client(mosquitto_broker, lambda *a: None)
    future = hub_client.publish("out/x", b"{}", qos=1)
    assert future.done() and future.exception() is not None


async def test_pubacks_of_a_chunk_go_out_together_in_order(mosquitto_broker: Broker) -> None:
    """One write for a chunk's PUBACKs, in the PUBLISHes' order [MQTT-4.6.0-2], none for a failure.

    The first message's handler blocks the loop for a moment, so the rest are waiting in the
    socket when the read loop reads again and arrive as one chunk. Every handled message is
    acknowledged (the resumed session redelivers only the one whose handler failed) in far
    fewer writes than messages.
    """
    seen: list[bytes] = []
    writes: list[bytes] = []
    failing = True

    def handler(topic: str, payload: bytes, qos: int, retain: bool, dup: bool) -> None:
        seen.append(payload)
        if payload == b"0":
            time.sleep(0.3)  # the other 199 reach the socket meanwhile
        if failing and payload == b"150":
            raise OSError("store unavailable")

    first = client(mosquitto_broker, handler)
    await first.connect()
    await asyncio.wait_for(first.subscribed.wait(), 5)
    protocol = first._client._connection._protocol
    write_data = protocol.write_data

    def recorded(data: bytes) -> None:
        writes.append(bytes(data))
        write_data(data)

    protocol.write_data = recorded
    gateway = await publisher(mosquitto_broker)
    for i in range(200):
        gateway.publish("t/x", str(i).encode(), qos=1)
    await eventually(lambda: len(seen) == 200, what="all 200 messages")
    await asyncio.sleep(0.2)
    acks = [w for w in writes if w[:1] == b"\x40"]
    mids = [
        int.from_bytes(w[i + 2 : i + 4], "big") for w in acks for i in range(0, len(w), 4) if w[i] == 0x40
    ]
    assert all(len(w) % 4 == 0 for w in acks), "only whole PUBACKs in a batch"
    assert len(mids) == 199, "every handled message acknowledged, the failed one not"
    assert mids == sorted(mids), "PUBACKs in the order the PUBLISHes came"
    assert len(acks) < 50, f"{len(acks)} writes for 199 PUBACKs: not batched per chunk"
    await first.disconnect()

    failing = False
    seen.clear()
    second = client(mosquitto_broker, handler)
    await second.connect()
    await eventually(lambda: seen == [b"150"], what="redelivery of the one unacknowledged message")
    await asyncio.sleep(0.3)
    assert seen == [b"150"], "acknowledged messages must not come back"
    await second.disconnect()
    await gateway.disconnect()
