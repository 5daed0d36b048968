"""Device profiles: declarative maps from a vendor's decoded fields to Linli events.

A LoRaWAN network server hands Linli a *decoded* object (TTS ``decoded_payload``, ChirpStack
``object``) whose field names and codes are whatever the vendor's codec chose. A profile file
(``adapters/profiles/*.yaml``) says, per model, which fields matter and what they mean, so a
new model is configuration, not code. See ``docs/adapters.md`` for the file format and a
worked example.

Profiles are loaded once, at construction, by :func:`load_profiles` into an immutable
:class:`ProfileSet` that the router hands to the decoders; decoding itself does no I/O.

Traps handled here (sources in ``tests/fixtures/samples/SOURCES.md``):

* ``null`` means unknown, not false (Nwave sets ``occupied: null`` in a registration frame):
  a ``null`` field produces no event.
* ChirpStack v4 ``object`` is a ``google.protobuf.Struct``: every number is a double, so an
  ``integer`` field accepts ``1.0`` as ``1``.
* YAML 1.1 reads bare ``on``/``off``/``yes``/``no`` as booleans: value keys are checked
  against the field's declared type at load time, so ``{ON: …}`` on a string field fails
  loudly instead of never matching.
* Milesight WS101's ``msgid`` is random per decode: profiles never use it.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path
from types import MappingProxyType
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from adapters._json import plausible_battery, put_volts
from adapters.errors import DecodeError, LinliError
from adapters.events import DeviceHints, DeviceKind, Event, EventKind, PressType
from adapters.raw import RawCodec

#: The profiles shipped with Linli.
BUILTIN_PROFILES = Path(__file__).parent / "profiles"

Attrs = dict[str, float | bool | str]
Scalar = str | int | float | bool


class ProfileError(LinliError):
    """A profile file is unreadable or invalid; the message names the file and the field."""


class FieldType(StrEnum):
    """The JSON type a decoded field must have; anything else is ``wrong_type``."""

    STRING = "string"
    INTEGER = "integer"
    NUMBER = "number"
    BOOLEAN = "boolean"


class Action(StrEnum):
    """What a field means. Each action documents how ``values`` is read."""

    #: ``values``: raw → true (open) / false (closed). Emits door_open / door_closed.
    DOOR = "door"
    #: ``values``: raw → press type (single/double/long/emergency) or null (not a press).
    #: Emits sos_press on a device registered as an SOS button (or for ``emergency``),
    #: else button_press.
    PRESS = "press"
    #: Boolean state; ``values`` (raw → true/false) is needed unless the field is boolean.
    OCCUPANCY = "occupancy"
    MOTION = "motion"
    TAMPER = "tamper"
    #: A number in ``unit`` (percent, volts or millivolts).
    BATTERY = "battery"
    #: A number in millimetres.
    DISTANCE = "distance"
    #: Hazard alarms, boolean states like ``door``: ``values`` maps raw → true (alarm) / false.
    SMOKE = "smoke"
    GAS = "gas"
    WATER_LEAK = "water_leak"
    FALL = "fall"
    #: Readings: degrees Celsius and percent relative humidity.
    TEMPERATURE = "temperature"
    HUMIDITY = "humidity"
    #: ``values``: raw → heartbeat / startup / null (frame type tags such as Bosch's
    #: ``type: "heartbeat"``). Emits a heartbeat; ``startup`` adds ``attrs.startup``.
    FRAME = "frame"


class BatteryUnit(StrEnum):
    PERCENT = "percent"
    VOLTS = "volts"
    MILLIVOLTS = "millivolts"


class Unknown(StrEnum):
    """What to do with a value of a known field that ``values`` does not list."""

    ERROR = "error"  # DecodeError bad_value
    IGNORE = "ignore"


_BOOL_ACTIONS = frozenset(
    {
        Action.DOOR,
        Action.OCCUPANCY,
        Action.MOTION,
        Action.TAMPER,
        Action.SMOKE,
        Action.GAS,
        Action.WATER_LEAK,
        Action.FALL,
    }
)
#: Actions whose field is a number that is reported as is.
_NUMBER_ACTIONS = frozenset({Action.BATTERY, Action.DISTANCE, Action.TEMPERATURE, Action.HUMIDITY})
#: The event kind of each boolean action other than ``door`` (which has two kinds).
_STATE_KINDS: dict[Action, EventKind] = {
    Action.OCCUPANCY: EventKind.OCCUPANCY,
    Action.MOTION: EventKind.MOTION,
    Action.TAMPER: EventKind.TAMPER,
    Action.SMOKE: EventKind.SMOKE,
    Action.GAS: EventKind.GAS,
    Action.WATER_LEAK: EventKind.WATER_LEAK,
    Action.FALL: EventKind.FALL,
}
#: Netvox codecs report a low battery as a string: ``Volt: "2.3(low battery)"``.
_LEADING_NUMBER = re.compile(r"^\s*(-?\d+(?:\.\d+)?)")
_FRAME_VALUES = frozenset({"heartbeat", "startup"})
_PRESS_VALUES = frozenset(p.value for p in PressType)


class _Model(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class FieldRule(_Model):
    """One decoded field and what it means."""

    #: Dotted path into the decoded object (``button_event.status``).
    field: str = Field(min_length=1)
    type: FieldType
    action: Action
    values: dict[Scalar, Scalar | None] | None = None
    unit: BatteryUnit | None = None
    unknown: Unknown = Unknown.ERROR
    #: Extra attributes copied from other decoded fields: attribute name → dotted path.
    attrs: dict[str, str] = Field(default_factory=dict)

    @model_validator(mode="after")
    def _consistent(self) -> FieldRule:
        action = self.action
        if action is Action.BATTERY:
            if self.unit is None:
                raise ValueError("a battery field needs `unit` (percent, volts or millivolts)")
        elif self.unit is not None:
            raise ValueError("`unit` is only for battery fields")
        if action in _NUMBER_ACTIONS:
            if self.type not in (FieldType.NUMBER, FieldType.INTEGER):
                raise ValueError(f"a {action.value} field must have type number or integer")
            if self.values is not None:
                raise ValueError(f"a {action.value} field takes no `values`")
            return self
        if self.values is None:
            if not (action in _BOOL_ACTIONS and self.type is FieldType.BOOLEAN):
                raise ValueError(f"a {action.value} field of type {self.type.value} needs `values`")
            return self
        for raw, meaning in self.values.items():
            if not _has_type(raw, self.type):
                raise ValueError(
                    f"value key {raw!r} is not of type {self.type.value}"
                    " (quote YAML keys such as 'ON' and 'off', which YAML reads as booleans)"
                )
            _check_meaning(action, raw, meaning)
        return self


def _check_meaning(action: Action, raw: Scalar, meaning: Scalar | None) -> None:
    if action in _BOOL_ACTIONS:
        if not isinstance(meaning, bool):
            raise ValueError(f"values[{raw!r}] must be true or false for a {action.value} field")
    elif action is Action.PRESS:
        if meaning is not None and meaning not in _PRESS_VALUES:
            raise ValueError(f"values[{raw!r}] must be one of {sorted(_PRESS_VALUES)} or null")
    elif action is Action.FRAME and meaning is not None and meaning not in _FRAME_VALUES:
        raise ValueError(f"values[{raw!r}] must be heartbeat, startup or null")


class TtsModel(_Model):
    """The TTS Device Repository identity of a model (``uplink_message.version_ids``)."""

    brand_id: str
    model_id: str


class ProfileFile(_Model):
    """The schema of one ``adapters/profiles/*.yaml`` file."""

    version: Literal[1] = 1
    id: str = Field(pattern=r"^[a-z0-9][a-z0-9._-]*$")
    vendor: str
    model: str
    description: str = ""
    #: Other names the registry's ``model`` field or a ChirpStack ``deviceProfileName`` may use.
    names: tuple[str, ...] = ()
    tts: tuple[TtsModel, ...] = ()
    fields: tuple[FieldRule, ...] = Field(min_length=1)
    #: The codec Linli decodes the device's raw bytes with when the network server publishes
    #: no decoded object (:mod:`adapters.raw`); its output is what ``fields`` read.
    raw: RawCodec | None = None


@dataclass(frozen=True, slots=True)
class Profile:
    """A loaded profile, ready to apply."""

    id: str
    vendor: str
    model: str
    rules: tuple[FieldRule, ...]
    source: str
    raw: RawCodec | None = None

    def apply(
        self,
        decoded: Mapping[str, Any],
        *,
        device_id: str,
        ts: float,
        family: str,
        hints: DeviceHints,
        common: Mapping[str, float | bool | str],
        topic: str,
    ) -> list[Event]:
        """The events a decoded object means; unknown fields are ignored.

        Each field stands on its own: a bad one (a battery of the wrong type) raises the first
        such error with every good field's event salvaged (:attr:`DecodeError.salvaged`), so a
        press beside it is still handled.
        """
        events: list[Event] = []
        first: DecodeError | None = None
        for rule in self.rules:
            try:
                raw = _lookup(decoded, rule.field, topic)
                if raw is None:
                    continue  # absent or null: unknown, not false
                event = _apply_rule(
                    rule,
                    raw,
                    decoded,
                    device_id=device_id,
                    ts=ts,
                    family=family,
                    hints=hints,
                    common=common,
                    topic=topic,
                )
            except DecodeError as exc:
                first = first or exc
                continue
            if event is not None:
                events.append(event)
        if first is not None:
            raise first.keeping(events)
        return events


def _norm(name: str) -> str:
    return " ".join(name.lower().replace("_", " ").replace("-", " ").split())


class ProfileSet:
    """Every loaded profile, looked up by name (registry ``model``) or envelope metadata.

    Immutable once built; build it with :func:`load_profiles`.
    """

    __slots__ = ("_by_name", "_by_tts", "profiles")

    def __init__(
        self,
        profiles: Iterable[Profile] = (),
        *,
        aliases: Mapping[str, str] | None = None,
        tts: Mapping[tuple[str, str], str] | None = None,
    ) -> None:
        self.profiles: tuple[Profile, ...] = tuple(profiles)
        by_id = {p.id: p for p in self.profiles}
        by_name = {_norm(p.id): p for p in self.profiles}
        for alias, profile_id in (aliases or {}).items():
            by_name[_norm(alias)] = by_id[profile_id]
        self._by_name: Mapping[str, Profile] = MappingProxyType(by_name)
        self._by_tts: Mapping[tuple[str, str], Profile] = MappingProxyType(
            {(b.lower(), m.lower()): by_id[pid] for (b, m), pid in (tts or {}).items()}
        )

    @classmethod
    def from_files(cls, files: Iterable[tuple[ProfileFile, str]]) -> ProfileSet:
        profiles: list[Profile] = []
        aliases: dict[str, str] = {}
        owner: dict[str, str] = {}
        tts: dict[tuple[str, str], str] = {}
        for spec, source in files:
            if any(p.id == spec.id for p in profiles):
                raise ProfileError(f"{source}: profile id {spec.id!r} is defined twice")
            profiles.append(Profile(spec.id, spec.vendor, spec.model, spec.fields, source, spec.raw))
            for name in (spec.id, f"{spec.vendor} {spec.model}", spec.model, *spec.names):
                key = _norm(name)
                if owner.get(key, spec.id) != spec.id:
                    raise ProfileError(f"{source}: name {name!r} is already used by profile {owner[key]!r}")
                owner[key] = spec.id
                aliases[name] = spec.id
            for ids in spec.tts:
                tts[(ids.brand_id, ids.model_id)] = spec.id
        return cls(profiles, aliases=aliases, tts=tts)

    def get(self, name: str) -> Profile | None:
        """The profile called ``name`` (id, ``Vendor Model``, model or an alias; any case)."""
        return self._by_name.get(_norm(name))

    def for_tts(self, brand_id: str, model_id: str) -> Profile | None:
        """The profile for a TTS Device Repository ``brand_id``/``model_id`` pair."""
        return self._by_tts.get((brand_id.lower(), model_id.lower()))

    def __len__(self) -> int:
        return len(self.profiles)


def load_profiles(paths: Iterable[Path | str] = (BUILTIN_PROFILES,)) -> ProfileSet:
    """Load profile files (a directory means its ``*.yaml``); errors name file and field."""
    loaded: list[tuple[ProfileFile, str]] = []
    for entry in paths:
        path = Path(entry)
        files = sorted(path.glob("*.yaml")) if path.is_dir() else [path]
        loaded.extend((_load_file(file), str(file)) for file in files)
    return ProfileSet.from_files(loaded)


_LOADER: type[yaml.SafeLoader] = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


def _load_file(file: Path) -> ProfileFile:
    try:
        # The C loader when libyaml is there: the hub loads every profile at start-up.
        doc = yaml.load(file.read_text(encoding="utf-8"), Loader=_LOADER)  # noqa: S506 - a safe loader
    except (OSError, yaml.YAMLError, UnicodeDecodeError) as exc:
        raise ProfileError(f"{file}: cannot read profile: {exc}") from None
    try:
        return ProfileFile.model_validate(doc)
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(part) for part in err['loc']) or '(file)'}: {err['msg']}" for err in exc.errors()
        )
        raise ProfileError(f"{file}: invalid profile: {problems}") from None


# -- applying a rule ----------------------------------------------------------------------------


def _has_type(value: object, kind: FieldType) -> bool:
    if kind is FieldType.STRING:
        return isinstance(value, str)
    if kind is FieldType.BOOLEAN:
        return isinstance(value, bool)
    if isinstance(value, bool) or not isinstance(value, int | float):
        return False
    if not math.isfinite(value):
        return False
    # ChirpStack v4 `object` is a protobuf Struct: integers arrive as doubles (12.0).
    return kind is FieldType.NUMBER or float(value).is_integer()


def _canonical(value: Scalar, kind: FieldType) -> Scalar:
    if kind is FieldType.INTEGER and isinstance(value, float):
        return int(value)
    return value


def _lookup(decoded: Mapping[str, Any], path: str, topic: str) -> object:
    node: object = decoded
    for part in path.split("."):
        if not isinstance(node, dict):
            raise DecodeError("wrong_type", f"{path}: expected an object at {part!r}", topic=topic)
        node = node.get(part)
        if node is None:
            return None
    return node


def _apply_rule(
    rule: FieldRule,
    raw: object,
    decoded: Mapping[str, Any],
    *,
    device_id: str,
    ts: float,
    family: str,
    hints: DeviceHints,
    common: Mapping[str, float | bool | str],
    topic: str,
) -> Event | None:
    low_text = False
    if rule.action is Action.BATTERY and isinstance(raw, str) and (found := _LEADING_NUMBER.match(raw)):
        # Netvox: "2.3(low battery)" is 2.3 V with the device's own low-battery flag.
        low_text = "low" in raw.lower()
        raw = float(found.group(1))
    if not _has_type(raw, rule.type):
        raise DecodeError(
            "wrong_type",
            f"{rule.field} must be of type {rule.type.value}, got {type(raw).__name__}",
            topic=topic,
        )
    value: Scalar = _canonical(raw, rule.type)  # type: ignore[arg-type]  # checked by _has_type
    attrs: Attrs = dict(common)
    for name, path in rule.attrs.items():
        extra = _lookup(decoded, path, topic)
        if isinstance(extra, str | bool):
            attrs[name] = extra
        elif isinstance(extra, int | float) and math.isfinite(extra):
            attrs[name] = float(extra)
    action = rule.action

    if action is Action.BATTERY:
        if low_text:
            attrs["battery_low"] = True
        return Event(device_id, EventKind.BATTERY, ts, family, *_battery(float(value), rule.unit, attrs))
    if action is Action.DISTANCE:
        attrs["unit"] = "mm"
        return Event(device_id, EventKind.DISTANCE, ts, family, float(value), attrs)
    if action is Action.TEMPERATURE:
        attrs["unit"] = "celsius"
        return Event(device_id, EventKind.TEMPERATURE, ts, family, float(value), attrs)
    if action is Action.HUMIDITY:
        attrs["unit"] = "percent"
        return Event(device_id, EventKind.HUMIDITY, ts, family, float(value), attrs)

    if rule.values is None:
        meaning: Scalar | None = value
    elif value in rule.values:  # keys and value share the declared type (checked at load)
        meaning = rule.values[value]
    elif rule.unknown is Unknown.IGNORE:
        return None
    else:
        raise DecodeError("bad_value", f"{rule.field} has an unknown value {str(value)[:40]!r}", topic=topic)
    if meaning is None:
        return None

    if action is Action.DOOR:
        kind = EventKind.DOOR_OPEN if meaning else EventKind.DOOR_CLOSED
        return Event(device_id, kind, ts, family, bool(meaning), attrs)
    if action in _STATE_KINDS:
        return Event(device_id, _STATE_KINDS[action], ts, family, bool(meaning), attrs)
    if action is Action.PRESS:
        return press_event(
            device_id, PressType(str(meaning)), str(value), ts=ts, family=family, hints=hints, attrs=attrs
        )
    # Action.FRAME
    if meaning == "startup":
        attrs["startup"] = True
    return Event(device_id, EventKind.HEARTBEAT, ts, family, None, attrs)


def _battery(amount: float, unit: BatteryUnit | None, attrs: Attrs) -> tuple[float | None, Attrs]:
    # An impossible reading (a codec's -1, a garbled field) is dropped and named in attrs.
    if unit is BatteryUnit.PERCENT:
        percent, _ = plausible_battery(amount, None, attrs)
        return percent, attrs
    _, volts = plausible_battery(None, amount / 1000.0 if unit is BatteryUnit.MILLIVOLTS else amount, attrs)
    put_volts(attrs, volts)
    return None, attrs


def press_event(
    device_id: str,
    press: PressType,
    action: str,
    *,
    ts: float,
    family: str,
    hints: DeviceHints,
    attrs: Mapping[str, float | bool | str],
) -> Event:
    """A press: an SOS on an SOS button (or an explicit emergency), else a plain button press."""
    full: Attrs = {"press": press.value, "action": action, **attrs}
    if press is PressType.EMERGENCY or hints.device_kind(device_id) is DeviceKind.SOS_BUTTON:
        return Event(device_id, EventKind.SOS_PRESS, ts, family, press.value, full)
    return Event(device_id, EventKind.BUTTON_PRESS, ts, family, press.value, full)
