"""Duration trigger: ``when`` starts a state, ``until`` ends it; raise after ``for``, renotify.

* ``when`` only starts the state inside the rule's ``active`` windows; ``until`` is honoured
  at any time.
* ``until`` cancels the timer even if it is overdue (the hub calls ``due`` only after
  catching up on the events of a downtime, so a condition that ended while the hub was
  down never fires) and clears the alert if it had been raised.
* Renotifies stay on the cadence ``due + k·renotify``; after a downtime only the next one
  still in the future is scheduled, so a late timer fires once.
* Events older than the newest applied for the rule and subject are ignored.
"""

from __future__ import annotations

from adapters.events import EventKind
from rules.model import DurationTrigger, Rule
from rules.signals import Signal, SignalAction
from rules.state import NO_PARAMS, Key, Slot
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


def next_on_cadence(due: float, every: float, now: float) -> float:
    """The first ``due + k·every`` (k ≥ 1) strictly after ``now``."""
    steps = max(1, int((now - due) // every) + 1)
    nxt = due + steps * every
    while nxt <= now:  # float rounding
        nxt += every
    return nxt


class DurationEngine(Engine):
    def watched(self, trigger: AnyTrigger) -> frozenset[EventKind] | None:
        assert isinstance(trigger, DurationTrigger)
        return frozenset(trigger.when.kinds) | frozenset(trigger.until.kinds)

    def on_event(
        self, rule: Rule, trigger: AnyTrigger, ctx: EventContext, active: bool, key: Key
    ) -> list[Signal]:
        event, subject, state = ctx.event, ctx.subject, ctx.state
        assert isinstance(trigger, DurationTrigger)
        ends = matches(trigger.until, event, subject)
        starts = not ends and active and matches(trigger.when, event, subject)
        if not (ends or starts):
            return []
        slot = slot_for(state, key, "duration")
        if accept(slot, ctx) is not ADMIT_NEW:
            return []
        signals: list[Signal] = []
        if ends and slot.since is not None:
            if slot.raised:
                action = SignalAction.CLEAR
                trace = {
                    "event": event_json(event),
                    "events": [*slot.evidence, event_json(event)],
                    "since": slot.since,
                    "held_s": event.ts - slot.since,
                    "params": dict(slot.params),
                }
                signals.append(
                    make_signal(rule, action, key[1], event.ts, trace=trace, cause=event_cause(event, action))
                )
            _reset(slot)
        elif starts and slot.since is None:
            slot.since = event.ts
            slot.due = event.ts + trigger.for_
            params = {"for": trigger.for_}
            if trigger.renotify is not None:
                params["renotify"] = trigger.renotify
            slot.params = params
            slot.evidence = [event_json(event)]
        state.put(key, slot)
        return signals

    def on_timer(self, rule: Rule, slot: Slot, key: Key, now: float) -> list[Signal]:
        due = slot.due
        if due is None or slot.since is None:
            slot.due = None
            return []
        slot.count = slot.count + 1 if slot.raised else 1
        renotify = slot.params.get("renotify")
        trace = {
            "events": list(slot.evidence),
            "since": slot.since,
            "due": due,
            "fired_at": now,
            "held_s": due - slot.since,
            "renotify": slot.count - 1,
            "params": dict(slot.params),
        }
        slot.raised = True
        slot.notified = due
        slot.due = next_on_cadence(due, renotify, now) if renotify else None
        action = SignalAction.RAISE
        return [make_signal(rule, action, key[1], due, trace=trace, cause=timer_cause(due, action))]


def _reset(slot: Slot) -> None:
    slot.since = None
    slot.due = None
    slot.raised = False
    slot.notified = None
    slot.count = 0
    slot.params = NO_PARAMS
    slot.evidence = ()
