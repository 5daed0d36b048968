"""Absence trigger: no event of the given kinds from a subject for a time (deadman).

The deadline of every expected subject is seeded by :meth:`rules.evaluator.Evaluator.start`
(deadline = start + ``for``), so a device never heard from since start-up is still caught.
Every matching event moves the deadline to ``event.ts + for``; one after the alert clears it
and re-arms. The alert raises once (no renotify). Events older than the newest applied are
ignored.
"""

from __future__ import annotations

from collections.abc import Mapping

from adapters.events import EventKind
from rules.model import AbsenceTrigger, Rule
from rules.signals import Signal, SignalAction
from rules.state import Key, Slot, StatePort
from rules.subject import Subject
from rules.triggers.base import (
    ADMIT_NEW,
    AnyTrigger,
    Engine,
    EventContext,
    Step,
    accept,
    event_cause,
    event_json,
    make_signal,
    timer_cause,
)

HEARTBEAT_ATTRIBUTE = "device.heartbeat_s"

#: What the absence slots armed at one start share per period (:meth:`AbsenceEngine.arm`):
#: ``{"for": period}``, the deadline ``now + period`` and the start ``now``, one object each.
Seeded = tuple[Mapping[str, float], float | None, float | None]


def period_for(trigger: AbsenceTrigger, subject: Subject) -> float | None:
    """``for_heartbeats × device.heartbeat_s`` when both are known, else ``for`` (may be ``None``)."""
    if trigger.for_heartbeats is not None:
        beat = subject.fact(HEARTBEAT_ATTRIBUTE)
        if isinstance(beat, int | float) and not isinstance(beat, bool) and beat > 0:
            return trigger.for_heartbeats * float(beat)
    return trigger.for_


class AbsenceEngine(Engine):
    def watched(self, trigger: AnyTrigger) -> frozenset[EventKind] | None:
        assert isinstance(trigger, AbsenceTrigger)
        return frozenset(trigger.kinds) if trigger.kinds else None

    def on_event(
        self, rule: Rule, trigger: AnyTrigger, ctx: EventContext, active: bool, key: Key
    ) -> list[Signal]:
        assert isinstance(trigger, AbsenceTrigger)
        period = period_for(trigger, ctx.subject)
        if period is None:
            return []
        return _apply(rule, trigger, ctx, key, {"for": period})

    def arm(
        self,
        trigger: AbsenceTrigger,
        subject: Subject,
        key: Key,
        state: StatePort,
        now: float,
        *,
        shared: dict[float, Seeded],
    ) -> None:
        """Seed the deadline of an expected subject that has no state yet.

        ``shared``: the caller's parameters and deadline per period, so that 10⁵ slots armed at
        a start hold one ``{"for": period}`` and one ``now + period`` per period, not one each
        (slots never change either in place; a float each was ≈ 4 MB at 100 000 devices,
        docs/benchmarks.md, "Thirty-eighth pass").
        """
        if state.has(key):
            return  # a restored slot may still be its stored text: asking does not read it
        period = period_for(trigger, subject)
        if period is None:
            return
        seeded = shared.get(period)
        if seeded is None:
            # Boxed once here, stored from the tuple: compiled, ``now + period`` is a C double
            # that each slot's store would box anew.
            deadline: float | None = now + period
            start: float | None = now
            seeded = shared[period] = ({"for": period}, deadline, start)
        # Routine, not an alert-state change: at a first start 10⁵ deadlines are armed at once,
        # and as durable changes the first message's per-turn flush serialised them all on the
        # event loop (0.5–0.9 s at 101 300 devices, in front of whatever press came first). The
        # routine flush writes them within seconds, in slices; a crash before that re-arms them
        # at the next start, from then.
        state.put(key, Slot("absence", since=seeded[2], due=seeded[1], params=seeded[0]), durable=False)

    def on_timer(self, rule: Rule, slot: Slot, key: Key, now: float) -> list[Signal]:
        due = slot.due
        slot.due = None
        if due is None or slot.raised:
            return []
        slot.raised = True
        slot.notified = due
        trace = {
            # The newest event(s) applied, as kind|value at last_seen (kept small: this runs per event).
            "last_events": slot.seen_idents() if slot.last_ts is not None else [],
            "last_seen": slot.last_ts,
            "silent_since": slot.since,
            "never_seen": slot.last_ts is None,
            "due": due,
            "fired_at": now,
            "params": dict(slot.params),
        }
        action = SignalAction.RAISE
        return [make_signal(rule, action, key[1], due, trace=trace, cause=timer_cause(due, action))]


