"""Issue 11, the HTTP side: the authorisation matrix generated from the access table, and the attacks.

One real hub (embedded broker, port 0) with three SOS cases: in the token holders' own grid
(G1), in another grid of their community (G2) and in another community (G3). For every role ×
every route × each of the three places the expected answer is computed from
:data:`hub.casework.access.ACCESS` (through :func:`allows`, with the roster's grids), never
written by hand, and compared with what the API says and shows.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest

from hub.app import Hub
from hub.broker import EmbeddedBroker
from hub.cases.care import TaskKind
from hub.cases.model import CaseAction, Channel
from hub.casework.access import TOKEN_ROLES, Action, Actor, Permission, Where, allows, needs_person
from hub.clock import ManualClock
from hub.config import ApiToken, load_settings
from hub.errors import ConfigError
from hub.health.readiness import Check, Readiness
from hub.records import Role
from hub.web.api import token_hash
from hub.web.care import visit_id
from hub.web.sessions import MAX_SESSIONS_PER_TOKEN, Sessions
from tests.helpers import eventually, publisher
from tests.support.samples import SAMPLES
from tests.support.servers import Broker

NIGHT = 1_795_371_180.0  # 2026-11-23 02:13 Asia/Shanghai
C1, C2 = "110105001001", "110105001002"
G1, G2, G3 = f"{C1}001", f"{C1}002", f"{C2}001"
BUTTONS = {G1: "sos-g1", G2: "sos-g2", G3: "sos-g3"}
ALL_DAY = '[{start: "00:00", end: "00:00"}]'
REGISTRY = f"""
version: 1
communities:
  - code: "{C1}"
    name: 幸福里社区
    grids:
      - code: "{G1}"
        name: 第一网格
        buildings:
          - {{id: b1, name: 1号楼, units: [{{id: b1-u1, name: 1单元, households: [{{id: h101, room: "101"}}]}}]}}
      - {{code: "{G2}", name: 第二网格}}
    people:
      - {{id: w1, name: 网格员甲, role: grid_worker, grids: ["{G1}"], shifts: {ALL_DAY}}}
      - {{id: w2, name: 网格员乙, role: grid_worker, grids: ["{G2}"], shifts: {ALL_DAY}}}
      - {{id: l1, name: 网格长甲, role: grid_leader, grids: ["{G1}"], shifts: {ALL_DAY}}}
      - {{id: l2, name: 网格长乙, role: grid_leader, grids: ["{G2}"], shifts: {ALL_DAY}}}
      - {{id: p1, name: 网格警员, role: grid_police, grids: ["{G1}"], shifts: {ALL_DAY}}}
      - {{id: v1, name: 志愿者, role: volunteer, grids: ["{G1}"], shifts: {ALL_DAY}}}
      - {{id: d1, name: 值班员, role: duty_officer, grids: ["{G1}"], shifts: {ALL_DAY}}}
    residents:
      - {{id: r1, name: 王秀英, household: h101, address: 1号楼1单元101, phone: "13812345678", living_alone: true,
          age: 83, emergency_contacts: [{{name: 李明, relation: 儿子, phone: "13987654321"}}]}}
    devices:
      - {{id: sos-g1, kind: sos_button, model: TS0215A, grid: "{G1}", resident: r1, household: h101,
          location: 1号楼1单元101}}
      - {{id: sos-g2, kind: sos_button, model: TS0215A, grid: "{G2}"}}
  - code: "{C2}"
    name: 和平里社区
    grids:
      - code: "{G3}"
        name: 和平第一网格
        buildings:
          - {{id: b3, name: 3号楼, units: [{{id: b3-u1, name: 1单元, households: [{{id: h301, room: "301"}}]}}]}}
    people:
      - {{id: w3, name: 网格员丙, role: grid_worker, grids: ["{G3}"], shifts: {ALL_DAY}}}
    residents:
      - {{id: r3, name: 赵桂兰, household: h301, address: 3号楼1单元301, phone: "13711112222", living_alone: true,
          age: 81}}
    devices:
      - {{id: sos-g3, kind: sos_button, model: TS0215A, grid: "{G3}"}}
