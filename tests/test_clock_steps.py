"""The wall clock steps back and forward (issue 12): nothing twice, nothing early, nothing lost.

The hub's clock is stepped by hand (:class:`~hub.clock.ManualClock`, set backwards as an NTP
step would) while escalations and absence timers are pending; the fault suite does the same to
a running hub with libfaketime. Deadlines are wall-clock times (they must survive a restart);
while the hub runs they are also tracked on the monotonic clock, which a step does not move,
and fire by whichever comes first. A hub given no monotonic clock (a bare manual clock) has
only the wall-clock times: there a step *due* after a backward step of Δ comes Δ later, once.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
from collections.abc import AsyncIterator
from pathlib import Path

from hub.app import Hub
from hub.clock import Deadlines, ManualClock
from hub.ingest.alerts import record_signal
from hub.notify.dispatch import Dispatcher
from hub.storage.store import Store
from tests.helpers import SOS_BUTTON, eventually, hub_settings
from tests.support.samples import SAMPLES
from tests.support.servers import Broker
from tests.test_dispatch_faults import FakeMqtt
from tests.test_store import SUBJECT, WORKER, signal

T0 = 1_795_371_180.0  # 2026-11-23 02:13 Asia/Shanghai: the night worker is on duty
SOS = (SAMPLES / "zigbee2mqtt" / "tuya_ts0215a_sos_emergency.json").read_bytes()
#: Never connected: these tests drive the hub's stages by hand.
NO_BROKER = Broker("127.0.0.1", 9, "linli", "unused")
HOUR = 3600.0


class Monotonic:
    """CLOCK_MONOTONIC by hand: it moves only forward, and a step of the wall clock leaves it alone."""

    def __init__(self) -> None:
        self.value = 1_000.0

    def __call__(self) -> float:
        return self.value

    def advance(self, seconds: float) -> None:
        assert seconds >= 0
        self.value += seconds


class Stepping:
    """The hub's wall clock and the monotonic clock: time passes on both; a step moves the wall only."""

    def __init__(self, *, start: float) -> None:
        self.wall = ManualClock(start=start)
        self.monotonic = Monotonic()

    def pass_(self, seconds: float) -> None:
        self.wall.advance(seconds)
        self.monotonic.advance(seconds)

    def step(self, seconds: float) -> None:
        self.wall.set(self.wall.now() + seconds)


def offline(hub: Hub) -> list[str]:
    return [a.device_id for a in hub.store.alerts(limit=1000) if a.rule == "device.offline"]


def steps(hub: Hub) -> int:
    return sum(hub.casework.steps_sent.values())


def sent_rows(hub: Hub) -> int:
    return int(hub.store.execute("SELECT count(*) FROM case_steps_sent").fetchone()[0])


def run(hub: Hub) -> None:
    """One round of each timer loop at the clock's current time."""
    hub.casework.tick()
    hub.run_due_rules()


def timeline(hub: Hub, case_id: str) -> list[float]:
    return [
        float(ts)
        for (ts,) in hub.store.execute(
            "SELECT ts FROM case_timeline WHERE case_id = ? ORDER BY seq", (case_id,)
        ).fetchall()
    ]


def test_a_deadline_is_due_by_whichever_clock_comes_first() -> None:
    clocks = Stepping(start=T0)
    deadlines: Deadlines[str] = Deadlines(clock=clocks.wall, monotonic=clocks.monotonic)
    deadlines.set("a", T0 + 60)
    assert deadlines.fallen_due() == {} and deadlines.next_in() == 60
    clocks.pass_(10)
    clocks.step(-HOUR)
    assert deadlines.now("a") == T0 + 10  # the deadline's reckoning, not the stepped clock's
    assert deadlines.now("untracked") == T0 + 10 - HOUR
    clocks.pass_(50)
    assert deadlines.fallen_due() == {"a": T0 + 60} and deadlines.next_in() is None
    deadlines.set("a", T0 + 120, now=deadlines.now("a"))  # worked: the next one, from its own time
    assert deadlines.fallen_due() == {} and deadlines.next_in() == 60
    clocks.step(2 * HOUR)  # forward: the wall clock comes first, and now() is the clock's
    assert deadlines.now("a") == T0 + 60 + HOUR
    deadlines.set("a", None)
    assert "a" not in deadlines and deadlines.next_in() is None
    # Two fall due a moment apart; a round hands out the first, the second falls due during it.
    deadlines.set("b", clocks.wall.now() + 10)
    deadlines.set("c", clocks.wall.now() + 10.001)
    clocks.pass_(10)
    assert deadlines.fallen_due() == {"b": clocks.wall.now()}
    clocks.pass_(0.01)  # the round ran meanwhile
    assert deadlines.next_in() == 0, "the second is due now: its loop must not sleep past it"
    assert set(deadlines.fallen_due()) == {"b", "c"} and deadlines.next_in() is None
    inert: Deadlines[str] = Deadlines(clock=clocks.wall, monotonic=None)
    inert.set("a", T0)
    assert "a" not in inert and inert.fallen_due() == {} and inert.now("a") == clocks.wall.now()


