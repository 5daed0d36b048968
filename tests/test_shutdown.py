"""Ordered shutdown (issue 12): stop intake → cancel the loops → flush → close the store.

``make bench`` once stopped a hub with a rule-state flush still scheduled: ``sqlite3.ProgrammingError:
Cannot operate on a closed database``. Here the hub stops while messages are in flight and a flush
is due; nothing may be logged as an error, and nothing the hub acknowledged may be lost (what it
did not acknowledge, the broker gives the next run).
"""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path
from typing import Any

import orjson
import pytest
import yaml

from hub.app import Hub
from hub.clock import ManualClock
from hub.config import ApiToken
from hub.web.api import token_hash
from tests.faults.harness import buttons, registry
from tests.helpers import TOKEN, eventually, hub_settings, publisher
from tests.support.servers import Broker

PRESS = 1_795_371_180.0
SOS = orjson.dumps({"action": "emergency", "battery": None, "linkquality": 90})


def errors(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [
        f"{r.name}: {r.getMessage()}"
        for r in caplog.records
        if r.levelno >= logging.ERROR or r.exc_info is not None
    ]


def settings(tmp_path: Path, broker: Broker, sos: list[str], doors: list[str]) -> Any:
    community = tmp_path / "many-buttons.yaml"
    community.write_text(yaml.safe_dump(registry(sos, doors), allow_unicode=True), encoding="utf-8")
    token = ApiToken(name="t", sha256=token_hash(TOKEN))
    return hub_settings(tmp_path, broker, community_file=str(community), api_tokens=[token])


async def test_a_hub_that_never_started_closes_with_a_flush_still_scheduled(
    tmp_path: Path, mosquitto_broker: Broker, caplog: pytest.LogCaptureFixture
) -> None:
    """The bench's path: messages handled without MQTT, then close, then the loop turns once more."""
    caplog.set_level(logging.INFO)
    hub = Hub(
        settings=settings(tmp_path, mosquitto_broker, ["sos-1"], ["door-1"]), clock=ManualClock(start=PRESS)
    )
    hub.pipeline.handle("zigbee2mqtt/door-1", b'{"contact": false, "battery": 90}', 1, False)
    hub.pipeline.handle("zigbee2mqtt/sos-1", SOS, 1, False)
    hub.rule_runtime.state_changed()  # a flush is due on the next loop turn
    hub.close()
    hub.close()  # idempotent
    await asyncio.sleep(0.05)  # the scheduled flush runs now, after the store closed
    assert errors(caplog) == []
    again = Hub(
        settings=settings(tmp_path, mosquitto_broker, ["sos-1"], ["door-1"]), clock=ManualClock(start=PRESS)
    )
    try:
        assert [a.device_id for a in again.store.alerts()] == ["sos-1"]  # recorded before the close
    finally:
        again.close()


async def test_stopping_while_messages_are_in_flight_logs_no_error_and_loses_nothing_acknowledged(
    tmp_path: Path, mosquitto_broker: Broker, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    sos, doors = buttons(60), [f"door-{n}" for n in range(5)]
    config = settings(tmp_path, mosquitto_broker, sos, doors)
    gateway = await publisher(mosquitto_broker, client_id="shutdown-gateway")
    try:
        hub = Hub(settings=config, clock=ManualClock(start=PRESS))
        await hub.start()
        stopped = False
        try:
            for n, button in enumerate(sos):
                gateway.publish(f"zigbee2mqtt/{button}", SOS, qos=1)
                door = doors[n % len(doors)]
                gateway.publish(
                    f"zigbee2mqtt/{door}", orjson.dumps({"contact": n % 2 == 0, "battery": 90}), qos=1
                )
            await eventually(lambda: hub.pipeline.stats.messages >= 20, what="some messages handled")
            hub.rule_runtime.state_changed()  # and a rule-state flush due on the next turn
            await hub.stop()
            stopped = True
            handled_first = hub.pipeline.stats.messages
        finally:
            if not stopped:
                await hub.stop()
        assert errors(caplog) == []
        assert handled_first >= 20
        # The next run gets from the broker what the first did not acknowledge.
        async with Hub(settings=config, clock=ManualClock(start=PRESS)) as second:
            await eventually(
                lambda: len({a.device_id for a in second.store.alerts()}) == len(sos),
                within=30,
                what="every press recorded",
            )
            alerts = [a.device_id for a in second.store.alerts()]
            assert sorted(alerts) == sorted(sos)  # each press once: none lost, none twice
            await eventually(lambda: len(second.cases.case_ids()) == len(sos), what="a case per press")
        assert errors(caplog) == []
    finally:
        await gateway.disconnect()