"""
#: The roster person each role's token is bound to (only roles that need one).
PERSON = {
    Role.GRID_WORKER: "w1",
    Role.GRID_LEADER: "l1",
    Role.GRID_POLICE: "p1",
    Role.VOLUNTEER: "v1",
    Role.DUTY_OFFICER: "d1",
}
ROSTER_GRIDS = {"w1": {G1}, "l1": {G1}, "p1": {G1}, "v1": {G1}, "d1": {G1}}
SOS = (SAMPLES / "zigbee2mqtt" / "tuya_ts0215a_sos_emergency.json").read_bytes()


def secret(role: Role) -> str:
    return f"secret-of-{role.value}"


def tokens() -> list[ApiToken]:
    return [
        ApiToken(name=f"tok-{r.value}", role=r, person=PERSON.get(r), sha256=token_hash(secret(r)))
        for r in Role
        if r in TOKEN_ROLES
    ]


@dataclass
class World:
    hub: Hub
    base: str
    cases: dict[str, str]  # grid → case id
    alerts: dict[str, int]  # grid → alert id
    broker: Broker


def settings_for(
    tmp_path: Path,
    broker: Broker,
    *,
    registry_text: str = REGISTRY,
    api_tokens: list[ApiToken] | None = None,
    client_id: str = "linli-authz",
    **extra: Any,
) -> Any:
    """A hub on ``broker`` with ``registry_text`` and a token per role (this module's by default)."""
    registry = tmp_path / "community.yaml"
    registry.write_text(registry_text, encoding="utf-8")
    return load_settings(
        None,
        environ={},
        overrides={
            "data_dir": str(tmp_path / "data"),
            "community_file": str(registry),
            "mqtt": {"url": broker.url, "client_id": client_id},
            # The sweeps send hundreds of wrong tokens from one address on purpose, to see each
            # route refuse them; the failed-check throttle (its own test: test_auth_throttle.py)
            # would answer them 429 after the first twenty.
            "http": {"host": "127.0.0.1", "port": 0, "auth_attempts": 1_000_000},
            "api_tokens": tokens() if api_tokens is None else api_tokens,
            **extra,
        },
    )


@pytest.fixture
async def world(tmp_path: Path) -> AsyncIterator[World]:
    embedded = EmbeddedBroker(host="127.0.0.1", port=0, users={"linli": "pw"})
    await embedded.start()
    broker = Broker("127.0.0.1", embedded.port, "linli", "pw")
    try:
        async with Hub(settings=settings_for(tmp_path, broker), clock=ManualClock(start=NIGHT)) as hub:
            gateway = await publisher(broker)
            for button in BUTTONS.values():
                gateway.publish(f"zigbee2mqtt/{button}", SOS, qos=1)
            await eventually(lambda: len(hub.cases.case_ids()) == 3, what="three SOS cases")
            await gateway.disconnect()
            by_grid = {hub.cases.load(i).grid: i for i in hub.cases.case_ids()}  # type: ignore[union-attr]
            alerts = {a.grid: a.id for a in hub.store.alerts()}
            yield World(hub, f"http://127.0.0.1:{hub.http_port}", by_grid, alerts, broker)  # type: ignore[arg-type]
    finally:
        await embedded.stop()


def expected(role: Role, action: Action, grid: str, *, told: frozenset[str] = frozenset()) -> bool:
    """The table's answer for the role's token on something in ``grid`` (C1 is the holders' community)."""
    person = PERSON.get(role)
    grids = frozenset(ROSTER_GRIDS.get(person or "", set()))
    communities = frozenset({C1}) if person else frozenset()
    actor = Actor(person or f"tok-{role.value}", role)
    where = Where(community=grid[:12], grid=grid, told=told)
    return allows(actor, action, where, grids=grids, communities=communities)


async def call(world: World, role: Role, method: str, path: str, body: Any = None) -> httpx.Response:
    async with httpx.AsyncClient(
        base_url=world.base, headers={"Authorization": f"Bearer {secret(role)}"}
    ) as c:
        if isinstance(body, bytes):  # raw JSON text, as an attacker writes it (1e400 is no Python float)
            return await c.request(method, path, content=body, headers={"content-type": "application/json"})
        return await c.request(method, path, json=body)


@pytest.mark.parametrize("role", sorted(TOKEN_ROLES))
async def test_authorisation_matrix_every_role_every_route_own_and_other_grid(
    world: World, role: Role
) -> None:
    told = {g: world.hub.cases.told(c) for g, c in world.cases.items()}
    for grid in (G1, G2, G3):
        reads = expected(role, Permission.READ, grid, told=told[grid])
        reads_place = expected(role, Permission.READ, grid)  # alerts, devices: by place only
        personal = expected(role, Permission.PERSONAL_DATA, grid, told=told[grid])
        where = f"{role.value} on {grid}"

        r = await call(world, role, "GET", f"/api/alerts/{world.alerts[grid]}")
        assert r.status_code == (200 if reads_place else 404), where
        if reads_place:
            shown = r.json()
            assert bool(shown["trace"]) == expected(role, Permission.PERSONAL_DATA, grid), where
            assert bool(shown["notifications"]) == expected(role, Permission.READ_NOTIFICATIONS, grid), where

        r = await call(world, role, "GET", f"/api/devices/{BUTTONS[grid]}")
        assert r.status_code == (200 if reads_place else 404), where
        if reads_place and grid == G1:
            assert (r.json()["where"]["room"] == "101") == expected(role, Permission.LOCATIONS, grid), where

        r = await call(world, role, "GET", f"/api/cases/{world.cases[grid]}")
        assert r.status_code == (200 if reads else 404), where
        if reads and grid == G1:
            assert ("resident" in r.json()) == personal, where
            if personal:
                assert r.json()["resident"]["phone"] == "13812345678"

        r = await call(world, role, "POST", f"/api/cases/{world.cases[grid]}/note", {"note": "巡查"})
        # A case the role may not read is a 404 for actions too: no oracle for other grids' ids.
        acts = expected(role, CaseAction.NOTE, grid, told=told[grid])
        assert r.status_code == (200 if acts else 403 if reads else 404), where

    # Lists show exactly what the table allows.
    r = await call(world, role, "GET", "/api/alerts")
    assert r.status_code == 200 and {a["grid"] for a in r.json()} == {
        g for g in (G1, G2, G3) if expected(role, Permission.READ, g)
    }
    r = await call(world, role, "GET", "/api/devices")
    assert {d["grid"] for d in r.json()} == {g for g in (G1, G2, G3) if expected(role, Permission.READ, g)}
    r = await call(world, role, "GET", "/api/cases")
    assert {c["grid"] for c in r.json()} == {
        g for g in (G1, G2, G3) if expected(role, Permission.READ, g, told=told[g])
    }
    r = await call(world, role, "GET", "/api/events")
    assert r.status_code == 200
    assert {e["device_id"] for e in r.json()} <= {
        BUTTONS[g] for g in (G1, G2, G3) if expected(role, Permission.READ, g)
    }
    r = await call(world, role, "GET", "/api/community")
    trees = {g["code"]: g for c in r.json()["communities"] for g in c["grids"]}
    assert set(trees) == {g for g in (G1, G2, G3) if expected(role, Permission.READ, g)}
    if G1 in trees and not expected(role, Permission.LOCATIONS, G1):
        assert trees[G1]["buildings"] == [], (
            f"{role.value}: no rooms (nor who lives in them) without locations"
        )
    elif G1 in trees:
        (resident,) = trees[G1]["buildings"][0]["units"][0]["households"][0]["residents"]
        assert ("living_alone" in resident) == expected(role, Permission.PERSONAL_DATA, G1)
        assert (resident["name"] == "王秀英") == expected(role, Permission.PERSONAL_DATA, G1)
    r = await call(world, role, "GET", "/api/kpis")
    assert r.status_code == 200
    r = await call(world, role, "GET", "/api/notifications")
    may_log = any(expected(role, Permission.READ_NOTIFICATIONS, g) for g in (G1, G2, G3))
    assert r.status_code == (200 if may_log else 403)
    if may_log:
        shown = {
            a.id
            for a in world.hub.store.alerts()
            if expected(role, Permission.READ_NOTIFICATIONS, a.grid or "")
        }
        assert {row["alert_id"] for row in r.json()} <= shown
    r = await call(world, role, "POST", "/api/rules/reload")
    assert r.status_code == (200 if expected(role, Permission.RELOAD_RULES, G1) else 403)


async def test_a_leader_escalated_to_reads_the_case_he_was_told_about(world: World) -> None:
    """Finding 2: the 网格长 told of another grid's SOS got 404 on it (yet could post a note)."""
    case_id = world.cases[G3]
    assert (await call(world, Role.GRID_LEADER, "GET", f"/api/cases/{case_id}")).status_code == 404
    with world.hub.store.transaction() as db:
        db.execute(
            "INSERT INTO notifications (id, alert_id, recipient, channel, address, payload, created_at,"
            " next_attempt, attempts, case_id) VALUES ('n-esc', ?, 'l1', 'mqtt', 'x', x'7b7d', ?, ?, 0, ?)",
            (world.alerts[G3], NIGHT, NIGHT + 1e9, case_id),
        )
    r = await call(world, Role.GRID_LEADER, "GET", f"/api/cases/{case_id}")
    assert r.status_code == 200 and r.json()["id"] == case_id
    listed = await call(world, Role.GRID_LEADER, "GET", "/api/cases")
    assert case_id in {c["id"] for c in listed.json()}


async def test_the_event_stream_is_filtered_per_subscriber(world: World) -> None:
    """Finding 2: every SSE subscriber got every grid's events."""
    received: dict[Role, list[dict[str, Any]]] = {Role.GRID_WORKER: [], Role.COMMAND_CENTRE: []}

    async def listen(role: Role) -> None:
        headers = {"Authorization": f"Bearer {secret(role)}"}
        async with (
            httpx.AsyncClient(base_url=world.base, headers=headers, timeout=None) as c,
            c.stream("GET", "/api/stream") as response,
        ):
            async for line in response.aiter_lines():
                if line.startswith("data: "):
                    received[role].append(orjson.loads(line[6:]))

    tasks = [asyncio.create_task(listen(r), name=f"sse-{r.value}") for r in received]
    await eventually(lambda: len(world.hub.bus) == 2, what="two subscribers")
    for grid in (G1, G2, G3):
        await call(world, Role.COMMAND_CENTRE, "POST", f"/api/cases/{world.cases[grid]}/note", {"note": "x"})
    await eventually(lambda: len(received[Role.COMMAND_CENTRE]) >= 3, what="the centre's events")
    await asyncio.sleep(0.2)
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)
    assert {m["case"]["grid"] for m in received[Role.COMMAND_CENTRE]} == {G1, G2, G3}
    assert {m["case"]["grid"] for m in received[Role.GRID_WORKER]} == {G1}


