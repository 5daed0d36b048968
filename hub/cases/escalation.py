"""Escalation chains (who is told, when) and a pure, idempotent escalation planner.

A chain belongs to a category × severity and has two phases:

* ``dispatched`` — steps timed from the (current) dispatch while nobody has accepted.
  Accepting stops this phase (handbook §4: a call-back within about a minute; SOS default:
  at once the on-duty grid worker, the community duty officer and the guardians; after
  60 s the next grid worker and the grid leader; after 3 min the command-centre supervisor).
* ``accepted`` — steps timed from the due time of the ``arrive`` stage (see
  :mod:`hub.cases.sla`) while the handler has not reported being on site: a reminder at the
  limit, then escalation again.

The planner is a function of the case, the roster, the zone and ``now``; it reads no clock
and keeps no state. Each step of a round has a stable key
``{case_id}/{phase}/{round_ms}/{step}`` (the round is the dispatch or acceptance time), so
the hub can write "step sent" and its notifications in one transaction (``INSERT OR
IGNORE`` on the key) and, after a restart, find the same next deadline again without
re-sending anything. Targets are resolved at the step's own due time, not at ``now``, so a
late run (after ``kill -9``) tells the same people the timely one would have told.
"""

from __future__ import annotations

from collections.abc import Collection, Sequence
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from zoneinfo import ZoneInfo

from pydantic import BaseModel, ConfigDict, Field, field_validator

from hub.cases.model import Case, CaseState, Stage
from hub.cases.sla import ANY, Duration, SlaBook, parse_duration
from hub.community.model import Contact
from hub.community.roster import Person, WorkingDays, on_duty
from hub.records import Role

COMMAND_CENTRE = "command-centre"


class Selector(StrEnum):
    ASSIGNEE = "assignee"  # whoever the case is dispatched to
    GRID_WORKER_ON_DUTY = "grid_worker_on_duty"  # 网格员 of the case's grid on shift
    NEXT_GRID_WORKER = "next_grid_worker"  # other on-shift grid workers not yet told
    GRID_LEADER = "grid_leader"  # 网格长
    DUTY_OFFICER = "duty_officer"  # 社区值班
    COMMAND_SUPERVISOR = "command_supervisor"  # 指挥中心 supervisor
    COMMAND_CENTRE = "command_centre"  # the command centre's own topic
    GUARDIANS = "guardians"  # the resident's emergency contacts (children, neighbours)


class StepKind(StrEnum):
    NOTIFY = "notify"  # first notice
    REMIND = "remind"  # the same people again
    ESCALATE = "escalate"  # somebody higher up


class Phase(StrEnum):
    DISPATCHED = "dispatched"
    ACCEPTED = "accepted"


