"""The access sweep: every route the hub serves, for every token role, against two communities.

:mod:`tests.test_web_authz` checks each route it knows by hand; this module starts from the
other end. It lists the routes of the real application and fails on any route it has not
classified (:data:`ROUTES`), so a route added later is checked here before it ships. For every
classified route and every role it then asks, on a hub whose registry has grids G1 and G2 in
community C1 and G3 in community C2, each with a resident, devices, an open and a closed SOS
case and care visits:

* nothing of a grid the role may not read reaches it: no resident's name, phone, address,
  emergency contact or medical note, no room, no case note, case id or device id, in any body
  (lists and their filters, exports, console pages, the event stream);
* personal data and rooms only where the access table grants ``personal_data`` and
  ``locations`` (a wall display gets neither);
* every write on another grid's case or visit is a 404 (no oracle), every write the table
  refuses changes nothing;
* without a login only the public routes answer; a session's writes need the CSRF token and
  the hub's own Origin;
* hostile ids and query parameters are 4xx, never a 5xx.

What may be seen is computed from :data:`hub.casework.access.ACCESS` through each token's
:class:`~hub.casework.access.Reach`, never written by hand.
"""

from __future__ import annotations

import asyncio
import base64
import json
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from enum import Enum
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from starlette.routing import Route as StarletteRoute

from hub.app import Hub
from hub.broker import EmbeddedBroker
from hub.cases.care import Outcome
from hub.cases.model import CaseAction, CaseState
from hub.casework.access import TOKEN_ROLES, Action, Permission, Reach, Where
from hub.clock import ManualClock
from hub.config import ApiToken
from hub.records import Role
from hub.web.api import token_hash
from hub.web.care import visit_id
from tests.helpers import eventually, publisher
from tests.support.samples import SAMPLES
from tests.support.servers import Broker
from tests.test_web_authz import PERSON, settings_for  # the roster person each role's token is bound to

NIGHT = 1_795_371_180.0  # 2026-11-23 02:13 Asia/Shanghai
C1, C2 = "110105001001", "110105001002"
G1, G2, G3 = f"{C1}001", f"{C1}002", f"{C2}001"
GRIDS = (G1, G2, G3)
ALL_DAY = '[{start: "00:00", end: "00:00"}]'
SOS = (SAMPLES / "zigbee2mqtt" / "tuya_ts0215a_sos_emergency.json").read_bytes()


@dataclass(frozen=True)
class Canaries:
    """Strings of one grid that appear nowhere else: finding one in a body names what leaked."""

    grid: str
    n: int

    @property
    def personal(self) -> tuple[str, ...]:
        """A resident's personal data (masked forms keep none of these whole)."""
        n = self.n
        return (
            f"居民{'甲乙丙'[n - 1]}秀英",
            f"1381234{n}678",
            f"幸福路{n}号地址",
            f"监护人{'甲乙丙'[n - 1]}明",
            f"1398765{n}321",
            f"高血压病历{n}号",
        )

    @property
    def rooms(self) -> tuple[str, ...]:
        """Where a vulnerable person lives: building, unit, room, the device's location text."""
        n = self.n
        return (f"楼栋{n}号楼", f"单元{n}单元", f"room{n}0{n}", f"loc{n}-sos-door")

    @property
    def staff(self) -> tuple[str, ...]:
        """Names of the roster people who work only this grid (the roster is staff data)."""
        return STAFF.get(self.grid, ())

    @property
    def button(self) -> str:
        return f"sos-grid{self.n}"

    @property
    def spare(self) -> str:
        return f"sos-spare{self.n}"

    @property
    def door(self) -> str:
        return f"door-grid{self.n}"

    @property
    def devices(self) -> tuple[str, ...]:
        return (self.button, self.spare, self.door)

    @property
    def note(self) -> str:
        return f"note-canary-grid{self.n}"


CANARY = {g: Canaries(g, n) for n, g in enumerate(GRIDS, start=1)}
#: Grid → names of the people of the roster who work only there (G1's are the tokens' own).
STAFF = {G2: ("网格员乙", "网格长乙"), G3: ("网格员丙", "值班员丙")}


def _grid_yaml(grid: str, name: str) -> str:
    c = CANARY[grid]
    b, u, room, _ = c.rooms
    return (
        f'      - code: "{grid}"\n'
        f"        name: {name}\n"
        f"        buildings:\n"
        f"          - {{id: b{c.n}, name: {b}, units: [{{id: b{c.n}-u1, name: {u},"
        f' households: [{{id: h{c.n}, room: "{room}"}}]}}]}}\n'
    )


def _community_yaml(grid: str) -> str:
    """Resident and devices of one grid (the resident's SOS button, a spare one, a door sensor)."""
    c = CANARY[grid]
    name, phone, address, contact, contact_phone, medical = c.personal
    return (
        f"      - {{id: elder{c.n}, name: {name}, household: h{c.n}, address: {address},"
        f' phone: "{phone}", living_alone: true, age: 8{c.n}, medical_notes: {medical},'
        f' emergency_contacts: [{{name: {contact}, relation: 儿子, phone: "{contact_phone}"}}]}}\n'
    )


