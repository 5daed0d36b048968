"""The last known state of every device that reported: last seen, online, battery, signal.

Kept in memory on the hot path (a dict update per event).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from adapters.events import Event, EventKind


@dataclass(slots=True)
class DeviceState:
    device_id: str
    last_seen: float
    family: str
    online: bool = True
    battery: float | None = None
    signal: float | None = None
    last: dict[str, tuple[float, object]] = field(default_factory=dict)


class DeviceStates:
    def __init__(self) -> None:
        self._states: dict[str, DeviceState] = {}

    def record(self, event: Event) -> None:
        state = self._states.get(event.device_id)
        if state is None:
            state = self._states[event.device_id] = DeviceState(event.device_id, event.ts, event.family)
        elif event.ts > state.last_seen:
            state.last_seen = event.ts
        kind = event.kind
        if kind is EventKind.OFFLINE:
            state.online = False
        elif kind is EventKind.BATTERY:
            state.online = True
            if isinstance(event.value, float):
                state.battery = event.value
        else:
            state.online = True
            if kind is EventKind.SIGNAL and isinstance(event.value, float):
                state.signal = event.value
        state.last[kind.value] = (event.ts, event.value)

    def get(self, device_id: str) -> DeviceState | None:
        return self._states.get(device_id)

    def __len__(self) -> int:
        return len(self._states)
