"""Count trigger: ``count`` matching events within a sliding ``window``.

* Only events inside the rule's ``active`` windows count.
* Reaching ``count`` raises once, and the counted events are forgotten; further matching
  events within ``window`` of the raise are UPDATEs (counted on the alert, nobody told).
* ``window`` after the raise the trigger re-arms (a timer); with ``clear: true`` that timer
  also clears the alert. A new raise then needs ``count`` fresh events.
* Events older than the newest applied are ignored; an exact redelivery is not counted twice.
"""

from __future__ import annotations

from adapters.events import EventKind
from rules.model import CountTrigger, Rule
from rules.signals import Signal, SignalAction
from rules.state import Key, Slot
from rules.triggers.base import (
    ADMIT_NEW,
    AnyTrigger,
    Engine,
    EventContext,
    accept,
    event_cause,
    event_json,
    make_signal,
    matches,
    slot_for,
    timer_cause,
)

#: At most this many event summaries are kept for the trace.
_EVIDENCE = 20


class CountEngine(Engine):
    def watched(self, trigger: AnyTrigger) -> frozenset[EventKind] | None:
        assert isinstance(trigger, CountTrigger)
        return frozenset(trigger.kinds)

    def on_event(
        self, rule: Rule, trigger: AnyTrigger, ctx: EventContext, active: bool, key: Key
    ) -> list[Signal]:
        event, subject, state = ctx.event, ctx.subject, ctx.state
        assert isinstance(trigger, CountTrigger)
        if not active or not matches(trigger, event, subject):
            return []
        slot = slot_for(state, key, "count")
        if accept(slot, ctx) is not ADMIT_NEW:
            return []
        params = {"count": float(trigger.count), "window": trigger.window}
        if slot.raised:
            slot.count += 1
            state.put(key, slot)
            action = SignalAction.UPDATE
            trace = {"event": event_json(event), "count": slot.count, "params": params}
            return [
                make_signal(rule, action, key[1], event.ts, trace=trace, cause=event_cause(event, action))
            ]
        horizon = event.ts - trigger.window
        times = [t for t in slot.times if t > horizon]
        times.append(event.ts)
        evidence = [e for e in slot.evidence if _ts(e) > horizon][-(_EVIDENCE - 1) :]
        evidence.append(event_json(event))
        if len(times) < trigger.count:
            slot.times = times[-trigger.count :] or ()
            slot.evidence = evidence or ()
            state.put(key, slot)
            return []
        slot.raised = True
        slot.since = event.ts
        slot.notified = event.ts
        slot.due = event.ts + trigger.window
        slot.count = len(times)
        slot.params = params
        slot.times = ()
        slot.evidence = ()
        state.put(key, slot)
        action = SignalAction.RAISE
        trace = {
            "event": event_json(event),
            "events": evidence,
            "times": times,
            "count": len(times),
            "params": params,
        }
        return [make_signal(rule, action, key[1], event.ts, trace=trace, cause=event_cause(event, action))]

    def on_timer(self, rule: Rule, slot: Slot, key: Key, now: float) -> list[Signal]:
        due = slot.due
        slot.due = None
        if due is None or not slot.raised:
            return []
        slot.raised = False
        count = slot.count
        slot.count = 0
        trigger = rule.trigger
        if not (isinstance(trigger, CountTrigger) and trigger.clear):
            return []
        action = SignalAction.CLEAR
        trace = {
            "since": slot.since,
            "due": due,
            "fired_at": now,
            "count": count,
            "params": dict(slot.params),
        }
        return [make_signal(rule, action, key[1], due, trace=trace, cause=timer_cause(due, action))]


def _ts(summary: dict[str, object]) -> float:
    ts = summary.get("ts")
    return float(ts) if isinstance(ts, int | float) else 0.0
