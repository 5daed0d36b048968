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
* ``ASSIGNED`` — only cases dispatched or escalated to this person.

Where today's lists contradicted each other, this table decides, and says why:

* ``command_operator`` may act on every case (it did) and now also sees personal data
  (before, only the supervisor did): the operator is who calls the elder back within about
  a minute and then the guardians (handbook §4), which needs the phones and the profile.
* ``viewer`` (a wall display) reads and never acts: before, a viewer token whose name
  matched a roster person could act as that person.
* ``grid_police`` and ``volunteer`` take the handler's actions in their grids, as any roster
  person of the grid could before; they do not reassign, extend or verify (the 网格长 does).

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
    RELOAD_RULES = "reload_rules"
    ADVANCE_TEST_CLOCK = "advance_test_clock"  # scenario testing on a manual clock only


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
    Permission.RECORD_FOR_OTHERS,
    Permission.READ_NOTIFICATIONS,
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
_RULES = frozenset({Permission.RELOAD_RULES})
_CLOCK = frozenset({Permission.ADVANCE_TEST_CLOCK})

#: The access table. A role absent from an action has no scope for it.
ACCESS: Mapping[Role, tuple[Grant, ...]] = {
    R.ADMIN: _grants((DESK | _PERSONAL | _RULES | _CLOCK, Scope.ALL)),
    R.COMMAND_CENTRE: _grants((DESK | _PERSONAL | _RULES | _CLOCK, Scope.ALL)),
    R.COMMAND_SUPERVISOR: _grants((DESK | _PERSONAL | _RULES, Scope.ALL)),
    R.COMMAND_OPERATOR: _grants((DESK | _PERSONAL, Scope.ALL)),
    # Today duty officers act on any case; the next issue narrows them to their community.
    R.DUTY_OFFICER: _grants((DESK | _PERSONAL, Scope.ALL)),
    # 网格长: everything a handler does, plus reassign/extend/verify …, in the grid team's grids.
    R.GRID_LEADER: _grants((EVERY_CASE_ACTION, Scope.GRID), (_READ, Scope.ASSIGNED)),
    R.GRID_WORKER: _grants((HANDLER, Scope.GRID), (_READ, Scope.ASSIGNED)),
    R.GRID_POLICE: _grants((HANDLER, Scope.GRID), (_READ, Scope.ASSIGNED)),
    R.VOLUNTEER: _grants((HANDLER, Scope.GRID), (_READ, Scope.ASSIGNED)),
    R.VIEWER: _grants((_READ, Scope.ASSIGNED)),
}

#: Roles whose login lands on the phone page (``/m``) rather than the command-centre console.
PHONE_ROLES = frozenset({R.GRID_WORKER, R.GRID_LEADER, R.GRID_POLICE, R.VOLUNTEER})


def scope_of(role: Role, action: Action) -> Scope:
    """The widest scope in which ``role`` may take ``action`` (``NONE`` if never)."""
    return max((g.scope for g in ACCESS.get(role, ()) if action in g.actions), default=Scope.NONE)


def can(role: Role, action: Action, *, at_least: Scope = Scope.ASSIGNED) -> bool:
    """``role`` may take ``action`` somewhere at least as wide as ``at_least``."""
    return scope_of(role, action) >= at_least


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
    return scope >= Scope.ASSIGNED and where.assignee is not None and where.assignee == actor.id


def render_table() -> str:
    """The table as Markdown (for docs/security.md): one row per role, one column per scope."""
    lines = ["| role | ALL | COMMUNITY | GRID | ASSIGNED |", "|---|---|---|---|---|"]
    for role, grants in ACCESS.items():
        cells = []
        for scope in (Scope.ALL, Scope.COMMUNITY, Scope.GRID, Scope.ASSIGNED):
            names = sorted(str(a.value) for g in grants if g.scope is scope for a in g.actions)
            cells.append(", ".join(names) or "—")
        lines.append(f"| {role.value} | " + " | ".join(cells) + " |")
    return "\n".join(lines)
