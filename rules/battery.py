"""The battery level the rules call low: one number for people's filters, read from the packs.

The console's "low battery" filter must agree with the alerts: a battery is low on the devices
page exactly when an enabled percent rule (``kinds: [battery]``, ``field: value``, ``below``)
would raise for it. With a warning rule at 20 % and a critical one at 10 %, low is below 20 %.
"""

from __future__ import annotations

from collections.abc import Iterable

from adapters.events import EventKind
from rules.model import Rule, ThresholdTrigger

#: Used only when no enabled pack has a battery-percent rule (nothing would alert at all then).
FALLBACK_LOW_PCT = 20.0


def low_battery_pct(rules: Iterable[Rule]) -> float:
    """The highest ``below`` of the enabled battery-percent threshold rules, else the fallback."""
    levels = [
        rule.trigger.below
        for rule in rules
        if rule.enabled
        and isinstance(rule.trigger, ThresholdTrigger)
        and EventKind.BATTERY in rule.trigger.kinds
        and rule.trigger.field == "value"
        and rule.trigger.below is not None
    ]
    return max(levels) if levels else FALLBACK_LOW_PCT