def _devices_yaml(grid: str) -> str:
    c = CANARY[grid]
    location = c.rooms[3]
    return (
        f'      - {{id: {c.button}, kind: sos_button, model: TS0215A, grid: "{grid}", resident: elder{c.n},'
        f" household: h{c.n}, location: {location}}}\n"
        f'      - {{id: {c.spare}, kind: sos_button, model: TS0215A, grid: "{grid}", resident: elder{c.n},'
        f" household: h{c.n}, location: {location}}}\n"
        f'      - {{id: {c.door}, kind: door_sensor, model: MCCGQ11LM, grid: "{grid}", household: h{c.n},'
        f" heartbeat_s: 3600, location: {location}}}\n"
    )


REGISTRY = (
    "version: 1\ncommunities:\n"
    f'  - code: "{C1}"\n    name: 幸福里社区\n    grids:\n'
    + _grid_yaml(G1, "第一网格")
    + _grid_yaml(G2, "第二网格")
    + "    people:\n"
    + "".join(
        f'      - {{id: {p}, name: {n}, role: {r}, grids: ["{g}"], phone: "1500000{i:04d}", shifts: {ALL_DAY}}}\n'
        for i, (p, n, r, g) in enumerate(
            [
                ("w1", "网格员甲", "grid_worker", G1),
                ("w2", "网格员乙", "grid_worker", G2),
                ("l1", "网格长甲", "grid_leader", G1),
                ("l2", "网格长乙", "grid_leader", G2),
                ("p1", "网格警员", "grid_police", G1),
                ("v1", "志愿者", "volunteer", G1),
                ("d1", "值班员", "duty_officer", G1),
            ]
        )
    )
    + "    residents:\n"
    + _community_yaml(G1)
    + _community_yaml(G2)
    + "    devices:\n"
    + _devices_yaml(G1)
    + _devices_yaml(G2)
    + f'  - code: "{C2}"\n    name: 和平里社区\n    grids:\n'
    + _grid_yaml(G3, "和平第一网格")
    + "    people:\n"
    + f'      - {{id: w3, name: 网格员丙, role: grid_worker, grids: ["{G3}"], shifts: {ALL_DAY}}}\n'
    + f'      - {{id: d3, name: 值班员丙, role: duty_officer, grids: ["{G3}"], shifts: {ALL_DAY}}}\n'
    + "    residents:\n"
    + _community_yaml(G3)
    + "    devices:\n"
    + _devices_yaml(G3)
)
ROLES = sorted(TOKEN_ROLES)


def secret(role: Role) -> str:
    return f"sweep-secret-of-{role.value}"


# -- the world --------------------------------------------------------------------------------


@dataclass
class World:
    hub: Hub
    base: str
    open_cases: dict[str, str]  # grid → the open SOS case
    closed_cases: dict[str, str]  # grid → an SOS case worked to 结案 (awaiting its 评价)
    alerts: dict[str, list[int]]  # grid → its alerts
    visits: dict[str, list[str]]  # grid → opaque ids of its visit tasks
    broker: Broker

    def reach(self, role: Role) -> Reach:
        token = next(t for t in tokens() if t.role is role)
        return self.hub.api.principal_of(token).reach

    def case_where(self, case_id: str) -> Where:
        case = self.hub.casework.load(case_id)
        assert case is not None
        return self.hub.casework.where_of(case)

    def timelines(self) -> dict[str, int]:
        every = self.hub.cases.case_ids(states=CaseState, limit=10_000)
        return {c: len(self.hub.cases.timeline(c)) for c in every}


def tokens() -> list[ApiToken]:
    return [
        ApiToken(name=f"tok-{r.value}", role=r, person=PERSON.get(r), sha256=token_hash(secret(r)))
        for r in ROLES
    ]


def grid_of(hub: Hub, case_id: str) -> str:
    case = hub.cases.load(case_id)
    assert case is not None and case.grid is not None
    return case.grid