async def test_a_token_name_is_no_roster_person(world: World) -> None:
    """Finding 3: a viewer token *named* like a worker acted as that worker. Now the name is a label."""
    assert needs_person(Role.GRID_WORKER) and not needs_person(Role.VIEWER)
    r = await call(world, Role.VIEWER, "POST", f"/api/cases/{world.cases[G1]}/arrive", {})
    assert r.status_code == 403
    shown = (await call(world, Role.VIEWER, "GET", f"/api/cases/{world.cases[G1]}")).json()
    assert "resident" not in shown and shown["location"] == ""


def test_grid_tokens_without_a_person_or_with_the_wrong_one_refuse_to_start(tmp_path: Path) -> None:
    broker = Broker("127.0.0.1", 1, "x", "y")
    bad = [
        ApiToken(name="g2-day", role=Role.GRID_WORKER, sha256="a" * 64),
        ApiToken(name="x", role=Role.GRID_WORKER, person="nobody", sha256="b" * 64),
        ApiToken(name="y", role=Role.VIEWER, person="w1", sha256="c" * 64),
    ]
    for token in bad:
        with pytest.raises(ConfigError) as refused:
            Hub(settings=settings_for(tmp_path, broker, api_tokens=[token]))
        assert refused.value.key == "api_tokens.0.person"
    # Found in review: a desk token bound to nobody but named like a roster person acted as him
    # (its actions recorded and counted as w1's work).
    desk = ApiToken(name="w1", role=Role.COMMAND_OPERATOR, sha256="d" * 64)
    with pytest.raises(ConfigError, match="named like a roster person") as refused:
        Hub(settings=settings_for(tmp_path, broker, api_tokens=[desk]))
    assert refused.value.key == "api_tokens.0.name"


