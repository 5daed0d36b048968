"""Zigbee2MQTT: device state on ``<base>/<friendly_name>``, availability on ``…/availability``.

Reference: zigbee2mqtt.io, "MQTT topics and messages" and "Device availability".
Traps handled here:

* ``contact: false`` means the door is **open** (the binary expose has ``value_on: false``).
* Friendly names may contain ``/`` (``zb6/h6/T1``), so the device is everything between the
  base topic and a reserved suffix.
* ``action`` is ``""`` or ``null`` in the report that follows a press (legacy action sensor);
  that is not a press.
* ``<name>/action`` (bare text) mirrors the ``action`` of the JSON state when the Home
  Assistant integration is on; it is ignored so one press is one event.
* ``bridge/*`` topics describe the bridge, never a device.
* Emergency buttons on the IAS zone converter ``command_status_change_notification_action``
  (Heiman HS1EB, ORVIBO SE21) report zone status 0 as ``action: "off"``: on a device installed
  as an SOS button that is the button at rest, not a press (it was an SOS alarm).
* IAS SOS buttons on ``ias_sos_alarm_2`` (Feibit SEB01ZB, ``e.sos()``) report no ``action``
  but a binary ``sos: true``: that is an SOS press; ``sos: false`` is not a press.
"""

from __future__ import annotations

from adapters._json import as_bool, as_number, event_time, parse_object, plausible_battery, put_volts
from adapters.errors import DecodeError
from adapters.events import DeviceHints, DeviceKind, Event, EventKind, PressType

FAMILY = "zigbee2mqtt"

_IGNORED_SUFFIXES = ("/set", "/get", "/action")
_SOS_ACTIONS = frozenset({"emergency", "sos", "panic"})
_NOT_A_PRESS = frozenset({"", "release", "hold_release"})
#: Not a press on a device installed as an SOS button: IAS zone status 0 (zigbee-herdsman-
#: converters ``command_status_change_notification_action``: 0 off, 1 single, 2 double, 3 hold).
_SOS_BUTTON_AT_REST = frozenset({"off"})
_PRESS_PREFIXES: tuple[tuple[str, PressType], ...] = (
    ("single", PressType.SINGLE),
    ("double", PressType.DOUBLE),
    ("hold", PressType.LONG),
    ("long", PressType.LONG),
)


def press_type(action: str) -> PressType:
    """Map a Zigbee2MQTT action (``single_right``, ``hold``, ``emergency`` …) to a press type."""
    if action in _SOS_ACTIONS:
        return PressType.EMERGENCY
    for prefix, kind in _PRESS_PREFIXES:
        if action.startswith(prefix):
            return kind
    return PressType.SINGLE


# Members read per event, as module constants: on CPython 3.11 every ``EnumClass.MEMBER``
# read goes through ``EnumType.__getattr__``'s slow hook (≈ 180 ns; gone in 3.12).
_DOOR_OPEN = EventKind.DOOR_OPEN
_DOOR_CLOSED = EventKind.DOOR_CLOSED
_OCCUPANCY = EventKind.OCCUPANCY
_MOTION = EventKind.MOTION
_BATTERY = EventKind.BATTERY
_SIGNAL = EventKind.SIGNAL
_HEARTBEAT = EventKind.HEARTBEAT
_PARKING_SENSOR = DeviceKind.PARKING_SENSOR


def decode(topic: str, payload: bytes, received: float, hints: DeviceHints, *, base: str) -> list[Event]:
    """Decode one Zigbee2MQTT message published under ``base``."""
    name = topic[len(base) + 1 :]
    if not name or name == "bridge" or name.startswith("bridge/"):
        return []
    if name.endswith("/availability"):
        device_id = hints.registered_id(name[: -len("/availability")])
        return [_availability(device_id, payload, received, topic)]
    if name.endswith(_IGNORED_SUFFIXES):
        return []
    # The registry's copy of the id, not this message's slice of the topic (see registered_id).
    return _state(hints.registered_id(name), parse_object(payload, topic), received, hints, topic)


