"""The evaluator: events in, alert signals out.

Rules are indexed by event kind, so the cost of an event grows with the rules that could
match it, not with the number of rules loaded.
"""

from __future__ import annotations

from collections.abc import Sequence

from adapters.events import Event, EventKind
from rules.model import Rule, Scope
from rules.signals import Signal, SignalAction
from rules.state import StatePort
from rules.subject import Subject


def in_scope(scope: Scope, subject: Subject) -> bool:
    if scope.device_kinds and subject.kind not in scope.device_kinds:
        return False
    if scope.grids and subject.grid not in scope.grids:
        return False
    if scope.communities and subject.community not in scope.communities:
        return False
    return all(subject.attributes.get(key) == value for key, value in scope.attributes.items())


class Evaluator:
    """Evaluates rules against events; state lives behind ``state``."""

    def __init__(self, *, rules: Sequence[Rule], state: StatePort) -> None:
        self._state = state
        self._by_kind: dict[EventKind, list[Rule]] = {}
        for rule in rules:
            if not rule.enabled:
                continue
            for kind in rule.trigger.kinds:
                self._by_kind.setdefault(kind, []).append(rule)

    @property
    def watched_kinds(self) -> frozenset[EventKind]:
        return frozenset(self._by_kind)

    def on_event(self, event: Event, subject: Subject) -> list[Signal]:
        candidates = self._by_kind.get(event.kind)
        if not candidates:
            return []
        signals: list[Signal] = []
        for rule in candidates:
            trigger = rule.trigger
            if trigger.where and any(event.attrs.get(k) != v for k, v in trigger.where.items()):
                continue
            if not in_scope(rule.scope, subject):
                continue
            last = self._state.get(rule.id, subject.device_id)
            repeat = last is not None and 0 <= event.ts - last < trigger.merge_window
            if not repeat:
                self._state.put(rule.id, subject.device_id, event.ts)
            signals.append(
                Signal(
                    action=SignalAction.UPDATE if repeat else SignalAction.RAISE,
                    rule_id=rule.id,
                    category=rule.category,
                    severity=rule.severity,
                    subject=subject.device_id,
                    ts=event.ts,
                    title_zh=rule.title.zh,
                    title_en=rule.title.en,
                    trace={
                        "trigger": "event",
                        "event": {
                            "kind": event.kind.value,
                            "family": event.family,
                            "ts": event.ts,
                            "value": event.value,
                            "attrs": dict(event.attrs),
                        },
                        "merged": repeat,
                    },
                )
            )
        return signals
