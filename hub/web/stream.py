"""In-process fan-out of alert and case changes to live listeners (the console's server-sent events).

The bus keeps one shared log of the last :data:`QUEUE_SIZE` events, encoded once; each
listener reads it at its own pace. A listener that falls more than that behind (a browser tab
in the background, a stalled socket) is dropped — its ``on_drop`` aborts the connection, even
while a write to it waits for the socket — rather than allowed to slow the pipeline or hold
memory; the console then reconnects and reloads the list, so nothing is lost to the person.
:meth:`AlertBus.publish` runs on the SOS path (before the PUBACK): it appends and wakes the
waiting streams, whatever the number of listeners.

Must not import: ``hub.app``, ``hub.cli``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
from collections import deque
from collections.abc import Callable, Hashable
from dataclasses import dataclass, field
from typing import Any

import orjson

log = logging.getLogger(__name__)

#: Events a listener may fall behind before it is dropped (and how many events the log keeps:
#: listeners share them, so this bounds memory for all clients together, not per client).
QUEUE_SIZE = 256
#: The ASGI scope extension under which the HTTP server hands a request its connection's
#: transport (:mod:`hub.web.server`): the event stream aborts a dropped listener's socket.
TRANSPORT_EXTENSION = "linli.transport"
#: Kernel send buffer of an event-stream socket (Linux doubles it). Small, so a client that
#: stops reading stalls after a few dozen events instead of after megabytes: it is found and
#: dropped early, and until then it costs little. Other responses keep the kernel's default.
STREAM_SNDBUF = 32 * 1024
#: Largest write of a stream: what a slow client can leave in the hub's write buffer at once.
BATCH_BYTES = 16 * 1024
#: Listeners dropped at most per sweep (the rest at the next sweeps, or when they read).
DROP_PER_SWEEP = 16
#: Pacing: up to PACE_CLIENTS listeners each write at most once per PACE_S; more, less often.
PACE_S = 0.05
PACE_CLIENTS = 50


@dataclass(frozen=True, slots=True)
class StreamEvent:
    """One change, encoded once as a server-sent event for every listener."""

    kind: str
    message: dict[str, Any]
    frame: bytes
    #: Who may see it, per reader (a stream's access-table answer), worked out once per reader
    #: kind: a thousand consoles of the command centre ask the table once, not a thousand times.
    verdicts: dict[Hashable, bool] = field(default_factory=dict, compare=False)

    def visible_to(self, reader: Hashable, judge: Callable[[dict[str, Any]], bool]) -> bool:
        verdict = self.verdicts.get(reader)
        if verdict is None:
            verdict = self.verdicts[reader] = judge(self.message)
        return verdict

    @classmethod
    def of(cls, message: dict[str, Any]) -> StreamEvent:
        kind = str(message.get("type", "alert"))
        # One SSE event name per message type ("alert", "case"), so listeners pick theirs.
        frame = b"event: " + kind.encode() + b"\ndata: " + orjson.dumps(message) + b"\n\n"
        return cls(kind, message, frame)


def _nothing() -> None:
    pass


class Listener:
    """One subscriber: how far it has read in the bus's log; ``on_drop`` ends its connection."""

    __slots__ = ("_on_drop", "closed", "cursor", "dropped")

    def __init__(self, *, cursor: int, on_drop: Callable[[], None] = _nothing) -> None:
        self.cursor = cursor
        self._on_drop = on_drop
        self.dropped = False
        self.closed = False

    def drop(self) -> None:
        self.dropped = True
        try:
            self._on_drop()
        except Exception:  # a failing abort must not fail the publisher (the SOS path)
            log.exception("could not end a dropped event stream")


class AlertBus:
    """One shared log of the last :data:`QUEUE_SIZE` events; each listener reads it at its own pace.

    Publishing is O(1) on the SOS path (append, wake the waiting streams once); every
    ``queue_size // 8`` events a sweep drops up to :data:`DROP_PER_SWEEP` of the listeners that
    fell more than ``queue_size`` behind, so a stalled one is dropped soon after the bound even
    while it never reads, and many stalled at once are dropped a few at a time.
    """

    def __init__(self, *, queue_size: int = QUEUE_SIZE) -> None:
        self._listeners: set[Listener] = set()
        self._size = queue_size
        self._sweep_every = max(1, queue_size // 8)
        self._log: deque[StreamEvent] = deque(maxlen=queue_size)
        #: Events published so far: the log holds numbers ``seq - len(log)`` … ``seq - 1``.
        self._seq = 0
        self._changed = asyncio.Event()
        #: Listeners dropped for falling behind, since start (``/api/stats``, ``/metrics``).
        self.dropped = 0

    def subscribe(self, *, on_drop: Callable[[], None] = _nothing) -> Listener:
        listener = Listener(cursor=self._seq, on_drop=on_drop)
        self._listeners.add(listener)
        return listener

    def unsubscribe(self, listener: Listener) -> None:
        self._listeners.discard(listener)

    @property
    def listening(self) -> bool:
        """Somebody reads the stream: a publisher may skip building an event nobody would get."""
        return bool(self._listeners)

    def behind(self, listener: Listener) -> int:
        return self._seq - listener.cursor

    def publish(self, message: dict[str, Any]) -> None:
        if not self._listeners:
            return
        self._log.append(StreamEvent.of(message))
        self._seq += 1
        self._wake()
        if self._seq % self._sweep_every == 0:
            behind = [x for x in self._listeners if self._seq - x.cursor > self._size]
            # A few per sweep: each abort ends a connection and its request (~1 ms of loop time
            # in all), and a thousand at once would hold up the SOS path behind them. One that
            # waits costs nothing meanwhile: the log is shared, it holds no events of its own.
            for listener in behind[:DROP_PER_SWEEP]:
                self._drop(listener)

    def _wake(self) -> None:
        # A fresh event for the next wait: the woken streams hold the one that was set.
        changed, self._changed = self._changed, asyncio.Event()
        changed.set()

    def _drop(self, listener: Listener) -> None:
        self._listeners.discard(listener)
        self.dropped += 1
        listener.drop()

    async def next_batch(
        self, listener: Listener, *, idle_s: float, max_bytes: int = BATCH_BYTES
    ) -> list[StreamEvent]:
        """What ``listener`` has not read, up to ``max_bytes`` (at least one event); ``[]`` after
        ``idle_s`` seconds without any, or when it was dropped or closed."""
        if listener.cursor == self._seq and not (listener.closed or listener.dropped):
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(idle_s):
                    await self._changed.wait()
        if listener.closed or listener.dropped:
            return []
        if self._seq - listener.cursor > self._size:
            self._drop(listener)
            return []
        start = len(self._log) - (self._seq - listener.cursor)
        batch: list[StreamEvent] = []
        size = 0
        for index in range(start, len(self._log)):
            event = self._log[index]
            if batch and size + len(event.frame) > max_bytes:
                break
            batch.append(event)
            size += len(event.frame)
        listener.cursor += len(batch)
        return batch

    def close_all(self) -> None:
        for listener in self._listeners:
            listener.closed = True
        self._wake()

    def pace(self) -> float:
        """Seconds a stream waits after each write: more listeners, fewer writes each.

        Each write costs the event loop (the SOS path's loop) ~0.1 ms; pacing keeps the whole
        fan-out near :data:`PACE_CLIENTS` / :data:`PACE_S` writes a second however many
        consoles are open, batching what arrives meanwhile.
        """
        return PACE_S * max(1, math.ceil(len(self._listeners) / PACE_CLIENTS))

    def __len__(self) -> int:
        return len(self._listeners)
