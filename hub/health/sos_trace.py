"""Where an SOS press spends its time inside the hub: lane receive → alert → case filed → published.

Why: the press → notification latency of issue 14 adds up the broker, the hub's pipeline, the
casework, the dispatcher and the receiving client; without stamps in between, a stall of the
whole process and a slow broker look the same (docs/benchmarks.md, "SOS latency split").

Each stamp is the monotonic clock (``CLOCK_MONOTONIC``: the same for every process on one
machine, so ``bench.latency`` puts them beside its own publish and receive times; never the
wall clock). Recorded only on the SOS path — a message on the priority lane's topics, a
committed alert change, a notification handed to the socket — so a few dict writes per press
and nothing per sensor message. Bounded: the newest :data:`KEEP` of each kind.
"""

from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import Callable

from hub.records import AlertChange, Notification

#: Entries kept per kind (topics received, alerts): far more than presses in any bench run.
KEEP = 2_000


def _put(table: OrderedDict[str, float], key: str, at: float) -> None:
    table[key] = at
    table.move_to_end(key)
    while len(table) > KEEP:
        table.popitem(last=False)


class SosTrace:
    """Stamps of the SOS path; :meth:`snapshot` is what the bench (or a debugging session) reads."""

    def __init__(self, *, monotonic: Callable[[], float] = time.monotonic) -> None:
        self._now = monotonic
        #: When the message the priority lane is handling right now arrived (``None``: none is).
        self._arriving: float | None = None
        #: Device → when the message that raised its latest alert change arrived on the lane
        #: (none when the bulk lane brought it first).
        self._received: OrderedDict[str, float] = OrderedDict()
        #: Device → when its latest alert change was committed / its case filed and dispatched.
        self._alert: OrderedDict[str, float] = OrderedDict()
        self._filed: OrderedDict[str, float] = OrderedDict()
        #: Device → when the first notification of that alert change went to the socket.
        self._published: OrderedDict[str, float] = OrderedDict()
        #: Alert id → device, and whether its first notification since the change went out.
        self._devices: OrderedDict[int, str] = OrderedDict()
        self._waiting: set[int] = set()

    def received(self) -> None:
        """The priority lane took a message; :meth:`handled` follows when its handler returned.

        Not stamped by topic: a button's battery reports share its topic with its presses.
        """
        self._arriving = self._now()

    def handled(self) -> None:
        self._arriving = None

    def alert(self, change: AlertChange) -> None:
        """The alert change is committed (start of casework)."""
        if not change.notifications and not change.created:
            return
        device = change.alert.device_id
        _put(self._alert, device, self._now())
        if self._arriving is not None:
            _put(self._received, device, self._arriving)
        self._devices[change.alert.id] = device
        self._devices.move_to_end(change.alert.id)
        while len(self._devices) > KEEP:
            gone, _ = self._devices.popitem(last=False)
            self._waiting.discard(gone)
        self._waiting.add(change.alert.id)

    def filed(self, change: AlertChange) -> None:
        """Casework is done with it: the case filed and dispatched, its notifications in the outbox."""
        if change.alert.id in self._devices:
            _put(self._filed, change.alert.device_id, self._now())

    def published(self, notification: Notification) -> None:
        """A notification was written to the outbound connection (the first of its alert change counts)."""
        if notification.alert_id not in self._waiting:
            return
        self._waiting.discard(notification.alert_id)
        device = self._devices.get(notification.alert_id)
        if device is not None:
            _put(self._published, device, self._now())

    def snapshot(self) -> dict[str, dict[str, float]]:
        """``received``, ``alert``, ``filed``, ``published``: device id → monotonic seconds."""
        return {
            "received": dict(self._received),
            "alert": dict(self._alert),
            "filed": dict(self._filed),
            "published": dict(self._published),
        }
