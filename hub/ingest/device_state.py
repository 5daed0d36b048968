"""The last known state of every device that reported: last seen, online, battery, signal.

Kept in memory on the hot path (a dict update per event).
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass

from adapters.events import Event, EventKind

# Members read per event, as module constants: on CPython 3.11 every ``EnumClass.MEMBER``
# read goes through ``EnumType.__getattr__``'s slow hook (≈ 180 ns; gone in 3.12).
_OFFLINE = EventKind.OFFLINE
_BATTERY = EventKind.BATTERY
_SIGNAL = EventKind.SIGNAL
#: "Not yet": before any time (one shared object).
NEVER = float("-inf")


@dataclass(slots=True)
class DeviceState:
    device_id: str
    last_seen: float
    family: str
    #: The last event of each kind the device reported, as two columns: ``kinds`` (the kinds'
    #: values, first reported first) and ``values`` (``ts, value`` of each, in that order).
    #: Not a dict of ``(ts, value)`` tuples: that was ≈ 350 bytes a reporting device (the
    #: dict, its table and a tuple per kind), these are ≈ 100 — ``kinds`` is one tuple shared
    #: by every device that reported the same kinds (``DeviceStates._shared_kinds``), ``values`` is
    #: updated in place (no tuple made per event). Read through :attr:`last` and :meth:`last_ts`.
    kinds: tuple[str, ...]
    values: list[float | bool | str | None]
    online: bool = True
    battery: float | None = None
    signal: float | None = None
    #: When the device's last battery, signal and heartbeat point was charted (the pipeline's
    #: health-series throttle). Here, not in a table per kind keyed by device id: those three
    #: tables were ≈ 7 MB more at 100 000 devices (docs/benchmarks.md, "Seventeenth pass").
    #: The charted event's own ``ts``, not the next due time: a sum would be a float object of
    #: its own per kind and device (≈ 10 MB at 100 000), where ``ts`` is the one the report's
    #: events, ``last_seen`` and ``last`` already share.
    battery_charted: float = NEVER
    signal_charted: float = NEVER
    heartbeat_charted: float = NEVER

    @property
    def last(self) -> dict[str, tuple[float, object]]:
        """Kind → ``(ts, value)`` of the device's last event of that kind (a copy)."""
        values = self.values
        # The even positions hold the events' ts (floats); the list's type cannot say so.
        return {kind: (values[2 * i], values[2 * i + 1]) for i, kind in enumerate(self.kinds)}  # type: ignore[misc]

    def last_ts(self, kind: str) -> float | None:
        """When the device's last event of ``kind`` (an ``EventKind`` value) happened, if any."""
        try:
            i = self.kinds.index(kind)
        except ValueError:
            return None
        return self.values[2 * i]  # type: ignore[return-value]  # an even position: a ts


#: How many distinct ``DeviceState.kinds`` tuples are shared (see ``DeviceStates._shared_kinds``).
_KINDS_LIMIT = 4096


#: A device is considered offline after this many missed heartbeat intervals (handbook §5).
OFFLINE_AFTER_HEARTBEATS = 2.0


def is_online(state: DeviceState | None, heartbeat_s: float | None, now: float) -> bool | None:
    """Online at ``now``: it said so last and has not missed two heartbeats (``None``: never heard)."""
    if state is None:
        return None
    if not state.online:
        return False
    return not (heartbeat_s is not None and now - state.last_seen > OFFLINE_AFTER_HEARTBEATS * heartbeat_s)


#: Recent events kept for ``GET /api/events``: one ring for all devices, so memory stays
#: bounded whatever the number of devices (history lives in the time-series store).
RECENT_EVENTS = 50_000


class DeviceStates:
    def __init__(self, *, recent: int = RECENT_EVENTS) -> None:
        self._states: dict[str, DeviceState] = {}
        # The ring keeps each event's fields in columns, not the events. Strings, numbers and
        # an attrs dict of them are nothing the cyclic collector tracks; an ``Event`` (or a
        # tuple, until a collection has looked at it) is. Under load the ring turns over every
        # few seconds while keeping the collector's allocation count flat (one in, one out),
        # so its 50 000 young events were what young collections walked: stalls of the event
        # loop of 10–80 ms at 10 000 msg/s (docs/benchmarks.md, "Nineteenth pass").
        self._device_ids: deque[str] = deque(maxlen=recent)
        self._kinds: deque[EventKind] = deque(maxlen=recent)
        self._times: deque[float] = deque(maxlen=recent)
        self._families: deque[str] = deque(maxlen=recent)
        self._values: deque[float | bool | str | None] = deque(maxlen=recent)
        self._attrs: deque[Mapping[str, float | bool | str]] = deque(maxlen=recent)
        #: Every distinct ``DeviceState.kinds`` tuple, so equal ones are one object. Bounded: a
        #: native device may list its events' kinds in any order; past the limit a tuple is not
        #: shared (still correct, only not smaller).
        self._kinds_seen: dict[tuple[str, ...], tuple[str, ...]] = {}

    def _shared_kinds(self, kinds: tuple[str, ...]) -> tuple[str, ...]:
        seen = self._kinds_seen
        shared = seen.get(kinds)
        if shared is not None:
            return shared
        if len(seen) < _KINDS_LIMIT:
            seen[kinds] = kinds
        return kinds

    def record(self, event: Event) -> DeviceState:
        """Keep the event in the ring and in its device's state; returns that state."""
        self._device_ids.append(event.device_id)
        self._kinds.append(event.kind)
        self._times.append(event.ts)
        self._families.append(event.family)
        self._values.append(event.value)
        self._attrs.append(event.attrs)
        kind = event.kind
        key = kind._value_  # _value_: Enum.value is a slow property
        state = self._states.get(event.device_id)
        if state is None:
            state = self._states[event.device_id] = DeviceState(
                event.device_id, event.ts, event.family, (), []
            )
        elif event.ts > state.last_seen:
            state.last_seen = event.ts
        try:
            i = 2 * state.kinds.index(key)
        except ValueError:  # the device's first event of this kind
            state.kinds = self._shared_kinds((*state.kinds, key))
            state.values = [*state.values, event.ts, event.value]  # exact size: no spare slots
        else:
            values = state.values
            values[i] = event.ts
            values[i + 1] = event.value
        if kind is _OFFLINE:
            state.online = False
        elif kind is _BATTERY:
            state.online = True
            if isinstance(event.value, float):
                state.battery = event.value
        else:
            state.online = True
            if kind is _SIGNAL and isinstance(event.value, float):
                state.signal = event.value
        return state

    def events(
        self,
        device_id: str | None = None,
        *,
        limit: int = 100,
        offset: int = 0,
        include: Callable[[str], bool] | None = None,
    ) -> list[Event]:
        """Most recent first; ``include(device_id)`` narrows to the devices a reader may see."""
        found: list[Event] = []
        skipped = 0
        newest_first = zip(
            reversed(self._device_ids),
            reversed(self._kinds),
            reversed(self._times),
            reversed(self._families),
            reversed(self._values),
            reversed(self._attrs),
            strict=True,
        )
        for entry_device, kind, ts, family, value, attrs in newest_first:
            if device_id is not None and entry_device != device_id:
                continue
            if include is not None and not include(entry_device):
                continue
            if skipped < offset:
                skipped += 1
                continue
            found.append(Event(entry_device, kind, ts, family, value, attrs))
            if len(found) >= limit:
                break
        return found

    def get(self, device_id: str) -> DeviceState | None:
        return self._states.get(device_id)

    def __len__(self) -> int:
        return len(self._states)
