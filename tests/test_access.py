"""The one access table: roles are a closed set, and the table says what each may do where."""

from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner

from hub.cases.model import CaseAction
from hub.casework.access import (
    ACCESS,
    HANDLER,
    TOKEN_ROLES,
    Actor,
    Permission,
    Scope,
    Where,
    allows,
    can,
    needs_person,
    render_table,
    scope_of,
)
from hub.cli import main
from hub.config import load_settings
from hub.errors import ConfigError
from hub.records import Role

GRID, OTHER_GRID, COMMUNITY = "110105001001001", "110105001001002", "110105001001"
MINE = frozenset({GRID})


def test_every_role_has_a_row() -> None:
    assert set(ACCESS) == set(Role)


def test_an_unknown_role_in_the_config_is_refused_naming_file_and_key(tmp_path: Path) -> None:
    config = tmp_path / "linli.yaml"
    config.write_text("api_tokens:\n  - {name: x, role: nonsense, sha256: '" + "a" * 64 + "'}\n")
    with pytest.raises(ConfigError) as refused:
        load_settings(config, environ={})
    assert refused.value.key == "api_tokens.0.role"
    assert str(config) in refused.value.source


def test_linli_token_refuses_an_unknown_role() -> None:
    result = CliRunner().invoke(main, ["token", "--name", "x", "--role", "nonsense"])
    assert result.exit_code == 2 and "nonsense" in result.output
    ok = CliRunner().invoke(main, ["token", "--person", "g1-day", "--role", "grid_worker"])
    assert ok.exit_code == 0 and "role: grid_worker, person: g1-day" in ok.output


def test_linli_token_binds_grid_roles_to_a_person() -> None:
    """Issue 11 #3: a grid role's reach is a person's grids; a token without one is refused."""
    refused = CliRunner().invoke(main, ["token", "--name", "g2-day", "--role", "grid_worker"])
    assert refused.exit_code == 2 and "--person" in refused.output
    viewer = CliRunner().invoke(main, ["token", "--name", "wall", "--role", "viewer"])
    assert viewer.exit_code == 0 and "person" not in viewer.output.split("api_tokens:")[1]


def test_duty_officers_act_in_their_community_only() -> None:
    duty = Actor("d", Role.DUTY_OFFICER)
    mine, other = frozenset({COMMUNITY}), Where(community="110105001002", grid="110105001002001")
    for action in set(CaseAction) - {CaseAction.FILE, CaseAction.AUTO_CLEAR}:
        assert allows(duty, action, Where(COMMUNITY, OTHER_GRID), grids=frozenset(), communities=mine)
        assert not allows(duty, action, other, grids=frozenset(), communities=mine)
    assert scope_of(Role.DUTY_OFFICER, Permission.READ) is Scope.COMMUNITY


def test_a_person_told_of_a_case_may_read_it() -> None:
    """Issue 11 #2: the 网格长 escalated to (told) reads the case even outside his grids."""
    leader = Actor("l", Role.GRID_LEADER)
    elsewhere = Where(COMMUNITY, OTHER_GRID, "w-night")
    assert not allows(leader, Permission.READ, elsewhere, grids=MINE, communities=frozenset())
    told = Where(COMMUNITY, OTHER_GRID, "w-night", told=frozenset({"l"}))
    assert allows(leader, Permission.READ, told, grids=MINE, communities=frozenset())
    assert allows(leader, Permission.PERSONAL_DATA, told, grids=MINE, communities=frozenset())


def test_roles_narrower_than_all_need_a_person() -> None:
    assert {r for r in TOKEN_ROLES if needs_person(r)} == {
        Role.DUTY_OFFICER,
        Role.GRID_LEADER,
        Role.GRID_WORKER,
        Role.GRID_POLICE,
        Role.VOLUNTEER,
    }


@pytest.mark.parametrize(
    "role",
    [Role.ADMIN, Role.COMMAND_CENTRE, Role.COMMAND_SUPERVISOR, Role.COMMAND_OPERATOR],
)
def test_the_desk_acts_on_every_case_and_records_for_others(role: Role) -> None:
    anywhere = Where(community="x", grid="y", assignee="someone")
    for action in set(CaseAction) - {CaseAction.FILE, CaseAction.AUTO_CLEAR}:
        assert allows(Actor("a", role), action, anywhere, grids=frozenset(), communities=frozenset())
    assert can(role, Permission.RECORD_FOR_OTHERS) and can(role, Permission.READ_NOTIFICATIONS)
    assert can(role, Permission.PERSONAL_DATA)  # the operator calls the elder back (handbook §4)


