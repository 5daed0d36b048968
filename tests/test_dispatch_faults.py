"""The dispatcher under faults: a lost connection is no failed attempt; a store that refuses is survived."""

from __future__ import annotations

import asyncio
import contextlib
import sqlite3
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from hub.clock import ManualClock
from hub.ingest.alerts import record_signal
from hub.notify.dispatch import Dispatcher
from hub.records import Recipient
from hub.storage.store import Store
from tests.helpers import eventually
from tests.test_store import SUBJECT, T0, WORKER, signal


@contextlib.asynccontextmanager
async def running(dispatcher: Dispatcher, store: Store) -> AsyncIterator[asyncio.Task[None]]:
    """The dispatcher's loop for the block; then cancelled and awaited, and the store closed."""
    task = asyncio.create_task(dispatcher.run(), name="test-dispatcher")
    try:
        yield task
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        store.close()


class FakeMqtt:
    """The outbound connection: acknowledges every publish while ``connected``."""

    def __init__(self) -> None:
        self.connected = asyncio.Event()
        self.sent: list[bytes] = []

    def publish(
        self, topic: str, payload: bytes, *, qos: int = 1, retain: bool = False
    ) -> asyncio.Future[None]:
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self.sent.append(payload)
        future.set_result(None)
        return future


async def test_a_notification_queued_while_mqtt_is_down_goes_out_once_it_is_back(tmp_path: Path) -> None:
    store = Store(path=tmp_path / "s.sqlite3")
    mqtt = FakeMqtt()
    dispatcher = Dispatcher(store=store, mqtt=mqtt, clock=ManualClock(start=T0))  # type: ignore[arg-type]
    async with running(dispatcher, store):
        record_signal(store, signal(), SUBJECT, [WORKER])
        dispatcher.wake()
        await asyncio.sleep(0.3)
        # Down: nothing is attempted, nothing backs off.
        assert mqtt.sent == [] and dispatcher.failed_attempts == 0
        mqtt.connected.set()
        await eventually(lambda: len(mqtt.sent) == 1, within=2, what="delivery right after the reconnect")
        assert store.pending_notifications(now=T0) == []


async def test_a_store_that_cannot_mark_delivered_neither_stops_the_loop_nor_resends(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = Store(path=tmp_path / "s.sqlite3")
    mqtt = FakeMqtt()
    mqtt.connected.set()
    dispatcher = Dispatcher(store=store, mqtt=mqtt, clock=ManualClock(start=T0))  # type: ignore[arg-type]
    full = True
    original = store.mark_delivered_all

    def mark_delivered_all(*args: Any, **kwargs: Any) -> None:
        if full:
            raise sqlite3.OperationalError("database or disk is full")
        original(*args, **kwargs)

    monkeypatch.setattr(store, "mark_delivered_all", mark_delivered_all)
    async with running(dispatcher, store) as task:
        record_signal(store, signal(), SUBJECT, [WORKER])
        dispatcher.wake()
        await eventually(lambda: len(mqtt.sent) == 1, within=2, what="the first delivery")
        await asyncio.sleep(1.5)  # rounds go on while the store refuses
        assert len(mqtt.sent) == 1, "acknowledged once, never sent again"
        assert not task.done()
        full = False
        await eventually(
            lambda: not store.pending_notifications(now=T0), within=5, what="marked once the store takes it"
        )
        # A notification queued later goes out too: the loop is alive.
        record_signal(store, signal(subject="btn-2"), SUBJECT, [WORKER])
        dispatcher.wake()
        await eventually(lambda: len(mqtt.sent) == 2, within=5, what="the next notification")


async def test_notices_acknowledged_in_one_turn_are_marked_in_one_statement(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A case's notices are acknowledged together: one statement marks them (one round trip
    and commit on PostgreSQL, where one each made the event loop wait for each), at one time."""
    store = Store(path=tmp_path / "s.sqlite3")
    mqtt = FakeMqtt()
    mqtt.connected.set()
    dispatcher = Dispatcher(store=store, mqtt=mqtt, clock=ManualClock(start=T0))  # type: ignore[arg-type]
    marks: list[tuple[list[str], float]] = []
    original = store.mark_delivered_all

    def mark_delivered_all(ids: list[str], *, at: float) -> None:
        marks.append((sorted(ids), at))
        original(ids, at=at)

    monkeypatch.setattr(store, "mark_delivered_all", mark_delivered_all)
    duty = Recipient("duty", "mqtt", "linli/110105001001/workers/duty/notifications")
    async with running(dispatcher, store):
        change = record_signal(store, signal(), SUBJECT, [WORKER, duty])
        assert change is not None and len(change.notifications) == 2
        dispatcher.wake()
        await eventually(lambda: not store.pending_notifications(now=T0), within=2, what="both marked")
        assert len(mqtt.sent) == 2
        assert marks == [(sorted(n.id for n in change.notifications), T0)]
        delivered = store.db.execute("SELECT delivered_at, attempts FROM notifications").fetchall()
        assert delivered == [(T0, 1), (T0, 1)]


async def test_a_batch_marked_in_part_counts_each_delivery_once(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Disk full: 600 acknowledged notifications wait to be marked (one delivery time). Space
    comes back for one statement, not two: the first chunk of 500 is marked, the second fails,
    and the whole group stays remembered. Found in review: every later try marked the first
    500 again, ``attempts + 1`` each time, for notifications that went out once."""
    store = Store(path=tmp_path / "s.sqlite3")
    mqtt = FakeMqtt()
    mqtt.connected.set()
    dispatcher = Dispatcher(store=store, mqtt=mqtt, clock=ManualClock(start=T0))  # type: ignore[arg-type]
    engine = store._engine
    original = engine.execute
    mode = {"refuse": True, "partial": 0}

    def execute(sql: str, params: Any = ()) -> Any:
        if sql.startswith("UPDATE notifications SET delivered_at"):
            if mode["refuse"]:
                raise sqlite3.OperationalError("database or disk is full")
            if mode["partial"] > 0:
                mode["partial"] -= 1
                if mode["partial"] == 0:  # the second chunk of the try
                    raise sqlite3.OperationalError("database or disk is full")
        return original(sql, params)

    monkeypatch.setattr(engine, "execute", execute)
    people = [
        Recipient(f"p{i}", "mqtt", f"linli/110105001001/workers/p{i}/notifications") for i in range(600)
    ]
    record_signal(store, signal(), SUBJECT, people)
    async with running(dispatcher, store):

        async def all_sent() -> None:
            while len(mqtt.sent) < 600:
                dispatcher.wake()
                await asyncio.sleep(0.01)

        await asyncio.wait_for(all_sent(), 5)
        assert len(dispatcher._unmarked) == 600
        mode.update(refuse=False, partial=2)  # one try: chunk 1 lands, chunk 2 does not
        dispatcher.wake()
        await eventually(
            lambda: not store.pending_notifications(now=T0, limit=1000), within=40, what="marked"
        )
        assert len(mqtt.sent) == 600  # nothing sent twice
        attempts = sorted({row[0] for row in store.db.execute("SELECT attempts FROM notifications")})
        assert attempts == [1], f"attempts recorded: {attempts} (each was delivered in one attempt)"