@pytest.fixture
async def world(tmp_path: Path) -> AsyncIterator[World]:
    embedded = EmbeddedBroker(host="127.0.0.1", port=0, users={"linli": "pw"})
    await embedded.start()
    broker = Broker("127.0.0.1", embedded.port, "linli", "pw")
    settings = settings_for(
        tmp_path, broker, registry_text=REGISTRY, api_tokens=tokens(), client_id="linli-sweep"
    )
    clock = ManualClock(start=NIGHT)
    try:
        async with Hub(settings=settings, clock=clock) as hub:
            base = f"http://127.0.0.1:{hub.http_port}"
            gateway = await publisher(broker)
            for canary in CANARY.values():
                gateway.publish(f"zigbee2mqtt/{canary.spare}", SOS, qos=1)
            await eventually(lambda: len(hub.cases.case_ids()) == 3, what="three SOS cases")
            closed = {grid_of(hub, i): i for i in hub.cases.case_ids()}
            desk = {"Authorization": f"Bearer {secret(Role.COMMAND_CENTRE)}"}
            async with httpx.AsyncClient(base_url=base, headers=desk) as c:
                for grid, case_id in closed.items():
                    for action, body in (
                        ("accept", {}),
                        ("arrive", {}),
                        ("handle", {"note": CANARY[grid].note}),
                        ("verify", {"data": {"passed": True}}),
                        ("close", {}),
                    ):
                        clock.advance(60)
                        r = await c.post(f"/api/cases/{case_id}/{action}", json=body)
                        assert r.status_code == 200, (action, r.text)
            for canary in CANARY.values():
                gateway.publish(f"zigbee2mqtt/{canary.button}", SOS, qos=1)
            await eventually(lambda: len(hub.cases.case_ids()) == 3, what="three more SOS cases")
            await gateway.disconnect()
            opened = {grid_of(hub, i): i for i in hub.cases.case_ids() if i not in closed.values()}
            async with httpx.AsyncClient(base_url=base, headers=desk) as c:
                for grid, case_id in opened.items():
                    r = await c.post(f"/api/cases/{case_id}/note", json={"note": CANARY[grid].note})
                    assert r.status_code == 200, r.text
            tasks = hub.visits.visits
            elders = {G1: "elder1", G2: "elder2", G3: "elder3"}
            await eventually(
                lambda: all(tasks.tasks(elder=e, signs_due_by=clock.now()) for e in elders.values()),
                what="every elder's visit tasks",
            )
            visits = {
                g: [visit_id(t.key) for t in tasks.tasks(elder=e, signs_due_by=clock.now())]
                for g, e in elders.items()
            }
            alerts: dict[str, list[int]] = {}
            for a in hub.store.alerts():
                alerts.setdefault(a.grid or "", []).append(a.id)
            yield World(hub, base, opened, closed, alerts, visits, broker)
    finally:
        await embedded.stop()


# -- the route table --------------------------------------------------------------------------


class Kind(Enum):
    #: Answers without a login and says nothing about the community.
    PUBLIC = "public"
    #: A console page: without a login, a redirect to /login.
    PAGE = "page"
    #: The API: without a login, 401.
    API = "api"


@dataclass(frozen=True)
class Route:
    kind: Kind
    #: GET: the URLs to read it with (every grid's ids, every filter). POST: not used.
    reads: Callable[[World], list[str]] = field(default=lambda w: [])
    #: POST: the writes to try, as (url, body, the action the table decides it by, where it is).
    writes: Callable[[World], list[Write]] = field(default=lambda w: [])
    #: Needs query parameters to be tried with hostile values (GET).
    params: tuple[str, ...] = ()


@dataclass(frozen=True)
class Write:
    url: str
    body: Any
    action: Action
    where: Where | None  # None: not tied to a place (may_ever decides)


def each(template: str, values: Callable[[World], list[str]]) -> Callable[[World], list[str]]:
    return lambda w: [template.format(v) for v in values(w)]


def case_ids(w: World) -> list[str]:
    return [*w.open_cases.values(), *w.closed_cases.values(), "nonexistent0"]


def alert_ids(w: World) -> list[str]:
    return [str(a) for ids in w.alerts.values() for a in ids] + ["999999"]


def device_ids(w: World) -> list[str]:
    return [d for c in CANARY.values() for d in c.devices] + ["no-such-device"]


def visit_ids(w: World) -> list[str]:
    return [v for ids in w.visits.values() for v in ids]


def with_filters(path: str, filters: list[str]) -> Callable[[World], list[str]]:
    return lambda w: [path, *(f"{path}?{q}" for q in filters)]


GRID_FILTERS = [f"grid={g}" for g in GRIDS]


def case_writes(w: World) -> list[Write]:
    out = []
    for case_id in [*w.open_cases.values(), *w.closed_cases.values()]:
        where = w.case_where(case_id)
        # 评价 has its own typed route (evaluate_writes): the generic one never sees it.
        for action in set(CaseAction) - {CaseAction.EVALUATE}:
            body: dict[str, Any] = {"note": "x"}
            if action in (CaseAction.REASSIGN, CaseAction.ACCEPT):
                body = {"data": {"assignee": "w2"}}
            out.append(Write(f"/api/cases/{case_id}/{action.value}", body, action, where))
    return out


def evaluate_writes(w: World) -> list[Write]:
    out = []
    for case_id in [*w.open_cases.values(), *w.closed_cases.values()]:
        where = w.case_where(case_id)
        for rating in ("satisfied", "unsatisfied"):
            out.append(
                Write(f"/api/cases/{case_id}/evaluate", {"rating": rating}, CaseAction.EVALUATE, where)
            )
    return out


def link_writes(w: World) -> list[Write]:
    return [
        Write(
            f"/api/cases/{case_id}/evaluation-link",
            {"guardian": "李明"},
            Permission.RECORD_FOR_OTHERS,
            w.case_where(case_id),
        )
        for case_id in [*w.open_cases.values(), *w.closed_cases.values()]
    ]


