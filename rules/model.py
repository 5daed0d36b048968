"""The rule model: what a rule pack says, validated.

Models are frozen pydantic models so that a pack is validated field by field at load time
and a loaded rule can be shared freely. Conditions are compiled at load (:mod:`rules.expr`),
so an unknown name or a syntax error is a load error naming the rule and the field.
"""

from __future__ import annotations

import math
import re
from enum import StrEnum
from typing import Annotated, Literal

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    PlainSerializer,
    PlainValidator,
    model_validator,
)

from adapters.events import DeviceKind, EventKind
from rules.expr import Expr, compile_expr, field_getter

_PART = r"(\d+(?:\.\d+)?)\s*(ms|s|m|h|d)"
_DURATION = re.compile(rf"^\s*(?:{_PART}\s*)+$")
_PARTS = re.compile(_PART)
_UNIT_S = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}
_CLOCK = re.compile(r"^([01]\d|2[0-4]):([0-5]\d)$")

Scalar = str | bool | int | float


#: The longest duration a rule may name: a year and a day. Past it (or ``inf``/``nan``, which
#: YAML's ``.inf`` gives) a timer is due never, and the rule silently never fires.
MAX_DURATION_S = 366 * 86400.0


def parse_duration(value: object) -> float:
    """``"90s"``, ``"5m"``, ``"24h"``, ``"2d"``, ``"1h30m"`` or a number of seconds → seconds."""
    try:
        if isinstance(value, int | float) and not isinstance(value, bool):
            seconds = float(value)
        elif isinstance(value, str) and _DURATION.match(value):
            seconds = sum(float(n) * _UNIT_S[unit] for n, unit in _PARTS.findall(value))
        else:
            raise ValueError(f"expected a duration such as 90s, 5m, 24h; got {value!r}")
    except OverflowError:  # an integer of hundreds of digits (found in review: it crashed the loader)
        seconds = math.inf
    if seconds < 0:
        raise ValueError("a duration cannot be negative")
    if not seconds <= MAX_DURATION_S:  # also NaN and inf: a timer due at inf never fires
        raise ValueError(f"a duration must be at most {MAX_DURATION_S / 86400:.0f} days")
    return seconds


def parse_clock(value: object) -> int:
    """``"HH:MM"`` (``"24:00"`` allowed as an end) → minutes after midnight."""
    if isinstance(value, int) and not isinstance(value, bool) and 0 <= value <= 1440:
        return value
    match = _CLOCK.match(value) if isinstance(value, str) else None
    minutes = int(match.group(1)) * 60 + int(match.group(2)) if match else -1
    if not 0 <= minutes <= 1440:
        raise ValueError(f"expected a time of day HH:MM (00:00 to 24:00); got {value!r}")
    return minutes


Seconds = Annotated[float, BeforeValidator(parse_duration)]
Clock = Annotated[int, BeforeValidator(parse_clock)]
Condition = Annotated[
    Expr, PlainValidator(compile_expr), PlainSerializer(lambda e: e.source, return_type=str)
]


class Severity(StrEnum):
    CRITICAL = "critical"
    MAJOR = "major"
    MINOR = "minor"
    INFO = "info"


class TriggerType(StrEnum):
    EVENT = "event"
    DURATION = "duration"
    ABSENCE = "absence"
    COUNT = "count"
    THRESHOLD = "threshold"


class Day(StrEnum):
    MON = "mon"
    TUE = "tue"
    WED = "wed"
    THU = "thu"
    FRI = "fri"
    SAT = "sat"
    SUN = "sun"

    @property
    def weekday(self) -> int:
        """Monday is 0, as :meth:`datetime.date.weekday`."""
        return list(Day).index(self)


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid", populate_by_name=True)


class Text(_Frozen):
    """User-facing text: zh-CN first, English available."""

    zh: str = Field(min_length=1)
    en: str = ""


class Scope(_Frozen):
    """Which subjects a rule applies to; an empty list means "any"."""

    device_kinds: tuple[DeviceKind, ...] = ()
    grids: tuple[str, ...] = ()
    communities: tuple[str, ...] = ()
    #: Subject attributes that must equal the given values, e.g. ``resident.living_alone: true``.
    attributes: dict[str, Scalar] = Field(default_factory=dict)


class Window(_Frozen):
    """Local time ``from``–``to`` on ``days`` (in the evaluator's zone).

    A window with ``to`` earlier than ``from`` crosses midnight and belongs to the day it
    starts: ``{days: [fri], from: "22:00", to: "06:00"}`` is Friday 22:00 to Saturday 06:00.
    """

    days: tuple[Day, ...] = tuple(Day)
    start: Clock = Field(alias="from")
    end: Clock = Field(alias="to")

    @model_validator(mode="after")
    def _not_empty(self) -> Window:
        if self.start in (self.end, 1440):
            raise ValueError("a window needs from before 24:00 and from ≠ to")
        return self


