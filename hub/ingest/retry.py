"""Messages the hub could not handle are retried by the hub itself, in order per topic.

Why: a message whose handling failed (disk full, the database locked or gone) is not
acknowledged, and MQTT 3.1.1 redelivers an unacknowledged message only when the session
resumes [MQTT-4.4.0-1]. Without a retry of our own, twenty SOS presses that failed during
a disk-full minute would wait for the next reconnect — in practice, the next restart.

So the MQTT client hands such a message here with the means to send its PUBACK later. The
queue retries the oldest message of each topic with exponential backoff; later messages of
the same topic queue behind it (a device's messages stay in order: a door that opened and
closed must not be seen closing first), other topics go on. The PUBACK is sent only after
the message was handled, never before. QoS 1 is bounded by the broker's in-flight window
(Mosquitto's ``max_inflight_messages``): the broker sends no further QoS 1 message while that
many are unacknowledged, so what waits here is what the broker would resend. QoS 0 (Zigbee2MQTT's
and Tasmota's default) has no such bound: found in review, a stuck topic held 3 000 of them,
and a flood during a disk-full hour would grow the hub until it was killed, every held press
with it. So at most :data:`QOS0_PER_TOPIC` per topic and :data:`QOS0_TOTAL` in all wait: past
that the oldest QoS 0 message after the one being retried gives way (a device's newest state
is kept); over the total with none of its own older, the new one gives way. Only messages the
rules have not decided may: one held with a ``resume`` (an alert decided, a timer's signals) is
never dropped. Drops are counted in :attr:`Redelivery.dropped` and logged. Publish SOS buttons at
QoS 1.

A message that keeps failing is reported loudly: each retry failure is logged, readiness
reports the queue (:attr:`Redelivery.oldest_since`), and ``on_stuck`` is called (the app
tells the command centre over MQTT, which does not need the store).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import OrderedDict, deque
from collections.abc import Callable
from dataclasses import dataclass

from hub.clock import Clock
from hub.errors import FencedError, NotStoredError
from hub.mqtt.client import Unhandled

log = logging.getLogger(__name__)

#: First retry after this long, doubling up to the maximum.
RETRY_FIRST_S = 0.2
RETRY_MAX_S = 10.0
#: A message still unhandled after this long makes the hub report itself stuck.
STUCK_AFTER_S = 30.0
#: QoS 0 messages held per topic and in all (see the module docstring).
QOS0_PER_TOPIC = 100
QOS0_TOTAL = 10_000

Handle = Callable[[str, bytes, int, bool, bool], None]
Ack = Callable[[], None]


@dataclass(slots=True)
class Held:
    topic: str
    payload: bytes
    qos: int
    retain: bool
    ack: Ack | None
    since: float
    error: str
    #: Set when the rules already decided: store that instead of handling the message again.
    resume: Callable[[], None] | None = None
    #: When it first failed on the monotonic clock: a wall-clock step back must not delay ``hub.stuck``.
    since_monotonic: float = 0.0
    #: QoS 0 and undecided: may give way under the bounds (see the module docstring).
    droppable: bool = False
    #: The broker's DUP flag, kept for the retry (found in review: a resent press held through
    #: a store outage was retried as new and counted twice).
    dup: bool = False


class Redelivery:
    """The hub's own retry queue for unhandled messages (one FIFO per topic)."""

    def __init__(
        self,
        *,
        handle: Handle,
        clock: Clock,
        on_stuck: Callable[[int, float, str], None] = lambda *_: None,
        on_recovered: Callable[[], None] = lambda: None,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self._handle = handle
        self._clock = clock
        self._monotonic = monotonic
        self._on_stuck = on_stuck
        self._on_recovered = on_recovered
        self._queues: OrderedDict[str, deque[Held]] = OrderedDict()
        #: Droppable (QoS 0, undecided) messages held now, in all and per topic, and those that
        #: gave way since start.
        self._qos0 = 0
        self._qos0_of: dict[str, int] = {}
        self.dropped = 0
        self._wake = asyncio.Event()
        self._stuck_reported = False
        self.retried = 0
        self.failures = 0

    def holds(self, topic: str) -> bool:
        """Messages of ``topic`` are waiting: a new one must queue behind them (hot path: a dict lookup)."""
        return bool(self._queues) and topic in self._queues

    def hold(self, message: Unhandled) -> None:
        """Keep a message the handler could not take (or that must wait its turn)."""
        topic = message.topic
        queue = self._queues.setdefault(topic, deque())
        cause = message.error.cause if isinstance(message.error, NotStoredError) else message.error
        resume = message.error.resume if isinstance(message.error, NotStoredError) else None
        # Only an MQTT QoS 0 message the rules have not decided may give way: one with a resume
        # (the rules decided: an alert, a timer's signals) is owed to nobody else (review).
        droppable = message.qos == 0 and message.ack is None and resume is None
        if droppable and self._qos0 >= QOS0_TOTAL and not self._give_way(topic, queue):
            self._dropped(topic)  # over the total, with none of its own older to let go: this one
            if not queue:
                del self._queues[topic]
            return
        queue.append(
            Held(
                topic,
                message.payload,
                message.qos,
                message.retain,
                message.ack,
                self._clock.now(),
                f"{type(cause).__name__}: {cause}",
                resume,
                self._monotonic(),
                droppable,
                message.dup,
            )
        )
        if droppable:
            self._counted(topic, 1)
            if self._qos0_of[topic] > QOS0_PER_TOPIC:
                self._give_way(topic, queue)
        self._wake.set()

    def _counted(self, topic: str, change: int) -> None:
        self._qos0 += change
        left = self._qos0_of.get(topic, 0) + change
        if left > 0:
            self._qos0_of[topic] = left
        else:
            self._qos0_of.pop(topic, None)

    def _give_way(self, topic: str, queue: deque[Held]) -> bool:
        """Drop the oldest droppable message of ``queue`` after its head (the one being retried)."""
        if self._qos0_of.get(topic, 0) == 0:
            return False
        for index in range(1, len(queue)):
            if queue[index].droppable:
                del queue[index]
                self._counted(topic, -1)
                self._dropped(topic)
                return True
        return False

    def _dropped(self, topic: str) -> None:
        self.dropped += 1
        if self.dropped % 1000 == 1:
            log.error(
                "%d held QoS 0 message(s) dropped so far (the store refuses writes): the latest on %r;"
                " publish SOS buttons at QoS 1",
                self.dropped,
                topic,
            )

    @property
    def depth(self) -> int:
        return sum(len(q) for q in self._queues.values())

    @property
    def oldest_since(self) -> float | None:
        """When the oldest waiting message first failed (``None`` when nothing waits)."""
        return min((q[0].since for q in self._queues.values() if q), default=None)

    def retry_now(self) -> int:
        """One pass: handle the head of every topic until one fails; returns messages handled."""
        done = 0
        for topic in list(self._queues):
            queue = self._queues[topic]
            while queue:
                held = queue[0]
                try:
                    if held.resume is not None:
                        held.resume()
                    else:
                        self._handle(held.topic, held.payload, held.qos, held.retain, held.dup)
                except Exception as exc:
                    self.failures += 1
                    cause: BaseException = exc
                    if isinstance(exc, NotStoredError):
                        held.resume, cause = exc.resume, exc.cause  # resume from where this try stopped
                        if held.droppable:  # decided now: owed like any decision
                            held.droppable = False
                            self._counted(topic, -1)
                    held.error = f"{type(cause).__name__}: {cause}"
                    if isinstance(cause, FencedError):
                        # A cluster node lost this message's community meanwhile: never
                        # acknowledged here, the broker gives it (and the device's later ones,
                        # queued behind it) to the community's new owner.
                        log.warning("dropping %d held message(s) on %r: %s", len(queue), topic, held.error)
                        self._counted(topic, -sum(1 for gone in queue if gone.droppable))
                        queue.clear()
                        break
                    log.error(
                        "message on %r still not handled (since %.0f s): %s",
                        topic,
                        self._clock.now() - held.since,
                        held.error,
                    )
                    break
                queue.popleft()
                if held.droppable:
                    self._counted(topic, -1)
                self.retried += 1
                done += 1
                if held.ack is not None:
                    held.ack()
            if not queue:
                del self._queues[topic]
        return done

    async def run(self) -> None:
        """The retry loop (a named task of the app): backs off while nothing succeeds."""
        delay = RETRY_FIRST_S
        while True:
            if not self._queues:
                self._wake.clear()
                await self._wake.wait()
                delay = RETRY_FIRST_S
                continue
            await asyncio.sleep(delay)
            progressed = self.retry_now() > 0
            delay = RETRY_FIRST_S if progressed else min(RETRY_MAX_S, delay * 2)
            self._report()

    def _report(self) -> None:
        since = self.oldest_since
        if since is None:
            if self._stuck_reported:
                self._stuck_reported = False
                log.warning("all held messages handled; the hub is taking messages again")
                self._on_recovered()
            return
        # The longer of the two: the hub's clock (a test's manual clock moves it) and the
        # monotonic one (after NTP stepped the wall clock back an hour, the wall-clock wait
        # was negative and the command centre heard of held presses an hour late).
        held_for = min(q[0].since_monotonic for q in self._queues.values() if q)
        waited = max(self._clock.now() - since, self._monotonic() - held_for)
        if waited >= STUCK_AFTER_S and not self._stuck_reported:
            self._stuck_reported = True
            error = next(iter(self._queues.values()))[0].error
            log.critical("%d message(s) not handled for %.0f s: %s", self.depth, waited, error)
            self._on_stuck(self.depth, waited, error)