async def test_hostile_input_is_refused_and_never_a_server_error(world: World) -> None:
    """Finding 5: each of these answered 500 (or was stored and broke every later read)."""
    case_id = world.cases[G1]
    hostile: list[tuple[str, str, Any]] = [
        ("POST", f"/api/cases/{case_id}/extend", b'{"note":"x","data":{"approver":"a","seconds":1e400}}'),
        ("POST", f"/api/cases/{case_id}/extend", b'{"note":"x","data":{"approver":"a","seconds":NaN}}'),
        ("POST", f"/api/cases/{case_id}/extend", {"note": "x", "data": {"approver": "a", "seconds": -1}}),
        ("POST", f"/api/cases/{case_id}/note", {"note": {"a": 1}}),
        ("POST", f"/api/cases/{case_id}/note", {"note": "长" * 4001}),
        ("POST", f"/api/cases/{case_id}/note", {"note": "x", "data": {"callback_at": "nan"}}),
        ("GET", "/api/alerts/99999999999999999999999", None),
        ("GET", "/api/kpis?from=nan", None),
        ("GET", "/api/kpis?from=-inf", None),
        ("GET", "/api/kpis?from=1e308", None),
        ("GET", "/api/alerts?limit=99999999999999999999", None),
        ("GET", "/api/notifications?since=inf", None),
    ]
    for method, path, body in hostile:
        r = await call(world, Role.COMMAND_CENTRE, method, path, body)
        assert 400 <= r.status_code < 500 and r.json()["error"], (path, r.status_code, r.text[:200])
    async with httpx.AsyncClient(
        base_url=world.base, headers={"Authorization": f"Bearer {secret(Role.ADMIN)}"}
    ) as c:
        deep = b"[" * 100_000 + b"]" * 100_000
        r = await c.post(
            f"/api/cases/{case_id}/note", content=deep, headers={"content-type": "application/json"}
        )
        assert r.status_code == 413

        async def chunked(body: bytes) -> AsyncIterator[bytes]:  # no content-length: sent chunked
            for start in range(0, len(body), 8192):
                yield body[start : start + 8192]

        r = await c.post(
            f"/api/cases/{case_id}/note", content=chunked(deep), headers={"content-type": "application/json"}
        )
        assert r.status_code == 413 and r.json()["error"] == "too_large", r.text[:200]
        r = await c.post(
            f"/api/cases/{case_id}/note",
            content=chunked(b'{"note": ["' + "巡查".encode() * 10 + b'"]}'),
            headers={"content-type": "application/json"},
        )
        # Read and parsed as before (the field's type is what is refused), nothing stored.
        assert r.status_code == 422 and "note" in r.text, r.text[:200]
        r = await c.post(
            f"/api/cases/{case_id}/note",
            content=b"[" * 20_000 + b"]" * 20_000,
            headers={"content-type": "application/json"},
        )
        assert r.status_code in (400, 422)
    # The case still loads for everybody and nothing odd was stored.
    r = await call(world, Role.COMMAND_CENTRE, "GET", "/api/cases")
    assert r.status_code == 200 and len(r.json()) == 3
    assert [e.action.value for e in world.hub.cases.timeline(case_id)] == ["file", "dispatch"]