def _availability(device_id: str, payload: bytes, received: float, topic: str) -> Event:
    text = payload.strip()
    # Zigbee2MQTT 1.x sent bare `online`/`offline`; 2.x sends {"state": "online"}.
    if text.startswith(b"{"):
        state = parse_object(payload, topic).get("state")
    else:
        state = text.decode("utf-8", "replace")
    if state == "online":
        return Event(device_id, EventKind.ONLINE, received, FAMILY, True)
    if state == "offline":
        return Event(device_id, EventKind.OFFLINE, received, FAMILY, False)
    raise DecodeError(
        "bad_value", f"availability must be online or offline, got {str(state)[:40]!r}", topic=topic
    )


def _state(
    device_id: str, doc: dict[str, object], received: float, hints: DeviceHints, topic: str
) -> list[Event]:
    ts, clamped = event_time(doc.get("last_seen"), received, topic)
    common: dict[str, float | bool | str] = {"ts_clamped": True} if clamped else _NO_ATTRS
    events: list[Event] = []
    changes = False  # did the report carry a state change (not just health)?

    # Presses, motion/occupancy, tamper and hazards are a few reports in a thousand: one test
    # over the report's keys instead of a lookup for each (docs/benchmarks.md, "Twenty-fifth pass"),
    # as a loop of the module's own: compiled, ``isdisjoint`` was a generic method call by name.
    rare = False
    for key in doc:
        if key in _RARE_KEYS:
            rare = True
            break
    if rare:
        changes = _presses(device_id, doc, events, ts=ts, hints=hints, topic=topic, common=common)
    pressed = len(events)

    try:
        contact = doc.get("contact")
        if contact is not None:  # null: Zigbee2MQTT's "not known yet" (SOURCES.md), not a state
            # contact: true = magnet present = closed; false = open (zigbee2mqtt `exposes`).
            closed = as_bool(contact, "contact", topic)
            kind = _DOOR_CLOSED if closed else _DOOR_OPEN
            events.append(Event(device_id, kind, ts, FAMILY, not closed, common))
            changes = True

        if rare and _rare_states(device_id, doc, events, ts=ts, hints=hints, topic=topic, common=common):
            changes = True

        battery = as_number(doc.get("battery"), "battery", topic)
        voltage_mv = as_number(doc.get("voltage"), "voltage", topic)
        battery_low = doc.get("battery_low")
        if battery is not None or voltage_mv is not None or battery_low is not None:
            attrs = dict(common)
            # An impossible reading is dropped (and named in attrs); the event stays, so the drop
            # is visible and battery_low, if any, still counts.
            battery, volts = plausible_battery(
                battery, voltage_mv / 1000.0 if voltage_mv is not None else None, attrs
            )
            put_volts(attrs, volts)
            if battery_low is not None:
                attrs["battery_low"] = as_bool(battery_low, "battery_low", topic)
            events.append(Event(device_id, _BATTERY, ts, FAMILY, battery, attrs))

        lqi = as_number(doc.get("linkquality"), "linkquality", topic)
        if lqi is not None:
            events.append(
                Event(
                    device_id,
                    _SIGNAL,
                    ts,
                    FAMILY,
                    lqi,
                    _LQI if not clamped else {"unit": "lqi", **common},
                )
            )
    except DecodeError as exc:
        # The press decoded above stands whatever else the report got wrong: a bad neighbour
        # (a tamper of the wrong type) quarantines the report, and the SOS is still handled.
        raise exc.keeping(events[:pressed]) from None

    if not changes:
        # A report with no state change is the device saying it is alive.
        events.append(Event(device_id, _HEARTBEAT, ts, FAMILY, None, common))
    return events


