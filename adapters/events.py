"""The normalised event: what every adapter produces and every rule consumes."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Protocol


class EventKind(StrEnum):
    """Closed set of normalised event kinds."""

    SOS_PRESS = "sos_press"
    SERVICE_REQUEST = "service_request"
    BUTTON_PRESS = "button_press"
    DOOR_OPEN = "door_open"
    DOOR_CLOSED = "door_closed"
    OCCUPANCY = "occupancy"
    MOTION = "motion"
    TAMPER = "tamper"
    BATTERY = "battery"
    HEARTBEAT = "heartbeat"
    ONLINE = "online"
    OFFLINE = "offline"
    SIGNAL = "signal"


class PressType(StrEnum):
    """How a button was pressed; vendors' many spellings map onto these."""

    SINGLE = "single"
    DOUBLE = "double"
    LONG = "long"
    EMERGENCY = "emergency"


class DeviceKind(StrEnum):
    """What a device is for in the community (its role, not its model)."""

    SOS_BUTTON = "sos_button"
    DOOR_SENSOR = "door_sensor"
    PARKING_SENSOR = "parking_sensor"
    MOTION_SENSOR = "motion_sensor"
    OTHER = "other"


@dataclass(frozen=True, slots=True)
class Event:
    """One normalised fact about one device.

    ``ts`` is when it happened, Unix epoch seconds (UTC): the device's own time when it is
    trustworthy, else the receive time. ``value`` carries the kind's main value (battery %,
    occupancy bool, RSSI …); ``attrs`` carries the rest (press type, volts …).
    """

    device_id: str
    kind: EventKind
    ts: float
    family: str
    value: float | bool | str | None = None
    attrs: Mapping[str, float | bool | str] = field(default_factory=dict)


class DeviceHints(Protocol):
    """What a decoder may ask about a device it decodes (answered by the hub's registry).

    A generic button's ``single`` press is an SOS only if the button is installed as an
    SOS button; the decoder stays pure by asking through this port.
    """

    def device_kind(self, device_id: str) -> DeviceKind | None: ...


class NoHints:
    """Hints for decoding without a registry (tests, tools)."""

    def device_kind(self, device_id: str) -> DeviceKind | None:
        return None