async def test_lists_are_paginated_with_a_next_link(world: World) -> None:
    """Finding 6 (HTTP half): /api/devices was one unbounded body."""
    r = await call(world, Role.ADMIN, "GET", "/api/devices?limit=2")
    assert len(r.json()) == 2 and 'rel="next"' in r.headers["link"] and r.headers["x-next-offset"] == "2"
    rest = await call(world, Role.ADMIN, "GET", "/api/devices?limit=2&offset=2")
    assert len(rest.json()) == 1 and "link" not in rest.headers
    assert (await call(world, Role.ADMIN, "GET", "/api/devices?limit=100000")).status_code == 422
    for path in ("/api/alerts", "/api/cases", "/api/events", "/api/notifications"):
        assert (await call(world, Role.ADMIN, "GET", f"{path}?limit=1")).status_code == 200, path


async def test_a_worker_cannot_reassign_through_accept(world: World) -> None:
    """Review 1: ``accept`` with ``data.assignee`` gave w1's case to w3 of another community, who
    then read the elder's phone and address; a direct ``reassign`` by w1 was already a 403."""
    case_id = world.cases[G1]
    r = await call(
        world, Role.GRID_WORKER, "POST", f"/api/cases/{case_id}/reassign", {"data": {"assignee": "w3"}}
    )
    assert r.status_code == 403
    r = await call(
        world, Role.GRID_WORKER, "POST", f"/api/cases/{case_id}/accept", {"data": {"assignee": "w3"}}
    )
    assert r.status_code == 403, r.text
    assert world.hub.cases.load(case_id).state.value == "dispatched"  # type: ignore[union-attr]
    r = await call(
        world, Role.GRID_WORKER, "POST", f"/api/cases/{case_id}/accept", {"data": {"assignee": "w1"}}
    )
    assert r.status_code == 200 and r.json()["assignee"] == "w1", "naming himself is what accept does"