def visit_writes(w: World) -> list[Write]:
    out = []
    for ids in w.visits.values():
        for task_id in ids:
            key = visit_key(task_id)
            stored = w.hub.visits.visits.task(key)
            assert stored is not None
            where = w.hub.visits.where(stored.task)
            for outcome in Outcome:
                out.append(Write(f"/api/visits/{task_id}/{outcome.value}", {}, Permission.VISITS, where))
    return out


def visit_key(task_id: str) -> str:
    return base64.urlsafe_b64decode(task_id + "=" * (-len(task_id) % 4)).decode()


#: Every route the hub serves, classified. A route missing here fails
#: :func:`test_every_route_is_classified`: decide who may reach it, then add it.
ROUTES: dict[tuple[str, str], Route] = {
    # Public: the login page, static files, the API's description, health for probes, and the
    # guardian's one-time link (the signed token in the path is the credential).
    ("GET", "/openapi.json"): Route(Kind.PUBLIC, reads=lambda w: ["/openapi.json"]),
    ("GET", "/login"): Route(Kind.PUBLIC, reads=lambda w: ["/login"]),
    ("POST", "/login"): Route(Kind.PUBLIC),
    ("GET", "/static/{name}"): Route(Kind.PUBLIC, reads=lambda w: ["/static/live.js", "/static/x"]),
    ("GET", "/docs"): Route(Kind.PUBLIC, reads=lambda w: ["/docs"]),
    ("GET", "/docs/static/{name}"): Route(Kind.PUBLIC, reads=lambda w: ["/docs/static/swagger-ui.css"]),
    ("GET", "/api/health"): Route(Kind.PUBLIC, reads=lambda w: ["/api/health"]),
    ("GET", "/healthz"): Route(Kind.PUBLIC, reads=lambda w: ["/healthz"]),
    ("GET", "/readyz"): Route(Kind.PUBLIC, reads=lambda w: ["/readyz"]),
    ("GET", "/e/static/evaluate.js"): Route(Kind.PUBLIC, reads=lambda w: ["/e/static/evaluate.js"]),
    ("GET", "/e/{token}"): Route(Kind.PUBLIC, reads=lambda w: ["/e/abc.def"]),
    ("GET", "/care/static/{name}"): Route(Kind.PUBLIC, reads=lambda w: ["/care/static/care.js"]),
    ("GET", "/api/evaluation-links/{token}"): Route(
        Kind.PUBLIC, reads=lambda w: ["/api/evaluation-links/abcdefghij.klmnopqrst"]
    ),
    ("POST", "/api/evaluation-links/{token}"): Route(Kind.PUBLIC),
    # Console pages (server-rendered): every one asks the table.
    ("GET", "/"): Route(Kind.PAGE, reads=lambda w: ["/"]),
    ("GET", "/m"): Route(Kind.PAGE, reads=lambda w: ["/m"]),
    ("GET", "/care"): Route(Kind.PAGE, reads=lambda w: ["/care"]),
    ("GET", "/cases/{case_id}"): Route(Kind.PAGE, reads=each("/cases/{}", case_ids)),
    ("GET", "/map"): Route(Kind.PAGE, reads=lambda w: ["/map"]),
    ("GET", "/map/{code}"): Route(Kind.PAGE, reads=lambda w: [f"/map/{g}" for g in GRIDS]),
    ("GET", "/devices"): Route(
        Kind.PAGE,
        reads=with_filters(
            "/devices", [*GRID_FILTERS, "show=unassigned", "show=offline", "show=low_battery", "limit=500"]
        ),
        params=("grid", "show", "offset", "limit"),
    ),
    ("GET", "/roster"): Route(Kind.PAGE, reads=lambda w: ["/roster"]),
    ("GET", "/kpis"): Route(
        Kind.PAGE, reads=with_filters("/kpis", ["from=2026-11-01&to=2026-11-30"]), params=("from", "to")
    ),
    # The API.
    ("POST", "/logout"): Route(Kind.API),
    ("GET", "/metrics"): Route(Kind.API, reads=lambda w: ["/metrics"]),
    ("GET", "/api/session"): Route(Kind.API, reads=lambda w: ["/api/session"]),
    ("GET", "/api/stats"): Route(Kind.API, reads=lambda w: ["/api/stats"]),
    ("GET", "/api/alerts"): Route(
        Kind.API,
        reads=with_filters("/api/alerts", ["status=active", "status=resolved", "limit=1000"]),
        params=("status", "limit", "offset"),
    ),
    ("GET", "/api/alerts/{alert_id}"): Route(Kind.API, reads=each("/api/alerts/{}", alert_ids)),
    ("POST", "/api/rules/reload"): Route(
        Kind.API, writes=lambda w: [Write("/api/rules/reload", None, Permission.RELOAD_RULES, None)]
    ),
    ("GET", "/api/notifications"): Route(
        Kind.API,
        reads=with_filters("/api/notifications", ["since=0&limit=10000"]),
        params=("since", "limit", "offset"),
    ),
    ("GET", "/api/test/clock"): Route(Kind.API, reads=lambda w: ["/api/test/clock"]),
    ("POST", "/api/test/clock"): Route(
        Kind.API,
        writes=lambda w: [
            Write("/api/test/clock", {"to": NIGHT + 86400}, Permission.ADVANCE_TEST_CLOCK, None)
        ],
    ),
    ("GET", "/api/devices"): Route(
        Kind.API,
        reads=with_filters("/api/devices", [*GRID_FILTERS, "limit=1000"]),
        params=("grid", "limit", "offset"),
    ),
    ("GET", "/api/devices/{device_id:path}"): Route(Kind.API, reads=each("/api/devices/{}", device_ids)),
    ("GET", "/api/events"): Route(
        Kind.API,
        reads=lambda w: ["/api/events?limit=1000", *(f"/api/events?device_id={d}" for d in device_ids(w))],
        params=("device_id", "limit", "offset"),
    ),
    ("GET", "/api/community"): Route(Kind.API, reads=lambda w: ["/api/community"]),
    ("POST", "/api/cases/{case_id}/evaluate"): Route(Kind.API, writes=evaluate_writes),
    ("GET", "/api/evaluations/call-backs"): Route(
        Kind.API, reads=with_filters("/api/evaluations/call-backs", ["limit=500"]), params=("limit", "offset")
    ),
    ("POST", "/api/cases/{case_id}/evaluation-link"): Route(Kind.API, writes=link_writes),
    ("GET", "/api/visits"): Route(
        Kind.API,
        reads=with_filters("/api/visits", ["done=true&limit=500"]),
        params=("done", "limit", "offset"),
    ),
    ("POST", "/api/visits/{task_id}/{action}"): Route(Kind.API, writes=visit_writes),
    ("GET", "/api/elders"): Route(
        Kind.API, reads=with_filters("/api/elders", GRID_FILTERS), params=("grid",)
    ),
    ("GET", "/api/cases"): Route(
        Kind.API,
        reads=with_filters(
            "/api/cases",
            [
                *GRID_FILTERS,
                "state=closed",
                "mine=1",
                "mine=told",
                "assignee=w2",
                "assignee=w3",
                "state=closed&assignee=w2",
                "limit=1000",
            ],
        ),
        params=("state", "mine", "assignee", "grid", "limit", "offset"),
    ),
    ("GET", "/api/cases/{case_id}"): Route(Kind.API, reads=each("/api/cases/{}", case_ids)),
    ("POST", "/api/cases/{case_id}/{action}"): Route(Kind.API, writes=case_writes),
    ("GET", "/api/kpis"): Route(
        Kind.API, reads=with_filters("/api/kpis", [*GRID_FILTERS, "from=0"]), params=("from", "to", "grid")
    ),
    # Read by test_the_event_stream_shows_each_role_only_what_it_may_read (it never ends).
    ("GET", "/api/stream"): Route(Kind.API),
}


