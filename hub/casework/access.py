"""Who may do what, where: one table of role × action × scope that every entry point asks.

The HTTP API, the event stream, the phone page and MQTT worker replies all call
:func:`can` / :func:`scope_of`; nothing else in the hub decides access. The table reads like
:data:`hub.cases.workflow.TRANSITIONS`: for each role, the actions it may take and the
scope in which it may take them.

Scopes (widest first):

* ``ALL`` — every community (the district command centre, 指挥中心);
* ``COMMUNITY`` — the communities the person is registered in (社区值班 duty officers);
* ``GRID`` — the grids the person covers (handbook §2: a grid worker "answers for everything
  in" the grid; the 网格长 leads the grid team);
* ``ASSIGNED`` — only cases dispatched or escalated to this person (the assignee, and
  everybody the case's notifications went to: a 网格长 told of an SOS may read it).

Where today's lists contradicted each other, this table decides, and says why:

* ``command_operator`` may act on every case (it did) and now also sees personal data
  (before, only the supervisor did): the operator is who calls the elder back within about
  a minute and then the guardians (handbook §4), which needs the phones and the profile.
* ``viewer`` (a wall display) reads and never acts: before, a viewer token whose name
  matched a roster person could act as that person.
* ``grid_police`` and ``volunteer`` take the handler's actions in their grids, as any roster
  person of the grid could before; they do not reassign, extend or verify (the 网格长 does).
* (issue 11) Reading follows acting: the grid team reads its grids, duty officers their
  community, the command centre and the wall display everything. ``viewer`` reads without
  ``personal_data`` (names, phones, care flags), ``locations`` (which building, unit and
  room a device is in) or ``read_notifications`` (who was told): a wall in a public office.
  The grid team sees residents' personal data only on cases in their hands (``ASSIGNED``):
  the worker on the way to an SOS needs the elder's phone and contacts, not the whole grid's.
* (issue 18) ``visits`` (the elder register and its visit tasks) is the grid team's in its
  grids and the desk's; a wall display has none (names of elders living alone are personal).
* (issue 18) 评价 is the desk's (the command centre records it after a 回访 call, or for a
  resident who answered by phone) and the guardian's, through a signed one-time link that
  reaches exactly one case; never the grid team's (they would judge their own work).
* (issue 11) Roles whose reach depends on who the person is (every scope narrower than
  ``ALL``) need a token bound to a roster person: :func:`needs_person`.

Must not import: ``hub.web``, ``hub.ingest``, ``hub.app``, ``hub.cli``.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from enum import IntEnum, StrEnum

from hub.cases.model import CaseAction
from hub.records import Role

R = Role
A = CaseAction


class Scope(IntEnum):
    """How far a permission reaches; a larger value includes the smaller ones."""

    NONE = 0
    ASSIGNED = 1
    GRID = 2
    COMMUNITY = 3
    ALL = 4


class Permission(StrEnum):
    """What a role may do besides case actions."""

    READ = "read"  # alerts, devices, events, cases, KPIs, stats, the event stream
    PERSONAL_DATA = "personal_data"  # residents' names, phones, addresses, contacts, medical notes
    READ_NOTIFICATIONS = "read_notifications"  # the delivery log of every notification
    RECORD_FOR_OTHERS = "record_for_others"  # act on behalf of a person who reported by phone
    LOCATIONS = "locations"  # where a device is: building, unit, room, place
    STAFF_KPIS = "staff_kpis"  # KPIs per worker (staff performance, not for a public wall)
    RELOAD_RULES = "reload_rules"
    ADVANCE_TEST_CLOCK = "advance_test_clock"  # scenarios: a manual test clock, or the demo's (forward)
    VISITS = "visits"  # the elder register, care visit tasks and recording their outcomes (issue 18)


Action = CaseAction | Permission

#: What a grid team member does with a case in hand (受理 → 到场 → 反馈, call-back, notes).
#: A false alarm is closed by the handler after the recorded call-back the workflow requires
#: (handbook §4: every false press still gets a call-back and is logged).
HANDLER: frozenset[Action] = frozenset(
    {A.ACCEPT, A.ARRIVE, A.HANDLE, A.CALL_BACK, A.NOTE, A.RETURN, A.FALSE_ALARM}
)
#: Every case action a person can take (``file`` and ``auto_clear`` are the system's own).
EVERY_CASE_ACTION: frozenset[Action] = frozenset(set(CaseAction) - {A.FILE, A.AUTO_CLEAR})
#: The command centre's and duty officers' desk: any case action, reading, recording for others.
DESK: frozenset[Action] = EVERY_CASE_ACTION | {
    Permission.READ,
    Permission.VISITS,
    Permission.RECORD_FOR_OTHERS,
    Permission.READ_NOTIFICATIONS,
    Permission.LOCATIONS,
    Permission.STAFF_KPIS,
}


@dataclass(frozen=True, slots=True)
class Grant:
    """``actions`` allowed within ``scope``."""

    actions: frozenset[Action]
    scope: Scope


def _grants(*pairs: tuple[frozenset[Action], Scope]) -> tuple[Grant, ...]:
    return tuple(Grant(actions, scope) for actions, scope in pairs)


_PERSONAL = frozenset({Permission.PERSONAL_DATA})
_READ = frozenset({Permission.READ})
#: What a grid team member reads in the grids they cover (and the grid's care visits: 探访).
_GRID_READ = frozenset({Permission.READ, Permission.LOCATIONS, Permission.VISITS})
_RULES = frozenset({Permission.RELOAD_RULES})
_CLOCK = frozenset({Permission.ADVANCE_TEST_CLOCK})

#: The access table. A role absent from an action has no scope for it.
ACCESS: Mapping[Role, tuple[Grant, ...]] = {
    R.ADMIN: _grants((DESK | _PERSONAL | _RULES | _CLOCK, Scope.ALL)),
    R.COMMAND_CENTRE: _grants((DESK | _PERSONAL | _RULES | _CLOCK, Scope.ALL)),
    R.COMMAND_SUPERVISOR: _grants((DESK | _PERSONAL | _RULES, Scope.ALL)),
    R.COMMAND_OPERATOR: _grants((DESK | _PERSONAL, Scope.ALL)),
    # 社区值班: the desk, for the communities the duty officer is on the roster of.
    R.DUTY_OFFICER: _grants((DESK | _PERSONAL, Scope.COMMUNITY)),
    # 网格长: everything a handler does, plus reassign/extend/verify …, in the grid team's grids;
    # evaluates the team (per-worker KPIs); reads any case escalated to him (ASSIGNED).
    # 评价 is not his: the resident, a guardian or the command centre judges the grid's work
    # (handbook §3, 综合评价), never the grid itself.
    R.GRID_LEADER: _grants(
        ((EVERY_CASE_ACTION - {A.EVALUATE}) | _GRID_READ | {Permission.STAFF_KPIS}, Scope.GRID),
        (_READ | _PERSONAL, Scope.ASSIGNED),
    ),
    R.GRID_WORKER: _grants((HANDLER | _GRID_READ, Scope.GRID), (_READ | _PERSONAL, Scope.ASSIGNED)),
    R.GRID_POLICE: _grants((HANDLER | _GRID_READ, Scope.GRID), (_READ | _PERSONAL, Scope.ASSIGNED)),
    R.VOLUNTEER: _grants((HANDLER | _GRID_READ, Scope.GRID), (_READ | _PERSONAL, Scope.ASSIGNED)),
    # A wall display: everything, without personal data, locations or who was told.
    R.VIEWER: _grants((_READ, Scope.ALL)),
    # (issue 18) 监护人 through a signed one-time link: evaluates the one case the link names
    # (the link makes him one of the case's ``told``) and nothing else, reads nothing.
    R.GUARDIAN: _grants((frozenset({A.EVALUATE}), Scope.ASSIGNED)),
}

#: Roles a token (a login) may have: a guardian never logs in, his one-time link is his only reach.
TOKEN_ROLES = frozenset(R) - {R.GUARDIAN}

#: Roles whose login lands on the phone page (``/m``) rather than the command-centre console.
PHONE_ROLES = frozenset({R.GRID_WORKER, R.GRID_LEADER, R.GRID_POLICE, R.VOLUNTEER})


def scope_of(role: Role, action: Action) -> Scope:
    """The widest scope in which ``role`` may take ``action`` (``NONE`` if never)."""
    return max((g.scope for g in ACCESS.get(role, ()) if action in g.actions), default=Scope.NONE)


def can(role: Role, action: Action, *, at_least: Scope = Scope.ASSIGNED) -> bool:
    """``role`` may take ``action`` somewhere at least as wide as ``at_least``."""
    return scope_of(role, action) >= at_least


def needs_person(role: Role) -> bool:
    """Whether a token of ``role`` must name a roster person: some grant reaches less than ``ALL``.

    Such a grant means "the person's grids/community/cases"; without a person it would mean
    nothing (or, as before issue 11, whatever the token's *name* happened to match).
    """
    return any(Scope.NONE < g.scope < Scope.ALL for g in ACCESS.get(role, ()))


@dataclass(frozen=True, slots=True)
class Actor:
    """Who acts: a person of the roster or a console user, with the role the access table knows."""

    id: str
    role: Role


@dataclass(frozen=True, slots=True)
class Where:
    """Where the thing acted on is, and who has it (for the scope check)."""

    community: str | None
    grid: str | None
    assignee: str | None = None
    #: Everybody the thing was dispatched or escalated to (a case's notifications).
    told: frozenset[str] = frozenset()


def allows(
    actor: Actor, action: Action, where: Where, *, grids: frozenset[str], communities: frozenset[str]
) -> bool:
    """May ``actor`` take ``action`` on something at ``where``?

    ``grids`` and ``communities`` are those the actor's roster entry covers (empty for a
    console token that is not a person).
    """
    scope = scope_of(actor.role, action)
    if scope is Scope.ALL:
        return True
    if scope >= Scope.COMMUNITY and where.community is not None and where.community in communities:
        return True
    if scope >= Scope.GRID and where.grid is not None and where.grid in grids:
        return True
    return scope >= Scope.ASSIGNED and (where.assignee == actor.id or actor.id in where.told)


@dataclass(frozen=True, slots=True)
class Reach:
    """An actor with the grids and communities their roster entry covers: asks the table for them.

    Built once per request (or per event-stream subscriber) so that every check of that
    request answers for the same person.
    """

    actor: Actor
    grids: frozenset[str] = frozenset()
    communities: frozenset[str] = frozenset()

    @property
    def role(self) -> Role:
        return self.actor.role

    def scope(self, action: Action) -> Scope:
        return scope_of(self.actor.role, action)

    def allows(self, action: Action, where: Where) -> bool:
        return allows(self.actor, action, where, grids=self.grids, communities=self.communities)

    def may_ever(self, action: Action) -> bool:
        return can(self.actor.role, action)


def render_table() -> str:
    """The table as Markdown (docs/security.md holds it; a test keeps the two equal)."""
    lines = ["| role | ALL | COMMUNITY | GRID | ASSIGNED |", "|---|---|---|---|---|"]
    for role, grants in ACCESS.items():
        cells = []
        for scope in (Scope.ALL, Scope.COMMUNITY, Scope.GRID, Scope.ASSIGNED):
            names = sorted(str(a.value) for g in grants if g.scope is scope for a in g.actions)
            cells.append(", ".join(names) or "—")
        lines.append(f"| {role.value} | " + " | ".join(cells) + " |")
    return "\n".join(lines)