async def test_an_assignee_is_a_roster_person_who_may_work_the_cases_grid(world: World) -> None:
    """Review 1: any string became the assignee (``ghost-nobody``, a NUL, a worker of another
    community); each is now a 400 naming data.assignee, on reassign, accept and rework alike."""
    case_id = world.cases[G1]
    for nobody in ("ghost-nobody", "w1\x00", "w3"):
        r = await call(
            world,
            Role.COMMAND_CENTRE,
            "POST",
            f"/api/cases/{case_id}/reassign",
            {"data": {"assignee": nobody}},
        )
        assert r.status_code in (400, 422) and "assignee" in r.json()["message"], (nobody, r.text)
    # The 网格长 may reassign in his grid, so accepting for another is his to do, but not to w3.
    r = await call(
        world, Role.GRID_LEADER, "POST", f"/api/cases/{case_id}/accept", {"data": {"assignee": "w3"}}
    )
    assert r.status_code == 400 and r.json()["error"] == "invalid_assignee", r.text
    assert world.hub.cases.load(case_id).assignee == "w1"  # type: ignore[union-attr]
    # 返工 to a stranger (a failed 核查 naming a new handler) is refused the same way.
    for action, body in (
        ("accept", {}),
        ("arrive", {}),
        ("handle", {"note": "老人无碍"}),
    ):
        r = await call(world, Role.GRID_WORKER, "POST", f"/api/cases/{case_id}/{action}", body)
        assert r.status_code == 200, (action, r.text)
    rework = {"note": "没见到老人", "data": {"passed": False, "assignee": "ghost-nobody"}}
    r = await call(world, Role.COMMAND_CENTRE, "POST", f"/api/cases/{case_id}/verify", rework)
    assert r.status_code == 400, r.text
    # A person of the grid (and the command centre itself) is a fine assignee.
    r = await call(
        world,
        Role.COMMAND_CENTRE,
        "POST",
        f"/api/cases/{world.cases[G2]}/reassign",
        {"data": {"assignee": "l2"}},
    )
    assert r.status_code == 200 and r.json()["assignee"] == "l2", r.text
    r = await call(
        world,
        Role.COMMAND_CENTRE,
        "POST",
        f"/api/cases/{world.cases[G3]}/reassign",
        {"data": {"assignee": "command-centre"}},
    )
    assert r.status_code == 200, r.text


async def test_a_duty_officer_records_visits_for_others_only_in_his_community(world: World) -> None:
    """Review 2: C1's duty officer recorded a visit of C2 ``on_behalf_of`` C2's worker (200): only
    ``may_ever(record_for_others)`` was asked, never where the visit is."""
    tasks = world.hub.visits.visits
    theirs = await eventually(lambda: tasks.open_task("r3", TaskKind.VISIT), what="r3's visit (C2)")
    ours = await eventually(lambda: tasks.open_task("r1", TaskKind.VISIT), what="r1's visit (C1)")
    body = {"note": "x", "on_behalf_of": "w3"}
    r = await call(world, Role.DUTY_OFFICER, "POST", f"/api/visits/{visit_id(theirs.key)}/visited_well", body)
    assert r.status_code == 404, r.text  # as absent as a made-up task (a 403 told it exists)
    assert tasks.records(theirs.key) == []
    # C1's grid worker on C2's visit: the same 404 as an id that is no visit (a 403 named it).
    r = await call(world, Role.GRID_WORKER, "POST", f"/api/visits/{visit_id(theirs.key)}/visited_well", {})
    made_up = f"/api/visits/{visit_id('r3/visit/1')}/visited_well"
    assert r.status_code == (await call(world, Role.GRID_WORKER, "POST", made_up, {})).status_code == 404
    assert tasks.records(theirs.key) == []
    r = await call(
        world,
        Role.DUTY_OFFICER,
        "POST",
        f"/api/visits/{visit_id(ours.key)}/visited_well",
        {"on_behalf_of": "w1"},
    )
    # The record is the worker's; the officer who typed it stays with it (review: it was in the log only).
    assert r.status_code == 200 and (r.json()["by"], r.json()["recorded_by"]) == ("w1", "d1"), r.text
    r = await call(
        world, Role.COMMAND_CENTRE, "POST", f"/api/visits/{visit_id(theirs.key)}/visited_well", body
    )
    assert r.status_code == 200 and r.json()["by"] == "w3", "the district desk records for any community"
    assert r.json()["recorded_by"] == "tok-command_centre", "a token without a person: its name"


async def test_one_token_logging_in_again_and_again_logs_out_only_itself(world: World) -> None:
    """Review 3: 10 000 logins with one viewer token evicted the command centre's session (the
    oldest sessions of everybody went first). The same, scaled down: a hub holding 100 sessions."""
    world.hub.api.sessions = Sessions(idle_s=3600, max_s=86400, limit=100)
    async with httpx.AsyncClient(base_url=world.base) as centre:
        r = await centre.post("/login", json={"token": secret(Role.COMMAND_CENTRE)})
        assert r.status_code in (200, 303), r.text
        assert (await centre.get("/api/session")).status_code == 200
        async with httpx.AsyncClient(base_url=world.base) as flood:
            for _ in range(150):
                r = await flood.post("/login", json={"token": secret(Role.VIEWER)})
                assert r.status_code in (200, 303)
        assert (await centre.get("/api/session")).status_code == 200, "the centre is still logged in"
        assert len(world.hub.api.sessions) == 1 + MAX_SESSIONS_PER_TOKEN