class Match(_Frozen):
    """Which events a trigger reacts to: kinds, an optional value, attributes and a condition."""

    kinds: tuple[EventKind, ...] = Field(min_length=1)
    #: The event's value must equal this (``true`` for a door open, occupancy …); omit for any.
    value: Scalar | None = None
    #: Event attributes that must equal the given values (e.g. ``press: long``).
    where: dict[str, Scalar] = Field(default_factory=dict)
    condition: Condition | None = None


class EventTrigger(Match):
    """Raise at once when a matching event arrives.

    A repeat for the same subject within ``merge_window`` (counted from the last notifying
    event) only updates the open alert; a repeat after it re-notifies.
    """

    type: Literal["event"]
    merge_window: Seconds = 60.0


class DurationTrigger(_Frozen):
    """A state that must hold ``for`` a time: ``when`` starts it, ``until`` ends it (hysteresis).

    Raises when the time has passed, again every ``renotify`` while it holds, and clears
    when ``until`` matches after raising.
    """

    type: Literal["duration"]
    when: Match
    until: Match
    for_: Seconds = Field(alias="for", gt=0)
    renotify: Seconds | None = Field(default=None, gt=0)


class AbsenceTrigger(_Frozen):
    """No event of ``kinds`` (any kind when empty) from a subject ``for`` a time.

    ``for_heartbeats: 2`` means twice the subject's ``device.heartbeat_s`` attribute; ``for``
    then serves subjects without that attribute.
    """

    type: Literal["absence"]
    kinds: tuple[EventKind, ...] = ()
    #: Only events with this value count as a sign of life (``true``: a PIR's "motion
    #: cleared" report is not activity); omit for any value.
    value: Scalar | None = None
    for_: Seconds | None = Field(default=None, alias="for", gt=0)
    for_heartbeats: float | None = Field(default=None, gt=0, le=10_000, allow_inf_nan=False)

    @model_validator(mode="after")
    def _some_time(self) -> AbsenceTrigger:
        if self.for_ is None and self.for_heartbeats is None:
            raise ValueError("an absence trigger needs `for` or `for_heartbeats`")
        return self


class CountTrigger(Match):
    """``count`` matching events within a sliding ``window``: raises once per window.

    After raising, more matching events within ``window`` of the raise only update the
    alert; the trigger re-arms when ``window`` has passed since the raise (and, with
    ``clear: true``, clears the alert then).
    """

    type: Literal["count"]
    count: int = Field(ge=1, le=10_000)
    window: Seconds = Field(gt=0)
    clear: bool = False


class ThresholdTrigger(_Frozen):
    """A numeric field crossing ``below`` or ``above``; clears at ``clear_above`` / ``clear_below``.

    The first reading raises only if it is already past the threshold.
    """

    type: Literal["threshold"]
    kinds: tuple[EventKind, ...] = Field(min_length=1)
    where: dict[str, Scalar] = Field(default_factory=dict)
    condition: Condition | None = None
    field: str = Field(default="value", pattern=r"^(value|attrs\.[A-Za-z][A-Za-z0-9_]*)$")
    # Finite: a NaN level never trips (every comparison with it is false), inf always does.
    below: float | None = Field(default=None, allow_inf_nan=False)
    above: float | None = Field(default=None, allow_inf_nan=False)
    clear_above: float | None = Field(default=None, allow_inf_nan=False)
    clear_below: float | None = Field(default=None, allow_inf_nan=False)

    @model_validator(mode="after")
    def _levels(self) -> ThresholdTrigger:
        field_getter(self.field)
        if (self.below is None) == (self.above is None):
            raise ValueError("a threshold trigger needs exactly one of `below` or `above`")
        if self.below is not None:
            if self.clear_below is not None:
                raise ValueError("`clear_below` goes with `above`; use `clear_above` with `below`")
            if self.clear_above is not None and self.clear_above < self.below:
                raise ValueError("`clear_above` must be at least `below`")
        if self.above is not None:
            if self.clear_above is not None:
                raise ValueError("`clear_above` goes with `below`; use `clear_below` with `above`")
            if self.clear_below is not None and self.clear_below > self.above:
                raise ValueError("`clear_below` must be at most `above`")
        return self


Trigger = Annotated[
    EventTrigger | DurationTrigger | AbsenceTrigger | CountTrigger | ThresholdTrigger,
    Field(discriminator="type"),
]
TRIGGER_TYPES: frozenset[str] = frozenset(TriggerType)


class Rule(_Frozen):
    id: str = Field(pattern=r"^[a-z0-9_]+(\.[a-z0-9_]+)*$")
    title: Text
    category: str = Field(pattern=r"^[a-z0-9_]+$")
    severity: Severity
    scope: Scope = Scope()
    #: Local-time windows in which the rule reacts (any window); empty means always.
    active: tuple[Window, ...] = ()
    #: Checked for every event the rule considers (and, for absence, against the subject at start).
    condition: Condition | None = None
    trigger: Trigger
    enabled: bool = True
    description: str = ""

    @model_validator(mode="after")
    def _absence_always_active(self) -> Rule:
        if self.active and isinstance(self.trigger, AbsenceTrigger):
            raise ValueError("`active` windows are not supported on absence triggers")
        return self


class Pack(_Frozen):
    pack: str
    version: Literal[1] = 1
    rules: tuple[Rule, ...]
