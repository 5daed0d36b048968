"""In-process fan-out of alert and case changes to live listeners (the console's server-sent events).

Each listener has a bounded queue. A listener that falls :data:`QUEUE_SIZE` events behind
(a browser tab in the background, a stalled socket) is dropped — its ``on_drop`` aborts the
connection, even while a write to it waits for the socket — rather than allowed to slow the
pipeline or hold memory; the console then reconnects and reloads the list, so nothing is lost
to the person. :meth:`AlertBus.publish` runs on the SOS path (before the PUBACK), so it only
encodes the event once and puts one reference into each queue: the queues share the events,
and a stalled listener holds at most ``QUEUE_SIZE`` references.

Must not import: ``hub.app``, ``hub.cli``.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import orjson

log = logging.getLogger(__name__)

#: Events a listener may fall behind before it is dropped. The queues hold references to
#: events every listener shares, so this bounds how long an event lives, not memory per client.
QUEUE_SIZE = 256
#: The ASGI scope extension under which the HTTP server hands a request its connection's
#: transport (:mod:`hub.web.server`): the event stream aborts a dropped listener's socket.
TRANSPORT_EXTENSION = "linli.transport"
#: Kernel send buffer of an event-stream socket (Linux doubles it). Small, so a client that
#: stops reading stalls after a few dozen events instead of after megabytes: it is found and
#: dropped early, and until then it costs little. Other responses keep the kernel's default.
STREAM_SNDBUF = 32 * 1024


@dataclass(frozen=True, slots=True)
class StreamEvent:
    """One change, encoded once as a server-sent event for every listener."""

    kind: str
    message: dict[str, Any]
    frame: bytes

    @classmethod
    def of(cls, message: dict[str, Any]) -> StreamEvent:
        kind = str(message.get("type", "alert"))
        # One SSE event name per message type ("alert", "case"), so listeners pick theirs.
        frame = b"event: " + kind.encode() + b"\ndata: " + orjson.dumps(message) + b"\n\n"
        return cls(kind, message, frame)


def _nothing() -> None:
    pass


class Listener:
    """One subscriber's bounded queue; ``on_drop`` ends its connection when it falls behind."""

    __slots__ = ("_on_drop", "dropped", "queue")

    def __init__(self, *, size: int = QUEUE_SIZE, on_drop: Callable[[], None] = _nothing) -> None:
        self.queue: asyncio.Queue[StreamEvent] = asyncio.Queue(size)
        self.dropped = False
        self._on_drop = on_drop

    def drop(self) -> None:
        self.dropped = True
        try:
            self._on_drop()
        except Exception:  # a failing abort must not fail the publisher (the SOS path)
            log.exception("could not end a dropped event stream")

    def take(self, first: StreamEvent) -> list[StreamEvent]:
        """``first`` and whatever else is queued now: one write for a burst, not one per event."""
        taken = [first]
        while not self.queue.empty():
            taken.append(self.queue.get_nowait())
        return taken


class AlertBus:
    def __init__(self, *, queue_size: int = QUEUE_SIZE) -> None:
        self._listeners: set[Listener] = set()
        self._queue_size = queue_size
        #: Listeners dropped for falling behind, since start (``/api/stats``, ``/metrics``).
        self.dropped = 0

    def subscribe(self, *, on_drop: Callable[[], None] = _nothing) -> Listener:
        listener = Listener(size=self._queue_size, on_drop=on_drop)
        self._listeners.add(listener)
        return listener

    def unsubscribe(self, listener: Listener) -> None:
        self._listeners.discard(listener)

    def publish(self, message: dict[str, Any]) -> None:
        if not self._listeners:
            return
        event = StreamEvent.of(message)
        for listener in list(self._listeners):
            try:
                listener.queue.put_nowait(event)
            except asyncio.QueueFull:
                self._listeners.discard(listener)
                self.dropped += 1
                listener.drop()

    def __len__(self) -> int:
        return len(self._listeners)
