"""The evaluator: events and time in, alert signals out.

* :meth:`Evaluator.on_event` — an event from a subject; cost grows with the rules that can
  match it: candidates are memoised per (event kind, device kind, grid, community) from the
  rules' static scope; attribute scope, conditions and windows are checked only for those.
* :meth:`Evaluator.due` — every timer due at or before ``now`` fires exactly once.
* :meth:`Evaluator.start` — seeds the deadlines of absence rules for the expected subjects.
* :meth:`Evaluator.reload` — new rules; state of rules that still exist with the same
  trigger type is kept, the rest dropped.

Time comes only from the arguments (``now``, ``event.ts``); there is no clock, no sleep and
no I/O here. All memory is in the :class:`rules.state.StatePort`.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from adapters.events import DeviceKind, Event, EventKind
from rules.errors import RuleError
from rules.expr import Expr, equal
from rules.model import AbsenceTrigger, Rule, Scalar, ThresholdTrigger, TriggerType
from rules.overrides import OverrideConfig, RuleOverrides, compile_overrides
from rules.signals import Signal
from rules.state import StatePort
from rules.subject import Subject
from rules.triggers import ABSENCE, ENGINES, AnyTrigger, Engine, EventContext
from rules.triggers.absence import HEARTBEAT_ATTRIBUTE, AbsenceStep, Seeded, period_for
from rules.triggers.base import Step as RuleStep
from rules.triggers.base import event_identity
from rules.triggers.threshold import ThresholdGroup
from rules.windows import DEFAULT_ZONE, ActiveWindows, zone

_MEMO_LIMIT = 200_000
#: Distinct plans (few: one per community/grid scope, overrides and heartbeat in use).
_SHAPE_LIMIT = 20_000
#: Distinct plan tables (:class:`PlanTable`): one per profile, as few as the shapes.
_PROFILE_LIMIT = 20_000
#: Remembered event identities (``kind|value``): a fleet's are few (battery levels, link
#: qualities, door states), and past this many the memo starts over. The memo keeps these
#: interned strings alive (``event_identity`` otherwise lets one go with the last slot holding it).
_IDENT_LIMIT = 4096
#: The value types whose identity is remembered: ``repr`` is a function of the value for them
#: (with the type: ``1``, ``1.0`` and ``True`` are equal keys otherwise) — except a float zero,
#: whose sign ``repr`` shows and equality does not (see ``on_event``). Strings are not: a
#: value of any length could be held by the memo.
_IDENT_TYPES = frozenset({float, int, bool, type(None)})
StaticKey = tuple[EventKind | None, DeviceKind | None, str | None, str | None]
#: One candidate rule resolved for a kind of subject: the engine (or a step made for the plan),
#: the rule, its override-resolved trigger, condition, windows and the rule id of the state key (the key is
#: ``(rule id, device)``, made per event). Built once per plan shape and shared by every device
#: of that shape, so the hot loop resolves no override per event and 10⁵ devices hold a
#: handful of plans, not one each (≈ 2 KB a device when each had its own; docs/benchmarks.md,
#: "Ninth pass"). A plain tuple: unpacking it is the cheapest access Python has.
Step = tuple[
    RuleStep,
    Rule,
    AnyTrigger,
    Expr | None,
    ActiveWindows | None,
    str,
]
#: What a plan depends on besides its candidates: the event kind, the candidates' and their
#: resolved triggers' identities (held alive by the cached entry) and the absence periods.
_Shape = tuple[EventKind, tuple[int, ...], tuple[int, ...], tuple[float | None, ...]]
#: A subject's values (and their types: ``True`` is not ``1``) of the attributes rules scope on.
Signature = tuple[tuple[object, type], ...]
#: Everything of a subject that its plans depend on (:meth:`Evaluator.plan`): device kind, grid,
#: community, scope signature, heartbeat (absence periods) and the identities of the triggers
#: its overrides resolve to. Subjects with equal profiles have equal plans for every kind.
_Profile = tuple[DeviceKind | None, str | None, str | None, Signature, tuple[object, type], tuple[int, ...]]


class PlanTable:
    """The plans, per event kind, of every subject of one profile (``Subject.plans``).

    ``owner`` is the token of the evaluator and rule set that built it: a table from another
    evaluator, or from before a reload, is not used (:meth:`Evaluator.plan` replaces it).
    """

    __slots__ = ("owner", "steps")

    def __init__(self, owner: object) -> None:
        self.owner = owner
        self.steps: dict[EventKind, tuple[Step, ...]] = {}


@dataclass(frozen=True, slots=True)
class CompiledRule:
    rule: Rule
    engine: Engine
    #: Event kinds the trigger reacts to (``None``: all).
    kinds: frozenset[EventKind] | None
    device_kinds: frozenset[DeviceKind] | None
    grids: frozenset[str] | None
    communities: frozenset[str] | None
    attributes: tuple[tuple[str, Scalar], ...]
    condition: Expr | None
    active: ActiveWindows | None
    overrides: RuleOverrides | None

    def static_match(
        self, kind: EventKind | None, device_kind: DeviceKind | None, grid: str | None, community: str | None
    ) -> bool:
        if kind is not None and self.kinds is not None and kind not in self.kinds:
            return False
        if self.device_kinds is not None and device_kind not in self.device_kinds:
            return False
        if self.grids is not None and grid not in self.grids:
            return False
        return self.communities is None or community in self.communities

    def scope_match(self, subject: Subject) -> bool:
        # ``fact``, not ``attributes``: a resident-scoped rule reads the device's own id.
        return all(equal(subject.fact(name), value) for name, value in self.attributes)

    def subject_match(self, subject: Subject, event: Event | None) -> bool:
        if not self.scope_match(subject):
            return False
        return self.condition is None or self.condition.test(event, subject)

    def trigger_for(self, subject: Subject) -> AnyTrigger:
        if self.overrides is None:
            return self.rule.trigger
        return self.overrides.trigger_for(self.rule.trigger, subject)


#: An absence rule as :meth:`Evaluator.start` checks it per subject: the rule, its id, the
#: set of devices it expects, and whether its scope and condition say nothing more.
_Candidate = tuple[CompiledRule, str, set[str], bool]


def _compile(rule: Rule, zone_name: str, overrides: RuleOverrides | None) -> CompiledRule:
    engine = ENGINES[TriggerType(rule.trigger.type)]
    scope = rule.scope
    return CompiledRule(
        rule=rule,
        engine=engine,
        kinds=engine.watched(rule.trigger),
        device_kinds=frozenset(scope.device_kinds) or None,
        grids=frozenset(scope.grids) or None,
        communities=frozenset(scope.communities) or None,
        attributes=tuple(scope.attributes.items()),
        condition=rule.condition,
        active=ActiveWindows.build(rule.active, zone_name),
        overrides=overrides,
    )


def _bound(steps: list[Step], periods: Sequence[float | None]) -> tuple[Step, ...]:
    """The steps specialised for one plan shape, with the same signals, slots and order.

    * An absence rule's period (``periods``, aligned with ``steps``) is bound here, once
      (:class:`AbsenceStep`); a rule whose period is unknown for the shape never acts and is
      left out.
    * Consecutive threshold rules without rule-level condition or windows become one
      :class:`ThresholdGroup` step (the four battery rules: one call, each field read once).
    """
    out: list[Step] = []
    group: list[Step] = []

    def close_group() -> None:
        if len(group) > 1:
            members = [(rule, trigger, rule_id) for _, rule, trigger, _, _, rule_id in group]
            thresholds = [(r, t, i) for r, t, i in members if isinstance(t, ThresholdTrigger)]
            first = group[0]
            out.append((ThresholdGroup(members=thresholds), first[1], first[2], None, None, first[5]))
        else:
            out.extend(group)
        group.clear()

    for step, period in zip(steps, periods, strict=True):
        _, rule, trigger, condition, active, rule_id = step
        if isinstance(trigger, ThresholdTrigger) and condition is None and active is None:
            group.append(step)
            continue
        close_group()
        if isinstance(trigger, AbsenceTrigger):
            if period is None:
                continue
            out.append(
                (
                    AbsenceStep(period=period, trigger=trigger),
                    rule,
                    trigger,
                    condition,
                    active,
                    rule_id,
                )
            )
            continue
        out.append(step)
    close_group()
    return tuple(out)


class Evaluator:
    """Evaluates rules against events and time; state lives behind ``state``.

    ``zone`` names the IANA time zone of ``active`` windows. ``overrides`` adjusts trigger
    parameters per community, grid or resident (see :mod:`rules.overrides`).
    """

    def __init__(
        self,
        *,
        rules: Sequence[Rule],
        state: StatePort,
        zone: str = DEFAULT_ZONE,
        overrides: OverrideConfig | None = None,
    ) -> None:
        self._state = state
        self._zone = zone
        self._rules: dict[str, CompiledRule] = {}
        self._static_memo: dict[StaticKey, list[CompiledRule]] = {}
        #: This rule set's token: the :class:`PlanTable` a subject holds is used only if its
        #: ``owner`` is this object (a new one per install, so a reload plans every subject anew).
        self._token = object()
        #: The plan tables per profile. Nothing here is per device: a subject points at its
        #: table (``Subject.plans``), and devices that rules cannot tell apart share one.
        self._tables: dict[_Profile, PlanTable] = {}
        #: Rules whose trigger an override may change, for the profiles.
        self._overridden: tuple[CompiledRule, ...] = ()
        #: The plans themselves, per shape, with the candidates and triggers their key names.
        self._shapes: dict[_Shape, tuple[list[CompiledRule], tuple[AnyTrigger, ...], tuple[Step, ...]]] = {}
        self._memo: dict[
            tuple[EventKind, DeviceKind | None, str | None, str | None, Signature], list[CompiledRule]
        ] = {}
        self._scope_attributes: tuple[str, ...] = ()
        #: ``event_identity`` per ``(kind, value type, value)``: see ``on_event``.
        self._idents: dict[tuple[EventKind, type, object], str] = {}
        #: The context ``on_event`` hands its steps: made at the first event, then reused.
        self._ctx: EventContext | None = None
        self._install(rules, overrides)

    def _install(self, rules: Sequence[Rule], overrides: OverrideConfig | None) -> None:
        try:
            zone(self._zone)
        except (KeyError, ValueError) as exc:
            raise RuleError(f"unknown time zone {self._zone!r}", file="evaluator") from exc
        by_id: dict[str, Rule] = {}
        for rule in rules:
            if rule.id in by_id:
                raise RuleError("duplicate rule id", file="evaluator", rule=rule.id)
            by_id[rule.id] = rule
        table = compile_overrides(by_id, overrides)
        self._rules = {r.id: _compile(r, self._zone, table.get(r.id)) for r in by_id.values() if r.enabled}
        self._static_memo = {}
        self._memo = {}
        self._token = object()
        self._tables = {}
        self._overridden = tuple(c for c in self._rules.values() if c.overrides is not None)
        self._shapes = {}
        self._scope_attributes = tuple(
            sorted({name for c in self._rules.values() for name, _ in c.attributes})
        )

    # -- introspection ----------------------------------------------------------------------

    @property
    def state(self) -> StatePort:
        return self._state

    @property
    def rules(self) -> tuple[Rule, ...]:
        return tuple(c.rule for c in self._rules.values())

    @property
    def watched_kinds(self) -> frozenset[EventKind]:
        kinds: set[EventKind] = set()
        for c in self._rules.values():
            kinds |= set(EventKind) if c.kinds is None else c.kinds
        return frozenset(kinds)

    def candidates(self, kind: EventKind, subject: Subject) -> list[CompiledRule]:
        """Rules whose scope admits a subject's event of ``kind`` (conditions not yet checked).

        Two memo levels: (event kind, device kind, grid, community) → rules by static scope;
        that plus the subject's values of every attribute named in a scope → rules by full scope.
        The per-device memo is :meth:`plan`'s (one entry per device and kind, not two).
        """
        signature = tuple([(v := subject.fact(name), type(v)) for name in self._scope_attributes])
        full_key = (kind, subject.kind, subject.grid, subject.community, signature)
        found = self._memo.get(full_key)
        if found is None:
            if len(self._memo) >= _MEMO_LIMIT:
                self._memo.clear()
            static_key = (kind, subject.kind, subject.grid, subject.community)
            static = self._static_memo.get(static_key)
            if static is None:
                if len(self._static_memo) >= _MEMO_LIMIT:
                    self._static_memo.clear()
                static = [c for c in self._rules.values() if c.static_match(*static_key)]
                self._static_memo[static_key] = static
            found = [c for c in static if c.scope_match(subject)]
            self._memo[full_key] = found
        return found

    # -- evaluation -------------------------------------------------------------------------

    def plan(self, kind: EventKind, subject: Subject) -> tuple[Step, ...]:
        """The steps an event of ``kind`` from ``subject`` runs: candidates resolved once per profile.

        Memoised in the subject's :class:`PlanTable` while the registry hands out the same
        :class:`Subject` object (a new registry builds new subjects, so a changed device is
        resolved anew). The table is shared by every subject of the same profile, and the steps
        by every subject with the same candidates, override-resolved triggers and absence periods.
        """
        table = subject.plans
        if table is None or table.owner is not self._token:
            table = self._table(subject)
            # ``Subject`` is frozen for its facts; ``plans`` is this memo's slot, not one of them.
            object.__setattr__(subject, "plans", table)
        cached = table.steps.get(kind)
        if cached is not None:
            return cached
        found = self.candidates(kind, subject)
        triggers = tuple(
            c.rule.trigger if c.overrides is None else c.overrides.trigger_for(c.rule.trigger, subject)
            for c in found
        )
        periods = tuple(period_for(t, subject) if isinstance(t, AbsenceTrigger) else None for t in triggers)
        shape: _Shape = (kind, tuple(map(id, found)), tuple(map(id, triggers)), periods)
        shared = self._shapes.get(shape)
        if shared is None:
            steps = _bound(
                [
                    (c.engine, c.rule, trigger, c.condition, c.active, c.rule.id)
                    for c, trigger in zip(found, triggers, strict=True)
                ],
                periods,
            )
            if len(self._shapes) >= _SHAPE_LIMIT:
                self._shapes.clear()
            # The entry holds the candidates and triggers whose ids its key names, so no other
            # object can take those ids while it exists.
            shared = self._shapes[shape] = (found, triggers, steps)
        table.steps[kind] = shared[2]
        return shared[2]

    def _table(self, subject: Subject) -> PlanTable:
        """The plan table of ``subject``'s profile (``_Profile``): what :meth:`plan` reads of a
        subject is its kind, grid, community and scope attributes (:meth:`candidates`), its
        heartbeat (:func:`period_for`) and, through overrides, the triggers resolved for it."""
        beat = subject.fact(HEARTBEAT_ATTRIBUTE)
        # The overridden triggers are the rule set's, alive while its tables are: their ids are
        # theirs for as long as a profile names them.
        profile: _Profile = (
            subject.kind,
            subject.grid,
            subject.community,
            # By ``fact``: a scope naming ``resident.id`` tells devices apart by their own ids.
            tuple([(v := subject.fact(name), type(v)) for name in self._scope_attributes]),
            (beat, type(beat)),
            tuple([id(c.trigger_for(subject)) for c in self._overridden]),
        )
        table = self._tables.get(profile)
        if table is None:
            if len(self._tables) >= _PROFILE_LIMIT:
                self._tables.clear()  # subjects keep theirs: still valid, no longer shared
            table = self._tables[profile] = PlanTable(self._token)
        return table

    def on_event(self, event: Event, subject: Subject, stamp: float | None = None) -> list[Signal]:
        """The signals ``event`` gives for ``subject``.

        ``stamp``: ``event.ts`` as the one object the caller already holds it as (the device
        state's, :attr:`hub.ingest.device_state.DeviceStates.stamp`); the slots the event
        touches keep that object as their ``last_ts`` instead of one of their own (a float per
        reporting device, 3.3 MB at 100 000; docs/benchmarks.md, "Thirty-eighth pass").
        """
        device = subject.device_id
        # :meth:`plan`'s hit path, inline: it runs for every event, and the call was ≈ 1 % of a
        # message (docs/benchmarks.md, "Twenty-first pass").
        table = subject.plans
        steps = table.steps.get(event.kind) if table is not None and table.owner is self._token else None
        if steps is None:
            steps = self.plan(event.kind, subject)
        if not steps:
            return []
        signals: list[Signal] = []
        ts = event.ts
        # The event's identity, remembered per (kind, value type, value): formatting and
        # interning it (a float's shortest repr above all) was ≈ 2.9 k instructions an event,
        # three events a report (docs/benchmarks.md, "Twenty-fifth pass"). The same string
        # object as event_identity's (interned), so slots holding it are compared as before.
        value = event.value
        ident_key = (event.kind, value.__class__, value)
        ident = self._idents.get(ident_key)
        if ident is None:
            ident = event_identity(event)
            # Not a float zero (0.0 == -0.0: one key, two identities), nor NaN (never found).
            if ident_key[1] in _IDENT_TYPES and not (
                isinstance(value, float) and (value == 0.0 or math.isnan(value))
            ):
                if len(self._idents) >= _IDENT_LIMIT:
                    self._idents.clear()
                self._idents[ident_key] = ident
        # One context per evaluator, its fields set for each event: building one (a dataclass
        # call) was ≈ 2 k instructions an event (docs/benchmarks.md, "Twenty-fifth pass"). A
        # step uses it during its call only (``Engine.on_event``), and no step re-enters here.
        ctx = self._ctx
        if ctx is None:
            ctx = self._ctx = EventContext(event, subject, self._state, ts, ident, stamp)
        else:
            ctx.event = event
            ctx.subject = subject
            if ts != ctx.ts:  # a report's events have one time: they share one object of it
                ctx.ts = ts
                # Stored as passed, then tested: compiled, a ``stamp`` narrowed by the test
                # would be a C double, boxed anew by the store.
                ctx.stamp = stamp
                if stamp is None:
                    ctx.stamp = ts
            ctx.ident = ident
        for step, rule, trigger, condition, active, rule_id in steps:
            if condition is not None and not condition.test(event, subject):
                continue
            out = step.on_event(rule, trigger, ctx, active is None or active.contains(ts), (rule_id, device))
            if out:
                signals.extend(out)
        return signals

    def due(self, now: float) -> list[Signal]:
        """Fire every timer due at or before ``now``, each exactly once, earliest first.

        The hub calls this only after it has fed the events of a downtime (catch-up), so a
        condition that ended while it was down is cancelled by its event, never fired.
        """
        signals: list[Signal] = []
        state = self._state
        for key in state.pop_due(now):
            slot = state.get(key)
            compiled = self._rules.get(key[0])
            if slot is None or slot.due is None or slot.due > now:
                continue
            if compiled is None or slot.trigger != compiled.rule.trigger.type:
                state.delete(key)
                continue
            signals.extend(compiled.engine.on_timer(compiled.rule, slot, key, now))
            state.put(key, slot)
        return signals

    def next_due(self) -> float | None:
        """When :meth:`due` next has something to do (``None``: no timer)."""
        return self._state.next_due()

    def start(self, subjects: Iterable[Subject], now: float) -> list[Signal]:
        """Seed absence deadlines (``now + for``) for every in-scope expected subject without state.

        Subjects that already have state (restored) keep it, so an overdue restored deadline
        fires once at the first :meth:`due`. Absence state of subjects no longer expected is
        dropped. Returns no signals today (kept as a list for forward compatibility).
        """
        absence = [c for c in self._rules.values() if isinstance(c.rule.trigger, AbsenceTrigger)]
        if not absence:
            return []
        expected: dict[str, set[str]] = {c.rule.id: set() for c in absence}
        state = self._state
        has = state.has
        # 10⁵ subjects at a restart: the static scope is resolved once per (kind, grid,
        # community), and a restored slot is left as it is before its trigger is looked at.
        # Each candidate's id, expected set and plainness are looked up once per place, not
        # once per subject.
        by_place: dict[tuple[DeviceKind | None, str | None, str | None], list[_Candidate]] = {}
        shared: dict[float, Seeded] = {}  # one {"for": period} and one deadline per period
        for subject in subjects:
            place = (subject.kind, subject.grid, subject.community)
            candidates = by_place.get(place)
            if candidates is None:
                candidates = by_place[place] = [
                    (c, c.rule.id, expected[c.rule.id], not c.attributes and c.condition is None)
                    for c in absence
                    if c.static_match(None, *place)
                ]
            device = subject.device_id
            for c, rule_id, wanted, plain in candidates:
                if not plain and not c.subject_match(subject, None):
                    continue
                key = (rule_id, device)
                wanted.add(device)
                if has(key):
                    continue  # restored: its deadline stands (arm() would leave it too); not read here
                trigger = c.trigger_for(subject)
                assert isinstance(trigger, AbsenceTrigger)
                ABSENCE.arm(trigger, subject, key, state, now, shared=shared)
        for stale in state.slot_keys():
            expecting = expected.get(stale[0])
            if expecting is not None and stale[1] not in expecting:
                state.delete(stale)
        return []

    def reload(self, rules: Sequence[Rule], overrides: OverrideConfig | None = None) -> None:
        """Replace the rules; keep state of rules with the same id and trigger type, drop the rest.

        Raises :class:`RuleError` (and keeps the old rules) if ``rules`` or ``overrides`` are invalid.
        """
        saved = (
            self._rules,
            self._static_memo,
            self._memo,
            self._token,
            self._tables,
            self._overridden,
            self._shapes,
            self._scope_attributes,
        )
        try:
            self._install(rules, overrides)
        except RuleError:
            (
                self._rules,
                self._static_memo,
                self._memo,
                self._token,
                self._tables,
                self._overridden,
                self._shapes,
                self._scope_attributes,
            ) = saved
            raise
        kept = {
            rule_id
            for rule_id, c in saved[0].items()
            if (new := self._rules.get(rule_id)) is not None and new.rule.trigger.type == c.rule.trigger.type
        }
        state = self._state
        for key in state.slot_keys():
            compiled = self._rules.get(key[0])
            if compiled is None:
                state.delete(key)
                continue
            if key[0] in kept:
                # Same trigger type as before: its slots stay, unread (a restored one may still
                # be its stored text; one of another type is replaced where it is used).
                continue
            slot = state.get(key)
            if slot is not None and slot.trigger != compiled.rule.trigger.type:
                state.delete(key)
