"""The dispatcher sends at wake(): an SOS notification does not wait for the event loop's next turns."""

from __future__ import annotations

import asyncio
from pathlib import Path

from hub.clock import ManualClock
from hub.ingest.alerts import record_signal
from hub.notify.dispatch import Dispatcher
from hub.records import Notification
from hub.storage.store import Store
from tests.helpers import eventually
from tests.test_dispatch_faults import FakeMqtt
from tests.test_store import SUBJECT, T0, WORKER, signal


async def test_wake_writes_the_notification_before_returning_and_it_is_marked_once_acknowledged(
    tmp_path: Path,
) -> None:
    store = Store(path=tmp_path / "s.sqlite3")
    mqtt = FakeMqtt()
    mqtt.connected.set()
    published: list[Notification] = []
    dispatcher = Dispatcher(
        store=store,
        mqtt=mqtt,  # type: ignore[arg-type]
        clock=ManualClock(start=T0),
        on_published=published.append,
    )
    task = asyncio.create_task(dispatcher.run(), name="test-dispatcher")
    try:
        await asyncio.sleep(0.05)  # the loop is idle, waiting to be woken
        record_signal(store, signal(), SUBJECT, [WORKER])
        dispatcher.wake()
        # No await in between: the write happened inside the caller's turn (the ingest handler's).
        assert len(mqtt.sent) == 1
        assert [n.address for n in published] == [WORKER.address]
        await eventually(lambda: store.pending_notifications(now=T0) == [], within=2, what="marked delivered")
        await asyncio.sleep(0.2)
        assert len(mqtt.sent) == 1 and dispatcher.delivered == 1
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        store.close()


async def test_a_dispatcher_not_running_only_queues(tmp_path: Path) -> None:
    store = Store(path=tmp_path / "s.sqlite3")
    mqtt = FakeMqtt()
    mqtt.connected.set()
    dispatcher = Dispatcher(store=store, mqtt=mqtt, clock=ManualClock(start=T0))  # type: ignore[arg-type]
    try:
        record_signal(store, signal(), SUBJECT, [WORKER])
        dispatcher.wake()
        assert mqtt.sent == []
        assert len(store.pending_notifications(now=T0)) == 1
    finally:
        store.close()


async def test_a_wake_while_the_loop_waits_for_the_connection_sends_once(tmp_path: Path) -> None:
    store = Store(path=tmp_path / "s.sqlite3")
    mqtt = FakeMqtt()
    dispatcher = Dispatcher(store=store, mqtt=mqtt, clock=ManualClock(start=T0))  # type: ignore[arg-type]
    task = asyncio.create_task(dispatcher.run(), name="test-dispatcher")
    try:
        record_signal(store, signal(), SUBJECT, [WORKER])
        dispatcher.wake()  # down: queued, and the loop's round waits for the connection with it
        await asyncio.sleep(0.2)
        assert mqtt.sent == []
        mqtt.connected.set()
        dispatcher.wake()  # sends it now; the waiting round must not send it again
        assert len(mqtt.sent) == 1
        await eventually(lambda: store.pending_notifications(now=T0) == [], within=2, what="marked delivered")
        await asyncio.sleep(0.3)
        assert len(mqtt.sent) == 1 and dispatcher.delivered == 1
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        store.close()
