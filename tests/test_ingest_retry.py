"""A message the hub could not record is retried by the hub itself, in order, and acknowledged only then."""

from __future__ import annotations

import asyncio
import contextlib
import sqlite3
from pathlib import Path
from typing import Any

import orjson
import pytest

from hub.app import Hub
from hub.clock import ManualClock
from hub.errors import NotStoredError
from hub.ingest import retry
from hub.mqtt.client import Unhandled
from tests.helpers import SOS_BUTTON, Phone, eventually, hub_settings, publisher
from tests.support.samples import SAMPLES
from tests.support.servers import Broker

PRESS = 1_795_371_180.0  # 2026-11-23 02:13:00 Asia/Shanghai: the night shift
SOS = (SAMPLES / "zigbee2mqtt" / "tuya_ts0215a_sos_emergency.json").read_bytes()
DOOR_OPEN = orjson.dumps({"contact": False, "battery": 90})


class DiskFull:
    """Makes the store's alert writes fail like a full disk until ``freed``."""

    def __init__(self, hub: Hub, monkeypatch: pytest.MonkeyPatch) -> None:
        self.full = True
        self.attempts = 0
        original = hub.store.upsert_alert

        def upsert(*args: Any, **kwargs: Any) -> Any:
            self.attempts += 1
            if self.full:
                raise sqlite3.OperationalError("database or disk is full")
            return original(*args, **kwargs)

        monkeypatch.setattr(hub.store, "upsert_alert", upsert)


async def test_presses_that_failed_are_recorded_once_the_disk_is_freed(
    tmp_path: Path, mosquitto_broker: Broker, monkeypatch: pytest.MonkeyPatch
) -> None:
    clock = ManualClock(start=PRESS)
    centre = Phone(mosquitto_broker, client_id="centre")
    await centre.start("linli/command-centre/notifications")
    gateway = await publisher(mosquitto_broker)
    async with Hub(settings=hub_settings(tmp_path, mosquitto_broker), clock=clock) as hub:
        disk = DiskFull(hub, monkeypatch)
        gateway.publish(f"zigbee2mqtt/{SOS_BUTTON}", SOS, qos=1)
        await eventually(lambda: hub.redelivery.depth == 1, what="the press held for retry")
        # A second press of the same button queues behind the first (a device's order is kept) …
        gateway.publish(f"zigbee2mqtt/{SOS_BUTTON}", SOS, qos=1)
        await eventually(lambda: hub.redelivery.depth == 2, what="the second press queued behind")
        # … while other devices go on.
        gateway.publish("zigbee2mqtt/door-1", DOOR_OPEN, qos=1)
        await eventually(lambda: hub.states.get("door-1") is not None, what="the door, not held")
        await eventually(lambda: disk.attempts >= 3, what="the hub retrying by itself")
        assert hub.store.alerts() == []
        # Held long enough: the command centre hears it over MQTT (the store is what failed).
        clock.advance(31)
        (alarm,) = await eventually(
            lambda: [b for b in centre.on("linli/command-centre/notifications") if b["type"] == "hub.stuck"],
            what="hub.stuck to the command centre",
        )
        assert alarm["held_messages"] == 2 and "disk is full" in alarm["detail"]
        disk.full = False
        await eventually(lambda: hub.redelivery.depth == 0, within=15, what="the held presses recorded")
        (alert,) = hub.store.alerts()
        assert alert.rule == "elderly.sos" and alert.status == "active"
        assert len(hub.cases.case_ids()) == 1
        await eventually(
            lambda: any(
                b["type"] == "hub.recovered" for b in centre.on("linli/command-centre/notifications")
            ),
            what="hub.recovered",
        )
    await gateway.disconnect()
    await centre.stop()