def test_a_full_hub_evicts_from_the_token_with_the_most_sessions() -> None:
    """Review 3, at the global cap: room comes from the flooding token, never another's session."""
    viewer, centre = (ApiToken(name=n, role=Role.VIEWER, sha256=token_hash(n)) for n in ("v", "c"))
    sessions = Sessions(idle_s=3600, max_s=86400, limit=100, per_token=80)
    kept = sessions.open(centre)
    first = sessions.open(viewer)
    for _ in range(10_000):
        sessions.open(viewer)
    assert sessions.get(kept.id) is not None
    assert sessions.get(first.id) is None
    assert len(sessions) <= 81


async def test_the_kpi_page_refuses_periods_it_cannot_measure_with_a_400(world: World) -> None:
    """Review 4: a period in the future (ValueError) or past 9999-12-31 (OverflowError) was a 500."""
    cases = (
        "from=2026-11-24&to=2026-11-30",
        "from=9999-12-31",
        "from=2026-11-01&to=9999-12-31",
        "from=1900-01-01",
    )
    for query in cases:
        r = await call(world, Role.COMMAND_CENTRE, "GET", f"/kpis?{query}")
        assert r.status_code == 400 and r.json()["message"], (query, r.status_code, r.text[:200])
    r = await call(world, Role.COMMAND_CENTRE, "GET", "/kpis?from=2026-11-01&to=2026-11-30")
    assert r.status_code == 200


async def test_a_viewer_sees_no_rooms_nor_who_lives_in_them(world: World) -> None:
    """Review 5: /api/community gave a wall display building, unit, room and each household's
    resident id, masked name and phone; the README promises a viewer no room numbers."""
    r = await call(world, Role.VIEWER, "GET", "/api/community")
    text = r.text
    assert r.status_code == 200
    for leak in ('"101"', '"301"', '"h101"', '"r1"', '"r3"', "1号楼", "3号楼"):
        assert leak not in text, leak
    grids = {g["code"]: g for c in r.json()["communities"] for g in c["grids"]}
    assert set(grids) == {G1, G2, G3} and all(g["buildings"] == [] for g in grids.values())
    r = await call(world, Role.COMMAND_CENTRE, "GET", "/api/community")
    assert '"301"' in r.text and "13711112222" in r.text


async def test_a_logout_ends_the_event_stream_before_its_next_event(world: World) -> None:
    """Found in review: the session was checked once, when the stream opened, so a stream kept
    open with a stolen cookie went on reading the grid's cases after the logout."""
    received: list[dict[str, Any]] = []
    async with httpx.AsyncClient(base_url=world.base, timeout=None) as browser:
        r = await browser.post("/login", json={"token": secret(Role.GRID_WORKER)})
        assert r.status_code == 200
        csrf = r.json()["csrf"]

        async def listen() -> None:
            async with browser.stream("GET", "/api/stream") as response:
                assert response.status_code == 200
                async for line in response.aiter_lines():
                    if line.startswith("data: "):
                        received.append(orjson.loads(line[6:]))

        task = asyncio.create_task(listen())
        await eventually(lambda: len(world.hub.bus) == 1, what="the stream subscribed")
        assert (await browser.post("/logout", headers={"X-CSRF-Token": csrf})).status_code == 200
        noted = await call(
            world, Role.COMMAND_CENTRE, "POST", f"/api/cases/{world.cases[G1]}/note", {"note": "后"}
        )
        assert noted.status_code == 200
        await eventually(task.done, what="the stream ended")
        await asyncio.gather(task, return_exceptions=True)
    assert received == []


def test_a_stream_asks_without_keeping_the_session_alive() -> None:
    now = [0.0]
    sessions = Sessions(idle_s=60, max_s=3600, now=lambda: now[0])
    session = sessions.open(ApiToken(name="v", role=Role.VIEWER, sha256="a" * 64))
    now[0] = 59
    assert sessions.alive(session.id)
    now[0] = 61  # asking did not touch it: idle since 0
    assert not sessions.alive(session.id) and sessions.get(session.id) is None


