"""Two ingest lanes, one handling: a message that arrives on both is handled once.

Why two lanes: on one MQTT connection a press is delivered only after everything the broker
queued before it, so behind a backlog of sensor traffic an SOS waited seconds
(docs/benchmarks.md). The priority lane is a second connection subscribed only to the topics
of SOS-capable devices (:mod:`hub.ingest.priority`); the broker delivers those messages on it
at once, while the bulk lane, subscribed to the families' roots, gets its own copy later.

How a copy is recognised: by its digest (topic + payload), counted, in a bounded window. The
lane that takes a message first handles it and *owes* the other lane one copy of that digest;
the other lane skips exactly as many copies as it is owed. Counting, not a set, is what keeps
two presses with identical bytes (a button sends the same JSON every time) two presses: each
is delivered once per lane, so each handled copy pays for one skipped copy and no more.

After a restart the window is empty, yet the bulk lane may still get its copy of a message
the priority lane handled before the crash (the bulk backlog the broker kept). During the first
minutes after the start, a digest neither lane saw yet is therefore handled *on the bulk lane*
as a possible redelivery (``dup``): the store's idempotency guard
(``hub.storage.store._same_occurrence``) drops it when the active alert recorded that very
message, and then nothing is owed, so a real new press with the same bytes arriving on the
priority lane is still handled. Never on the priority lane: it is never behind, so a message
that comes there without the broker's DUP is new — and a button sends the same bytes on every
press, so an elder's second press within those minutes, while the first press's case is open,
was taken for the first and dropped (found in review). The bulk lane hashes only messages on
shared topics: the rest of its traffic costs one set lookup.

A retained message (RETAIN set: a replay of the topic's last message because a lane just
subscribed [MQTT-3.3.1-8]) is no copy of a live one: each lane gets its own on each subscribe,
not one per publish. It is handled on the lane it comes on (a press in it is skipped, a state
is the same state) and neither pays nor is paid a copy: a lane newly subscribed got only the
retained replay of a press the other lane still had queued live, and the replay's debt made
that lane skip the live press (found in review, on Mosquitto: the press was lost).

One more copy can come after a crash: the previous run handled a press on the priority lane
but was killed before the broker got that lane's PUBACK, so the broker sends the priority
lane its copy again (DUP) *and* the bulk lane still has its own queued (without DUP when
it was never sent). The same after a reconnect without a restart. No copy the store
recognises is owed to the other lane; and when it recognises one on the priority lane, the bulk
lane's next copy of that digest is checked by the store too, however late it comes behind
the backlog. Never the other way round: a press on the priority lane after a
recognised bulk copy may be a real new press and must not wait for a store check; and a
bulk copy checked by mistake is at worst recognised and owed nothing, so the priority
lane's copy of a new press is still handled.
"""

from __future__ import annotations

import hashlib
from collections import OrderedDict
from collections.abc import Callable, Iterable
from enum import StrEnum

from hub.clock import Clock
from hub.mqtt.client import MessageHandler

#: After the start, this long a digest neither lane has seen may be a copy of what the
#: previous run handled (the bulk backlog the broker kept): the store checks it.
COLD_S = 900.0
#: The window: how many digests of the shared topics are remembered (≈ 200 bytes each). By
#: count, not time: under overload the bulk lane may be minutes behind, and on a replayed
#: stream (the benchmark's pinned clock) hours of hub time pass in seconds.
MAX_ENTRIES = 50_000


class Lane(StrEnum):
    BULK = "bulk"
    PRIORITY = "priority"


def _other(lane: Lane) -> Lane:
    return Lane.PRIORITY if lane is Lane.BULK else Lane.BULK


def _add_one(counts: dict[bytes, int], key: bytes) -> None:
    counts[key] = counts.get(key, 0) + 1


def _take_one(counts: dict[bytes, int], key: bytes) -> bool:
    """Use up one of ``key``'s count (the entry goes at zero); ``False`` if it had none."""
    count = counts.get(key, 0)
    if count == 1:
        del counts[key]
    elif count:
        counts[key] = count - 1
    return count > 0