def test_a_backward_step_does_not_delay_a_pending_escalation_step(tmp_path: Path) -> None:
    """SOS chain: +60 s next worker and grid leader, +180 s the command-centre supervisor.

    The wall clock goes back an hour between the two steps; the second still goes out 180 s
    after the dispatch as the monotonic clock counts them, once, and not again when the wall
    clock reaches its stored time an hour later.
    """
    clocks = Stepping(start=T0)
    hub = Hub(settings=hub_settings(tmp_path, NO_BROKER), clock=clocks.wall, monotonic=clocks.monotonic)
    try:
        hub.pipeline.handle(f"zigbee2mqtt/{SOS_BUTTON}", SOS, 1, False)
        (case_id,) = hub.cases.case_ids()
        dispatched, rows = steps(hub), sent_rows(hub)
        clocks.pass_(61)
        run(hub)
        first = steps(hub)
        assert first > dispatched  # step 1 at +60 s
        clocks.step(-HOUR)  # NTP: the clock was an hour ahead
        clocks.pass_(118)  # +179 s since the dispatch
        run(hub)
        assert steps(hub) == first, "nothing early"
        wait = hub.casework.monotonic_wait()  # how long the casework loop sleeps at most now
        clocks.pass_(2)  # +181 s
        run(hub)
        second = steps(hub)
        assert second > first, "step 2 on time, not an hour late"
        assert wait is not None and 0 < wait <= 1.0 + 1e-6, wait
        assert sent_rows(hub) == rows + 2
        for _ in range(13):  # the hour the wall clock lives again, and past step 2's stored time
            clocks.pass_(300)
            run(hub)
        assert steps(hub) == second and sent_rows(hub) == rows + 2, "each step once"
        stamps = timeline(hub, case_id)
        assert stamps == sorted(stamps), "the timeline never goes backwards"
    finally:
        hub.close()


def test_deadlines_stored_before_a_restart_are_tracked_too(tmp_path: Path) -> None:
    """The hub restarts between the two steps; the clock steps back after the restart."""
    settings = hub_settings(tmp_path, NO_BROKER)
    first_run = Hub(settings=settings, clock=ManualClock(start=T0))
    try:
        first_run.pipeline.handle(f"zigbee2mqtt/{SOS_BUTTON}", SOS, 1, False)
        first_run.clock.set(T0 + 61)  # type: ignore[attr-defined]
        run(first_run)
        rows = sent_rows(first_run)  # the dispatch and step 1
    finally:
        first_run.close()
    clocks = Stepping(start=T0 + 62)
    hub = Hub(settings=settings, clock=clocks.wall, monotonic=clocks.monotonic)
    try:
        run(hub)  # the first round reads the stored deadline (step 2 at +180 s)
        assert sent_rows(hub) == rows
        clocks.step(-HOUR)
        clocks.pass_(117)  # +179 s
        run(hub)
        assert sent_rows(hub) == rows, "nothing early"
        clocks.pass_(2)
        run(hub)
        assert sent_rows(hub) == rows + 1, "step 2 on time, not an hour late"
        clocks.pass_(HOUR)
        run(hub)
        assert sent_rows(hub) == rows + 1
    finally:
        hub.close()


