"""Linli adapters: pure decoding of device messages into normalised events.

Owns: the normalised event vocabulary (:mod:`adapters.events`), the root of Linli's error
hierarchy (:mod:`adapters.errors`, the lowest layer so every other package can extend it),
and one decoder module per device family (Zigbee2MQTT, …) plus the router that picks one
by topic.

A decoder is a pure function of (topic, payload bytes, receive time, device hints): no I/O,
no clock, no global state. Bad input raises :class:`adapters.errors.DecodeError` carrying
the reason; the hub turns that into a quarantine record.

Must not import: ``hub``, ``rules``, ``simulators``, ``dashboards``, or any I/O library.
"""

from __future__ import annotations

from adapters.errors import DecodeError, LinliError
from adapters.events import DeviceHints, Event, EventKind, PressType
from adapters.router import AdapterRouter, Family

__all__ = [
    "AdapterRouter",
    "DecodeError",
    "DeviceHints",
    "Event",
    "EventKind",
    "Family",
    "LinliError",
    "PressType",
]
