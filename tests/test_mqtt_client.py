"""PUBACK only after the message is handled: a message the hub failed to record is redelivered."""

from __future__ import annotations

import asyncio

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