def test_a_forward_step_fires_once_and_the_monotonic_clock_fires_nothing_again(tmp_path: Path) -> None:
    clocks = Stepping(start=T0)
    hub = Hub(settings=hub_settings(tmp_path, NO_BROKER), clock=clocks.wall, monotonic=clocks.monotonic)
    try:
        hub.pipeline.handle(f"zigbee2mqtt/{SOS_BUTTON}", SOS, 1, False)
        dispatched, rows = steps(hub), sent_rows(hub)
        clocks.pass_(1)
        clocks.step(HOUR)  # both escalation steps fall due at once by the wall clock
        run(hub)
        fired, fired_rows = steps(hub), sent_rows(hub)
        assert fired > dispatched and fired_rows >= rows + 2
        for _ in range(10):  # the monotonic clock passes the steps' own due times (+60 s, +180 s)
            clocks.pass_(30)
            run(hub)
        assert steps(hub) == fired and sent_rows(hub) == fired_rows
    finally:
        hub.close()


@contextlib.asynccontextmanager
async def first_delivery_failed(
    tmp_path: Path,
) -> AsyncIterator[tuple[Stepping, Store, FlakyMqtt, Dispatcher]]:
    """A running dispatcher on stepping clocks whose first delivery of an SOS notice failed."""
    clocks = Stepping(start=T0)
    store = Store(path=tmp_path / "s.sqlite3")
    mqtt = FlakyMqtt(failures=1)
    mqtt.connected.set()
    dispatcher = Dispatcher(
        store=store,
        mqtt=mqtt,  # type: ignore[arg-type]
        clock=clocks.wall,
        monotonic=clocks.monotonic,
        rng=random.Random(7),
    )
    task = asyncio.create_task(dispatcher.run(), name="test-dispatcher")
    try:
        record_signal(store, signal(ts=T0), SUBJECT, [WORKER])
        dispatcher.wake()
        await eventually(lambda: dispatcher.failed_attempts == 1, within=2, what="the failed attempt")
        yield clocks, store, mqtt, dispatcher
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        store.close()


async def test_a_backward_step_does_not_delay_the_retry_of_a_failed_notification(tmp_path: Path) -> None:
    """The SOS notice's first delivery fails; the clock steps back an hour before its retry is due."""
    async with first_delivery_failed(tmp_path) as (clocks, store, mqtt, dispatcher):
        clocks.step(-HOUR)
        dispatcher.wake()
        await asyncio.sleep(0.2)
        assert len(mqtt.sent) == 1, "not retried before its backoff (0.5-1 s) passed"
        clocks.pass_(1.0)  # the backoff has passed on the monotonic clock; the wall is an hour short
        dispatcher.wake()
        await eventually(lambda: dispatcher.delivered == 1, within=2, what="the retry, on time")
        assert store.pending_notifications(now=T0 + HOUR) == []
        for _ in range(3):  # later rounds, and the wall clock passing the stored retry time
            clocks.pass_(HOUR / 2)
            dispatcher.wake()
            await asyncio.sleep(0.1)
        assert len(mqtt.sent) == 2 and dispatcher.delivered == 1, "retried once, delivered once"


async def test_a_forward_step_retries_a_failed_notification_once(tmp_path: Path) -> None:
    async with first_delivery_failed(tmp_path) as (clocks, _store, mqtt, dispatcher):
        clocks.step(HOUR)
        dispatcher.wake()
        await eventually(lambda: dispatcher.delivered == 1, within=2, what="the retry, due by the wall clock")
        clocks.pass_(5.0)  # its monotonic due time passes too
        dispatcher.wake()
        await asyncio.sleep(0.2)
        assert len(mqtt.sent) == 2 and dispatcher.delivered == 1


class FlakyMqtt(FakeMqtt):
    """The first ``failures`` publishes break (the connection dropped under the write), the rest go."""

    def __init__(self, *, failures: int) -> None:
        super().__init__()
        self.failures = failures

    def publish(
        self, topic: str, payload: bytes, *, qos: int = 1, retain: bool = False
    ) -> asyncio.Future[None]:
        if len(self.sent) < self.failures:
            self.sent.append(payload)
            raise ConnectionError("connection lost")
        return super().publish(topic, payload, qos=qos, retain=retain)