class Step(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    after: Duration
    targets: tuple[Selector, ...] = Field(min_length=1)
    kind: StepKind = StepKind.ESCALATE

    @field_validator("after")
    @classmethod
    def _after(cls, value: Duration) -> Duration:
        parse_duration(value)  # calendar seconds: escalation waits are wall-clock waits
        return value

    @property
    def after_s(self) -> float:
        return parse_duration(self.after)


class Chain(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    category: str = ANY
    severity: str = ANY
    dispatched: tuple[Step, ...] = ()
    accepted: tuple[Step, ...] = ()

    @field_validator("dispatched", "accepted")
    @classmethod
    def _ordered(cls, steps: tuple[Step, ...]) -> tuple[Step, ...]:
        waits = [s.after_s for s in steps]
        if waits != sorted(waits):
            raise ValueError("steps must be listed in order of their wait")
        return steps

    def matches(self, category: str, severity: str) -> bool:
        return self.category in (ANY, category) and self.severity in (ANY, severity)

    @property
    def specificity(self) -> int:
        return (self.category != ANY) * 2 + (self.severity != ANY)


class TargetKind(StrEnum):
    PERSON = "person"
    CONTACT = "contact"
    COMMAND_CENTRE = "command_centre"


@dataclass(frozen=True, slots=True, kw_only=True)
class Target:
    kind: TargetKind
    #: Person id, ``contact:<phone or name>``, or ``command-centre``.
    id: str
    selector: Selector
    name: str = ""
    phone: str = ""
    role: str = ""


@dataclass(frozen=True, slots=True, kw_only=True)
class DueStep:
    """One escalation step that is due: send it once, keyed by ``key``."""

    key: str
    case_id: str
    phase: Phase
    round_start: float
    step: int
    kind: StepKind
    due_at: float
    targets: tuple[Target, ...]


@dataclass(frozen=True, slots=True, kw_only=True)
class EscalationPlan:
    due: tuple[DueStep, ...]
    #: When to call the planner again (earliest unsent step after ``now``); persist it.
    next_deadline: float | None


def chain_for(chains: Sequence[Chain], category: str, severity: str) -> Chain | None:
    """The most specific chain for a category × severity (``*`` matches any)."""
    candidates = [c for c in chains if c.matches(category, severity)]
    return max(candidates, key=lambda c: c.specificity) if candidates else None


def step_key(case_id: str, phase: Phase, round_start: float, step: int) -> str:
    return f"{case_id}/{phase.value}/{round(round_start * 1000)}/{step}"


def plan(
    case: Case,
    *,
    chain: Chain | None,
    sla: SlaBook,
    roster: Sequence[Person],
    zone: ZoneInfo,
    now: float,
    contacts: Sequence[Contact] = (),
    sent: Collection[str] = frozenset(),
    calendar: WorkingDays | None = None,
) -> EscalationPlan:
    """Steps due at ``now`` that are not in ``sent``, and the next deadline.

    Only the current phase counts: ``dispatched`` while the case waits for acceptance,
    ``accepted`` while it waits for the on-site report; any other state plans nothing.
    """
    if chain is None:
        return EscalationPlan(due=(), next_deadline=None)
    phase_steps = _phase(case, chain, sla)
    if phase_steps is None:
        return EscalationPlan(due=(), next_deadline=None)
    phase, round_start, anchor, steps = phase_steps
    due: list[DueStep] = []
    told: set[str] = set()
    next_deadline: float | None = None
    for index, step in enumerate(steps):
        at = anchor + step.after_s
        targets = _resolve(
            step, case, roster=roster, zone=zone, at=at, contacts=contacts, told=told, calendar=calendar
        )
        told.update(t.id for t in targets)
        key = step_key(case.id, phase, round_start, index)
        if key in sent:
            continue
        if at <= now:
            due.append(
                DueStep(
                    key=key,
                    case_id=case.id,
                    phase=phase,
                    round_start=round_start,
                    step=index,
                    kind=step.kind,
                    due_at=at,
                    targets=targets,
                )
            )
        elif next_deadline is None or at < next_deadline:
            next_deadline = at
    return EscalationPlan(due=tuple(due), next_deadline=next_deadline)


def _phase(case: Case, chain: Chain, sla: SlaBook) -> tuple[Phase, float, float, tuple[Step, ...]] | None:
    if case.state is CaseState.DISPATCHED and case.dispatched_at is not None:
        return Phase.DISPATCHED, case.dispatched_at, case.dispatched_at, chain.dispatched
    if case.state is CaseState.ACCEPTED and case.accepted_at is not None:
        # Without an arrive limit the accepted phase is timed from the acceptance itself.
        anchor = sla.due_at(case, Stage.ARRIVE) or case.accepted_at
        return Phase.ACCEPTED, case.accepted_at, anchor, chain.accepted
    return None


def _resolve(
    step: Step,
    case: Case,
    *,
    roster: Sequence[Person],
    zone: ZoneInfo,
    at: float,
    contacts: Sequence[Contact],
    told: set[str],
    calendar: WorkingDays | None,
) -> tuple[Target, ...]:
    found: dict[str, Target] = {}

    def add_people(people: Sequence[Person], selector: Selector) -> None:
        for p in people:
            found.setdefault(
                p.id,
                Target(
                    kind=TargetKind.PERSON,
                    id=p.id,
                    selector=selector,
                    name=p.name,
                    phone=p.phone,
                    role=p.role.value,
                ),
            )

    def command_centre(selector: Selector) -> None:
        found.setdefault(
            COMMAND_CENTRE, Target(kind=TargetKind.COMMAND_CENTRE, id=COMMAND_CENTRE, selector=selector)
        )

    for selector in step.targets:
        if selector is Selector.ASSIGNEE:
            if case.assignee:
                person = next((p for p in roster if p.id == case.assignee), None)
                if person is not None:
                    add_people([person], selector)
                else:
                    found.setdefault(
                        case.assignee, Target(kind=TargetKind.PERSON, id=case.assignee, selector=selector)
                    )
        elif selector is Selector.GRID_WORKER_ON_DUTY:
            add_people(_on_duty(roster, case.grid, at, zone, Role.GRID_WORKER, calendar=calendar), selector)
        elif selector is Selector.NEXT_GRID_WORKER:
            others = [
                p
                for p in _on_duty(roster, case.grid, at, zone, Role.GRID_WORKER, calendar=calendar)
                if p.id not in told and p.id != case.assignee
            ]
            add_people(others, selector)
        elif selector is Selector.GRID_LEADER:
            add_people(
                _on_duty_or_all(roster, case.grid, at, zone, Role.GRID_LEADER, calendar=calendar), selector
            )
        elif selector is Selector.DUTY_OFFICER:
            add_people(
                _on_duty_or_all(roster, case.grid, at, zone, Role.DUTY_OFFICER, calendar=calendar), selector
            )
        elif selector is Selector.COMMAND_SUPERVISOR:
            people = _on_duty_or_all(roster, None, at, zone, Role.COMMAND_SUPERVISOR, calendar=calendar)
            if people:
                add_people(people, selector)
            else:
                command_centre(selector)
        elif selector is Selector.COMMAND_CENTRE:
            command_centre(selector)
        elif selector is Selector.GUARDIANS:
            for c in contacts:
                cid = f"contact:{c.phone or c.name}"
                found.setdefault(
                    cid,
                    Target(
                        kind=TargetKind.CONTACT,
                        id=cid,
                        selector=selector,
                        name=c.name,
                        phone=c.phone,
                        role=c.relation,
                    ),
                )
    staff = [s for s in step.targets if s is not Selector.GUARDIANS]
    if staff and not any(t.kind is not TargetKind.CONTACT for t in found.values()):
        # Nobody on duty must never mean nobody told (handbook §4, presses after hours).
        command_centre(staff[0])
    return tuple(found.values())


def _on_duty(
    roster: Sequence[Person],
    grid: str | None,
    at: float,
    zone: ZoneInfo,
    role: Role,
    *,
    calendar: WorkingDays | None,
) -> list[Person]:
    if grid is None:
        return []
    return on_duty(roster, grid=grid, ts=at, zone=zone, roles=(role,), calendar=calendar)


def _on_duty_or_all(
    roster: Sequence[Person],
    grid: str | None,
    at: float,
    zone: ZoneInfo,
    role: Role,
    *,
    calendar: WorkingDays | None,
) -> list[Person]:
    """People of ``role`` (covering ``grid`` unless it is ``None``): those on shift, else all of
    them who are not on leave.

    Leaders, duty officers and supervisors are told even off shift when nobody of their role
    is on shift: an escalation must reach somebody. Not somebody on leave: found in review, a
    leader on a week's leave was an inactivity case's last step, nobody else was told, and the
    command-centre fallback (nobody found) never ran.
    """
    moment = datetime.fromtimestamp(at, zone)
    people = [p for p in roster if p.role is role and (grid is None or grid in p.grids)]
    on_shift = [p for p in people if p.on_duty(moment, calendar)]
    return on_shift or [p for p in people if not p.on_leave(moment)]
