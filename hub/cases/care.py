"""Care plans and visits for elders on the grid's register (探访), the pure model.

一键通 is "online call + offline care" (handbook §4): the grid keeps a register of its elders
and visits them (handbook §2: high-risk elders at least weekly, others monthly or quarterly).
This module decides, from care flags and overrides, what each elder's plan is, when each
task is due (in the community's zone, so DST and zone edges never shift a due day — handbook
§6), how late an open task is (the same traffic light as cases, :class:`hub.cases.sla.Light`),
which escalation steps are due when, and 探访完成率. Pure: ``now`` is always a parameter; the
service, store and pages that use it are wired later (docs/cases.md).
"""

from __future__ import annotations

import functools
import math
from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, time, timedelta
from enum import StrEnum
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from hub.cases.sla import Duration, Light, parse_duration
from hub.errors import PolicyError, RequirementNotMet

DEFAULT_PATH = Path(__file__).with_name("care.yaml")
NONE_KEY = "-"


class CareFlag(StrEnum):
    LIVING_ALONE = "living_alone"  # 独居
    AGED_80 = "aged_80"  # 80 岁以上
    DISABLED = "disabled"  # 残疾
    COGNITIVE = "cognitive"  # 认知障碍


class TaskKind(StrEnum):
    SIGN_OF_LIFE = "sign_of_life"  # 每日平安: door, motion, or the green key as "I am fine"
    VISIT = "visit"  # 上门探访 by the grid worker
    CALL = "call"  # 电话问候


class Outcome(StrEnum):
    VISITED_WELL = "visited_well"  # 已探访，老人安好
    NEEDS_HELP = "needs_help"  # 已探访，需要帮助 (the service files a case)
    NOT_AT_HOME = "not_at_home"  # 不在家 (the task stays due)

    @property
    def completes(self) -> bool:
        """The elder was seen: the task is done. Not at home is logged, the task stays open."""
        return self is not Outcome.NOT_AT_HOME


class TaskState(StrEnum):
    DUE = "due"
    DONE = "done"


class RecordAction(StrEnum):
    RECORD = "record"


class PlanPatch(BaseModel):
    """Intervals per task; a field left out is inherited, ``null`` switches the task off."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    sign_of_life: Duration | None = None
    visit: Duration | None = None
    call: Duration | None = None

    @field_validator("sign_of_life", "visit", "call")
    @classmethod
    def _interval(cls, value: Duration | None) -> Duration | None:
        if value is not None and parse_duration(value) <= 0:
            raise ValueError("an interval must be > 0 (write null to switch the task off)")
        return value

    def intervals(self) -> dict[TaskKind, float | None]:
        """The fields that were written (``None``: switched off), in seconds."""
        # Asked for every elder on every scheduler round (10⁵ at scale): parsed once per patch.
        # The fields set is part of the key: a field written as null and one left out are equal
        # models but mean "off" and "inherit".
        key = (frozenset(self.model_fields_set), self.sign_of_life, self.visit, self.call)
        return dict(_intervals(key))


@functools.lru_cache(maxsize=1024)
def _intervals(
    key: tuple[frozenset[str], Duration | None, Duration | None, Duration | None],
) -> tuple[tuple[TaskKind, float | None], ...]:
    written, sign_of_life, visit, call = key
    raw: dict[str, Duration | None] = {"sign_of_life": sign_of_life, "visit": visit, "call": call}
    out: list[tuple[TaskKind, float | None]] = []
    for name in sorted(written):
        value = raw[name]
        out.append((TaskKind(name), None if value is None else parse_duration(value)))
    return tuple(out)


class Override(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    community: str | None = None
    grid: str | None = None
    resident: str | None = None
    plan: PlanPatch

    @property
    def level(self) -> int:
        return 3 if self.resident else 2 if self.grid else 1 if self.community else 0


class EscalationStep(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    after: Duration  # from the due time
    target: str  # a role of the escalation chains (assignee, grid_leader, duty_officer …)


class CareFile(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    version: int = Field(default=1, ge=1, le=1)
    flags: dict[CareFlag, PlanPatch] = Field(default_factory=dict)
    default: PlanPatch = PlanPatch()
    due_time: time = time(18, 0)
    yellow_ratio: float = Field(default=0.8, gt=0, lt=1)
    escalation: tuple[EscalationStep, ...] = ()
    overrides: tuple[Override, ...] = ()


def care_from(doc: Any, *, source: str = "<care>") -> CareFile:
    try:
        return CareFile.model_validate(doc)
    except ValidationError as exc:
        raise PolicyError(f"{source}: {exc}") from exc


def load_care(path: Path | None = None) -> CareFile:
    """Read and validate a care file (the shipped defaults when ``path`` is ``None``)."""
    path = DEFAULT_PATH if path is None else path
    try:
        doc = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError) as exc:
        raise PolicyError(f"cannot read care plans {path}: {exc}") from exc
    return care_from(doc, source=str(path))


@dataclass(frozen=True, slots=True, kw_only=True)
class Elder:
    """One resident on the grid's register (only what planning needs)."""

    id: str
    community: str
    grid: str
    flags: frozenset[CareFlag] = frozenset()
    assignee: str | None = None  # the grid worker who visits


