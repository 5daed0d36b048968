"""What the evaluator emits: signals to raise, update or clear an alert."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import StrEnum

from rules.model import Severity


class SignalAction(StrEnum):
    #: A new occurrence that people must be told about (opens an alert or re-notifies).
    RAISE = "raise"
    #: The same occurrence again (within the merge window): count it, tell nobody.
    UPDATE = "update"
    #: The condition is over.
    CLEAR = "clear"


@dataclass(frozen=True, slots=True)
class Signal:
    """A request to change the alert of (``rule_id``, ``subject``); applying it twice is harmless.

    ``trace`` records why (JSON-ready): rule, trigger type, the matching event(s) with values
    and times, the timer's due time, the thresholds used. ``key`` identifies the occurrence
    (``rule|subject|cause``): the same key twice is the same occurrence (a redelivery or a
    replay), so a store can drop it; distinct renotifies of one alert have distinct keys.
    """

    action: SignalAction
    rule_id: str
    category: str
    severity: Severity
    subject: str
    ts: float
    title_zh: str
    title_en: str
    trace: Mapping[str, object] = field(default_factory=dict)
    key: str = ""
