"""Unit tests for rule packs, written in YAML (in the spirit of ``promtool test rules``).

``linli rules test FILE|DIR`` calls :func:`run_rule_tests`. A test file::

    packs: [../packs]            # optional: pack files/dirs relative to this file; default built-ins
    zone: Asia/Shanghai          # optional: the zone of `active` windows and of naive times
    start: 2026-03-02T08:00:00+08:00   # optional: time zero of every test (RFC 3339)
    overrides: {rule: {"community:110105001001": {for: 48h}}}   # optional
    rules: [doors.entrance_held_open]  # optional: compare only signals of these rules
    subjects:                    # device id → what the registry would say
      door-1: {kind: door_sensor, grid: "110105001001001", community: "110105001001",
               attributes: {place.kind: entrance}}
    tests:
      - name: held open 5 minutes raises, closing clears
        rules: [...]             # optional, per test
        steps:
          - at: +0s              # relative to start (+90s, +5m, +24h) or RFC 3339
            events: [{device: door-1, kind: door_open, value: true}]
          - at: +5m
            expect: [{action: raise, rule: doors.entrance_held_open, subject: door-1}]

Each test starts from empty state, calls ``Evaluator.start(subjects, start)``, then runs its
steps in order. A step may ``restart: true`` (snapshot the state through JSON, restore it
into a new evaluator and call ``start`` at the step's time — the hub's restart), feeds its
``events`` (each at the step's time unless it gives its own ``ts``, which is how events
that arrived during a downtime are replayed), then calls ``Evaluator.due(at)`` unless
``due: false``. The signals of the step must equal ``expect`` (empty when omitted), ignoring
order; an expectation may give ``at`` (the signal's time) too.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from adapters.events import DeviceKind, Event, EventKind
from rules.errors import RuleError
from rules.evaluator import Evaluator
from rules.loader import BUILTIN_PACKS, load_packs
from rules.model import Scalar, parse_duration
from rules.overrides import OverrideConfig
from rules.signals import Signal, SignalAction
from rules.state import MemoryState
from rules.subject import Subject
from rules.windows import DEFAULT_ZONE, zone

#: The YAML tests shipped for the shipped packs.
BUILTIN_RULE_TESTS = Path(__file__).parent / "tests"
DEFAULT_START = "2026-03-02T08:00:00+08:00"  # a Monday


class _Model(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


def _time_text(value: object) -> object:
    return value.isoformat() if isinstance(value, datetime) else value


class SubjectSpec(_Model):
    kind: DeviceKind | None = None
    grid: str | None = None
    community: str | None = None
    attributes: dict[str, Scalar] = Field(default_factory=dict)


class EventSpec(_Model):
    device: str
    kind: EventKind
    value: float | bool | str | None = None
    attrs: dict[str, float | bool | str] = Field(default_factory=dict)
    family: str = "test"
    #: The event's own time if not the step's (relative to the test's start, or RFC 3339).
    ts: str | None = None

    _text = field_validator("ts", mode="before")(_time_text)


class ExpectSpec(_Model):
    action: SignalAction
    rule: str
    subject: str
    at: str | None = None

    _text = field_validator("at", mode="before")(_time_text)


class StepSpec(_Model):
    at: str
    events: tuple[EventSpec, ...] = ()
    restart: bool = False
    due: bool = True
    expect: tuple[ExpectSpec, ...] = ()

    _text = field_validator("at", mode="before")(_time_text)


class CaseSpec(_Model):
    name: str
    start: str | None = None
    rules: tuple[str, ...] | None = None
    #: Replaces the file's ``overrides`` for this case.
    overrides: dict[str, dict[str, dict[str, Any]]] | None = None
    steps: tuple[StepSpec, ...] = Field(min_length=1)

    _text = field_validator("start", mode="before")(_time_text)


class RuleTestFile(_Model):
    packs: tuple[str, ...] | None = None
    zone: str = DEFAULT_ZONE
    start: str = DEFAULT_START
    overrides: dict[str, dict[str, dict[str, Any]]] = Field(default_factory=dict)
    rules: tuple[str, ...] | None = None
    subjects: dict[str, SubjectSpec] = Field(default_factory=dict)
    tests: tuple[CaseSpec, ...] = Field(min_length=1)

    _text = field_validator("start", mode="before")(_time_text)


@dataclass(frozen=True, slots=True)
class StepFailure:
    step: int
    at: str
    missing: tuple[str, ...]
    unexpected: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class TestResult:
    """The outcome of one test case (or of a file that could not be run: ``name`` is ``""``)."""

    __test__ = False  # not a pytest class

    file: str
    name: str
    passed: bool
    failures: tuple[StepFailure, ...] = ()
    error: str = ""
    #: Rule ids the test expected signals from (for coverage reports).
    rules: frozenset[str] = field(default_factory=frozenset)

    @property
    def diff(self) -> str:
        """A readable account: ``-`` expected but missing, ``+`` produced but not expected."""
        if self.passed:
            return ""
        lines = [f"FAIL {self.file} :: {self.name or '(file)'}"]
        if self.error:
            lines.append(f"  error: {self.error}")
        for failure in self.failures:
            lines.append(f"  step {failure.step} at {failure.at}:")
            lines.extend(f"    - {item}" for item in failure.missing)
            lines.extend(f"    + {item}" for item in failure.unexpected)
        return "\n".join(lines)


def parse_time(text: str, start: float, zone_name: str) -> float:
    """``+5m`` (relative to ``start``) or RFC 3339 (naive times are in ``zone_name``) → Unix seconds."""
    text = text.strip()
    if text.startswith("+"):
        return start + parse_duration(text[1:])
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        raise ValueError(f"expected +<duration> or an RFC 3339 time, got {text!r}") from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=zone(zone_name))
    return moment.timestamp()


def _describe(action: str, rule: str, subject: str, ts: float | None, start: float) -> str:
    when = "" if ts is None else f" at {_relative(ts, start)}"
    return f"{action} {rule} {subject}{when}"


def _relative(ts: float, start: float) -> str:
    delta = ts - start
    sign = "+" if delta >= 0 else "-"
    delta = abs(delta)
    for unit, size in (("d", 86400.0), ("h", 3600.0), ("m", 60.0)):
        if delta >= size and delta % size == 0:
            return f"{sign}{int(delta // size)}{unit}"
    return f"{sign}{delta:g}s"


class _Run:
    def __init__(self, spec: RuleTestFile, base: Path) -> None:
        self.spec = spec
        packs = [BUILTIN_PACKS] if spec.packs is None else [base / p for p in spec.packs]
        self.rules = load_packs(packs)
        self.subjects = {
            device: Subject(device, s.kind, s.grid, s.community, dict(s.attributes))
            for device, s in spec.subjects.items()
        }
        # Validates overrides and the zone once, so a bad file fails before any case runs.
        self.evaluator(MemoryState(), spec.overrides)

    def evaluator(self, state: MemoryState, overrides: OverrideConfig) -> Evaluator:
        return Evaluator(rules=self.rules, state=state, zone=self.spec.zone, overrides=overrides)

    def case(self, file: str, case: CaseSpec) -> TestResult:
        spec = self.spec
        start = parse_time(case.start or spec.start, 0.0, spec.zone)
        only = case.rules if case.rules is not None else spec.rules
        overrides = case.overrides if case.overrides is not None else spec.overrides
        state = MemoryState()
        evaluator = self.evaluator(state, overrides)
        evaluator.start(self.subjects.values(), start)
        failures: list[StepFailure] = []
        covered: set[str] = set()
        for number, step in enumerate(case.steps, 1):
            now = parse_time(step.at, start, spec.zone)
            if step.restart:
                saved = json.loads(json.dumps(state.snapshot()))
                state = MemoryState.restore(saved)
                evaluator = self.evaluator(state, overrides)
                evaluator.start(self.subjects.values(), now)
            produced: list[Signal] = []
            for ev in step.events:
                ts = now if ev.ts is None else parse_time(ev.ts, start, spec.zone)
                event = Event(ev.device, ev.kind, ts, ev.family, ev.value, dict(ev.attrs))
                subject = self.subjects.get(ev.device) or Subject(ev.device)
                produced.extend(evaluator.on_event(event, subject))
            if step.due:
                produced.extend(evaluator.due(now))
            if only is not None:
                produced = [s for s in produced if s.rule_id in only]
            failure = _compare(number, step, produced, start=start, now=now, zone_name=spec.zone)
            covered.update(e.rule for e in step.expect)
            if failure is not None:
                failures.append(failure)
        return TestResult(file, case.name, not failures, tuple(failures), rules=frozenset(covered))


def _compare(
    number: int, step: StepSpec, produced: Sequence[Signal], *, start: float, now: float, zone_name: str
) -> StepFailure | None:
    got_timed = [_describe(s.action.value, s.rule_id, s.subject, s.ts, start) for s in produced]
    got_plain = [_describe(s.action.value, s.rule_id, s.subject, None, start) for s in produced]
    unmatched = list(range(len(produced)))
    missing: list[str] = []
    for exp in step.expect:
        if exp.at is not None:
            text = _describe(
                exp.action.value, exp.rule, exp.subject, parse_time(exp.at, start, zone_name), start
            )
            pool = got_timed
        else:
            text = _describe(exp.action.value, exp.rule, exp.subject, None, start)
            pool = got_plain
        hit = next((i for i in unmatched if pool[i] == text), None)
        if hit is None:
            missing.append(text)
        else:
            unmatched.remove(hit)
    unexpected = [got_timed[i] for i in unmatched]
    if not missing and not unexpected:
        return None
    return StepFailure(number, _relative(now, start), tuple(missing), tuple(unexpected))


def run_test_file(path: Path) -> list[TestResult]:
    """Run every case of one YAML test file; a file that cannot be run is one failed result."""
    try:
        doc = yaml.safe_load(path.read_text(encoding="utf-8"))
        spec = RuleTestFile.model_validate(doc)
        run = _Run(spec, path.parent)
    except (OSError, yaml.YAMLError, ValidationError, RuleError, ValueError) as exc:
        return [TestResult(str(path), "", False, error=_error_text(exc))]
    results: list[TestResult] = []
    for case in spec.tests:
        try:
            results.append(run.case(str(path), case))
        except (ValueError, RuleError) as exc:
            results.append(TestResult(str(path), case.name, False, error=_error_text(exc)))
    return results


def _error_text(exc: BaseException) -> str:
    if isinstance(exc, ValidationError):
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"])
        return f"{where}: {first['msg']}"
    return str(exc)


def is_pack_file(path: Path) -> bool:
    """A rule pack (top-level ``pack:``), not a test file: ``rules test rules/`` must skip it."""
    try:
        doc = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError, UnicodeDecodeError):
        return False
    return isinstance(doc, dict) and "pack" in doc and "tests" not in doc


def rule_test_files(paths: Iterable[Path], *, skipped: list[Path] | None = None) -> list[Path]:
    """Test files under the given files and directories (directories searched recursively).

    Pack files found in a directory are not tests: they are left out and, when ``skipped``
    is given, listed there so the command line can say so.
    """
    files: list[Path] = []
    for path in paths:
        if not path.is_dir():
            files.append(path)
            continue
        for file in sorted(path.rglob("*.yaml")):
            if is_pack_file(file):
                if skipped is not None:
                    skipped.append(file)
            else:
                files.append(file)
    return files


def run_rule_tests(paths: Iterable[Path], *, skipped: list[Path] | None = None) -> list[TestResult]:
    """Run the YAML rule tests in the given files and directories (``*.yaml``), in order.

    Never raises for a bad test file: it becomes a failed :class:`TestResult` with ``error``.
    Print ``result.diff`` for each failed result; exit non-zero if any ``not result.passed``.
    """
    results: list[TestResult] = []
    for file in rule_test_files(paths, skipped=skipped):
        results.extend(run_test_file(file))
    return results


def summary(results: Sequence[TestResult]) -> Mapping[str, int]:
    failed = sum(not r.passed for r in results)
    return {"tests": len(results), "passed": len(results) - failed, "failed": failed}