async def test_a_backward_clock_step_does_not_delay_the_stuck_alarm(monkeypatch: pytest.MonkeyPatch) -> None:
    """The store refuses a press, then NTP steps the wall clock back an hour: ``hub.stuck``
    (the command centre's alarm over MQTT) still comes after the stuck time held, not an hour
    later. It used to measure the wait on the wall clock only."""
    monkeypatch.setattr(retry, "STUCK_AFTER_S", 0.3)
    clock = ManualClock(start=PRESS)
    stuck: list[int] = []

    def refuse(topic: str, payload: bytes, qos: int, retain: bool, dup: bool) -> None:
        raise sqlite3.OperationalError("database or disk is full")

    queue = retry.Redelivery(handle=refuse, clock=clock, on_stuck=lambda held, *_: stuck.append(held))
    runner = asyncio.create_task(queue.run())
    try:
        queue.hold(Unhandled(f"zigbee2mqtt/{SOS_BUTTON}", SOS, 1, False, None, RuntimeError("disk full")))
        clock.set(PRESS - 3600)  # NTP steps the clock back
        await eventually(lambda: stuck, within=5, what="hub.stuck despite the backward step")
        assert stuck == [1]
    finally:
        runner.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await runner


def test_held_qos0_messages_are_bounded_keeping_the_retried_one_and_the_newest(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Found in review: while the store refused writes a stuck topic held 3 000 QoS 0 messages
    (the broker's in-flight window bounds QoS 1 only). QoS 1 is never dropped here, nor what the
    rules decided (a timer's signals, held with a resume), and the total holds across topics."""
    monkeypatch.setattr(retry, "QOS0_PER_TOPIC", 5)
    monkeypatch.setattr(retry, "QOS0_TOTAL", 8)
    store_full = True
    handled: list[bytes] = []
    resumed: list[int] = []

    def handle(topic: str, payload: bytes, qos: int, retain: bool, dup: bool) -> None:
        if store_full:
            raise sqlite3.OperationalError("database or disk is full")
        handled.append(payload)

    def refused(_: str) -> Exception:
        return RuntimeError("disk full")

    queue = retry.Redelivery(handle=handle, clock=ManualClock(start=PRESS))
    for i in range(20):
        queue.hold(Unhandled("t/a", b"a%d" % i, 0, False, None, refused("a")))
    for i in range(10):
        queue.hold(Unhandled("t/b", b"b%d" % i, 1, False, lambda: None, refused("b")))

    def resume(i: int) -> None:
        if store_full:
            raise sqlite3.OperationalError("database or disk is full")
        resumed.append(i)

    for i in range(12):  # a timer round's decided signals: never dropped
        decided = NotStoredError(resume=lambda i=i: resume(i), cause=OSError("disk full"))
        queue.hold(Unhandled("(rule timers)", b"", 0, False, None, decided))
    assert (queue.depth, queue.dropped) == (5 + 10 + 12, 15)
    for i in range(6):  # past the total: its own older give way, the head stays
        queue.hold(Unhandled("t/c", b"c%d" % i, 0, False, None, refused("c")))
    for i in range(3):  # over the total with nothing of their own to let go: they give way
        queue.hold(Unhandled(f"t/d{i}", b"d", 0, False, None, refused("d")))
    assert queue.depth == 5 + 10 + 12 + 3 and queue.dropped == 15 + 3 + 3
    assert queue.retry_now() == 0
    store_full = False
    assert queue.retry_now() == 30 and queue.depth == 0
    assert [p for p in handled if p.startswith(b"a")] == [b"a0", b"a16", b"a17", b"a18", b"a19"]
    assert [p for p in handled if p.startswith(b"b")] == [b"b%d" % i for i in range(10)]
    assert [p for p in handled if p.startswith(b"c")] == [b"c0", b"c4", b"c5"]
    assert resumed == list(range(12)) and not [p for p in handled if p.startswith(b"d")]
    queue.hold(Unhandled("t/e", b"e", 0, False, None, refused("e")))  # the counts came back to 0
    assert queue.depth == 1 and queue.dropped == 21
