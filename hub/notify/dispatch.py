"""Deliver queued notifications (the store's outbox) and retry until each is acknowledged.

At-least-once: a notification is marked delivered only when the broker's PUBACK arrives;
until then it is retried with exponential backoff, also across restarts. Receivers drop
repeats by the notification ``id``. Failures are recorded on the notification row.

A lost MQTT connection is not a failed attempt: while the outbound connection is down (a
restart, a broker outage) MQTT notifications wait for it and go out the moment it is back,
instead of after a backoff that grew during the outage (an escalation step due 4 s after a
restart arrived 4–6 s late that way). The loop survives a store that cannot be written
(disk full, database locked): a notification the broker acknowledged but the store could
not mark is remembered and marked later, not sent again.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import random
import time
from collections.abc import Callable

from hub.channels.webhook import OutcomeKind
from hub.clock import Clock, Deadlines, wall_delay
from hub.mqtt.client import HubMqttClient
from hub.notify.webhooks import WEBHOOK_CHANNELS, WebhookSender
from hub.records import Notification
from hub.storage.store import Store

log = logging.getLogger(__name__)

ACK_TIMEOUT_S = 10.0
BACKOFF_BASE_S = 1.0
BACKOFF_MAX_S = 300.0
#: With nothing pending, look again this often anyway (a cheap safety net).
IDLE_POLL_S = 5.0
#: Deliveries in flight at once (each its own task).
MAX_IN_FLIGHT = 200
#: A round that failed (the store) is tried again after this long, doubling up to the maximum.
ROUND_RETRY_FIRST_S = 0.5
ROUND_RETRY_MAX_S = 30.0


def backoff(attempts: int, *, rng: random.Random) -> float:
    """Exponential backoff with full jitter, capped."""
    ceiling = min(BACKOFF_MAX_S, BACKOFF_BASE_S * (2 ** min(attempts, 16)))
    return float(ceiling / 2 + rng.uniform(0, ceiling / 2))


class Dispatcher:
    def __init__(
        self,
        *,
        store: Store,
        mqtt: HubMqttClient,
        clock: Clock,
        webhooks: WebhookSender | None = None,
        rng: random.Random | None = None,
        scope: Callable[[], frozenset[str] | None] = lambda: None,
        on_published: Callable[[Notification], None] = lambda _: None,
        monotonic: Callable[[], float] | None = time.monotonic,
    ) -> None:
        #: When each failed notification is tried again, also on the monotonic clock: a step of
        #: the wall clock back must not hold up the retry of an SOS notice (``None``: a manual clock).
        self._retries: Deadlines[str] = Deadlines(clock=clock, monotonic=monotonic)
        #: The share whose stored retry times were last read into ``_retries`` (a 1-tuple; ``None``: not yet).
        self._tracked_scope: tuple[frozenset[str] | None] | None = None
        #: Told when an MQTT notification was written to the connection (the SOS trace).
        self._on_published = on_published
        #: Whose notifications this hub delivers (``None``: all; a cluster node: its communities').
        self._scope = scope
        self._webhooks = webhooks
        self._store = store
        self._mqtt = mqtt
        self._clock = clock
        self._rng = rng or random.Random()  # noqa: S311 - jitter, not security
        self._wake = asyncio.Event()
        #: When the loop last started a round (event-loop monotonic time): readiness checks it beats.
        self.beat: float | None = None
        self.delivered = 0
        self.abandoned = 0
        self.failed_attempts = 0
        #: Acknowledged by the broker, not yet marked in the store (this loop turn's, or the
        #: store refused): id → when.
        self._unmarked: dict[str, float] = {}
        #: When this loop turn's acknowledgements were taken (``None``: none yet this turn).
        self._mark_at: float | None = None
        #: Failed (or refused for good) while the store could not record it: id → event-loop time
        #: before which it is not tried again. Without this the row still read as due, and the
        #: loop re-sent it at once, thousands of times a second (found in review).
        self._held_off: dict[str, float] = {}
        #: One task per notification being delivered: a slow acknowledgement (or webhook) holds
        #: up only its own notification, never a new SOS behind it.
        self._in_flight: dict[str, asyncio.Task[None]] = {}
        #: The loop runs: wake() may send at once (a dispatcher never started only queues).
        self._running = False

    def wake(self) -> None:
        """New rows in the outbox (called right after their commit): MQTT ones leave now.

        Why not only the loop: every hop to another task waits for whatever the event loop
        runs first, under load a turn of bulk-lane pipeline work (tens of ms); from case filed
        to published took 197 ms p50 / 843 ms p99 at 10 k msg/s that way (docs/benchmarks.md,
        "SOS latency split"). The publish itself is a synchronous write; only waiting for the
        PUBACK needs a task. Never raises into the caller (the ingest handler): what cannot go
        now, the loop's next round sends.
        """
        self._wake.set()
        if not self._running or not self._mqtt.connected.is_set():
            return
        try:
            self._launch(self._pending())
        except Exception:
            log.exception("notifications not sent at once; the dispatcher's loop sends them")

    async def run(self) -> None:
        failures = 0
        self._running = True
        try:
            while True:
                try:
                    idle = await self._round()
                except Exception:
                    failures += 1
                    delay = min(ROUND_RETRY_MAX_S, ROUND_RETRY_FIRST_S * 2 ** (failures - 1))
                    log.exception("notification round failed; retrying in %.1f s", delay)
                    await asyncio.sleep(delay)
                    continue
                failures = 0
                if idle:
                    await self._idle()
        finally:
            self._running = False
            # Cancel and await every delivery still in flight (what was not acknowledged stays
            # pending in the outbox and goes out after the restart).
            tasks = list(self._in_flight.values())
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            # What the broker acknowledged is recorded now, not re-sent after the restart
            # (this turn's marks may not have run yet).
            with contextlib.suppress(Exception):
                self._mark_remembered()

    async def _round(self) -> bool:
        """Deliver what is pending now; ``True`` when nothing was (then the loop waits)."""
        self._wake.clear()
        self.beat = asyncio.get_running_loop().time()
        self._mark_remembered()
        pending = self._pending()
        if not pending:
            return True
        if not self._mqtt.connected.is_set() and any(n.channel == "mqtt" for n in pending):
            # Not an attempt: wait for the connection (others, e.g. webhooks, go meanwhile).
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(IDLE_POLL_S):
                    await self._mqtt.connected.wait()
        self._launch(pending)
        return True

    def _pending(self) -> list[Notification]:
        room = MAX_IN_FLIGHT - len(self._in_flight)
        if room <= 0:
            return []
        busy = self._unmarked.keys() | self._in_flight.keys()
        if self._held_off:
            now = asyncio.get_running_loop().time()
            for note_id, until in list(self._held_off.items()):
                if until <= now:
                    del self._held_off[note_id]
            busy |= self._held_off.keys()
        scope = self._scope()
        due = [
            n
            for n in self._store.pending_notifications(
                now=self._clock.now(), limit=room + len(busy), communities=scope
            )
            if n.id not in busy
        ][:room]
        if len(due) < room:
            due += self._fallen_due(skip=busy | {n.id for n in due}, scope=scope)[: room - len(due)]
        return due

    def _fallen_due(self, *, skip: set[str], scope: frozenset[str] | None) -> list[Notification]:
        """Retries due by the monotonic clock though not (yet) by the wall clock: it stepped back."""
        self._track_stored(scope)
        fallen = [note_id for note_id in self._retries.fallen_due() if note_id not in skip]
        if not fallen:
            return []
        found = self._store.undelivered_notifications(fallen, communities=scope)
        for gone in set(fallen).difference(n.id for n in found):
            self._retries.forget(gone)  # delivered or abandoned meanwhile, or no longer this node's
        return found

    def _track_stored(self, scope: frozenset[str] | None) -> None:
        """Track the retries stored by an earlier process (or node): at start, and when a share changes."""
        if self._tracked_scope != (scope,):
            self._retries.adopt(self._store.retry_times(communities=scope))
            self._tracked_scope = (scope,)

    def _launch(self, pending: list[Notification]) -> None:
        """MQTT ones are written to the connection now; a task per notification awaits the outcome."""
        for notification in pending:
            if notification.id in self._in_flight or notification.id in self._unmarked:
                continue  # launched meanwhile (by wake() while the loop waited for the connection)
            task = asyncio.create_task(
                self._deliver(notification, self._send(notification)),
                name=f"linli-notify-{notification.id[:8]}",
            )
            self._in_flight[notification.id] = task
            task.add_done_callback(functools.partial(self._finished, notification.id))

    def _send(self, notification: Notification) -> asyncio.Future[None] | None:
        """Publish an MQTT notification at once; the future completes with the broker's PUBACK."""
        if notification.channel != "mqtt" or not self._mqtt.connected.is_set():
            return None
        try:
            acked = self._mqtt.publish(notification.address, notification.payload, qos=1)
        except Exception as exc:  # the connection broke under the write: a failed attempt
            acked = asyncio.get_running_loop().create_future()
            acked.set_exception(exc)
            return acked
        self._on_published(notification)
        return acked

    def _finished(self, notification_id: str, task: asyncio.Task[None]) -> None:
        self._in_flight.pop(notification_id, None)
        if not task.cancelled() and task.exception() is not None:
            # Stays pending in the outbox: the next round tries it again.
            log.error("delivering notification %s failed: %r", notification_id, task.exception())
        self._wake.set()  # room for the next, and a retry may be due

    def _mark_remembered(self) -> None:
        """Record the delivered notifications not marked yet, one statement per delivery time."""
        by_time: dict[float, list[str]] = {}
        for note_id, at in self._unmarked.items():
            by_time.setdefault(at, []).append(note_id)
        for at, note_ids in by_time.items():
            self._store.mark_delivered_all(note_ids, at=at)
            for note_id in note_ids:
                del self._unmarked[note_id]

    def _delivered(self, notification: Notification) -> None:
        """Acknowledged: marked at the end of this loop turn, with the others acknowledged in it.

        The broker's PUBACKs come in reads of many: a case's notices (worker, duty officer,
        guardians) are acknowledged together. One statement marks them all, where one each
        was a round trip (and on PostgreSQL a commit) the event loop waited for. Until then,
        and while the store refuses, the notification is remembered and never sent again.
        """
        self.delivered += 1
        self._retries.forget(notification.id)
        if self._mark_at is None:
            self._mark_at = self._clock.now()
            asyncio.get_running_loop().call_soon(self._mark_turn)
        self._unmarked[notification.id] = self._mark_at

    def _mark_turn(self) -> None:
        self._mark_at = None
        try:
            self._mark_remembered()
        except Exception:
            # Sent, but not recorded as sent: remembered, marked by a later round, not re-sent.
            log.exception(
                "%d notification(s) delivered; the store could not record them yet", len(self._unmarked)
            )

    async def _idle(self) -> None:
        next_at = self._store.next_retry_at(communities=self._scope())
        waits = [IDLE_POLL_S]
        if next_at is not None:
            waits.append(wall_delay(self._clock, next_at - self._clock.now()))
        # After a step back the wall-clock wait is the step too long: the retry is due by the
        # monotonic clock then.
        if (monotonic := self._retries.next_in()) is not None:
            waits.append(monotonic)
        timeout = max(0.05, min(waits))
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(timeout):
                await self._wake.wait()

    async def _deliver(self, notification: Notification, acked: asyncio.Future[None] | None) -> None:
        if notification.channel in WEBHOOK_CHANNELS and self._webhooks is not None:
            outcome = await self._webhooks.deliver(
                notification.channel, notification.address, notification.payload
            )
            if outcome.ok:
                self._delivered(notification)
            elif outcome.kind is OutcomeKind.PERMANENT:
                # Retrying cannot help (bad URL, revoked robot): keep the reason for the console.
                log.error(
                    "notification %s to %s refused for good: %s",
                    notification.id,
                    notification.recipient,
                    outcome.error,
                )
                self._retries.forget(notification.id)
                try:
                    self._store.mark_abandoned(
                        notification.id, error=f"permanent: {outcome.error}", at=self._clock.now()
                    )
                except Exception:
                    # Not re-sent to a robot that refused it for good: held off until the hub
                    # restarts, and counted once it is recorded (review).
                    log.exception(
                        "notification %s refused for good; the store could not record it", notification.id
                    )
                    self._hold_off(notification.id, float("inf"))
                    return
                self.abandoned += 1
            else:
                self._fail(notification, outcome.error or f"HTTP {outcome.status}")
            return
        if notification.channel != "mqtt":
            self._fail(notification, f"no sender for channel {notification.channel!r}")
            return
        if acked is None:
            return  # still down after the wait: not an attempt, the next round tries again
        try:
            await asyncio.wait_for(acked, ACK_TIMEOUT_S)
        except TimeoutError:
            self._fail(notification, "no PUBACK within timeout")
            return
        except Exception as exc:
            self._fail(notification, str(exc))
            return
        self._delivered(notification)

    def _fail(self, notification: Notification, error: str) -> None:
        self.failed_attempts += 1
        now = self._clock.now()
        retry_at = now + backoff(notification.attempts, rng=self._rng)
        log.warning(
            "notification %s to %s not delivered (%s); retry #%d scheduled",
            notification.id,
            notification.recipient,
            error,
            notification.attempts + 1,
        )
        # Also counted on the monotonic clock from now: a step back before ``retry_at`` must not
        # hold the retry up. (Should the store refuse the row, its old next attempt is due anyway.)
        self._retries.set(notification.id, retry_at, now=now)
        try:
            self._store.mark_failed(notification.id, error=error, retry_at=retry_at)
        except Exception:
            log.exception("notification %s not delivered; the store could not record it", notification.id)
            self._hold_off(notification.id, retry_at - now)

    def _hold_off(self, notification_id: str, seconds: float) -> None:
        self._held_off[notification_id] = asyncio.get_running_loop().time() + max(seconds, BACKOFF_BASE_S)
