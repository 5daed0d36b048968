"""Tasmota (ESP8266/ESP32 firmware, incl. the Sonoff ZbBridge Zigbee gateway).

Topics (default FullTopic ``%prefix%/%topic%/``; reference tasmota/docs ``docs/MQTT.md``):

* ``tele/<topic>/LWT``: bare text ``Online`` / ``Offline`` → ``online`` / ``offline``.
* ``tele/<topic>/STATE`` (every TelePeriod): ``heartbeat`` + ``signal`` (value ``Wifi.Signal``
  in dBm, attrs ``quality_pct`` = ``Wifi.RSSI``, which is a 0–100 quality, not dBm).
* ``tele/<topic>/SENSOR``: ``SwitchN`` inputs → door events on ``<topic>/switchN``;
  ``ZbReceived`` → per Zigbee device ``<topic>/<short address>`` (e.g. ``SonoffZB/0x662E``);
  anything else → ``heartbeat`` of ``<topic>``.
* ``stat/<topic>/RESULT``: ``{"ButtonN": {"Action": "SINGLE"}}`` (SetOption73, detached
  buttons) → press on ``<topic>/buttonN``; ``{"SwitchN": {"Action": "ON"}}`` (SetOption114,
  detached switches) → door events on ``<topic>/switchN``; other results ignored.
* Other ``tele``/``stat`` topics (``INFO1``, ``POWER``, ``STATUS…``) are ignored.

Device ids: the Tasmota ``<topic>``, plus ``/switchN`` or ``/buttonN`` for inputs and the
Zigbee *short address* (``Device``) for ZbBridge children. The short address is always present
(names are optional and Tasmota pads them, ``" door_sensor"``); it changes if a device is
re-paired, so the registry entry must then be updated.

Switch polarity (trap: "switch values describe the circuit, not the door", tasmota/docs
``docs/Buttons-and-Switches.md``): by default ``ON`` means the circuit is closed, i.e. a
normally-open reed contact with its magnet present: the door is **closed**; ``OFF`` = open.
A device whose wiring or SwitchMode (16 vs 15) is the other way round gets the profile
``tasmota-switch-open-on`` in the registry (``model``); ``tasmota-switch-motion`` makes an
input a PIR. Any profile whose rules read the field ``Switch`` works (custom StateText too).

Zigbee traps: Tasmota's ``Contact`` is the opposite of Zigbee2MQTT's, 1 = open and 0 = closed
(tabspacekr/HomeAssistant ``tasmota/mqtt/readme.txt``); ``Occupancy: 0`` is often synthetic
(ZbOccupancy, 90 s after the last motion by default), still reported as motion false.
"""

from __future__ import annotations

from typing import Any

from adapters._json import as_number, event_time, parse_object, plausible_battery, put_volts
from adapters.errors import DecodeError
from adapters.events import DeviceHints, DeviceKind, Event, EventKind, PressType
from adapters.profiles import Action, FieldRule, FieldType, Profile, ProfileSet, press_event

FAMILY = "tasmota"

Attrs = dict[str, float | bool | str]

#: ON = circuit closed = magnet present = door closed (see the module docstring).
DEFAULT_SWITCH_PROFILE = Profile(
    id="tasmota-switch-default",
    vendor="Tasmota",
    model="switch (ON = closed)",
    rules=(
        FieldRule(
            field="Switch", type=FieldType.STRING, action=Action.DOOR, values={"ON": False, "OFF": True}
        ),
    ),
    source=__name__,
)

_BUTTON_ACTIONS: dict[str, PressType | None] = {
    "SINGLE": PressType.SINGLE,
    "DOUBLE": PressType.DOUBLE,
    "TRIPLE": PressType.SINGLE,
    "QUAD": PressType.SINGLE,
    "PENTA": PressType.SINGLE,
    "HOLD": PressType.LONG,
    "CLEAR": None,
}


