"""What a node loads when it takes a community and lets go of when it loses one.

Gained: the community's rule state (durations, absence deadlines, count windows, last
values) is read from the store and resumed at the original times; its case deadlines and
escalation steps are in the store already (the casework loop works owned communities only,
and ``case_steps_sent`` makes each step once-only), so the casework loop is woken to do what
fell due while nobody owned it. Lost: the rule state is written once more (fenced: only if
the lease is still ours, i.e. a clean hand-over) and dropped from memory, so no timer of a
community this node no longer owns fires here.

At start a cluster node owns nothing: every community's rule state is dropped until the
lease loop claims it.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Protocol

from hub.community.registry import Registry
from rules.subject import Subject


class RuleState(Protocol):
    def adopt(self, subjects: Sequence[Subject], *, owned: Sequence[Subject]) -> None: ...

    def forget(self, device_ids: Sequence[str]) -> None: ...

    def flush(self, *, include_routine: bool = False) -> int: ...


class Takeover:
    def __init__(
        self,
        *,
        registry: Registry,
        rules: RuleState,
        owned: Callable[[], frozenset[str]],
        wake_casework: Callable[[], None],
    ) -> None:
        self._registry = registry
        self._rules = rules
        self._owned = owned
        self._wake_casework = wake_casework
        rules.forget([s.device_id for s in registry.subjects() if s.community is not None])

    def _subjects(self, communities: frozenset[str]) -> list[Subject]:
        return [s for s in self._registry.subjects() if s.community in communities]

    def gained(self, community: str) -> None:
        self._rules.adopt(self._subjects(frozenset({community})), owned=self._subjects(self._owned()))
        self._wake_casework()

    def lost(self, community: str) -> None:
        self._rules.flush(include_routine=True)
        self._rules.forget([s.device_id for s in self._subjects(frozenset({community}))])