@dataclass(frozen=True, slots=True, kw_only=True)
class CarePlan:
    """Interval in seconds per task kind (a kind missing: no such task)."""

    intervals: Mapping[TaskKind, float]


def plan_for(care: CareFile, elder: Elder) -> CarePlan:
    """Flags → the shortest interval per task (or ``default`` without flags), then overrides."""
    merged: dict[TaskKind, float | None] = {}
    patches = [care.flags[f] for f in sorted(elder.flags) if f in care.flags] or [care.default]
    for patch in patches:
        for kind, seconds in patch.intervals().items():
            if seconds is not None:
                current = merged.get(kind)
                merged[kind] = seconds if current is None else min(current, seconds)
    matching = [
        o
        for o in care.overrides
        if (o.community is None or o.community == elder.community)
        and (o.grid is None or o.grid == elder.grid)
        and (o.resident is None or o.resident == elder.id)
    ]
    for override in sorted(matching, key=lambda o: o.level):  # stable: file order within a level
        merged |= override.plan.intervals()
    return CarePlan(intervals={k: v for k, v in merged.items() if v is not None})


@dataclass(frozen=True, slots=True, kw_only=True)
class VisitTask:
    """One occurrence of a plan's task: open from ``window_start``, due at ``due_at``."""

    elder: str
    kind: TaskKind
    community: str
    grid: str
    assignee: str | None
    window_start: float
    due_at: float

    @property
    def key(self) -> str:
        """Stable identity (one task per elder, kind and due time): idempotent storage and steps."""
        return f"{self.elder}/{self.kind.value}/{round(self.due_at * 1000)}"


def due_at(start: float, interval: float, *, zone: str, due_time: time) -> float:
    """``start + interval`` rounded to ``due_time`` of that *local* day in ``zone``.

    Whole days are counted on the local calendar (a weekly visit stays on the same weekday
    at the same local hour across DST changes); intervals shorter than a day are not rounded.
    """
    tz = ZoneInfo(zone)
    if interval < 86400:
        return start + interval
    local = datetime.fromtimestamp(start, tz)
    day = local.date() + timedelta(days=math.floor(interval / 86400))
    return datetime.combine(day, due_time, tzinfo=tz).timestamp()


def same_due_until(start: float, interval: float, *, zone: str) -> float:
    """Until when (exclusive) :func:`due_at` gives ``start``'s answer for any later start.

    With whole-day rounding the due time depends only on the local date, so it holds until
    the next local midnight; shorter intervals are not rounded and hold for ``start`` alone.
    """
    if interval < 86400:
        return start
    tz = ZoneInfo(zone)
    day = datetime.fromtimestamp(start, tz).date() + timedelta(days=1)
    return datetime.combine(day, time(0, 0), tzinfo=tz).timestamp()