def decode(
    topic: str, payload: bytes, received: float, hints: DeviceHints, *, base: str, profiles: ProfileSet
) -> list[Event]:
    """Decode one Tasmota message; ``base`` is "" for the default ``tele/…``, ``stat/…`` roots."""
    rest = topic[len(base) + 1 :] if base else topic
    prefix, _, tail = rest.partition("/")
    device, _, message = tail.rpartition("/")
    if prefix not in ("tele", "stat") or not device or not message:
        raise DecodeError(
            "unknown_topic", "expected tele/<topic>/<message> or stat/<topic>/<message>", topic=topic
        )
    device = hints.registered_id(device)  # the registry's copy, not this message's slice
    if prefix == "stat":
        if message != "RESULT":
            return []
        return _result(
            device, parse_object(payload, topic), received, hints=hints, profiles=profiles, topic=topic
        )
    if message == "LWT":
        return [_lwt(device, payload, received, topic)]
    if message == "STATE":
        return _state(device, parse_object(payload, topic), received, topic)
    if message == "SENSOR":
        return _sensor(
            device, parse_object(payload, topic), received, hints=hints, profiles=profiles, topic=topic
        )
    return []


def _lwt(device: str, payload: bytes, received: float, topic: str) -> Event:
    # Tasmota's LWT is capitalised bare text, not JSON (docs/MQTT.md).
    text = payload.strip().decode("utf-8", "replace")
    if text == "Online":
        return Event(device, EventKind.ONLINE, received, FAMILY, True)
    if text == "Offline":
        return Event(device, EventKind.OFFLINE, received, FAMILY, False)
    raise DecodeError("bad_value", f"LWT must be Online or Offline, got {text[:40]!r}", topic=topic)


def _time(doc: dict[str, Any], received: float, topic: str) -> tuple[float, Attrs]:
    # `Time` is local time, without an offset unless TimeZone is set: a naive time is not
    # trusted (event_time ignores it) and the receive time is used.
    ts, clamped = event_time(doc.get("Time"), received, topic)
    return ts, ({"ts_clamped": True} if clamped else {})


def _state(device: str, doc: dict[str, Any], received: float, topic: str) -> list[Event]:
    ts, common = _time(doc, received, topic)
    events = [Event(device, EventKind.HEARTBEAT, ts, FAMILY, None, common)]
    wifi = doc.get("Wifi")
    if wifi is None:
        return events
    if not isinstance(wifi, dict):
        raise DecodeError("wrong_type", "Wifi must be an object", topic=topic)
    # Wifi.RSSI is a 0–100 quality percentage; Wifi.Signal is dBm (changelog 7.2).
    quality = as_number(wifi.get("RSSI"), "Wifi.RSSI", topic)
    dbm = as_number(wifi.get("Signal"), "Wifi.Signal", topic)
    if dbm is not None:
        attrs: Attrs = {"unit": "dBm", **common}
        if quality is not None:
            attrs["quality_pct"] = quality
        events.append(Event(device, EventKind.SIGNAL, ts, FAMILY, dbm, attrs))
    elif quality is not None:
        events.append(Event(device, EventKind.SIGNAL, ts, FAMILY, quality, {"unit": "%", **common}))
    return events


def _input_number(key: str, name: str) -> str | None:
    """``"3"`` for ``Switch3`` when ``name`` is ``Switch``; ``None`` for any other key."""
    if key.startswith(name) and key[len(name) :].isdigit():
        return key[len(name) :]
    return None


def _switch(
    device: str,
    number: str,
    state: object,
    *,
    ts: float,
    hints: DeviceHints,
    profiles: ProfileSet,
    common: Attrs,
    topic: str,
) -> list[Event]:
    switch_id = hints.registered_id(f"{device}/switch{number}")
    profile = DEFAULT_SWITCH_PROFILE
    named = hints.device_profile(switch_id)
    if named:
        found = profiles.get(named)
        if found is None:
            raise DecodeError("unknown_profile", f"no device profile named {named[:60]!r}", topic=topic)
        profile = found
    return profile.apply(
        {"Switch": state}, device_id=switch_id, ts=ts, family=FAMILY, hints=hints, common=common, topic=topic
    )


def _sensor(
    device: str, doc: dict[str, Any], received: float, *, hints: DeviceHints, profiles: ProfileSet, topic: str
) -> list[Event]:
    ts, common = _time(doc, received, topic)
    if "ZbReceived" in doc:
        return _zigbee(device, doc["ZbReceived"], ts, hints=hints, common=common, topic=topic)
    events: list[Event] = []
    for key, value in doc.items():
        number = _input_number(key, "Switch")
        if number is not None:
            events.extend(
                _switch(
                    device, number, value, ts=ts, hints=hints, profiles=profiles, common=common, topic=topic
                )
            )
    if not events:
        events.append(Event(device, EventKind.HEARTBEAT, ts, FAMILY, None, common))
    return events


