"""Deliver queued notifications (the store's outbox) and retry until each is acknowledged.

At-least-once: a notification is marked delivered only when the broker's PUBACK arrives;
until then it is retried with exponential backoff, also across restarts. Receivers drop
repeats by the notification ``id``. Failures are recorded on the notification row.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random

from hub.channels.webhook import OutcomeKind
from hub.clock import Clock, wall_delay
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
#: A dispatch round that failed (the store) waits up to this long before the next.
MAX_BACKOFF_S = 60.0


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
    ) -> None:
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

    def wake(self) -> None:
        self._wake.set()

    async def run(self) -> None:
        failures = 0
        while True:
            self._wake.clear()
            self.beat = asyncio.get_running_loop().time()
            try:
                pending = self._store.pending_notifications(now=self._clock.now())
                if pending:
                    await asyncio.gather(*(self._deliver(n) for n in pending))
                    failures = 0
                    continue
                next_at = self._store.next_retry_at()
            except Exception:
                # The store failed (locked, disk): what is pending stays pending; back off, go on.
                failures += 1
                delay = min(MAX_BACKOFF_S, IDLE_POLL_S * 2 ** (failures - 1))
                log.exception("notification dispatch round failed; next try in %.0f s", delay)
                await asyncio.sleep(delay)
                continue
            failures = 0
            timeout = (
                IDLE_POLL_S
                if next_at is None
                else max(0.05, min(IDLE_POLL_S, wall_delay(self._clock, next_at - self._clock.now())))
            )
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), timeout)

    async def _deliver(self, notification: Notification) -> None:
        if notification.channel in WEBHOOK_CHANNELS and self._webhooks is not None:
            outcome = await self._webhooks.deliver(
                notification.channel, notification.address, notification.payload
            )
            if outcome.ok:
                self._store.mark_delivered(notification.id, at=self._clock.now())
                self.delivered += 1
            elif outcome.kind is OutcomeKind.PERMANENT:
                # Retrying cannot help (bad URL, revoked robot): keep the reason for the console.
                log.error(
                    "notification %s to %s refused for good: %s",
                    notification.id,
                    notification.recipient,
                    outcome.error,
                )
                self._store.mark_abandoned(
                    notification.id, error=f"permanent: {outcome.error}", at=self._clock.now()
                )
                self.abandoned += 1
            else:
                self._fail(notification, outcome.error or f"HTTP {outcome.status}")
            return
        if notification.channel != "mqtt":
            self._fail(notification, f"no sender for channel {notification.channel!r}")
            return
        try:
            await asyncio.wait_for(
                self._mqtt.publish(notification.address, notification.payload, qos=1), ACK_TIMEOUT_S
            )
        except TimeoutError:
            self._fail(notification, "no PUBACK within timeout")
            return
        except Exception as exc:
            self._fail(notification, str(exc))
            return
        self._store.mark_delivered(notification.id, at=self._clock.now())
        self.delivered += 1

    def _fail(self, notification: Notification, error: str) -> None:
        self.failed_attempts += 1
        retry_at = self._clock.now() + backoff(notification.attempts, rng=self._rng)
        log.warning(
            "notification %s to %s not delivered (%s); retry #%d scheduled",
            notification.id,
            notification.recipient,
            error,
            notification.attempts + 1,
        )
        self._store.mark_failed(notification.id, error=error, retry_at=retry_at)