def next_task(care: CareFile, elder: Elder, kind: TaskKind, *, since: float, zone: str) -> VisitTask | None:
    """The next task of ``kind`` after the last completion (or registration) ``since``."""
    interval = plan_for(care, elder).intervals.get(kind)
    if interval is None:
        return None
    return task_after(elder, kind, interval, since=since, zone=zone, due_time=care.due_time)


def task_after(
    elder: Elder, kind: TaskKind, interval: float, *, since: float, zone: str, due_time: time
) -> VisitTask:
    """:func:`next_task` for a caller that already holds the plan's ``interval`` (the hot path)."""
    return VisitTask(
        elder=elder.id,
        kind=kind,
        community=elder.community,
        grid=elder.grid,
        assignee=elder.assignee,
        window_start=since,
        due_at=due_at(since, interval, zone=zone, due_time=due_time),
    )


def light(task: VisitTask, now: float, *, yellow_ratio: float = 0.8, done_at: float | None = None) -> Light:
    """Like a case stage (handbook §3): green < 80 % of the window, yellow to the due time, then red."""
    end = now if done_at is None else done_at
    window = task.due_at - task.window_start
    if end > task.due_at or (done_at is None and end >= task.due_at):
        return Light.RED
    if window <= 0 or (end - task.window_start) >= window * yellow_ratio:
        return Light.YELLOW
    return Light.GREEN


@dataclass(frozen=True, slots=True, kw_only=True)
class VisitRecord:
    """A recorded outcome (探访记录) of a task."""

    task_key: str
    elder: str
    kind: TaskKind
    outcome: Outcome
    by: str
    at: float
    note: str = ""
    #: Who typed it, when not ``by`` himself: the desk that took his report by phone
    #: (``on_behalf_of``); ``None`` for a visitor's own record and for records made before
    #: schema version 8. ``by`` stays the visitor, whose work the record counts as.
    recorded_by: str | None = None


def record(
    task: VisitTask,
    outcome: Outcome | str,
    *,
    by: str,
    at: float,
    note: str = "",
    recorded_by: str | None = None,
) -> VisitRecord:
    """Record an outcome; 需要帮助 and 不在家 need a note (what help; when tried, who was asked)."""
    note = note.strip()

    def refuse(reason: str) -> RequirementNotMet:
        return RequirementNotMet(
            state=TaskState.DUE, action=RecordAction.RECORD, allowed=(RecordAction.RECORD,), reason=reason
        )

    try:
        outcome = Outcome(outcome)
    except ValueError:
        raise refuse(f"unknown outcome {outcome!r} (one of {', '.join(o.value for o in Outcome)})") from None
    if not by:
        raise refuse("the visitor must be named")
    if recorded_by == "":
        # An empty name would read as "recorded for someone" while naming nobody.
        raise refuse("the recorder must be named")
    if at < task.window_start:
        raise refuse("the visit is dated before the task opened")
    if outcome is not Outcome.VISITED_WELL and not note:
        raise refuse(f"{outcome.value} needs a note")
    return VisitRecord(
        task_key=task.key,
        elder=task.elder,
        kind=task.kind,
        outcome=outcome,
        by=by,
        at=at,
        note=note,
        recorded_by=recorded_by,
    )


def completed_at(task: VisitTask, records: Iterable[VisitRecord]) -> float | None:
    """When the task was done (the first completing record), ``None`` while still due."""
    times = [r.at for r in records if r.task_key == task.key and r.outcome.completes]
    return min(times, default=None)


@dataclass(frozen=True, slots=True, kw_only=True)
class EscalationDue:
    key: str
    task_key: str
    step: int
    target: str
    at: float