@pytest.mark.parametrize("role", [Role.GRID_WORKER, Role.GRID_POLICE, Role.VOLUNTEER])
def test_grid_team_takes_handler_actions_in_its_grids_or_on_its_cases(role: Role) -> None:
    actor = Actor("w", role)
    for action in HANDLER:
        assert allows(actor, action, Where(COMMUNITY, GRID), grids=MINE, communities=frozenset())
        assert not allows(actor, action, Where(COMMUNITY, OTHER_GRID), grids=MINE, communities=frozenset())
        assert allows(actor, action, Where(COMMUNITY, OTHER_GRID, "w"), grids=MINE, communities=frozenset())
    for action in (CaseAction.REASSIGN, CaseAction.EXTEND, CaseAction.VERIFY, CaseAction.CLOSE):
        assert not allows(actor, action, Where(COMMUNITY, GRID, "w"), grids=MINE, communities=frozenset())
    # Personal data only on cases in hand; reading (and where devices are) in the grids.
    assert scope_of(role, Permission.PERSONAL_DATA) is Scope.ASSIGNED
    assert scope_of(role, Permission.READ) is Scope.GRID
    assert scope_of(role, Permission.LOCATIONS) is Scope.GRID


def test_grid_leader_may_also_reassign_extend_and_verify_in_the_grid() -> None:
    leader = Actor("l", Role.GRID_LEADER)
    for action in (CaseAction.REASSIGN, CaseAction.EXTEND, CaseAction.VERIFY, CaseAction.CLOSE):
        assert allows(leader, action, Where(COMMUNITY, GRID), grids=MINE, communities=frozenset())
        assert not allows(leader, action, Where(COMMUNITY, OTHER_GRID), grids=MINE, communities=frozenset())


def test_a_viewer_never_acts_even_on_a_case_in_its_name() -> None:
    viewer = Actor("w-night", Role.VIEWER)
    for action in CaseAction:
        assert not allows(
            viewer, action, Where(COMMUNITY, GRID, "w-night"), grids=MINE, communities=frozenset()
        )
    assert not can(Role.VIEWER, Permission.PERSONAL_DATA)


def test_only_admin_and_command_centre_move_the_test_clock_and_reload_rules() -> None:
    assert {r for r in Role if can(r, Permission.ADVANCE_TEST_CLOCK)} == {Role.ADMIN, Role.COMMAND_CENTRE}
    assert {r for r in Role if can(r, Permission.RELOAD_RULES)} == {
        Role.ADMIN,
        Role.COMMAND_CENTRE,
        Role.COMMAND_SUPERVISOR,
    }


def test_the_table_renders_for_the_docs() -> None:
    table = render_table()
    assert all(f"| {role.value} |" in table for role in Role)


def test_docs_security_holds_the_table_as_the_code_renders_it() -> None:
    doc = (Path(__file__).parent.parent / "docs" / "security.md").read_text(encoding="utf-8")
    begin, end = "<!-- access-table:begin -->\n", "\n<!-- access-table:end -->"
    shown = doc[doc.index(begin) + len(begin) : doc.index(end)]
    assert shown == render_table(), (
        "regenerate with: python -c 'from hub.casework.access import render_table; print(render_table())'"
    )


def test_a_guardian_evaluates_only_the_case_his_link_names_and_has_no_login() -> None:
    """Issue 18: 评价 by a one-time link reaches one case; a guardian reads nothing and never logs in."""
    guardian = Actor("guardian:李明", Role.GUARDIAN)
    linked = Where(COMMUNITY, OTHER_GRID, "w-night", told=frozenset({guardian.id}))
    other = Where(COMMUNITY, OTHER_GRID, "w-night")
    nothing: frozenset[str] = frozenset()
    assert allows(guardian, CaseAction.EVALUATE, linked, grids=nothing, communities=nothing)
    assert not allows(guardian, CaseAction.EVALUATE, other, grids=nothing, communities=nothing)
    assert not any(
        allows(guardian, action, linked, grids=nothing, communities=nothing)
        for action in [*Permission, *(set(CaseAction) - {CaseAction.EVALUATE})]
    )
    assert Role.GUARDIAN not in TOKEN_ROLES
    assert not can(Role.GRID_WORKER, CaseAction.EVALUATE) and not can(Role.GRID_LEADER, CaseAction.EVALUATE)
