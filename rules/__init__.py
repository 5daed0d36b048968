"""Linli rules: the rule model, rule packs (YAML) and the stateful evaluator.

Owns: what a rule is (:mod:`rules.model`), loading and validating packs
(:mod:`rules.loader`, packs shipped in ``rules/packs/``), the subject a rule is evaluated
for (:mod:`rules.subject`), evaluation (:mod:`rules.evaluator`) producing alert signals
(:mod:`rules.signals`), and the state port rules keep their memory behind
(:mod:`rules.state`).

Rules are pure with respect to time and I/O: the caller passes every timestamp in and
persists state through the port. Must not import: ``hub``, ``simulators``, ``dashboards``,
or any MQTT, HTTP or database library. May import ``adapters`` (events, root error).
"""

from __future__ import annotations

from rules.evaluator import Evaluator
from rules.loader import load_packs
from rules.model import Rule, Severity
from rules.signals import Signal, SignalAction
from rules.state import MemoryState, StatePort
from rules.subject import Subject

__all__ = [
    "Evaluator",
    "MemoryState",
    "Rule",
    "Severity",
    "Signal",
    "SignalAction",
    "StatePort",
    "Subject",
    "load_packs",
]