def escalation_plan(task: VisitTask, care: CareFile, *, done_at: float | None) -> tuple[EscalationDue, ...]:
    """Every step of a missed task with the time it is due; none once the task is done.

    A step whose time came before ``done_at`` still stands (it was due, and may have been
    sent); steps are keyed ``{task}/escalate/{i}`` so acting on them twice sends nothing twice.
    """
    steps = []
    for i, step in enumerate(care.escalation):
        at = task.due_at + parse_duration(step.after)
        if done_at is not None and done_at <= at:
            continue
        steps.append(
            EscalationDue(
                key=f"{task.key}/escalate/{i}", task_key=task.key, step=i, target=step.target, at=at
            )
        )
    return tuple(steps)


def escalations_due(
    task: VisitTask, care: CareFile, *, now: float, done_at: float | None, sent: frozenset[str] = frozenset()
) -> tuple[tuple[EscalationDue, ...], float | None]:
    """Steps to send at ``now`` (not yet in ``sent``) and the next step's time (``None``: no more)."""
    plan = escalation_plan(task, care, done_at=done_at)
    due = tuple(s for s in plan if s.at <= now and s.key not in sent and done_at is None)
    later = [s.at for s in plan if s.at > now and done_at is None]
    return due, min(later, default=None)


@dataclass(frozen=True, slots=True, kw_only=True)
class VisitKpiRow:
    due: int = 0
    on_time: int = 0
    late: int = 0
    missed: int = 0

    @property
    def completion_rate(self) -> float | None:
        """探访完成率 = tasks done on time / tasks due."""
        return self.on_time / self.due if self.due else None


@dataclass(frozen=True, slots=True, kw_only=True)
class VisitKpiReport:
    overall: VisitKpiRow
    by_grid: dict[str, VisitKpiRow]
    by_worker: dict[str, VisitKpiRow]


class VisitTally:
    """探访完成率 over the tasks *due* in ``[start, end)``, one task at a time (:func:`visit_kpis`).

    On time: completed at or before the due time. Late: completed after it. Missed: not
    completed by ``now``. The worker is who completed the task (or, not done, its assignee).
    """

    __slots__ = ("_counts", "_end", "_now", "_start")

    def __init__(self, *, start: float, end: float, now: float) -> None:
        if end <= start:
            raise ValueError("the period must end after it starts")
        self._start, self._end, self._now = start, end, now
        self._counts: defaultdict[tuple[str, str], list[int]] = defaultdict(lambda: [0, 0, 0, 0])

    def add(self, task: VisitTask, own: Sequence[VisitRecord]) -> None:
        """Count ``task`` with its own records."""
        now = self._now
        if not (self._start <= task.due_at < self._end) or task.due_at > now:
            return
        done = completed_at(task, own)
        worker = next((r.by for r in own if r.outcome.completes and r.at == done), None) or task.assignee
        column = (
            1 if done is not None and done <= task.due_at else 2 if done is not None and done <= now else 3
        )
        counts = self._counts
        for key in (("all", ""), ("grid", task.grid or NONE_KEY), ("worker", worker or NONE_KEY)):
            counts[key][0] += 1
            counts[key][column] += 1

    def report(self) -> VisitKpiReport:
        counts = self._counts

        def row(key: tuple[str, str]) -> VisitKpiRow:
            c = counts.get(key, [0, 0, 0, 0])
            return VisitKpiRow(due=c[0], on_time=c[1], late=c[2], missed=c[3])

        return VisitKpiReport(
            overall=row(("all", "")),
            by_grid={k[1]: row(k) for k in sorted(counts) if k[0] == "grid"},
            by_worker={k[1]: row(k) for k in sorted(counts) if k[0] == "worker"},
        )


def visit_kpis(
    tasks: Iterable[VisitTask], records: Iterable[VisitRecord], *, start: float, end: float, now: float
) -> VisitKpiReport:
    """探访完成率 over the tasks *due* in ``[start, end)`` (``now`` ≥ their due time): :class:`VisitTally`."""
    tally = VisitTally(start=start, end=end, now=now)
    by_task: defaultdict[str, list[VisitRecord]] = defaultdict(list)
    for r in records:
        by_task[r.task_key].append(r)
    for task in tasks:
        tally.add(task, by_task.get(task.key, ()))
    return tally.report()
