"""Per-community, per-grid and per-resident overrides of a rule's trigger parameters.

The hub reads them from its config and passes them to the evaluator::

    {"elderly.living_alone_inactive": {
        "community:110105001001": {"for": "48h"},
        "resident:r-17": {"for": "12h"}},
     "device.battery_low_volts": {"grid:110105001001001": {"below": 2.5}}}

A selector is ``community:<code>``, ``grid:<code>`` or ``resident:<id>`` (the subject's
``resident.id`` attribute); the most specific one that matches a subject wins (resident,
then grid, then community), and its fields replace the trigger's. Fields are the trigger's
scalar parameters (``for``, ``renotify``, ``merge_window``, ``window``, ``count``,
``for_heartbeats``, ``below``, ``above``, ``clear_above``, ``clear_below``); each
overridden trigger is validated like a pack, once, when overrides are compiled. Parameters
are resolved when a state begins (a duration's ``for`` when ``when`` matches), so a timer
already running keeps the value it started with.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from pydantic import TypeAdapter, ValidationError

from rules.errors import RuleError
from rules.model import Rule, Trigger
from rules.subject import RESIDENT_ID, Subject
from rules.triggers import AnyTrigger

#: ``{rule_id: {selector: {field: value}}}`` as read from config.
OverrideConfig = Mapping[str, Mapping[str, Mapping[str, object]]]

SELECTOR_KINDS = ("resident", "grid", "community")
OVERRIDABLE = frozenset(
    {
        "for",
        "renotify",
        "merge_window",
        "window",
        "count",
        "for_heartbeats",
        "below",
        "above",
        "clear_above",
        "clear_below",
    }
)
_TRIGGER: TypeAdapter[AnyTrigger] = TypeAdapter(Trigger)
_SOURCE = "overrides"


@dataclass(frozen=True, slots=True)
class RuleOverrides:
    """The overridden triggers of one rule, by selector."""

    by_selector: Mapping[str, AnyTrigger]

    def trigger_for(self, default: AnyTrigger, subject: Subject) -> AnyTrigger:
        table = self.by_selector
        resident = subject.fact(RESIDENT_ID)
        if resident is not None and (hit := table.get(f"resident:{resident}")) is not None:
            return hit
        if subject.grid is not None and (hit := table.get(f"grid:{subject.grid}")) is not None:
            return hit
        if subject.community is not None and (hit := table.get(f"community:{subject.community}")) is not None:
            return hit
        return default


def compile_overrides(rules: Mapping[str, Rule], config: OverrideConfig | None) -> dict[str, RuleOverrides]:
    """Validate ``config`` against ``rules``; errors are :class:`RuleError`\\ s naming rule and field."""
    compiled: dict[str, RuleOverrides] = {}
    for rule_id, selectors in (config or {}).items():
        rule = rules.get(rule_id)
        if rule is None:
            raise RuleError("override for a rule that is not loaded", file=_SOURCE, rule=rule_id)
        table: dict[str, AnyTrigger] = {}
        for selector, fields in selectors.items():
            kind, _, code = selector.partition(":")
            if kind not in SELECTOR_KINDS or not code:
                raise RuleError(
                    f"selector {selector!r} must be community:<code>, grid:<code> or resident:<id>",
                    file=_SOURCE,
                    rule=rule_id,
                )
            doc = rule.trigger.model_dump(by_alias=True, exclude_none=True)
            for name, value in fields.items():
                if name not in OVERRIDABLE or name not in _field_names(rule.trigger):
                    raise RuleError(
                        f"cannot override {name!r} of a {rule.trigger.type} trigger",
                        file=_SOURCE,
                        rule=rule_id,
                        field=f"{selector}.{name}",
                    )
                doc[name] = value
            try:
                table[selector] = _TRIGGER.validate_python(doc)
            except ValidationError as exc:
                first = exc.errors()[0]
                loc = [str(p) for p in first["loc"]][1:]
                raise RuleError(
                    first["msg"], file=_SOURCE, rule=rule_id, field=".".join([selector, *loc])
                ) from None
            for name in fields:
                problem = _nonsense(table[selector], name)
                if problem is not None:
                    raise RuleError(problem, file=_SOURCE, rule=rule_id, field=f"{selector}.{name}")
        if table:
            compiled[rule_id] = RuleOverrides(table)
    return compiled


#: Times an override may set, at least this long (seconds): ``for: 1ms`` on the inactivity rule
#: raised an alert a millisecond after every door event (found in review).
MIN_OVERRIDE_S = 1.0
_TIMES = frozenset({"for", "renotify", "merge_window", "window"})
_LEVELS = frozenset({"below", "above", "clear_above", "clear_below"})
_BATTERY = "battery"


def _nonsense(trigger: AnyTrigger, name: str) -> str | None:
    """Why the overridden field ``name`` of ``trigger`` (validated: durations in seconds) would
    switch its rule off or make it fire on everything, if so.

    A battery level is a percentage (0–100) or a voltage (above 0): ``below: -5`` on percent or
    ``below: 0`` on volts silenced the battery alarm of a grid without a word (review).
    """
    value = getattr(trigger, "for_" if name == "for" else name, None)
    if not isinstance(value, int | float) or isinstance(value, bool):
        return None
    if name in _TIMES and value < MIN_OVERRIDE_S:
        return f"{name} {value} s is shorter than {MIN_OVERRIDE_S:g} s"
    kinds = {str(getattr(k, "value", k)) for k in getattr(trigger, "kinds", ())}
    if name in _LEVELS and kinds == {_BATTERY}:
        percent = getattr(trigger, "field", "value") == "value"
        if value <= 0 or (percent and value > 100):
            scale = "a percentage, 0 to 100" if percent else "a voltage, above 0"
            return f"{name} {value} is no battery level ({scale})"
    return None


def _field_names(trigger: AnyTrigger) -> set[str]:
    return {info.alias or name for name, info in type(trigger).model_fields.items()}
