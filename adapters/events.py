"""The normalised event: what every adapter produces and every rule consumes."""

from __future__ import annotations

import importlib.machinery
from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Final, Protocol

#: The event attribute naming the fields a decoder dropped as impossible readings (the rest
#: of the report still counts); the pipeline quarantines the fact (``implausible_value``).
IMPLAUSIBLE = "implausible"

#: The whole-number readings 1–255 as one float object each, entry ``n`` for ``n``: a battery
#: percentage and a link quality are whole numbers in that range nearly always, and a hub keeps
#: each device's last one (its device state, the battery rules' slots), where every message
#: brought a float of its own (docs/benchmarks.md, "Thirty-fifth pass", "Thirty-seventh pass").
#: Entry 0 is ``None``, equal to no reading: a shared 0.0 would make a reading of -0.0 positive.
#: Typed ``float | None`` on purpose: compiled (hub/ingest/hot_path.py), a ``float`` element
#: would be a C double, boxed anew where it is stored, which would defeat the sharing.
WHOLE_READINGS: tuple[float | None, ...] = (None, *(float(n) for n in range(1, 256)))


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
    #: The network server reports a problem with the device (ChirpStack ``log`` event: codec
    #: exception, MIC mismatch, frame-counter reset …); attrs ``code`` and ``level``.
    DEVICE_ERROR = "device_error"
    #: A measured distance in millimetres (ultrasonic parking/level sensors such as the
    #: Milesight EM400-MUD report only this; occupancy is derived by a rule's threshold).
    DISTANCE = "distance"
    #: Hazard alarms (value: true = alarm, false = cleared). Smoke includes fire alarms.
    SMOKE = "smoke"
    #: Natural gas, LPG or carbon monoxide (attrs ``gas`` names which when known).
    GAS = "gas"
    WATER_LEAK = "water_leak"
    #: A fall detector's (or pendant's) fall alarm (value: true = fall detected).
    FALL = "fall"
    #: Readings: degrees Celsius and percent relative humidity.
    TEMPERATURE = "temperature"
    HUMIDITY = "humidity"


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
    SMOKE_DETECTOR = "smoke_detector"
    GAS_DETECTOR = "gas_detector"
    WATER_LEAK_SENSOR = "water_leak_sensor"
    FALL_DETECTOR = "fall_detector"
    OTHER = "other"


@dataclass(frozen=True, slots=True, init=False)
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

    def __init__(  # noqa: PLR0917 -- the dataclass's own positional signature, used everywhere
        self,
        device_id: str,
        kind: EventKind,
        ts: float,
        family: str,
        value: float | bool | str | None = None,
        attrs: Mapping[str, float | bool | str] | None = None,
    ) -> None:
        # Every message makes two or three events (docs/benchmarks.md, "Twelfth pass").
        if _NATIVE:
            # Compiled (mypyc): a store is the slot's own, which frozen's ``__setattr__`` (it
            # still guards the instance from outside) does not see. 0.07 µs against 0.5 µs
            # through the descriptors below ("Twenty-seventh pass").
            self.device_id = device_id  # type: ignore[misc]
            self.kind = kind  # type: ignore[misc]
            self.ts = ts  # type: ignore[misc]
            self.family = family  # type: ignore[misc]
            self.value = value  # type: ignore[misc]
            self.attrs = {} if attrs is None else attrs  # type: ignore[misc]
        else:
            # Interpreted, that store would raise. The generated frozen __init__ sets each field
            # with ``object.__setattr__`` (a name lookup per field): 2.1 µs an event against
            # 0.9 µs through the slots' own setters.
            _SET_DEVICE_ID(self, device_id)
            _SET_KIND(self, kind)
            _SET_TS(self, ts)
            _SET_FAMILY(self, family)
            _SET_VALUE(self, value)
            _SET_ATTRS(self, {} if attrs is None else attrs)


#: This module runs compiled (hub.ingest.hot_path): its own stores into an Event's slots work.
_NATIVE: Final = __file__.endswith(tuple(importlib.machinery.EXTENSION_SUFFIXES))

# The slots' descriptors (they still refuse assignment from outside: ``__setattr__`` is frozen's).
_SET_DEVICE_ID = vars(Event)["device_id"].__set__
_SET_KIND = vars(Event)["kind"].__set__
_SET_TS = vars(Event)["ts"].__set__
_SET_FAMILY = vars(Event)["family"].__set__
_SET_VALUE = vars(Event)["value"].__set__
_SET_ATTRS = vars(Event)["attrs"].__set__


class DeviceHints(Protocol):
    """What a decoder may ask about a device it decodes (answered by the hub's registry).

    A generic button's ``single`` press is an SOS only if the button is installed as an
    SOS button; the decoder stays pure by asking through this port.
    """

    def device_kind(self, device_id: str) -> DeviceKind | None: ...

    def device_profile(self, device_id: str) -> str | None:
        """The name of the device profile (vendor model) to decode this device's payloads with.

        Answered from the registry's ``model`` field; ``None`` lets the decoder fall back to
        the envelope's own metadata (TTS ``version_ids``, ChirpStack ``deviceProfileName``).
        """
        ...

    def registered_id(self, device_id: str) -> str:
        """The registry's own string equal to ``device_id``; ``device_id`` itself if unregistered.

        Decoders name a device with it, not with their slice of the topic: what the hub keeps
        per reporting device (its state, its series tags) is keyed by the event's id, and a
        slice per message kept there was a second copy of every registered id (≈ 70 bytes a
        device, issue 14).
        """
        ...


class NoHints:
    """Hints for decoding without a registry (tests, tools)."""

    def device_kind(self, device_id: str) -> DeviceKind | None:
        return None

    def device_profile(self, device_id: str) -> str | None:
        return None

    def registered_id(self, device_id: str) -> str:
        return device_id
