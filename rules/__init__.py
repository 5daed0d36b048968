"""Linli rules: the rule model, rule packs (YAML) and the stateful evaluator.

Owns: what a rule is (:mod:`rules.model`), loading and validating packs
(:mod:`rules.loader`, packs shipped in ``rules/packs/``), the condition language
(:mod:`rules.expr`), active windows (:mod:`rules.windows`), the subject a rule is evaluated
for (:mod:`rules.subject`), per-community/grid/resident overrides (:mod:`rules.overrides`), the battery level the packs
call low (:mod:`rules.battery`),
evaluation (:mod:`rules.evaluator`, one module per trigger type in :mod:`rules.triggers`)
producing alert signals (:mod:`rules.signals`), the state port rules keep their memory and
timers behind (:mod:`rules.state`), and the YAML rule-test runner (:mod:`rules.testing`).

Rules are pure with respect to time and I/O: the caller passes every timestamp in and
persists state through the port. Must not import: ``hub``, ``simulators``, ``dashboards``,
or any MQTT, HTTP or database library. May import ``adapters`` (events, root error).
"""

from __future__ import annotations

from rules.errors import RuleError
from rules.evaluator import Evaluator
from rules.loader import BUILTIN_PACKS, load_packs
from rules.model import Rule, Severity, TriggerType
from rules.overrides import OverrideConfig
from rules.signals import Signal, SignalAction
from rules.state import MemoryState, Slot, StatePort
from rules.subject import Subject

__all__ = [
    "BUILTIN_PACKS",
    "Evaluator",
    "MemoryState",
    "OverrideConfig",
    "Rule",
    "RuleError",
    "Severity",
    "Signal",
    "SignalAction",
    "Slot",
    "StatePort",
    "Subject",
    "TriggerType",
    "load_packs",
]