async def test_extensions_past_the_bound_are_refused_not_a_server_error(world: World) -> None:
    """Found in review: each 延期 within MAX_EXTENSION_S, the third of a working-time case's put
    its due time past the working-day calendar and answered 500."""
    gateway = await publisher(world.broker)
    gateway.publish("zigbee2mqtt/sos-g1", b'{"battery": 3, "linkquality": 90}', qos=1)
    hub = world.hub
    await eventually(
        lambda: any(c.category == "device" for i in hub.cases.case_ids() if (c := hub.cases.load(i))),
        what="a battery (working-time) case",
    )
    await gateway.disconnect()
    case_id = next(i for i in hub.cases.case_ids() if (c := hub.cases.load(i)) and c.category == "device")
    before = len(hub.cases.timeline(case_id))
    year = {"note": "等配件", "data": {"approver": "l1", "seconds": 366 * 86400}}
    codes = [
        (await call(world, Role.GRID_LEADER, "POST", f"/api/cases/{case_id}/extend", year)).status_code
        for _ in range(3)
    ]
    assert codes == [200, 409, 409]
    assert len(hub.cases.timeline(case_id)) == before + 1


async def test_refusals_do_not_tell_what_exists_elsewhere(world: World) -> None:
    """Found in review: recording on behalf of someone answered 403 (naming the task) for a real
    task of another community and 404 for a made-up one; the assignee check named another
    community's worker's role where a made-up id was "not in any roster"."""
    tasks = world.hub.visits.visits
    theirs = await eventually(lambda: tasks.open_task("r3", TaskKind.VISIT), what="r3's visit (C2)")
    body = {"note": "x", "on_behalf_of": "w1"}
    real = await call(
        world, Role.DUTY_OFFICER, "POST", f"/api/visits/{visit_id(theirs.key)}/visited_well", body
    )
    fake = await call(
        world, Role.DUTY_OFFICER, "POST", f"/api/visits/{visit_id('r3/visit/1')}/visited_well", body
    )
    assert real.status_code == fake.status_code == 404
    case = world.cases[G1]
    staff = await call(
        world, Role.GRID_WORKER, "POST", f"/api/cases/{case}/note", {"note": "x", "data": {"assignee": "w3"}}
    )
    nobody = await call(
        world, Role.GRID_WORKER, "POST", f"/api/cases/{case}/note", {"note": "x", "data": {"assignee": "zz"}}
    )
    assert staff.status_code == nobody.status_code == 400
    assert staff.json()["message"].replace("w3", "?") == nobody.json()["message"].replace("zz", "?")


async def test_a_leader_told_of_another_grids_case_gets_no_staff_kpis_of_its_worker(world: World) -> None:
    """Found in review: per-worker KPIs were counted over every case the leader may read, which
    includes a case of another community he was told of; they are staff performance, his grids'."""
    hub = world.hub
    case_id = world.cases[G3]
    hub.casework.act(
        case_id, CaseAction.ACCEPT, actor=Actor("w3", Role.GRID_WORKER), channel=Channel.PHONE_PAGE
    )
    with hub.store.transaction() as db:  # l1 (G1) was told of it once, as an escalation does
        db.execute(
            "INSERT INTO notifications (id, alert_id, recipient, channel, address, payload, created_at,"
            " next_attempt, attempts, case_id) VALUES ('n-esc', ?, 'l1', 'mqtt', 'x', x'7b7d', ?, ?, 0, ?)",
            (world.alerts[G3], NIGHT, NIGHT + 1e9, case_id),
        )
    period = f"from={NIGHT - 86400:.0f}&to={NIGHT + 3600:.0f}"
    r = await call(world, Role.GRID_LEADER, "GET", f"/api/kpis?{period}")
    assert r.status_code == 200, r.text
    assert "w3" not in r.json()["by_worker"]
    assert r.json()["overall"]["accept_n"] >= 1  # the case he may read still counts where he reads
    everyone = await call(world, Role.COMMAND_CENTRE, "GET", f"/api/kpis?{period}")
    assert "w3" in everyone.json()["by_worker"]


@pytest.mark.parametrize("role", [Role.GRID_WORKER, Role.GRID_LEADER])
async def test_the_overview_gives_a_grid_reader_the_failing_checks_names_only(
    world: World, role: Role, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Review: the console overview showed every reader the readiness reasons and warnings
    (alert, device and resident ids of every grid, files), which /readyz keeps for readers of
    every grid."""
    report = Readiness(
        checks=(Check("store", False, "detail-with-/srv/linli/data"),),
        warnings=("alert 42 of grid 110105001002001 is damaged",),
    )
    monkeypatch.setattr(world.hub.api, "readiness", lambda: report)
    shown = await call(world, role, "GET", "/")
    assert shown.status_code == 200 and "store" in shown.text
    assert "/srv/linli" not in shown.text and "alert 42" not in shown.text
    desk = await call(world, Role.COMMAND_CENTRE, "GET", "/")
    assert "/srv/linli" in desk.text and "alert 42" in desk.text
