"""The rule model: what a rule pack says, validated.

Models are frozen pydantic models so that a pack is validated field by field at load time
and a loaded rule can be shared freely.
"""

from __future__ import annotations

import re
from enum import StrEnum
from typing import Annotated, Literal

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field

from adapters.events import DeviceKind, EventKind

_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h|d)\s*$")
_UNIT_S = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}


def parse_duration(value: object) -> float:
    """``"90s"``, ``"5m"``, ``"24h"``, ``"2d"`` or a number of seconds → seconds."""
    if isinstance(value, int | float) and not isinstance(value, bool):
        seconds = float(value)
    elif isinstance(value, str) and (match := _DURATION.match(value)):
        seconds = float(match.group(1)) * _UNIT_S[match.group(2)]
    else:
        raise ValueError(f"expected a duration such as 90s, 5m, 24h; got {value!r}")
    if seconds < 0:
        raise ValueError("a duration cannot be negative")
    return seconds


Seconds = Annotated[float, BeforeValidator(parse_duration)]


class Severity(StrEnum):
    CRITICAL = "critical"
    MAJOR = "major"
    MINOR = "minor"
    INFO = "info"


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class Text(_Frozen):
    """User-facing text: zh-CN first, English available."""

    zh: str
    en: str = ""


class Scope(_Frozen):
    """Which subjects a rule applies to; an empty list means "any"."""

    device_kinds: tuple[DeviceKind, ...] = ()
    grids: tuple[str, ...] = ()
    communities: tuple[str, ...] = ()
    #: Subject attributes that must equal the given values, e.g. ``resident.living_alone: true``.
    attributes: dict[str, str | bool | int | float] = Field(default_factory=dict)


class EventTrigger(_Frozen):
    """Raise at once when a matching event arrives.

    A repeat for the same subject within ``merge_window`` only updates the open alert
    (count, last seen); a repeat after it re-notifies.
    """

    type: Literal["event"]
    kinds: tuple[EventKind, ...] = Field(min_length=1)
    #: Event attributes that must equal the given values (e.g. ``press: long``).
    where: dict[str, str | bool | int | float] = Field(default_factory=dict)
    merge_window: Seconds = 60.0


Trigger = EventTrigger


class Rule(_Frozen):
    id: str = Field(pattern=r"^[a-z0-9_]+(\.[a-z0-9_]+)*$")
    title: Text
    category: str = Field(pattern=r"^[a-z0-9_]+$")
    severity: Severity
    scope: Scope = Scope()
    trigger: Trigger
    enabled: bool = True


class Pack(_Frozen):
    pack: str
    version: Literal[1] = 1
    rules: tuple[Rule, ...]
