"""Event trigger: a matching event raises at once; repeats within ``merge_window`` update."""

from __future__ import annotations

from adapters.events import EventKind
from rules.model import EventTrigger, Rule
from rules.signals import Signal, SignalAction
from rules.state import Key, Slot
from rules.triggers.base import (
    ADMIT_DUPLICATE,
    ADMIT_LATE,
    AnyTrigger,
    Engine,
    EventContext,
    accept,
    event_cause,
    event_json,
    make_signal,
    matches,
    slot_for,
)


class EventEngine(Engine):
    """Late events (older than the newest applied) are counted as UPDATE and change nothing:
    a newer event has already notified. An exact redelivery produces no signal."""

    def watched(self, trigger: AnyTrigger) -> frozenset[EventKind] | None:
        assert isinstance(trigger, EventTrigger)
        return frozenset(trigger.kinds)

    def on_event(
        self, rule: Rule, trigger: AnyTrigger, ctx: EventContext, active: bool, key: Key
    ) -> list[Signal]:
        event, subject, state = ctx.event, ctx.subject, ctx.state
        assert isinstance(trigger, EventTrigger)
        if not active or not matches(trigger, event, subject):
            return []
        slot = slot_for(state, key, "event")
        verdict = accept(slot, ctx)
        if verdict is ADMIT_DUPLICATE:
            return []
        params = {"merge_window": trigger.merge_window}
        if verdict is ADMIT_LATE:
            action = SignalAction.UPDATE
            trace = {"event": event_json(event), "merged": True, "late": True, "params": params}
            return [
                make_signal(rule, action, key[1], event.ts, trace=trace, cause=event_cause(event, action))
            ]
        repeat = slot.notified is not None and event.ts - slot.notified < trigger.merge_window
        if repeat:
            slot.count += 1
            action = SignalAction.UPDATE
        else:
            slot.notified = event.ts
            slot.count = 1
            action = SignalAction.RAISE
        state.put(key, slot)
        trace = {"event": event_json(event), "merged": repeat, "count": slot.count, "params": params}
        return [make_signal(rule, action, key[1], event.ts, trace=trace, cause=event_cause(event, action))]

    def on_timer(self, rule: Rule, slot: Slot, key: Key, now: float) -> list[Signal]:
        slot.due = None
        return []