def _apply(
    rule: Rule,
    trigger: AbsenceTrigger,
    ctx: EventContext,
    key: Key,
    params: Mapping[str, float],
) -> list[Signal]:
    """An event for one subject's deadline, its period already resolved: ``params`` is
    ``{"for": period}``, shared by the caller's slots."""
    event = ctx.event
    if trigger.kinds and event.kind not in trigger.kinds:
        return []
    if trigger.value is not None and event.value != trigger.value:
        return []
    return _move(rule, ctx, key, params)


def _move(rule: Rule, ctx: EventContext, key: Key, params: Mapping[str, float]) -> list[Signal]:
    """An event the trigger admits moves the deadline on (and clears a raised silence)."""
    period = params["for"]
    event, state = ctx.event, ctx.state
    slot = state.get(key)
    if slot is not None and not slot.raised and slot.last_ts == event.ts and slot.due == event.ts + period:
        # Another event of the same report (a message carries several): nothing moves.
        return []
    fresh = slot is None or slot.trigger != "absence"
    if slot is None or fresh:
        slot = Slot("absence")
    if accept(slot, ctx) is not ADMIT_NEW:
        return []
    signals: list[Signal] = []
    if slot.raised:
        action = SignalAction.CLEAR
        trace = {
            "event": event_json(event),
            "silent_since": slot.since,
            "silent_s": event.ts - (slot.since if slot.since is not None else event.ts),
            "params": dict(slot.params),
        }
        signals.append(
            make_signal(rule, action, key[1], event.ts, trace=trace, cause=event_cause(event, action))
        )
        slot.raised = False
    slot.since = ctx.stamp
    slot.due = event.ts + period
    if slot.params is not params:
        if slot.params.get("for") != period:
            fresh = True
        slot.params = params  # equal values: the shared object instead of the slot's own
    # Moving the deadline on is routine (every reading does it); a clear is not.
    state.put(key, slot, durable=fresh or bool(signals))
    return signals


class AbsenceStep(Step):
    """One absence rule with its period resolved, as an evaluator step.

    The period (``for``, or ``for_heartbeats`` × the subject's heartbeat) depends only on the
    override-resolved trigger and the subject's attributes; the evaluator's plan is built, and
    shared, per such period (:func:`period_for`). A message's second and third event then
    leave after one slot lookup.
    """

    __slots__ = ("_kinds", "_params", "_period", "_value")

    def __init__(self, *, period: float, trigger: AbsenceTrigger) -> None:
        self._period = period
        #: Shared by the slots this step moves on (one step serves every device of a plan).
        self._params: Mapping[str, float] = {"for": period}
        # Read once: the trigger is a pydantic model, whose every attribute read goes through
        # its ``__getattr__`` hook (≈ 10× a plain slot's), and this runs for every event.
        self._kinds = frozenset(trigger.kinds)
        self._value = trigger.value

    def on_event(
        self, rule: Rule, trigger: AnyTrigger, ctx: EventContext, active: bool, key: Key
    ) -> list[Signal]:
        kinds, value = self._kinds, self._value
        if kinds or value is not None:
            event = ctx.event
            if (kinds and event.kind not in kinds) or (value is not None and event.value != value):
                return []
        else:
            period = self._period
            slot = ctx.state.get(key)
            ts = ctx.ts
            if slot is not None and slot.last_ts == ts and slot.due == ts + period and not slot.raised:
                return []  # the report's other events: what _move() decides for them, sooner
        return _move(rule, ctx, key, self._params)
