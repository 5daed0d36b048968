"""Threshold trigger: a numeric field crossing a level, with a separate clear level.

* ``below: 2.6, clear_above: 2.8``: raise when a reading is < 2.6, clear when one is ≥ 2.8;
  readings in between change nothing (hysteresis). ``above``/``clear_below`` mirror it.
  Without a clear level the threshold itself is the clear level.
* The first reading ever seen raises only if it is past the threshold (a battery first seen
  at 2.3 V raises; one first seen at 3.0 V does nothing) — no "unknown → value" alerts.
* While raised, further bad readings produce no signal. An event of the trigger's kinds
  without the field (or with a value that is not a number) is no reading, but it is still
  the newest event of those kinds: an older one arriving after it is late and ignored, as is
  a redelivered one. The guard is per kinds, not per field, so that rules reading other
  fields of the same events share one (:class:`ThresholdGroup`).
"""

from __future__ import annotations

from collections.abc import Sequence
from functools import lru_cache
from typing import Any

from adapters.events import EventKind
from rules.expr import Getter, field_getter
from rules.model import Rule, ThresholdTrigger
from rules.signals import Signal, SignalAction
from rules.state import Key, Slot
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
    where_ok,
)


@lru_cache(maxsize=256)
def _getter(name: str) -> Getter:
    return field_getter(name)


def _inline_field(name: str) -> tuple[str | None, Getter | None]:
    """How :meth:`ThresholdGroup.on_event` reads a field: ``(None, None)`` for ``value``,
    ``(key, None)`` for ``attrs.<key>`` (what their getters read), else ``(None, getter)``."""
    getter = _getter(name)  # validates the name, as it always did
    if name == "value":
        return None, None
    head, _, key = name.partition(".")
    if head == "attrs" and key and "." not in key:
        return key, None
    return None, getter


def _reading(raw: object) -> float | None:
    """The numeric value of a field, or ``None`` (missing, not a number, or a bool).

    A float is returned as the object it is: the slot that keeps the reading then holds the
    event's own (which the device's state holds too). Compiled, returning ``raw`` once the
    check below has narrowed it to ``float`` made a new float object per reading and slot
    (docs/benchmarks.md, "Twenty-ninth pass"); ``kept`` is never narrowed.
    """
    kept: Any = raw
    if raw.__class__ is float:
        return kept  # type: ignore[no-any-return]
    if not isinstance(raw, int | float) or isinstance(raw, bool):
        return None
    return float(raw)


def _admits(trigger: ThresholdTrigger, ctx: EventContext) -> bool:
    """The trigger's own filters: event kind, ``where`` and its condition."""
    event = ctx.event
    if event.kind not in trigger.kinds:
        return False
    if trigger.where and not where_ok(trigger.where, event):
        return False
    return trigger.condition is None or trigger.condition.test(event, ctx.subject)


def _apply(
    rule: Rule,
    trigger: ThresholdTrigger,
    ctx: EventContext,
    key: Key,
    reading: float | None,
    *,
    slot: Slot | None = None,
) -> list[Signal]:
    """One reading for one rule's slot: raise, clear or (nearly always) just remember it.

    ``reading``: the field's value as the object the caller holds (``None``: no reading; the
    event only moves the slot's guard on). ``slot``: the slot to work on instead of the stored
    one (a group follower's, see :class:`ThresholdGroup`); it is stored only if the reading is
    new for it.
    """
    # ``value`` is the reading narrowed to a float for the comparisons; ``reading`` itself is
    # what the slot keeps: compiled, a narrowed float is a C double and storing it would box a
    # new float per slot (docs/benchmarks.md, "Twenty-ninth pass").
    value = reading
    state = ctx.state
    if slot is None:
        slot = state.get(key)
    if slot is None or slot.trigger != "threshold":
        slot = Slot("threshold")
    if accept(slot, ctx) is not ADMIT_NEW:
        return []
    if value is None:
        # No reading, but the newest event of the kinds: remembered as applied (the guard).
        state.put(key, slot, durable=False)
        return []
    slot.value = reading
    past = (trigger.below is not None and value < trigger.below) or (
        trigger.above is not None and value > trigger.above
    )
    if not slot.raised and not past:
        state.put(key, slot, durable=False)
        return []
    event = ctx.event
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
            slot.evidence = ()
            slot.since = None
    # A new reading that changes no alert state is routine; raising and clearing are not.
    state.put(key, slot, durable=action is not None)
    if action is None:
        return []
    return [make_signal(rule, action, key[1], event.ts, trace=trace, cause=event_cause(event, action))]


