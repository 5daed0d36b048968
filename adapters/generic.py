"""The generic reading of a decoded payload: for devices no profile matches.

A site installer cannot wait for a release to get a door sensor's state, so when neither the
registry's model, nor the envelope's metadata (TTS ``version_ids``, ChirpStack
``deviceProfileName`` or ``linli_profile`` tag) names a profile, Linli reads the decoded
object by the field names and value conventions that vendors' codecs actually use across the
TTN Device Repository and the ChirpStack codecs (``DOOR_OPEN_STATUS``, ``leakage_status``,
``occupied``, ``pir: "trigger"``, ``BAT_V``, ``FireAlarm: "Alarm"`` …).

Every event it produces says why, in ``attrs``: ``profile: generic``, ``field`` (the dotted
path it read) and ``rule`` (which convention matched, e.g. ``door.open_named``), so an
operator can see the reasoning and write a profile when it is wrong.

It refuses to guess. A state field whose polarity is not evident from its name and value is
*ambiguous*: Zigbee2MQTT's ``contact: true`` means closed while Tasmota's ``Contact: 1``
means open; Browan's ``status: 1`` means open on a TBDW100, occupied on a TBMS100 and a leak
on a TBWL100. Such an uplink is refused with :class:`DecodeError` reason
``ambiguous_polarity`` naming the field, so it lands in the quarantine, where
``linli profiles suggest`` turns it into a profile for the installer to review.

Fields it deliberately ignores: bare ``status``/``state``/``alarm`` (meaning differs per
model: Dragino's ``ALARM`` is "open too long", Netvox's ``Alarm`` an SOS press), arrays
(Milesight's ``history`` replays past readings, not the current state), chip temperatures
(``temperatureBoard``, ``mcu_temperature``) and counters.

Pure: no I/O, no clock; the same payload always reads the same way.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from adapters.errors import DecodeError
from adapters.events import DeviceHints, DeviceKind, Event, EventKind, PressType
from adapters.profiles import BatteryUnit, press_event

Attrs = dict[str, float | bool | str]
Scalar = str | int | float | bool

#: Nesting read below the top level (Adeunis wraps everything in ``bytes``).
MAX_DEPTH = 3
GENERIC = "generic"


class Meaning(StrEnum):
    """What a field is about (the generic reader's closed set; profile actions mirror it)."""

    DOOR = "door"
    OCCUPANCY = "occupancy"
    MOTION = "motion"
    TAMPER = "tamper"
    WATER_LEAK = "water_leak"
    SMOKE = "smoke"
    GAS = "gas"
    FALL = "fall"
    SOS = "sos"
    PRESS = "press"
    BATTERY = "battery"
    TEMPERATURE = "temperature"
    HUMIDITY = "humidity"


def compact(name: str) -> str:
    """``DOOR_OPEN_STATUS`` / ``doorOpenStatus`` / ``door-open status`` → ``dooropenstatus``.

    A trailing channel number goes too (Netvox ``WaterLeak_1`` → ``waterleak``).
    """
    return re.sub(r"\d+$", "", re.sub(r"[^a-z0-9]", "", name.lower()))


def _names(*names: str) -> frozenset[str]:
    return frozenset(compact(n) for n in names)


#: Names whose true/1 means OPEN (the name says "open").
_DOOR_OPEN = _names(
    "door_open_status", "door_open", "door_open_state", "is_open", "open", "opened", "window_open",
    "window_open_status", "open_status", "door_is_open",
)  # fmt: skip
#: Names whose true/1 means CLOSED.
_DOOR_CLOSED = _names("closed", "is_closed", "door_closed", "door_closed_status", "window_closed")
#: Door names with no polarity of their own: only the words open/closed are read.
_DOOR_TEXT = _names(
    "door", "door_status", "door_state", "window", "window_status", "window_state", "contact",
    "contact_status", "contact_state", "magnet", "magnet_status", "magnet_state", "reed",
    "reed_state", "reed_status", "reed_switch",
)  # fmt: skip
_OCCUPANCY = _names(
    "occupied", "occupancy", "occupy", "parking_status", "parking", "car_presence", "car_status",
    "vehicle", "vehicle_present", "parking_occupied", "space_occupied", "bay_status", "car",
)  # fmt: skip
_MOTION = _names(
    "motion", "pir", "pir_status", "pir_state", "motion_detected", "motion_status", "motion_state",
    "motion_event", "motion_event_state", "presence", "movement", "move", "presence_detected",
    "presence_detected_when_sending",
)  # fmt: skip
_TAMPER = _names(
    "tamper", "tamper_status", "tamper_alarm", "tampered", "tamper_detected", "disassembled",
    "disassembled_alarm", "tamper_event", "removed",
)  # fmt: skip
_WATER_LEAK = _names(
    "water_leak", "leak", "leakage", "leak_status", "leakage_status", "water_leak_status",
    "water_leakage", "flood", "leak_detected", "water_detected", "water_alarm", "leak_alarm",
    "water_leak_alarm",
)  # fmt: skip
_SMOKE = _names(
    "smoke", "smoke_alarm", "smoke_status", "smoke_detected", "fire_alarm", "fire",
    "incense_smoke_alarm", "smoke_state",
)  # fmt: skip
_GAS = _names(
    "gas", "gas_alarm", "gas_status", "gas_leak", "gas_detected", "co_alarm", "carbon_monoxide",
    "carbon_monoxide_alarm", "natural_gas", "methane_alarm", "lpg_alarm",
)  # fmt: skip
_FALL = _names(
    "fall", "fall_detected", "fall_down", "fall_status", "fall_alarm", "fall_down_status",
    "fall_detection", "fall_event", "fall_state",
)  # fmt: skip
_SOS = _names(
    "sos", "emergency", "panic", "panic_button", "sos_alarm", "emergency_alarm", "sos_event",
    "sos_button", "emergency_button", "help",
)  # fmt: skip
_PRESS = _names("press", "button_event", "button", "button_press", "button_event_status", "click")
_BATTERY_PERCENT = _names(
    "battery_level", "battery_percent", "battery_pct", "battery_percentage", "batt_percent",
    "battery_soc", "soc",
)  # fmt: skip
_BATTERY_VOLTS = _names(
    "bat_v", "batv", "battery_voltage", "batt_volt", "batt_voltage", "vbat", "battery_v", "volt",
    "voltage", "battery_volt", "bat_volt", "batt_v",
)  # fmt: skip
_BATTERY_BARE = _names("battery", "bat", "batt")
_TEMPERATURE = _names(
    "temperature", "temp", "temperature_c", "ambient_temperature", "air_temperature", "temp_c",
    "room_temperature",
)  # fmt: skip
_HUMIDITY = _names("humidity", "relative_humidity", "hum", "rh", "air_humidity", "humidity_rh")

#: A trailing generic word is read with its parent: ``button_event.status`` → ``buttoneventstatus``.
_GENERIC_LEAVES = _names("status", "state", "value", "current_state", "event")

_TABLE: tuple[tuple[frozenset[str], Meaning], ...] = (
    (_DOOR_OPEN | _DOOR_CLOSED | _DOOR_TEXT, Meaning.DOOR),
    (_OCCUPANCY, Meaning.OCCUPANCY),
    (_MOTION, Meaning.MOTION),
    (_TAMPER, Meaning.TAMPER),
    (_WATER_LEAK, Meaning.WATER_LEAK),
    (_SMOKE, Meaning.SMOKE),
    (_GAS, Meaning.GAS),
    (_FALL, Meaning.FALL),
    (_SOS, Meaning.SOS),
    (_PRESS, Meaning.PRESS),
    (_BATTERY_PERCENT | _BATTERY_VOLTS | _BATTERY_BARE, Meaning.BATTERY),
    (_TEMPERATURE, Meaning.TEMPERATURE),
    (_HUMIDITY, Meaning.HUMIDITY),
)

#: Words that say "yes, the thing is happening" / "no, it is not", across vendors' codecs.
_YES = frozenset(
    {
        "true", "yes", "on", "1", "alarm", "alarming", "detected", "leak", "leakage", "abnormal",
        "triggered", "trigger", "motion", "occupied", "occupy", "present", "smoke", "fire", "fall",
        "fallen", "emergency", "sos", "pressed", "tamper", "tampered", "uninstalled", "removed",
        "wet", "gas", "active",
    }
)  # fmt: skip
_NO = frozenset(
    {
        "false", "no", "off", "0", "normal", "no alarm", "noalarm", "clear", "cleared", "idle",
        "none", "no motion", "nomotion", "vacant", "free", "empty", "unoccupied", "noleak",
        "no leak", "dry", "installed", "inactive", "ok", "released", "not detected",
    }
)  # fmt: skip
_OPEN_WORDS = frozenset({"open", "opened", "opening", "on_open"})
_CLOSED_WORDS = frozenset({"close", "closed", "closing", "shut"})
_PRESS_WORDS: dict[str, PressType] = {
    "single": PressType.SINGLE, "short": PressType.SINGLE, "short press": PressType.SINGLE,
    "short_press": PressType.SINGLE, "click": PressType.SINGLE, "pressed": PressType.SINGLE,
    "press": PressType.SINGLE, "double": PressType.DOUBLE, "double press": PressType.DOUBLE,
    "double_press": PressType.DOUBLE, "long": PressType.LONG, "long press": PressType.LONG,
    "long_press": PressType.LONG, "hold": PressType.LONG, "sos": PressType.EMERGENCY,
    "emergency": PressType.EMERGENCY, "panic": PressType.EMERGENCY,
}  # fmt: skip


@dataclass(frozen=True, slots=True)
class Finding:
    """One field the generic reader recognised and what it concluded.

    ``rule`` names the convention (``door.open_named``, ``battery.magnitude_volts`` …).
    ``state`` is the boolean meaning of a state field, ``number`` the value of a reading, and
    ``press`` the press type; ``problem`` is set (and nothing concluded) when the polarity is
    ambiguous.
    """

    path: str
    raw: Scalar
    meaning: Meaning
    rule: str
    state: bool | None = None
    number: float | None = None
    unit: BatteryUnit | None = None
    press: PressType | None = None
    problem: str = ""


def walk(decoded: Mapping[str, Any], prefix: str = "", depth: int = 0) -> Iterator[tuple[str, str, Scalar]]:
    """``(dotted path, compact name, value)`` of every scalar leaf (objects up to ``MAX_DEPTH``)."""
    parent = compact(prefix.rsplit(".", 1)[-1]) if prefix else ""
    for key, value in decoded.items():
        if not isinstance(key, str):
            continue  # pragma: no cover - JSON keys are strings
        path = f"{prefix}.{key}" if prefix else key
        if isinstance(value, dict):
            if depth < MAX_DEPTH:
                yield from walk(value, path, depth + 1)
            continue
        if not isinstance(value, str | bool | int | float) or value is None:
            continue  # arrays (history), nulls (unknown, not false)
        name = compact(key)
        if name in _GENERIC_LEAVES and parent:
            name = parent + name if parent + name in _ALL_NAMES else parent
        yield path, name, value


_ALL_NAMES = frozenset().union(*(names for names, _ in _TABLE))


def meaning_of(name: str) -> Meaning | None:
    """The meaning of a compact field name, or ``None`` when the reader ignores it."""
    for names, meaning in _TABLE:
        if name in names:
            return meaning
    return None


def _flag(value: Scalar) -> bool | None:
    """True/false for a flag: booleans, 0/1 and yes/no words; ``None`` when it is not one."""
    if isinstance(value, bool):
        return value
    if isinstance(value, int | float):
        if value == 1:
            return True
        if value == 0:
            return False
        return None
    text = " ".join(value.strip().lower().replace("_", " ").split())
    if text in _YES:
        return True
    if text in _NO:
        return False
    return None


def _number(value: Scalar) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    number = float(value)
    return number if math.isfinite(number) else None


def _show(value: Scalar) -> str:
    return repr(value)[:40]


def examine(path: str, name: str, value: Scalar, hints_kind: DeviceKind | None = None) -> Finding | None:
    """What the generic reader makes of one field (``None``: not a field it reads)."""
    meaning = meaning_of(name)
    if meaning is None:
        return None
    if meaning is Meaning.DOOR:
        return _door(path, name, value)
    if meaning is Meaning.BATTERY:
        return _battery(path, name, value)
    if meaning in (Meaning.TEMPERATURE, Meaning.HUMIDITY):
        number = _number(value)
        low, high = (-60.0, 150.0) if meaning is Meaning.TEMPERATURE else (0.0, 100.0)
        if number is None or not low <= number <= high:
            return None  # not a plausible reading: ignored, a reading is not a state
        return Finding(path, value, meaning, f"{meaning.value}.named", number=number)
    if meaning is Meaning.PRESS:
        return _press(path, value)
    if meaning is Meaning.OCCUPANCY and hints_kind is DeviceKind.MOTION_SENSOR:
        meaning = Meaning.MOTION  # a PIR's "occupancy" is motion (WS203, Z2M)
    if meaning is Meaning.MOTION and isinstance(value, int | float) and not isinstance(value, bool):
        count = _number(value)
        if count is not None and count > 1 and count.is_integer():
            # Elsys `motion` is the number of PIR triggers since the last uplink.
            return Finding(path, value, meaning, "motion.count", state=True)
    state = _flag(value)
    if state is None:
        return Finding(
            path,
            value,
            meaning,
            f"{meaning.value}.unknown_value",
            problem=f"{path}={_show(value)}: not a known yes/no value for {meaning.value}",
        )
    if meaning is Meaning.SOS:
        rule = "sos.flag"
        return Finding(path, value, meaning, rule, state=state, press=PressType.EMERGENCY if state else None)
    kind = "word" if isinstance(value, str) else "flag"
    return Finding(path, value, meaning, f"{meaning.value}.{kind}", state=state)


def _door(path: str, name: str, value: Scalar) -> Finding:
    if isinstance(value, str):
        word = value.strip().lower()
        if word in _OPEN_WORDS:
            return Finding(path, value, Meaning.DOOR, "door.word", state=True)
        if word in _CLOSED_WORDS:
            return Finding(path, value, Meaning.DOOR, "door.word", state=False)
    if name in _DOOR_OPEN or name in _DOOR_CLOSED:
        flag = _flag(value) if not isinstance(value, str) else None
        if flag is not None:
            opened = flag if name in _DOOR_OPEN else not flag
            rule = "door.open_named" if name in _DOOR_OPEN else "door.closed_named"
            return Finding(path, value, Meaning.DOOR, rule, state=opened)
    return Finding(
        path,
        value,
        Meaning.DOOR,
        "door.ambiguous",
        problem=(
            f"{path}={_show(value)}: the name does not say whether this means open or closed"
            " (Zigbee2MQTT contact:true is closed, Tasmota Contact:1 is open)"
        ),
    )


def _battery(path: str, name: str, value: Scalar) -> Finding | None:
    number = _number(value)
    if number is None or number < 0:
        return None
    if name in _BATTERY_PERCENT:
        if number <= 100:
            return Finding(
                path, value, Meaning.BATTERY, "battery.percent_named", number=number, unit=BatteryUnit.PERCENT
            )
        return None
    volts_named = name in _BATTERY_VOLTS
    if 1.0 <= number <= 5.0 and (volts_named or not number.is_integer()):
        rule = "battery.volts_named" if volts_named else "battery.magnitude_volts"
        return Finding(path, value, Meaning.BATTERY, rule, number=number, unit=BatteryUnit.VOLTS)
    if 1000.0 <= number <= 5000.0:
        rule = "battery.millivolts_named" if volts_named else "battery.magnitude_millivolts"
        return Finding(path, value, Meaning.BATTERY, rule, number=number, unit=BatteryUnit.MILLIVOLTS)
    if not volts_named and 5.0 < number <= 100.0:
        return Finding(
            path, value, Meaning.BATTERY, "battery.magnitude_percent", number=number, unit=BatteryUnit.PERCENT
        )
    return None  # 3 could be 3 % or 3 V: a battery reading is skipped, never guessed


def _press(path: str, value: Scalar) -> Finding | None:
    if isinstance(value, str):
        word = " ".join(value.strip().lower().replace("_", " ").split())
        press = _PRESS_WORDS.get(word) or _PRESS_WORDS.get(word.replace(" ", "_"))
        if press is None:
            if _flag(value) is False:
                return Finding(path, value, Meaning.PRESS, "press.none")
            return Finding(
                path,
                value,
                Meaning.PRESS,
                "press.unknown_value",
                problem=f"{path}={_show(value)}: unknown press",
            )
        return Finding(path, value, Meaning.PRESS, "press.word", press=press)
    flag = _flag(value)
    if flag is None:
        return Finding(
            path, value, Meaning.PRESS, "press.unknown_value", problem=f"{path}={_show(value)}: unknown press"
        )
    return Finding(path, value, Meaning.PRESS, "press.flag", press=PressType.SINGLE if flag else None)


def findings(decoded: Mapping[str, Any], hints_kind: DeviceKind | None = None) -> list[Finding]:
    """Every field of ``decoded`` the generic reader recognises, in payload order."""
    found: list[Finding] = []
    for path, name, value in walk(decoded):
        finding = examine(path, name, value, hints_kind)
        if finding is not None:
            found.append(finding)
    return found


_STATE_KINDS: dict[Meaning, EventKind] = {
    Meaning.OCCUPANCY: EventKind.OCCUPANCY,
    Meaning.MOTION: EventKind.MOTION,
    Meaning.TAMPER: EventKind.TAMPER,
    Meaning.WATER_LEAK: EventKind.WATER_LEAK,
    Meaning.SMOKE: EventKind.SMOKE,
    Meaning.GAS: EventKind.GAS,
    Meaning.FALL: EventKind.FALL,
}


def read(
    decoded: Mapping[str, Any],
    *,
    device_id: str,
    ts: float,
    family: str,
    hints: DeviceHints,
    common: Mapping[str, float | bool | str],
    topic: str,
) -> list[Event]:
    """The events the generic reading finds; ``DecodeError("ambiguous_polarity")`` when it must not guess.

    Battery and readings are health, not state: only a state field can make the uplink
    ambiguous, and then no event is produced from it at all (half a reading would hide the
    problem the quarantine record shows).
    """
    found = findings(decoded, hints.device_kind(device_id))
    problems = [f.problem for f in found if f.problem]
    if problems:
        # Only a press stands beside a refused state (an SOS is never lost to a bad neighbour);
        # the states and readings wait for the profile the quarantine record asks for.
        presses = [f for f in found if not f.problem and f.meaning in (Meaning.SOS, Meaning.PRESS)]
        raise DecodeError(
            "ambiguous_polarity",
            "generic reading refused: " + "; ".join(problems)[:400] + ". Name a profile for this device"
            " (linli profiles suggest)",
            topic=topic,
            salvaged=tuple(_events(presses, common, device_id=device_id, ts=ts, family=family, hints=hints)),
        )
    return _merge_states(_events(found, common, device_id=device_id, ts=ts, family=family, hints=hints))


def _events(
    found: Sequence[Finding],
    common: Mapping[str, float | bool | str],
    *,
    device_id: str,
    ts: float,
    family: str,
    hints: DeviceHints,
) -> list[Event]:
    events: list[Event] = []
    for f in found:
        attrs: Attrs = {**common, "profile": GENERIC, "field": f.path, "rule": f.rule}
        event = _event(f, attrs, device_id=device_id, ts=ts, family=family, hints=hints)
        if event is not None:
            events.append(event)
    return events


#: Kinds whose several fields in one payload are one state (two leak probes are one leak).
_MERGED = frozenset(
    {EventKind.WATER_LEAK, EventKind.SMOKE, EventKind.GAS, EventKind.FALL, EventKind.MOTION, EventKind.TAMPER}
)


def _merge_states(events: list[Event]) -> list[Event]:
    """One event per state kind: alarm if any field says so (Netvox R311W ``WaterLeak_1``/``_2``)."""
    by_kind: dict[EventKind, Event] = {}
    out: list[Event] = []
    for event in events:
        first = by_kind.get(event.kind)
        if event.kind not in _MERGED or first is None:
            by_kind.setdefault(event.kind, event)
            out.append(event)
            continue
        winner = event if event.value is True and first.value is not True else first
        fields = f"{first.attrs['field']},{event.attrs['field']}"
        merged = Event(first.device_id, first.kind, first.ts, first.family, first.value is True or event.value is True,
                       {**winner.attrs, "field": fields})  # fmt: skip
        out[out.index(first)] = merged
        by_kind[event.kind] = merged
    return out


def _event(
    f: Finding, attrs: Attrs, *, device_id: str, ts: float, family: str, hints: DeviceHints
) -> Event | None:
    m = f.meaning
    if m is Meaning.DOOR:
        kind = EventKind.DOOR_OPEN if f.state else EventKind.DOOR_CLOSED
        return Event(device_id, kind, ts, family, bool(f.state), attrs)
    if m in _STATE_KINDS:
        return Event(device_id, _STATE_KINDS[m], ts, family, bool(f.state), attrs)
    if m in (Meaning.SOS, Meaning.PRESS):
        if f.press is None:
            return None
        return press_event(device_id, f.press, str(f.raw), ts=ts, family=family, hints=hints, attrs=attrs)
    if m is Meaning.BATTERY:
        assert f.number is not None
        if f.unit is BatteryUnit.PERCENT:
            return Event(device_id, EventKind.BATTERY, ts, family, f.number, attrs)
        attrs["volts"] = f.number / 1000.0 if f.unit is BatteryUnit.MILLIVOLTS else f.number
        return Event(device_id, EventKind.BATTERY, ts, family, None, attrs)
    kind = EventKind.TEMPERATURE if m is Meaning.TEMPERATURE else EventKind.HUMIDITY
    attrs["unit"] = "celsius" if m is Meaning.TEMPERATURE else "percent"
    return Event(device_id, kind, ts, family, f.number, attrs)
