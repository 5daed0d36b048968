"""A start behind a persistent session's backlog: the SUBACK comes late, and that is no error.

Mosquitto delivers what it queued for a persistent session on CONNECT, before it answers the
hub's SUBSCRIBE, so after a long downtime the SUBACK is behind the whole backlog. The hub used
to log "no SUBACK from the broker" as an error then, while the messages were arriving.
"""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path

import gmqtt
import orjson
import pytest
from gmqtt.mqtt.constants import MQTTv311

from hub import app
from hub.app import Hub
from hub.clock import ManualClock
from tests.helpers import eventually, hub_settings, publish_queued
from tests.support.servers import Broker

START = 1_795_371_180.0
BACKLOG = 5_000


async def queue_for_the_hub(broker: Broker, client_id: str) -> None:
    """BACKLOG door reports queued at the broker for the hub's persistent bulk session."""
    session = gmqtt.Client(client_id, clean_session=False)
    session.set_auth_credentials(broker.username, broker.password)
    subscribed = asyncio.Event()
    session.on_subscribe = lambda *args: subscribed.set()
    await session.connect(broker.host, broker.port, version=MQTTv311)
    session.subscribe([gmqtt.Subscription("zigbee2mqtt/#", qos=1)])
    await asyncio.wait_for(subscribed.wait(), 5)
    await session.disconnect()
    doors = [("zigbee2mqtt/door-1", orjson.dumps({"contact": True, "seq": i})) for i in range(BACKLOG)]
    await publish_queued(broker, doors)


async def test_a_suback_behind_the_backlog_is_reported_as_such_not_as_an_error(
    tmp_path: Path,
    mosquitto_broker: Broker,
    caplog: pytest.LogCaptureFixture,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    settings = hub_settings(tmp_path, mosquitto_broker)
    await queue_for_the_hub(mosquitto_broker, settings.mqtt.client_id)
    # Far below the time the backlog takes, so the wait ends before the SUBACK on any machine.
    monkeypatch.setattr(app, "SUBSCRIBE_TIMEOUT_S", 0.001)
    caplog.set_level(logging.INFO, logger="hub.app")
    hub = Hub(settings=settings, clock=ManualClock(start=START))
    await hub.start()
    try:
        await eventually(hub.mqtt.subscribed.is_set, within=60, what="the SUBACK")
        assert hub.mqtt.received >= BACKLOG
    finally:
        await hub.stop()
    said = [(r.levelno, r.getMessage()) for r in caplog.records if r.name == "hub.app"]
    assert not [m for level, m in said if "SUBACK" in m and level >= logging.ERROR], said
    assert [m for level, m in said if m.startswith("SUBACK not in after") and level == logging.INFO], said


def test_no_message_and_no_suback_is_an_error(
    tmp_path: Path, mosquitto_broker: Broker, caplog: pytest.LogCaptureFixture
) -> None:
    hub = Hub(settings=hub_settings(tmp_path, mosquitto_broker), clock=ManualClock(start=START))
    try:
        hub._no_suback_yet(0)
    finally:
        hub.close()
    assert [r for r in caplog.records if r.levelno == logging.ERROR and "no SUBACK" in r.getMessage()]
