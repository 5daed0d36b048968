"""What every trigger shares: event matching, the redelivery/late-event guard, signals, traces."""

from __future__ import annotations

import sys
from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import Enum

from mypy_extensions import mypyc_attr

from adapters.events import Event, EventKind
from rules.expr import Expr, equal
from rules.model import (
    AbsenceTrigger,
    CountTrigger,
    DurationTrigger,
    EventTrigger,
    Match,
    Rule,
    Scalar,
    ThresholdTrigger,
)
from rules.signals import Signal, SignalAction
from rules.state import JsonDict, Key, Slot, StatePort
from rules.subject import Subject

AnyTrigger = EventTrigger | DurationTrigger | AbsenceTrigger | CountTrigger | ThresholdTrigger


class Admit(Enum):
    NEW = "new"
    #: The same event (kind, value) at the same time as one already applied: a redelivery.
    DUPLICATE = "duplicate"
    #: Older than the newest event applied for this rule and subject.
    LATE = "late"


# The verdicts as module constants, for code that runs per event: on CPython 3.11 every
# ``EnumClass.MEMBER`` read goes through ``EnumType.__getattr__``'s slow hook (≈ 180 ns; gone in 3.12).
ADMIT_NEW = Admit.NEW
ADMIT_DUPLICATE = Admit.DUPLICATE
ADMIT_LATE = Admit.LATE


def event_identity(event: Event) -> str:
    """``kind|value``, one object per distinct identity while any slot keeps it.

    Slots keep their last event's identity (``seen``, the redelivery guard), and across 10⁵
    devices those are few (``battery|80.0``, ``door_open|True``), where an object each was
    ≈ 60 bytes a reporting device (issue 14). ``sys.intern`` shares them without a table of
    ours: an interned string no slot holds any more is freed (CPython interns mortally).
    """
    return sys.intern(f"{event.kind._value_}|{event.value!r}")


def slot_for(state: StatePort, key: Key, trigger: str) -> Slot:
    """The subject's slot for this rule, or a fresh one (also when the rule changed trigger type)."""
    slot = state.get(key)
    return slot if slot is not None and slot.trigger == trigger else Slot(trigger)


def accept(slot: Slot, ctx: EventContext) -> Admit:
    """Whether the event is new for this slot; a NEW event is recorded as applied."""
    last = slot.last_ts
    ts = ctx.ts
    if last is None or ts > last:
        slot.last_ts = ctx.stamp
        # The event's own identity string, shared by every slot it touches: no new object.
        slot.seen = ctx.ident
        return ADMIT_NEW
    if ts < last:
        return ADMIT_LATE
    ident = ctx.ident
    seen = slot.seen
    if seen.__class__ is str:  # one identity (never ``in``: that would test for a substring)
        if seen == ident:
            return ADMIT_DUPLICATE
        slot.seen = (seen, ident)
        return ADMIT_NEW
    if ident in seen:
        return ADMIT_DUPLICATE
    if len(seen) < 32:
        slot.seen = (*seen, ident) if seen else ident
    return ADMIT_NEW


def where_ok(where: Mapping[str, Scalar], event: Event) -> bool:
    attrs = event.attrs
    return all(equal(attrs.get(k), v) for k, v in where.items())


def condition_ok(condition: Expr | None, event: Event, subject: Subject) -> bool:
    return condition is None or condition.test(event, subject)


def matches(m: Match, event: Event, subject: Subject) -> bool:
    if event.kind not in m.kinds:
        return False
    if m.value is not None and not equal(event.value, m.value):
        return False
    if m.where and not where_ok(m.where, event):
        return False
    return condition_ok(m.condition, event, subject)


def event_json(event: Event) -> JsonDict:
    return {
        "kind": event.kind._value_,
        "family": event.family,
        "ts": event.ts,
        "value": event.value,
        "attrs": dict(event.attrs),
    }