class ThresholdEngine(Engine):
    def watched(self, trigger: AnyTrigger) -> frozenset[EventKind] | None:
        assert isinstance(trigger, ThresholdTrigger)
        return frozenset(trigger.kinds)

    def on_event(
        self, rule: Rule, trigger: AnyTrigger, ctx: EventContext, active: bool, key: Key
    ) -> list[Signal]:
        assert isinstance(trigger, ThresholdTrigger)
        if not active or not _admits(trigger, ctx):
            return []
        return _apply(rule, trigger, ctx, key, _reading(_getter(trigger.field)(ctx.event, ctx.subject)))

    def on_timer(self, rule: Rule, slot: Slot, key: Key, now: float) -> list[Signal]:
        slot.due = None
        return []


class ThresholdGroup(Step):
    """The threshold rules one (device, event kind) meets, as one evaluator step.

    Every battery report meets four of them (low/critical × percent/volts). As four steps each
    read its field, looked up its slot and checked for a redelivery through three calls; here
    each field is read once per event and a routine reading (newer than the slot's last, not
    past the level, nothing raised) is remembered inline. Anything else goes the single rule's
    way (:func:`_apply`), so alerts and signals are those of the rules one by one, in the same
    order. Only rules without a rule-level condition or active windows are grouped (the
    evaluator checks those per step).

    **Followers keep no slot while nothing is raised.** Members without filters of their own
    (``where``, condition) for the same kinds see exactly the same events, so their slots'
    redelivery guard (``last_ts``, ``seen``) is the same, whichever field each reads (an event
    without a rule's field still moves its guard on, see :func:`_apply`); only the alert state
    differs. The first such member (the leader) keeps its slot as a single rule does; each later
    one (a follower) has a slot only while its alert is raised. Its guard is the leader's,
    copied into the follower's new slot when a reading raises it, and the slot is deleted once
    the alert is cleared. For the four battery rules (low/critical × volts/percent) that is one
    slot per device instead of four: the fifteenth pass made it two, with a leader per field
    (≈ 0.4 KB per reporting device, half the routine updates), the thirty-fifth one (≈ 0.18 KB
    more, and one routine update per battery report; docs/benchmarks.md). A follower's last
    value is not kept while it has no slot; nothing reads it but a trace.
    """

    __slots__ = ("_fields", "_members")

    def __init__(self, *, members: Sequence[tuple[Rule, ThresholdTrigger, str]]) -> None:
        fields = tuple(dict.fromkeys(trigger.field for _, trigger, _ in members))
        #: Per field, how it is read (:func:`_inline_field`): ``value`` and ``attrs.<key>``, every
        #: shipped threshold's field, inline; any other name through its getter. Each event
        #: reads every field (docs/benchmarks.md, "Twenty-fifth pass").
        self._fields = tuple(_inline_field(name) for name in fields)
        plain = [not trigger.where and trigger.condition is None for _, trigger, _ in members]
        firsts: dict[frozenset[EventKind], int] = {}
        leaders: list[int] = []
        for index, (_, trigger, _) in enumerate(members):
            first = firsts.setdefault(frozenset(trigger.kinds), index) if plain[index] else index
            leaders.append(first if first != index else -1)
        #: (index, rule, trigger, rule id, index of its field, kinds, below, above, plain,
        #: leader, leads): ``plain`` = no own filters beyond the event kind; ``leader``: a
        #: follower's leader's index, else -1; ``leads``: has followers. No device in it: one
        #: group serves every device of a plan (the state key is made per event). The trigger's
        #: values are read here once: it is a pydantic model, and each attribute read goes
        #: through its ``__getattr__`` hook.
        self._members = tuple(
            (
                index,
                rule,
                trigger,
                rule_id,
                fields.index(trigger.field),
                frozenset(trigger.kinds),
                trigger.below,
                trigger.above,
                plain[index],
                leaders[index],
                index in leaders,
            )
            for index, (rule, trigger, rule_id) in enumerate(members)
        )

    def on_event(
        self, rule: Rule, trigger: AnyTrigger, ctx: EventContext, active: bool, key: Key
    ) -> list[Signal]:
        event, subject = ctx.event, ctx.subject
        # The readings, in this frame: a comprehension is a call of its own in CPython 3.11,
        # and so is each getter and ``_reading`` (a float, the usual reading, needs neither).
        values: list[float | None] = []
        for attr, getter in self._fields:
            if getter is not None:
                raw = getter(event, subject)
            elif attr is None:
                raw = event.value
            else:
                raw = event.attrs.get(attr)
            values.append(_reading(raw))
        state, ts = ctx.state, ctx.ts
        device = subject.device_id
        signals: list[Signal] = []
        kind = event.kind
        #: A leader's guard before this event, by its index: what its followers' slots hold.
        guards: dict[int, tuple[float | None, str | tuple[str, ...]] | None] = {}
        for (
            index,
            rule_,
            trigger_,
            rule_id,
            field,
            kinds,
            below,
            above,
            plain,
            leader,
            leads,
        ) in self._members:
            if kind not in kinds or (not plain and not _admits(trigger_, ctx)):
                continue
            # ``None``: the event has no reading for this rule, but it still moves the guard on.
            value = reading = values[field]
            past = value is not None and (
                (below is not None and value < below) or (above is not None and value > above)
            )
            key_ = (rule_id, device)
            slot = state.get(key_)
            if leader >= 0:
                if slot is not None and slot.trigger != "threshold":
                    state.delete(key_)  # another trigger type's (a reload): not this rule's memory
                    slot = None
                if slot is None and not past:
                    continue  # routine, or no reading: the leader's slot has taken the event's time
                out = self._follow(
                    rule_, trigger_, ctx, key_, reading=reading, slot=slot, leader=leader, guards=guards
                )
                if out:
                    signals.extend(out)
                continue
            if leads:
                guards[index] = (
                    (slot.last_ts, slot.seen) if slot is not None and slot.trigger == "threshold" else None
                )
            if (
                value is not None
                and slot is not None
                and slot.trigger == "threshold"
                and not slot.raised
                and (last := slot.last_ts) is not None
                and ts > last
                and not past
            ):
                # The routine reading: what accept() and _apply() do for it, without the calls.
                slot.last_ts = ctx.stamp
                slot.seen = ctx.ident
                slot.value = reading
                state.put(key_, slot, durable=False)
                continue
            out = _apply(rule_, trigger_, ctx, key_, reading, slot=slot)
            if out:
                signals.extend(out)
        return signals

    def _follow(
        self,
        rule: Rule,
        trigger: ThresholdTrigger,
        ctx: EventContext,
        key: Key,
        *,
        reading: float | None,
        slot: Slot | None,
        leader: int,
        guards: dict[int, tuple[float | None, str | tuple[str, ...]] | None],
    ) -> list[Signal]:
        """A follower's event that its leader's slot does not settle: its own slot (raised, or
        written before it followed), or a reading past its level."""
        state = ctx.state
        owned = slot is not None
        if slot is not None and guards.get(leader) is None:
            # The leader has no slot yet (rule state of an older version, or a reload that made
            # another rule the leader): this one's guard serves the followers after it.
            guards[leader] = (slot.last_ts, slot.seen)
        if slot is None:
            guard = guards.get(leader)
            slot = Slot("threshold") if guard is None else Slot("threshold", last_ts=guard[0], seen=guard[1])
        # A new slot is stored only if this reading raises it (a late or redelivered one leaves
        # nothing behind); an own slot is deleted once nothing is raised in it.
        out = _apply(rule, trigger, ctx, key, reading, slot=slot)
        if owned and not slot.raised:
            # Cleared (or a slot of before followers): the leader's guard serves, once it is at
            # least as new as this one's (it may have been made just now).
            lead_key = (self._members[leader][3], key[1])
            lead = state.get(lead_key)
            last = slot.last_ts
            if lead is not None and last is not None and (lead.last_ts is None or last > lead.last_ts):
                lead.last_ts, lead.seen = last, slot.seen
                state.put(lead_key, lead, durable=False)
            state.delete(key)
        return out


def _params(trigger: ThresholdTrigger) -> dict[str, float]:
    if trigger.below is not None:
        clear = trigger.clear_above if trigger.clear_above is not None else trigger.below
        return {"below": trigger.below, "clear_above": clear}
    assert trigger.above is not None
    clear = trigger.clear_below if trigger.clear_below is not None else trigger.above
    return {"above": trigger.above, "clear_below": clear}
