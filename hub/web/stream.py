"""In-process fan-out of alert changes to live listeners (the console's server-sent events).

A listener that cannot keep up is disconnected rather than allowed to slow the pipeline;
the console then reconnects and reloads the list, so nothing is lost to the person.
"""

from __future__ import annotations

import asyncio
from typing import Any

QUEUE_SIZE = 1000


class Listener:
    def __init__(self) -> None:
        self.queue: asyncio.Queue[dict[str, Any]] = asyncio.Queue(QUEUE_SIZE)
        self.overflowed = False


class AlertBus:
    def __init__(self) -> None:
        self._listeners: set[Listener] = set()

    def subscribe(self) -> Listener:
        listener = Listener()
        self._listeners.add(listener)
        return listener

    def unsubscribe(self, listener: Listener) -> None:
        self._listeners.discard(listener)

    def publish(self, message: dict[str, Any]) -> None:
        for listener in list(self._listeners):
            try:
                listener.queue.put_nowait(message)
            except asyncio.QueueFull:
                listener.overflowed = True
                self._listeners.discard(listener)

    def __len__(self) -> int:
        return len(self._listeners)
