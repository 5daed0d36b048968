"""Time limits per category × severity, traffic lights per stage, and 督办 events.

Limits are set at two levels, the whole case and each stage (GB/T 30428.1 / CJ/T 315 时限),
in calendar time or working time (:mod:`hub.cases.calendar`). A stage's clock runs from the
stage's start in the current round (see :meth:`hub.cases.model.Case.stage_start`); the
whole case's from the first dispatch (派遣 — the clock starts there). Approved extensions
(延期) add to the limit of the stage they were granted in and to the whole case.

Traffic light (handbook §3): with ``r = elapsed / limit``, **green** while ``r < 0.8``,
**yellow** while ``0.8 ≤ r < 1``, **red** from the due time on (overdue). A stage that ended
keeps the light it ended with (ending exactly at the due time is on time: yellow). Red on an open stage is a 督办 (supervised escalation) event,
reported once per (case, stage, round) by :meth:`SlaBook.due_events`.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from enum import StrEnum

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from hub.cases.calendar import Basis, WorkingCalendar, deadline, elapsed
from hub.cases.model import Case, Stage
from hub.errors import PolicyError

ANY = "*"
#: At most this many (category, severity, stage) limits are remembered by a book.
LIMITS_CACHED = 4096
_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h|d|wd)?\s*$")
_UNIT_S = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0, None: 1.0}


def parse_duration(value: str | float, *, working_day_s: float | None = None) -> float:
    """Seconds in ``"90s"``, ``"15m"``, ``"2h"``, ``"1d"`` (24 h), ``"3wd"`` (working days) or a number.

    ``wd`` needs ``working_day_s`` (the calendar's working seconds per day).
    """
    if isinstance(value, bool):
        raise ValueError(f"not a duration: {value!r}")
    if isinstance(value, int | float):
        if value < 0:
            raise ValueError("a duration must not be negative")
        return float(value)
    match = _DURATION.match(value)
    if not match:
        raise ValueError(f"not a duration: {value!r} (write e.g. 60s, 15m, 2h, 1d or 3wd)")
    number, unit = float(match.group(1)), match.group(2)
    if unit == "wd":
        if working_day_s is None:
            raise ValueError("working days (wd) need a working calendar")
        return number * working_day_s
    return number * _UNIT_S[unit]


Duration = str | float


class SlaPolicy(BaseModel):
    """Limits for one category × severity (``*`` matches any)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    category: str = ANY
    severity: str = ANY
    basis: Basis = Basis.CALENDAR
    #: Per-stage limits; a stage without a limit has no light.
    stages: dict[Stage, Duration] = Field(default_factory=dict)
    #: Whole-case limit (first dispatch → closed).
    case: Duration | None = None

    @field_validator("stages")
    @classmethod
    def _no_case_stage(cls, value: dict[Stage, Duration]) -> dict[Stage, Duration]:
        if Stage.CASE in value:
            raise ValueError("put the whole-case limit in 'case', not under 'stages'")
        return value

    @model_validator(mode="after")
    def _durations(self) -> SlaPolicy:
        for raw in (*self.stages.values(), *(() if self.case is None else (self.case,))):
            parse_duration(raw, working_day_s=1.0)
            text = raw.strip() if isinstance(raw, str) else ""
            if self.basis is Basis.WORKING and text.endswith("d") and not text.endswith("wd"):
                raise ValueError(
                    f"{raw!r}: in working time write hours (h) or working days (wd), not 24-hour days (d)"
                )
            if self.basis is Basis.CALENDAR and text.endswith("wd"):
                raise ValueError(f"{raw!r}: working days (wd) need basis: working")
        return self

    def matches(self, category: str, severity: str) -> bool:
        return self.category in (ANY, category) and self.severity in (ANY, severity)

    @property
    def specificity(self) -> int:
        return (self.category != ANY) * 2 + (self.severity != ANY)


class Light(StrEnum):
    GREEN = "green"
    YELLOW = "yellow"
    RED = "red"


@dataclass(frozen=True, slots=True, kw_only=True)
class StageStatus:
    stage: Stage
    light: Light
    basis: Basis
    started_at: float
    ended_at: float | None
    #: Seconds used so far (in ``basis``), up to the end if the stage ended.
    elapsed: float
    #: Limit in seconds (in ``basis``), extensions included.
    limit: float
    yellow_at: float
    due_at: float

    @property
    def done(self) -> bool:
        return self.ended_at is not None

    @property
    def ratio(self) -> float:
        return self.elapsed / self.limit if self.limit > 0 else float("inf")


@dataclass(frozen=True, slots=True, kw_only=True)
class DueEvent:
    """A red, still-open stage that needs 督办; ``key`` makes acting on it idempotent."""

    key: str
    case_id: str
    stage: Stage
    round_start: float
    due_at: float


class SlaBook:
    """The SLA policies of a site and the calendar they count working time with."""

    def __init__(
        self, *, policies: tuple[SlaPolicy, ...], calendar: WorkingCalendar, yellow_ratio: float = 0.8
    ) -> None:
        if not 0 < yellow_ratio < 1:
            raise PolicyError("yellow_ratio must lie between 0 and 1")
        self.policies = policies
        self.calendar = calendar
        self.yellow_ratio = yellow_ratio
        #: (category, severity, stage) → its configured limit. Every traffic light asks for
        #: each stage, and one SOS shows its case's lights five times (the notifications, the
        #: live console) before it is published: resolving the policy each time (a scan of
        #: every policy, a duration parsed) was ≈ 40 % of filing an SOS case (docs/benchmarks.md,
        #: "Tenth pass"). Policies and calendar are immutable (frozen models in a tuple), and
        #: a reload of policies builds a new book.
        self._limits: dict[tuple[str, str, Stage], tuple[float, Basis] | None] = {}

    def policy_for(self, category: str, severity: str) -> SlaPolicy | None:
        """The most specific policy: exact pair, then category, then severity, then ``*``/``*``."""
        candidates = [p for p in self.policies if p.matches(category, severity)]
        if not candidates:
            return None
        return max(candidates, key=lambda p: p.specificity)

    def base_limit(self, category: str, severity: str, stage: Stage) -> tuple[float, Basis] | None:
        """The configured limit for a stage (without extensions) and its basis."""
        key = (category, severity, stage)
        try:
            return self._limits[key]
        except KeyError:
            pass
        found = self._configured_limit(category, severity, stage)
        if len(self._limits) < LIMITS_CACHED:  # categories come from rule packs: a bounded set
            self._limits[key] = found
        return found

    def _configured_limit(self, category: str, severity: str, stage: Stage) -> tuple[float, Basis] | None:
        policy = self.policy_for(category, severity)
        if policy is None:
            return None
        raw = policy.case if stage is Stage.CASE else policy.stages.get(stage)
        if raw is None:
            return None
        return parse_duration(raw, working_day_s=self.calendar.day_seconds), policy.basis

    def limit(self, case: Case, stage: Stage) -> tuple[float, Basis] | None:
        base = self.base_limit(case.category, case.severity, stage)
        if base is None:
            return None
        seconds, basis = base
        return seconds + case.extension_for(stage), basis

    def due_at(self, case: Case, stage: Stage, *, with_extensions: bool = True) -> float | None:
        start = case.stage_start(stage)
        found = (
            self.limit(case, stage)
            if with_extensions
            else self.base_limit(case.category, case.severity, stage)
        )
        if start is None or found is None:
            return None
        seconds, basis = found
        return deadline(start, seconds, basis=basis, calendar=self.calendar)

    def status(self, case: Case, stage: Stage, now: float) -> StageStatus | None:
        start = case.stage_start(stage)
        found = self.limit(case, stage)
        if start is None or found is None:
            return None
        seconds, basis = found
        end = case.stage_end(stage)
        used = elapsed(start, now if end is None else end, basis=basis, calendar=self.calendar)
        return StageStatus(
            stage=stage,
            light=self._light(used, seconds, done=end is not None),
            basis=basis,
            started_at=start,
            ended_at=end,
            elapsed=used,
            limit=seconds,
            yellow_at=deadline(start, seconds * self.yellow_ratio, basis=basis, calendar=self.calendar),
            due_at=deadline(start, seconds, basis=basis, calendar=self.calendar),
        )

    def traffic_light(self, case: Case, now: float) -> tuple[StageStatus, ...]:
        """Status of every stage that has started and has a limit (whole case last)."""
        found = (self.status(case, stage, now) for stage in Stage)
        return tuple(s for s in found if s is not None)

    def due_events(self, case: Case, now: float) -> tuple[DueEvent, ...]:
        """Open stages that are red at ``now`` and have no 督办 yet for their current round."""
        if not case.open:
            return ()
        done = {(s.stage, s.round_start) for s in case.supervisions}
        events = []
        for status in self.traffic_light(case, now):
            if status.done or status.light is not Light.RED or (status.stage, status.started_at) in done:
                continue
            events.append(
                DueEvent(
                    key=f"{case.id}/supervise/{status.stage.value}/{round(status.started_at * 1000)}",
                    case_id=case.id,
                    stage=status.stage,
                    round_start=status.started_at,
                    due_at=status.due_at,
                )
            )
        return tuple(events)

    def next_change(self, case: Case, now: float) -> float | None:
        """The next instant after ``now`` at which a light of an open stage changes colour."""
        if not case.open:
            return None
        times = [
            t for s in self.traffic_light(case, now) if not s.done for t in (s.yellow_at, s.due_at) if t > now
        ]
        return min(times, default=None)

    def _light(self, used: float, limit: float, *, done: bool) -> Light:
        # An open stage is red from its due time on (in working time the elapsed count
        # stands still at the limit over a weekend: still overdue); a stage that ended
        # exactly at its due time ended on time.
        if used > limit or (not done and used >= limit):
            return Light.RED
        if used >= limit * self.yellow_ratio:
            return Light.YELLOW
        return Light.GREEN