def served_routes(hub: Hub) -> set[tuple[str, str]]:
    app = hub.api.app().app
    assert isinstance(app, FastAPI)
    served = set()
    for route in app.routes:
        # Every route the app has is a Route (a mount or a websocket would need a kind of its own).
        assert isinstance(route, StarletteRoute), route
        for method in route.methods or ():
            if method != "HEAD":
                served.add((method, route.path))
    return served


# -- what a role may see ----------------------------------------------------------------------


def forbidden(w: World, role: Role) -> dict[str, str]:
    """Every canary the role must never receive, with why (the table's answer, through its reach)."""
    reach = w.reach(role)
    out: dict[str, str] = {}
    for grid, c in CANARY.items():
        community = grid[:12]
        place = Where(community=community, grid=grid)
        cases = [w.case_where(w.open_cases[grid]), w.case_where(w.closed_cases[grid])]
        elder = w.hub.visits.visits.tasks(elder=f"elder{c.n}", signs_due_by=w.hub.clock.now())
        wheres = [place, *cases, *(w.hub.visits.where(t.task) for t in elder)]
        if not any(reach.allows(Permission.READ, x) for x in wheres):
            for canary in (*c.personal, *c.rooms, *c.devices, *c.staff, c.note, *cases_of(w, grid)):
                out[canary] = f"{role.value} may not read grid {grid}"
            continue
        if not any(reach.allows(Permission.PERSONAL_DATA, x) for x in wheres):
            for canary in c.personal:
                out[canary] = f"{role.value} has no personal_data in grid {grid}"
        if not any(reach.allows(Permission.LOCATIONS, x) for x in wheres):
            for canary in c.rooms:
                out[canary] = f"{role.value} has no locations in grid {grid}"
        if not any(reach.allows(Permission.READ, x) for x in cases):
            for canary in (c.note, *cases_of(w, grid)):
                out[canary] = f"{role.value} may not read grid {grid}'s cases"
    return out


def cases_of(w: World, grid: str) -> list[str]:
    return [w.open_cases[grid], w.closed_cases[grid]]


