"""Threshold trigger: a numeric field crossing a level, with a separate clear level.

* ``below: 2.6, clear_above: 2.8``: raise when a reading is < 2.6, clear when one is ≥ 2.8;
  readings in between change nothing (hysteresis). ``above``/``clear_below`` mirror it.
  Without a clear level the threshold itself is the clear level.
* The first reading ever seen raises only if it is past the threshold (a battery first seen
  at 2.3 V raises; one first seen at 3.0 V does nothing) — no "unknown → value" alerts.
* While raised, further bad readings produce no signal. Readings without the field (or not
  numeric) are ignored, as are events older than the newest applied.
"""

from __future__ import annotations

from functools import lru_cache

from adapters.events import EventKind
from rules.expr import Getter, field_getter
from rules.model import Rule, ThresholdTrigger
from rules.signals import Signal, SignalAction
from rules.state import Key, Slot
from rules.triggers.base import (
    Admit,
    AnyTrigger,
    EventContext,
    accept,
    event_cause,
    event_json,
    make_signal,
    where_ok,
)


@lru_cache(maxsize=256)
def _getter(name: str) -> Getter:
    return field_getter(name)


class ThresholdEngine:
    def watched(self, trigger: AnyTrigger) -> frozenset[EventKind] | None:
        assert isinstance(trigger, ThresholdTrigger)
        return frozenset(trigger.kinds)

    def on_event(
        self, rule: Rule, trigger: AnyTrigger, ctx: EventContext, active: bool, key: Key
    ) -> list[Signal]:
        # Every battery report meets four of these: the checks are ordered cheapest first and a
        # reading that changes nothing returns before any parameter or trace is built.
        assert isinstance(trigger, ThresholdTrigger)
        event = ctx.event
        if not active or event.kind not in trigger.kinds:
            return []
        if trigger.where and not where_ok(trigger.where, event):
            return []
        subject = ctx.subject
        if trigger.condition is not None and not trigger.condition.test(event, subject):
            return []
        raw = _getter(trigger.field)(event, subject)
        if raw.__class__ is not float and (not isinstance(raw, int | float) or isinstance(raw, bool)):
            return []
        value = float(raw)
        state = ctx.state
        slot = state.get(key)
        if slot is None or slot.trigger != "threshold":
            slot = Slot("threshold")
        if accept(slot, ctx) is not Admit.NEW:
            return []
        slot.value = value
        past = (trigger.below is not None and value < trigger.below) or (
            trigger.above is not None and value > trigger.above
        )
        if not slot.raised and not past:
            state.put(key, slot, durable=False)
            return []
        action: SignalAction | None = None
        # This runs for every reading: build parameters and trace only when something happens.
        if not slot.raised and past:
            action = SignalAction.RAISE
            slot.raised = True
            slot.since = event.ts
            slot.notified = event.ts
            slot.params = _params(trigger)
            slot.evidence = [event_json(event)]
        elif slot.raised:
            params = slot.params or _params(trigger)
            if (trigger.below is not None and value >= params["clear_above"]) or (
                trigger.above is not None and value <= params["clear_below"]
            ):
                action = SignalAction.CLEAR
        if action is not None:
            params = slot.params or _params(trigger)
            trace: dict[str, object] = {
                "event": event_json(event),
                "field": trigger.field,
                "value": value,
                "params": params,
            }
            if action is SignalAction.CLEAR:
                trace["events"] = [*slot.evidence, event_json(event)]
                trace["since"] = slot.since
                slot.raised = False
                slot.evidence = []
                slot.since = None
        # A new reading that changes no alert state is routine; raising and clearing are not.
        state.put(key, slot, durable=action is not None)
        if action is None:
            return []
        return [make_signal(rule, action, key[1], event.ts, trace=trace, cause=event_cause(event, action))]

    def on_timer(self, rule: Rule, slot: Slot, key: Key, now: float) -> list[Signal]:
        slot.due = None
        return []


def _params(trigger: ThresholdTrigger) -> dict[str, float]:
    if trigger.below is not None:
        clear = trigger.clear_above if trigger.clear_above is not None else trigger.below
        return {"below": trigger.below, "clear_above": clear}
    assert trigger.above is not None
    clear = trigger.clear_below if trigger.clear_below is not None else trigger.above
    return {"above": trigger.above, "clear_below": clear}