def _result(
    device: str, doc: dict[str, Any], received: float, *, hints: DeviceHints, profiles: ProfileSet, topic: str
) -> list[Event]:
    events: list[Event] = []
    for key, value in doc.items():
        button = _input_number(key, "Button")
        switch = _input_number(key, "Switch")
        if button is None and switch is None:
            continue  # POWER, Dimmer, command echoes …
        if not isinstance(value, dict):
            raise DecodeError("wrong_type", f"{key} must be an object", topic=topic)
        action = value.get("Action")
        if not isinstance(action, str):
            raise DecodeError("wrong_type", f"{key}.Action must be a string", topic=topic)
        if switch is not None:
            events.extend(
                _switch(
                    device,
                    switch,
                    action,
                    ts=received,
                    hints=hints,
                    profiles=profiles,
                    common={},
                    topic=topic,
                )
            )
            continue
        if action not in _BUTTON_ACTIONS:
            raise DecodeError("bad_value", f"unknown button action {action[:20]!r}", topic=topic)
        press = _BUTTON_ACTIONS[action]
        if press is not None:
            events.append(
                press_event(
                    hints.registered_id(f"{device}/button{button}"),
                    press,
                    action,
                    ts=received,
                    family=FAMILY,
                    hints=hints,
                    attrs={},
                )
            )
    return events


def _zigbee(
    device: str, received_map: object, ts: float, *, hints: DeviceHints, common: Attrs, topic: str
) -> list[Event]:
    if not isinstance(received_map, dict):
        raise DecodeError("wrong_type", "ZbReceived must be an object", topic=topic)
    events: list[Event] = []
    for key, child in received_map.items():
        if not isinstance(child, dict):
            raise DecodeError("wrong_type", f"ZbReceived.{key} must be an object", topic=topic)
        address = child.get("Device", key)
        if not isinstance(address, str) or not address:
            raise DecodeError("wrong_type", f"ZbReceived.{key}.Device must be a string", topic=topic)
        events.extend(
            _zigbee_child(
                hints.registered_id(f"{device}/{address}"), child, ts, hints=hints, common=common, topic=topic
            )
        )
    return events


def _flag(value: object, field: str, topic: str) -> bool:
    number = as_number(value, field, topic)
    if number not in (0.0, 1.0):
        raise DecodeError("bad_value", f"{field} must be 0 or 1", topic=topic)
    return number == 1.0


def _zigbee_child(
    child_id: str, child: dict[str, Any], ts: float, *, hints: DeviceHints, common: Attrs, topic: str
) -> list[Event]:
    attrs: Attrs = dict(common)
    name = child.get("Name")
    if isinstance(name, str) and name.strip():
        attrs["name"] = name.strip()  # Tasmota pads names with a space
    events: list[Event] = []
    if child.get("Contact") is not None:
        # Tasmota: Contact 1 = open, 0 = closed, the opposite of Zigbee2MQTT's `contact`.
        opened = _flag(child["Contact"], "Contact", topic)
        kind = EventKind.DOOR_OPEN if opened else EventKind.DOOR_CLOSED
        events.append(Event(child_id, kind, ts, FAMILY, opened, attrs))
    if child.get("Occupancy") is not None:
        occupied = _flag(child["Occupancy"], "Occupancy", topic)
        is_parking = hints.device_kind(child_id) is DeviceKind.PARKING_SENSOR
        kind = EventKind.OCCUPANCY if is_parking else EventKind.MOTION
        events.append(Event(child_id, kind, ts, FAMILY, occupied, attrs))
    battery = as_number(child.get("BatteryPercentage"), "BatteryPercentage", topic)
    volts = as_number(child.get("BatteryVoltage"), "BatteryVoltage", topic)
    if battery is not None or volts is not None:
        battery_attrs = dict(attrs)
        battery, volts = plausible_battery(battery, volts, battery_attrs)  # impossible: named, dropped
        put_volts(battery_attrs, volts)
        events.append(Event(child_id, EventKind.BATTERY, ts, FAMILY, battery, battery_attrs))
    lqi = as_number(child.get("LinkQuality"), "LinkQuality", topic)
    if lqi is not None:
        events.append(Event(child_id, EventKind.SIGNAL, ts, FAMILY, lqi, {"unit": "lqi", **attrs}))
    if all(e.kind in (EventKind.BATTERY, EventKind.SIGNAL) for e in events):
        events.append(Event(child_id, EventKind.HEARTBEAT, ts, FAMILY, None, attrs))
    return events