def leaks(text: str, banned: dict[str, str]) -> list[str]:
    found = []
    for canary, why in banned.items():
        escaped = json.dumps(canary)[1:-1]  # \uXXXX where a body escapes non-ASCII
        if canary in text or escaped in text:
            found.append(f"{canary!r} ({why})")
    return found


def bearer(role: Role) -> dict[str, str]:
    return {"Authorization": f"Bearer {secret(role)}"}


# -- the tests --------------------------------------------------------------------------------


async def test_every_route_is_classified(world: World) -> None:
    """A route nobody classified fails here: decide who may reach it and add it to ROUTES."""
    served = served_routes(world.hub)
    assert served - set(ROUTES) == set(), "routes the sweep does not know (add them to ROUTES)"
    assert set(ROUTES) - served == set(), "ROUTES names routes the hub no longer serves"


@pytest.mark.parametrize("role", ROLES)
async def test_no_route_shows_a_role_what_the_table_hides(world: World, role: Role) -> None:
    banned = forbidden(world, role)
    problems: list[str] = []
    async with httpx.AsyncClient(base_url=world.base, headers=bearer(role)) as c:
        for (method, _path), route in ROUTES.items():
            if method != "GET":
                continue
            for url in route.reads(world):
                r = await c.get(url)
                if r.status_code >= 500 and url != "/readyz":  # 503: not ready, by design
                    problems.append(f"{url}: {r.status_code}")
                problems += [f"{url} showed {leak}" for leak in leaks(r.text, banned)]
                problems += [f"{url} header showed {leak}" for leak in leaks(str(r.headers), banned)]
    assert not problems, "\n".join(problems)


@pytest.mark.parametrize("role", ROLES)
async def test_reading_another_grids_object_by_id_is_a_404(world: World, role: Role) -> None:
    """Case, alert, device, grid: an id the role may not read answers as one that does not exist."""
    reach = world.reach(role)
    problems = []
    async with httpx.AsyncClient(base_url=world.base, headers=bearer(role)) as c:
        for grid in GRIDS:
            place = Where(community=grid[:12], grid=grid)
            reads = reach.allows(Permission.READ, place)
            for case_id in cases_of(world, grid):
                may = reach.allows(Permission.READ, world.case_where(case_id))
                for url in (f"/api/cases/{case_id}", f"/cases/{case_id}"):
                    r = await c.get(url)
                    if r.status_code != (200 if may else 404):
                        problems.append(f"{url}: {r.status_code}, expected {200 if may else 404}")
            for alert_id in world.alerts[grid]:
                r = await c.get(f"/api/alerts/{alert_id}")
                if r.status_code != (200 if reads else 404):
                    problems.append(f"alert {alert_id} of {grid}: {r.status_code}")
            for device in CANARY[grid].devices:
                r = await c.get(f"/api/devices/{device}")
                if r.status_code != (200 if reads else 404):
                    problems.append(f"device {device}: {r.status_code}")
            r = await c.get(f"/map/{grid}")
            if r.status_code != (200 if reads else 404):
                problems.append(f"/map/{grid}: {r.status_code}")
    assert not problems, "\n".join(problems)


@pytest.mark.parametrize("role", ROLES)
async def test_writes_the_table_refuses_change_nothing_and_hide_other_grids(world: World, role: Role) -> None:
    """Every write on every case, visit and setting: refused where the table says so (404 where the
    role may not even read it, so ids are no oracle), and nothing stored by a refusal."""
    reach = world.reach(role)
    before = world.timelines()
    visits_before = {v: len(world.hub.visits.visits.records(visit_key(v))) for v in visit_ids(world)}
    now = world.hub.clock.now()
    problems = []
    async with httpx.AsyncClient(base_url=world.base, headers=bearer(role)) as c:
        for (method, _path), route in ROUTES.items():
            if method != "POST":
                continue
            for write in route.writes(world):
                if write.where is None:
                    allowed = reach.may_ever(write.action)
                    readable = True
                else:
                    allowed = reach.allows(write.action, write.where)
                    # A visit task is seen through ``visits`` (the register), a case through ``read``.
                    seen = Permission.VISITS if write.action is Permission.VISITS else Permission.READ
                    readable = reach.allows(seen, write.where)
                if allowed:
                    continue  # allowed writes are the workflow tests' (they would change the world)
                r = await c.post(write.url, json=write.body)
                want = {403} if readable else {404}
                if r.status_code not in want:
                    problems.append(
                        f"{write.url} {write.body}: {r.status_code} {r.text[:160]}, expected {want}"
                    )
    assert world.timelines() == before, "a refused write changed a case"
    assert {v: len(world.hub.visits.visits.records(visit_key(v))) for v in visit_ids(world)} == visits_before
    assert world.hub.clock.now() == now
    assert not problems, "\n".join(problems)