def _presses(
    device_id: str,
    doc: dict[str, object],
    events: list[Event],
    *,
    ts: float,
    hints: DeviceHints,
    topic: str,
    common: dict[str, float | bool | str],
) -> bool:
    """The report's press (``action``, or an IAS button's ``sos``) into ``events``; whether one was."""
    changes = False
    bad: DecodeError | None = None  # each press field stands on its own (a bad neighbour, review)
    action = doc.get("action")
    if action is not None:
        if not isinstance(action, str):
            bad = DecodeError(
                "wrong_type", f"action must be a string, got {type(action).__name__}", topic=topic
            )
        elif action not in _NOT_A_PRESS and not (
            action in _SOS_BUTTON_AT_REST and hints.device_kind(device_id) is DeviceKind.SOS_BUTTON
        ):
            events.append(_press(device_id, action, ts, hints, common))
            changes = True
    sos = doc.get("sos")
    if sos is not None:
        try:
            alarm = as_bool(sos, "sos", topic)
        except DecodeError as exc:
            bad, alarm = bad or exc, False
        if alarm and not events:
            # ias_sos_alarm_2: the alarm bit of an IAS SOS button; one press is one event.
            events.append(_press(device_id, "sos", ts, hints, common))
            changes = True
    if bad is not None:
        raise bad.keeping(events)
    return changes


def _rare_states(
    device_id: str,
    doc: dict[str, object],
    events: list[Event],
    *,
    ts: float,
    hints: DeviceHints,
    topic: str,
    common: dict[str, float | bool | str],
) -> bool:
    """The report's occupancy or motion, tamper and hazards into ``events``; whether any was."""
    changes = False
    occupancy = doc.get("occupancy")
    if occupancy is not None:  # null: not known yet, as for every state below
        occupied = as_bool(occupancy, "occupancy", topic)
        is_parking = hints.device_kind(device_id) is _PARKING_SENSOR
        kind = _OCCUPANCY if is_parking else _MOTION
        events.append(Event(device_id, kind, ts, FAMILY, occupied, common))
        changes = True

    tamper = doc.get("tamper")
    if tamper is not None:
        events.append(
            Event(device_id, EventKind.TAMPER, ts, FAMILY, as_bool(tamper, "tamper", topic), common)
        )
        changes = True

    for key, hazard in _HAZARDS:
        if key in doc and doc[key] is not None:
            # Zigbee2MQTT's binary exposes for hazards are true = alarm (zigbee-herdsman-converters).
            attrs = {**common, "gas": key} if key == "carbon_monoxide" else common
            events.append(Event(device_id, hazard, ts, FAMILY, as_bool(doc[key], key, topic), attrs))
            changes = True
    return changes


#: Zigbee2MQTT hazard exposes (Aqara SJCGQ11LM, JTYJ-GD-01LM/BW, Tuya/Heiman smoke, gas, CO).
_HAZARDS: tuple[tuple[str, EventKind], ...] = (
    ("water_leak", EventKind.WATER_LEAK),
    ("smoke", EventKind.SMOKE),
    ("gas", EventKind.GAS),
    ("carbon_monoxide", EventKind.GAS),
    ("fall", EventKind.FALL),
)

#: The keys of the rarer facts (:func:`_presses`, :func:`_rare_states`): a report with none of
#: them skips their tests.
_RARE_KEYS = frozenset({"action", "sos", "occupancy", "tamper", *(key for key, _ in _HAZARDS)})

#: Shared, never mutated: most events carry no extra attributes.
_NO_ATTRS: dict[str, float | bool | str] = {}
_LQI: dict[str, float | bool | str] = {"unit": "lqi"}


def _press(
    device_id: str, action: str, ts: float, hints: DeviceHints, common: dict[str, float | bool | str]
) -> Event:
    press = press_type(action)
    attrs: dict[str, float | bool | str] = {"press": press.value, "action": action, **common}
    # An explicit emergency action is an SOS whatever the registry says; any other press is
    # an SOS only on a device installed as an SOS button (Heiman HS1EB sends "single").
    if press is PressType.EMERGENCY or hints.device_kind(device_id) is DeviceKind.SOS_BUTTON:
        return Event(device_id, EventKind.SOS_PRESS, ts, FAMILY, press.value, attrs)
    return Event(device_id, EventKind.BUTTON_PRESS, ts, FAMILY, press.value, attrs)