def test_a_backward_step_neither_resends_nor_loses_an_escalation(tmp_path: Path) -> None:
    """SOS chain: +60 s next worker and grid leader, +180 s the command-centre supervisor.

    A hub with no monotonic clock (a bare manual clock): the step after the back step comes
    when the wall clock reaches it, an hour late, but once.
    """
    clock = ManualClock(start=T0)
    hub = Hub(settings=hub_settings(tmp_path, NO_BROKER), clock=clock)
    try:
        hub.pipeline.handle(f"zigbee2mqtt/{SOS_BUTTON}", SOS, 1, False)
        (case_id,) = hub.cases.case_ids()
        dispatched, rows = steps(hub), sent_rows(hub)
        assert dispatched >= 1 and rows >= 1
        clock.set(T0 + 61)
        run(hub)
        first = steps(hub)
        assert first > dispatched  # step 1 at +60 s
        clock.set(T0 + 61 - HOUR)  # back an hour
        for minutes in range(0, 61, 5):  # the hour the wall clock lives again
            clock.set(T0 + 61 - HOUR + minutes * 60)
            run(hub)
            assert steps(hub) == first, minutes  # step 1 not again; step 2 not yet (its due time is +180 s)
        clock.set(T0 + 180)
        run(hub)
        second = steps(hub)
        assert second > first  # step 2, not lost: due at +180 s on the wall clock
        clock.set(T0 + 400)
        run(hub)
        assert steps(hub) == second
        assert sent_rows(hub) == rows + 2  # each step recorded once
        timeline = [
            float(ts)
            for (ts,) in hub.store.execute(
                "SELECT ts FROM case_timeline WHERE case_id = ? ORDER BY seq", (case_id,)
            ).fetchall()
        ]
        assert len(timeline) >= 3
    finally:
        hub.close()


def test_a_forward_step_fires_everything_due_exactly_once(tmp_path: Path) -> None:
    clock = ManualClock(start=T0)
    hub = Hub(settings=hub_settings(tmp_path, NO_BROKER), clock=clock)
    try:
        hub.pipeline.handle(f"zigbee2mqtt/{SOS_BUTTON}", SOS, 1, False)
        dispatched, rows = steps(hub), sent_rows(hub)
        clock.set(T0 + 3 * HOUR)  # both escalation steps and door-1's absence (2 h) fall due at once
        run(hub)
        fired, fired_rows = steps(hub), sent_rows(hub)
        assert fired > dispatched and fired_rows >= rows + 2  # both escalation steps (and reminders due)
        assert offline(hub).count("door-1") == 1
        for _ in range(3):
            run(hub)
        clock.set(T0 + 3 * HOUR + 1)
        run(hub)
        assert steps(hub) == fired and sent_rows(hub) == fired_rows
        assert offline(hub).count("door-1") == 1
    finally:
        hub.close()


def test_no_absence_alert_early_after_a_backward_step(tmp_path: Path) -> None:
    """door-1 (heartbeat 1 h) is offline after 2 h of silence — never sooner, whatever the clock did."""
    clock = ManualClock(start=T0)
    hub = Hub(settings=hub_settings(tmp_path, NO_BROKER), clock=clock)
    try:
        hub.pipeline.handle("zigbee2mqtt/door-1", b'{"contact": true, "battery": 90}', 1, False)
        heard = clock.now()
        clock.set(heard + 600)
        run(hub)
        clock.set(heard + 600 - HOUR)  # back an hour: door-1 spoke "in the future"
        run(hub)
        clock.set(heard + 2 * HOUR - 5)  # 5 s short of 2 h after it was heard
        run(hub)
        assert offline(hub) == []
        # It speaks again while the clock is back: its silence counts from then, not from before.
        clock.set(heard - HOUR)
        hub.pipeline.handle("zigbee2mqtt/door-1", b'{"contact": false, "battery": 90}', 1, False)
        clock.set(heard - HOUR + 2 * HOUR - 5)
        run(hub)
        assert offline(hub) == []
        clock.set(heard + 2 * HOUR + 5)
        run(hub)
        assert offline(hub).count("door-1") == 1
        run(hub)
        assert offline(hub).count("door-1") == 1
    finally:
        hub.close()