@pytest.mark.parametrize("role", ROLES)
async def test_the_event_stream_shows_each_role_only_what_it_may_read(world: World, role: Role) -> None:
    banned = forbidden(world, role)
    frames: list[str] = []

    async def listen() -> None:
        async with (
            httpx.AsyncClient(base_url=world.base, headers=bearer(role), timeout=None) as c,
            c.stream("GET", "/api/stream") as response,
        ):
            async for line in response.aiter_lines():
                frames.append(line)

    task = asyncio.create_task(listen(), name="sweep-sse")
    await eventually(lambda: len(world.hub.bus) == 1, what="the subscriber")
    async with httpx.AsyncClient(base_url=world.base, headers=bearer(Role.COMMAND_CENTRE)) as desk:
        for grid in GRIDS:
            r = await desk.post(f"/api/cases/{world.open_cases[grid]}/note", json={"note": CANARY[grid].note})
            assert r.status_code == 200
    await asyncio.sleep(0.5)
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)
    text = "\n".join(frames)
    assert not leaks(text, banned), leaks(text, banned)
    reach = world.reach(role)
    shown = {json.loads(f[6:])["case"]["grid"] for f in frames if f.startswith("data: ") and '"case"' in f}
    assert shown == {g for g in GRIDS if reach.allows(Permission.READ, world.case_where(world.open_cases[g]))}


async def test_the_desk_reads_every_canary(world: World) -> None:
    """A control: the command centre's reads show every canary, so the other roles' checks bite."""
    seen: list[str] = []
    async with httpx.AsyncClient(base_url=world.base, headers=bearer(Role.COMMAND_CENTRE)) as c:
        for (method, _path), route in ROUTES.items():
            if method == "GET":
                for url in route.reads(world):
                    seen.append((await c.get(url)).text)
    text = "\n".join(seen)
    everything = [x for g in GRIDS for x in (*CANARY[g].personal, *CANARY[g].rooms, CANARY[g].note)]
    assert [x for x in everything if not leaks(text, {x: ""})] == []


async def test_no_answer_with_personal_data_may_be_cached(world: World) -> None:
    """Found in review: only the HTML pages said ``no-store``; the JSON answers the phone page and
    the console load (names, phones, addresses, medical notes) stayed in browser and proxy caches."""
    cacheable: list[str] = []
    checked = 0
    async with httpx.AsyncClient(base_url=world.base, headers=bearer(Role.COMMAND_CENTRE)) as c:
        for (method, _path), route in ROUTES.items():
            if method != "GET":
                continue
            for url in route.reads(world):
                r = await c.get(url)
                personal = [x for g in GRIDS for x in CANARY[g].personal if leaks(r.text, {x: ""})]
                checked += bool(personal)
                if personal and "no-store" not in r.headers.get("cache-control", ""):
                    cacheable.append(f"{url}: {r.headers.get('cache-control')}")
    assert cacheable == []
    assert checked > 5, "a control: answers with personal data were looked at"


async def test_without_a_login_only_public_routes_answer(world: World) -> None:
    anonymous: list[dict[str, str]] = [
        {},
        {"Authorization": "Bearer wrong-token"},
        {"Authorization": f"Basic {secret(Role.ADMIN)}"},
        {"Authorization": f"bearer{secret(Role.ADMIN)}"},
        {"Cookie": "linli_session=forged-session-id"},
    ]
    problems = []
    banned = {x: "anonymous" for g in GRIDS for x in (*CANARY[g].personal, *CANARY[g].rooms)}
    for headers in anonymous:
        async with httpx.AsyncClient(base_url=world.base, headers=headers) as c:
            for (method, path), route in ROUTES.items():
                urls = route.reads(world) if method == "GET" else [w.url for w in route.writes(world)[:3]]
                if not urls:
                    urls = [path.replace("{case_id}", world.open_cases[G1]).replace("{action}", "note")]
                for url in urls:
                    r = await c.request(method, url, json={} if method == "POST" else None)
                    problems += [f"{method} {url} showed {x}" for x in leaks(r.text, banned)]
                    if route.kind is Kind.PUBLIC:
                        ok = r.status_code < 500 or (url == "/readyz" and r.status_code == 503)
                    elif route.kind is Kind.PAGE:
                        ok = r.status_code == 302 and r.headers["location"] == "/login"
                    else:
                        ok = r.status_code == 401
                    if not ok:
                        problems.append(f"{headers} {method} {url}: {r.status_code}")
    assert not problems, "\n".join(problems)