class LaneGuard:
    """Handles each message of the shared topics once, whichever lane brings it first."""

    def __init__(
        self,
        *,
        handler: MessageHandler,
        clock: Clock,
        repeats: Callable[[], int],
        topics: Iterable[str] = (),
        cold_s: float = COLD_S,
        max_entries: int = MAX_ENTRIES,
    ) -> None:
        self._handler = handler
        self._clock = clock
        #: The store's count of signals it dropped as an already recorded occurrence.
        self._repeats = repeats
        self._max = max_entries
        #: Topics only grow during a run: a topic dropped from the lane may still have copies owed.
        self._topics: set[str] = set(topics)
        self._owed: dict[Lane, dict[bytes, int]] = {Lane.BULK: {}, Lane.PRIORITY: {}}
        #: Digests handled since the start, oldest first: the window, and what is not "cold".
        self._seen: OrderedDict[bytes, None] = OrderedDict()
        #: Bulk copies to check in the store: their priority twins were recognised after the start.
        self._recheck: dict[bytes, int] = {}
        #: Copies of what the previous run handled arrive within COLD_S of the start;
        #: later, a digest neither lane saw is simply a new message (handled at once, no store check).
        self._cold_until = clock.now() + cold_s
        self.skipped = 0
        #: Copies the broker did not flag (DUP) that the store recognised during the cold start.
        self.cold_copies = 0
        self.handled = {Lane.BULK: 0, Lane.PRIORITY: 0}

    @property
    def topics(self) -> frozenset[str]:
        return frozenset(self._topics)

    def share(self, topics: Iterable[str]) -> None:
        """Topics now also on the priority lane (call before subscribing it to them)."""
        self._topics.update(topics)

    def bulk(self, topic: str, payload: bytes, qos: int, retain: bool, dup: bool = False) -> None:
        if topic not in self._topics:
            self._handler(topic, payload, qos, retain, dup)
        elif retain:
            self._replay(Lane.BULK, topic, payload, qos, dup)
        else:
            self._take(Lane.BULK, topic, payload, (qos, retain, dup))

    def priority(self, topic: str, payload: bytes, qos: int, retain: bool, dup: bool = False) -> None:
        if retain:
            self._replay(Lane.PRIORITY, topic, payload, qos, dup)
        else:
            self._take(Lane.PRIORITY, topic, payload, (qos, retain, dup))

    def _replay(self, lane: Lane, topic: str, payload: bytes, qos: int, dup: bool) -> None:
        """A retained replay: handled on its lane, owing and owed nothing (module docstring)."""
        self._handler(topic, payload, qos, True, dup)
        self.handled[lane] += 1

    def _take(self, lane: Lane, topic: str, payload: bytes, flags: tuple[int, bool, bool]) -> None:
        qos, retain, dup = flags
        key = hashlib.blake2b(topic.encode() + b"\0" + payload, digest_size=16).digest()
        if _take_one(self._owed[lane], key):
            # The other lane handled this message already: acknowledge this copy, change nothing.
            self.skipped += 1
            return
        cold = False
        if lane is Lane.BULK:
            cold = _take_one(self._recheck, key) or (
                key not in self._seen and self._clock.now() < self._cold_until
            )
        before = self._repeats()
        try:
            self._handler(topic, payload, qos, retain, dup or cold)
        except BaseException as exc:
            if cold and not dup:
                # The hub's retry handles it without this guard: it must still be asked as a
                # possible copy (found in review: retried as new, a backlog copy of a press the
                # previous run recorded counted a second press). Read by HubMqttClient.
                exc.dup = True  # type: ignore[attr-defined]
            raise
        finally:
            # Also when the handler raised: the hub's retry queue handles the message later (it
            # lets only undecided QoS 0 ones go, past its bounds), so the other lane's copy is owed.
            self._seen[key] = None
            self._seen.move_to_end(key)
            self._forget_oldest()
            if (dup or cold) and self._repeats() > before:
                # A copy of what was handled before (the store recognised it): nothing is owed.
                self.cold_copies += cold and not dup
                if lane is Lane.PRIORITY:
                    _add_one(self._recheck, key)
            else:
                _add_one(self._owed[_other(lane)], key)
        self.handled[lane] += 1

    def _forget_oldest(self) -> None:
        seen = self._seen
        while len(seen) > self._max:
            key, _ = seen.popitem(last=False)
            self._owed[Lane.BULK].pop(key, None)
            self._owed[Lane.PRIORITY].pop(key, None)
            self._recheck.pop(key, None)