def make_signal(
    rule: Rule, action: SignalAction, subject: str, ts: float, *, trace: JsonDict, cause: str
) -> Signal:
    key = f"{rule.id}|{subject}|{cause}"
    full: JsonDict = {"rule": rule.id, "trigger": rule.trigger.type, "key": key, **trace}
    return Signal(
        action=action,
        rule_id=rule.id,
        category=rule.category,
        severity=rule.severity,
        subject=subject,
        ts=ts,
        title_zh=rule.title.zh,
        title_en=rule.title.en,
        trace=full,
        key=key,
    )


def event_cause(event: Event, action: SignalAction) -> str:
    return f"event|{event.kind._value_}|{event.ts!r}|{event.value!r}|{action.value}"


def timer_cause(due: float, action: SignalAction) -> str:
    return f"timer|{due!r}|{action.value}"


def fresh(slot: Slot | None, trigger: str) -> Slot:
    """The slot to work on: the stored one, or a new one if none (or another trigger type's)."""
    if slot is None or slot.trigger != trigger:
        return Slot(trigger)
    return slot


@dataclass(slots=True)
class EventContext:
    """One event being evaluated: shared by every rule that sees it.

    Valid during the engine call it is handed to, and no longer: the evaluator reuses one
    context, setting its fields for each event (a new one per event was ≈ 2 k instructions;
    docs/benchmarks.md, "Twenty-fifth pass"). A trigger keeps what it needs (``ctx.ts``,
    ``ctx.ident``, ``event_json(ctx.event)``), never the context.
    """

    event: Event
    subject: Subject
    state: StatePort
    ts: float
    #: ``kind|value``: with ``ts``, what makes a redelivered event the same event.
    ident: str
    #: ``ts`` as one Python object, for every slot the event is stored in (``last_ts``,
    #: ``since``). Compiled, ``ts`` is a C double and each such store boxed it anew: a float
    #: object per slot, 32 bytes each, three a reporting device (docs/benchmarks.md,
    #: "Twenty-ninth pass"). Store it as read from here, never through a local narrowed to
    #: ``float``: that would box it again.
    stamp: float | None = field(default=None, repr=False, compare=False)

    def __post_init__(self) -> None:
        if self.stamp is None:
            self.stamp = self.ts

    @classmethod
    def of(cls, event: Event, subject: Subject, state: StatePort) -> EventContext:
        return cls(event, subject, state, event.ts, event_identity(event))


@mypyc_attr(allow_interpreted_subclasses=True)
class Step:
    """What a plan step runs for an event: an engine, or a step specialised for a plan shape
    (:class:`~rules.triggers.threshold.ThresholdGroup`, :class:`~rules.triggers.absence.AbsenceStep`).

    A base class, not a ``Protocol`` or a bound method: compiled, the evaluator's call to a
    bound method went through the callee's Python wrapper (an argument tuple parsed by name,
    five arguments, three steps an event); to a native base class's method it is a vtable
    call (docs/benchmarks.md, "Twenty-eighth pass").
    """

    __slots__ = ()

    def on_event(
        self, rule: Rule, trigger: AnyTrigger, ctx: EventContext, active: bool, key: Key
    ) -> list[Signal]:
        """Apply the event to this rule's slot ``key`` (``(rule.id, subject)``, built once per
        subject by the evaluator, not per event); ``active``: inside the rule's windows.
        ``ctx`` is valid for this call only (the evaluator reuses it for the next event)."""
        raise NotImplementedError


@mypyc_attr(allow_interpreted_subclasses=True)
class Engine(Step):
    """One trigger type's behaviour; stateless itself, all memory in :class:`Slot`\\ s."""

    __slots__ = ()

    def watched(self, trigger: AnyTrigger) -> frozenset[EventKind] | None:
        """Event kinds this trigger reacts to (``None``: every kind)."""
        raise NotImplementedError

    def on_timer(self, rule: Rule, slot: Slot, key: Key, now: float) -> list[Signal]:
        """Handle a due timer; must set ``slot.due`` to the next time (or ``None``); the caller puts."""
        raise NotImplementedError