async def test_a_sessions_writes_need_the_csrf_token_and_the_hubs_origin(world: World) -> None:
    """Every state-changing API route, with the command centre's session cookie (allowed by the
    table): refused without X-CSRF-Token, with a wrong one, or from another Origin."""
    problems = []
    before = world.timelines()
    async with httpx.AsyncClient(base_url=world.base) as c:
        r = await c.post("/login", json={"token": secret(Role.COMMAND_CENTRE)})
        assert r.status_code == 200
        csrf = r.json()["csrf"]
        for (method, path), route in ROUTES.items():
            if method != "POST" or route.kind is not Kind.API:
                continue
            writes = route.writes(world)[:2] or [Write(path, None, Permission.READ, None)]
            for write in writes:
                for headers in (
                    {},
                    {"X-CSRF-Token": "wrong"},
                    {"X-CSRF-Token": csrf, "Origin": "http://127.0.0.1:1"},
                    {"X-CSRF-Token": csrf, "Origin": "null"},
                ):
                    r = await c.post(write.url, json=write.body, headers=headers)
                    if r.status_code != 403:
                        problems.append(f"{write.url} {headers}: {r.status_code}")
        r = await c.post(
            f"/api/cases/{world.open_cases[G1]}/note", json={"note": "ok"}, headers={"X-CSRF-Token": csrf}
        )
        assert r.status_code == 200, "the control: with the token the same session writes"
    before[world.open_cases[G1]] += 1
    assert world.timelines() == before
    assert not problems, "\n".join(problems)


HOSTILE_VALUES = ("-1", "0", "99999999999999999999999", "1e400", "nan", "x" * 5000, "%00", "../../etc/passwd")
HOSTILE_IDS = (
    "..%2F..%2Fapi%2Fcases",
    "%2e%2e",
    "%00",
    "a" * 5000,
    "-1",
    "0",
    "99999999999999999999999",
    "%E4%B8",
)


@pytest.mark.parametrize("role", [Role.ADMIN, Role.GRID_WORKER])
async def test_hostile_ids_and_parameters_are_refused_never_a_server_error(world: World, role: Role) -> None:
    banned = forbidden(world, role)
    problems = []
    async with httpx.AsyncClient(base_url=world.base, headers=bearer(role)) as c:
        for (method, path), route in ROUTES.items():
            urls = []
            if method == "GET":
                for param in route.params:
                    urls += [f"{path}?{param}={v}" for v in HOSTILE_VALUES]
            if "{" in path:
                for bad in HOSTILE_IDS:
                    url = path
                    for name in (
                        "{case_id}",
                        "{alert_id}",
                        "{device_id:path}",
                        "{code}",
                        "{task_id}",
                        "{name}",
                        "{token}",
                    ):
                        url = url.replace(name, bad)
                    urls.append(url.replace("{action}", "note"))
            for url in urls:
                r = await c.request(method, url, json={} if method == "POST" else None)
                if r.status_code >= 500:
                    problems.append(f"{method} {url[:120]}: {r.status_code}")
                problems += [f"{method} {url[:80]} showed {x}" for x in leaks(r.text, banned)]
        # Path tricks on a readable prefix do not reach another grid's device or case.
        for trick in (
            f"/api/devices/{CANARY[G1].button}/../{CANARY[G2].button}",
            f"/api/devices/{CANARY[G1].button}%2F..%2F{CANARY[G2].button}",
            f"/api/cases/{world.open_cases[G1]}%2F..%2F{world.open_cases[G2]}",
        ):
            r = await c.get(trick)
            if r.status_code >= 500:
                problems.append(f"{trick}: {r.status_code}")
            problems += [f"{trick} showed {x}" for x in leaks(r.text, banned)]
    assert not problems, "\n".join(problems)


async def test_evaluating_another_grids_case_tells_nothing_about_it(world: World) -> None:
    """评价 and the guardian's link on a case the caller may not read: the same 404 as a made-up
    id. They answered 403 (an oracle for other grids' case ids), and 不满意 on a closed case whose
    alert had been pressed again answered 409 naming the alert and the new open case, before
    anyone asked whether the caller may evaluate at all."""
    closed = world.hub.cases.load(world.closed_cases[G2])
    assert closed is not None and closed.alert_id is not None
    # The alert's case is closed and a new one is open on the same alert (an alert still active
    # after 结案 files again): what makes 不满意 refuse with a 409 naming the open case.
    alert = world.hub.store.alert(closed.alert_id)
    assert alert is not None
    again = world.hub.casework.open_from_alert(alert)
    assert again is not None and world.hub.cases.open_for_alert(alert.id) is not None
    made_up = "0123456789ab"
    async with httpx.AsyncClient(base_url=world.base, headers=bearer(Role.GRID_WORKER)) as c:
        for case_id in (closed.id, again.id, made_up):
            for body in ({"rating": "unsatisfied", "note": "x"}, {"rating": "satisfied"}):
                r = await c.post(f"/api/cases/{case_id}/evaluate", json=body)
                assert r.status_code == 404, (case_id, r.text)
                assert again.id not in r.text and str(closed.alert_id) not in r.text, r.text
            r = await c.post(f"/api/cases/{case_id}/evaluation-link", json={"guardian": "李明"})
            assert r.status_code == 404, (case_id, r.text)
    # The grid's own closed case: readable, so the refusal may say why (评价 is the desk's).
    async with httpx.AsyncClient(base_url=world.base, headers=bearer(Role.GRID_WORKER)) as c:
        r = await c.post(f"/api/cases/{world.closed_cases[G1]}/evaluate", json={"rating": "satisfied"})
        assert r.status_code == 403, r.text
