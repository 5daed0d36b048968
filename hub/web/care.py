"""HTTP routes of issue 18: 评价 (evaluations, the 回访 list, guardians' one-time links) and care visits.

Registered by one call from :meth:`hub.web.api.Api.app` (before the generic case-action route,
so ``POST /api/cases/{id}/evaluate`` is this module's typed route). Every decision about who
may do what is the access table's, through :mod:`hub.casework.evaluations` and
:mod:`hub.casework.visits`; this module only maps HTTP to them. The guardian's link page
(``/e/{token}``) and its two API calls need no account: the signed one-time token in the path
is the credential, and the page shows nothing but the case's title and the guardian's name.

Must not import: ``hub.app``, ``hub.cli``, ``hub.web.api`` (which imports this module).
"""

from __future__ import annotations

import asyncio
import base64
from collections.abc import Mapping
from dataclasses import dataclass
from importlib import resources
from typing import TYPE_CHECKING, Annotated, Any

from fastapi import Depends, FastAPI, Path, Query, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from pydantic import BaseModel, ConfigDict, Field, StringConstraints, TypeAdapter

from hub.cases.care import CareFlag, Outcome, TaskKind, VisitKpiRow
from hub.cases.model import CaseAction, Channel, EvaluationVia, EvaluatorRole, Rating
from hub.casework.access import Actor, Permission, Reach, Where
from hub.casework.elders import RegisterEntry
from hub.casework.evaluations import Evaluations
from hub.casework.signs import sign_status
from hub.casework.visits import Visits
from hub.clock import iso
from hub.errors import NotAllowedError, NotAuthenticatedError, NotFoundError
from hub.ingest.device_state import DeviceStates, is_online
from hub.steps import run_in_turns
from hub.web import models as m
from hub.web.routes.common import Offset, page, rows_in_turns

#: Register entries looked at, and rows made (three or four store reads each), between turns.
ELDERS_PER_STEP = 2048
ROWS_PER_STEP = 16

if TYPE_CHECKING:
    from hub.web.api import Api

#: A link token: nonce (24) + "." + signature (43), base64url.
Token = Annotated[str, Path(min_length=10, max_length=200, pattern=r"^[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+$")]
CaseId = Annotated[str, Path(max_length=64)]
TaskId = Annotated[str, Path(min_length=1, max_length=400, pattern=r"^[A-Za-z0-9_-]+$")]
_ERRORS: dict[int | str, dict[str, Any]] = {
    401: {"model": m.ErrorOut, "description": "no or wrong token"},
    403: {"model": m.ErrorOut, "description": "the access table refuses"},
    404: {"model": m.ErrorOut, "description": "no such case"},
    409: {"model": m.ErrorOut, "description": "the workflow refuses this now"},
}
_LINK_ERRORS: dict[int | str, dict[str, Any]] = {
    403: {"model": m.ErrorOut, "description": "invalid, used or expired link"},
    409: {"model": m.ErrorOut, "description": "the case is no longer waiting for this 评价"},
}


class _In(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class _Out(BaseModel):
    model_config = ConfigDict(frozen=True)


class EvaluateIn(_In):
    """评价 of a closed case: 满意 / 基本满意 / 不满意 (不满意 needs the reason and sends it back: 返工)."""

    rating: Rating
    role: EvaluatorRole = Field(
        default=EvaluatorRole.COMMAND_CENTRE, description="who gave it (the desk records it for them)"
    )
    via: EvaluationVia = Field(
        default=EvaluationVia.PHONE_CALL, description="how it was collected (not link)"
    )
    note: m.Note = ""
    assignee: m.PersonId | None = Field(default=None, description="不满意: give the rework to someone else")


class LinkIn(_In):
    guardian: Annotated[str, StringConstraints(min_length=1, max_length=64, strip_whitespace=True)] = Field(
        description="the guardian's name as on the elder's emergency contacts"
    )


class LinkOut(_Out):
    url: str = Field(description="the page to send to the guardian (a one-time link)")
    expires_at: str


class LinkViewOut(_Out):
    case_id: str
    guardian: str
    title_zh: str
    title_en: str
    closed_at: str | None
    expires_at: str


class LinkEvaluateIn(_In):
    rating: Rating
    note: m.Note = ""


class LinkDoneOut(_Out):
    case_id: str
    state: str
    reopened: bool


class CallBackOut(_Out):
    case_id: str
    grid: str | None
    community: str | None
    handler: str | None
    category: str
    closed_at: str
    due_at: str


class VisitOut(_Out):
    id: str = Field(description="opaque id of the task for POST /api/visits/{id}/{action}")
    key: str
    elder: str
    elder_name: str | None = Field(description="only for roles that see the elder's personal data")
    address: str | None
    kind: TaskKind
    community: str
    grid: str
    assignee: str | None
    window_start: str
    due_at: str
    urgent: bool
    done_at: str | None
    light: str


class VisitRecordIn(_In):
    note: m.Note = ""
    on_behalf_of: m.PersonId | None = Field(
        default=None, description="command centre only: the roster person who reported the visit by phone"
    )


class VisitRecordOut(_Out):
    id: str
    task: str
    outcome: Outcome
    by: str = Field(description="the visitor the record is for (his work in 探访完成率)")
    recorded_by: str | None = Field(
        description="who typed it for the visitor (the desk, on_behalf_of); null: the visitor himself"
    )
    at: str
    note: str
    alert_id: int | None = Field(description="needs_help: the alert whose case was filed")


class ElderDeviceOut(_Out):
    id: str
    kind: str
    online: bool | None
    battery: float | None
    last_seen: str | None


class ElderOut(_Out):
    id: str
    community: str
    grid: str
    flags: list[CareFlag]
    assignee: str | None
    name: str | None = Field(description="personal data: only for roles allowed (the access table)")
    age: int | None
    address: str | None
    devices: list[ElderDeviceOut]
    last_activity: str | None = Field(description="the last event any of the elder's devices sent")
    last_visit: str | None
    last_visit_outcome: Outcome | None
    open_visits: int
    open_cases: int
    sign_of_life: dict[str, str] | None = Field(
        description="null: the daily sign of life (每日平安) is scheduled; else why not, zh and en"
    )


_ELDER_LIST: TypeAdapter[list[ElderOut]] = TypeAdapter(list[ElderOut])
_CALL_BACK_LIST: TypeAdapter[list[CallBackOut]] = TypeAdapter(list[CallBackOut])
_VISIT_LIST: TypeAdapter[list[VisitOut]] = TypeAdapter(list[VisitOut])


@dataclass(frozen=True, slots=True, kw_only=True)
class CareServices:
    """What the routes work with (built by the app)."""

    evaluations: Evaluations
    visits: Visits
    states: DeviceStates


def _visit_row(row: VisitKpiRow) -> dict[str, float | int | None]:
    return {
        "visits_due": row.due,
        "visits_on_time": row.on_time,
        "visits_late": row.late,
        "visits_missed": row.missed,
        "visit_completion_rate": row.completion_rate,
    }


async def add_visit_kpis(
    body: dict[str, Any], care: CareServices, *, reach: Reach, start: float, end: float, grid: str | None
) -> None:
    """探访完成率 beside the case KPIs of ``GET /api/kpis``: the same rows gain the ``visit*`` fields."""
    if not reach.may_ever(Permission.VISITS):
        return  # a wall display: case KPIs only
    # In turns, as the case KPIs: a year of visits is seconds an SOS press must not wait out.
    report = await run_in_turns(care.visits.kpi_steps(start=start, end=end, reach=reach))
    body["overall"] = {**body["overall"], **_visit_row(report.overall)}
    for name, row in report.by_grid.items():
        if grid is None or name == grid:
            body["by_grid"][name] = {**body["by_grid"].get(name, {}), **_visit_row(row)}
    if reach.may_ever(Permission.STAFF_KPIS):
        for name, row in report.by_worker.items():
            body["by_worker"][name] = {**body["by_worker"].get(name, {}), **_visit_row(row)}


def visit_id(key: str) -> str:
    return base64.urlsafe_b64encode(key.encode()).rstrip(b"=").decode("ascii")


def _key_of(task_id: str) -> str:
    try:
        return base64.urlsafe_b64decode(task_id + "=" * (-len(task_id) % 4)).decode()
    except (ValueError, UnicodeDecodeError):
        raise NotFoundError(f"no visit task {task_id!r}") from None


async def _reach(request: Request) -> Reach:
    """The caller's reach, asked of the API object (same auth, Origin and CSRF rules as every route)."""
    principal = await request.app.state.linli.principal(request)
    reach: Reach = principal.reach
    return reach


Who = Annotated[Reach, Depends(_reach)]


#: Scripts of this module's pages, served from ``/care/static/`` (the phone page's visit list,
#: the console's care view); ``/static/`` stays api.py's.
_SCRIPTS = frozenset({"phone_visits.js", "care.js"})


def _script(name: str) -> Response:
    body = resources.files("hub.web.console").joinpath(name).read_bytes()
    return Response(body, media_type="text/javascript; charset=utf-8")


def _page() -> bytes:
    return resources.files("hub.web.console").joinpath("evaluate.html").read_bytes()


def add_care_routes(api: FastAPI, web: Api) -> None:
    """The care area's routes, when the hub runs care services (one line in ``api.ROUTES``)."""
    if web.care is not None:
        register(api, web.care)


def register(api: FastAPI, care: CareServices) -> None:
    """Add the care routes to ``api`` (call before the generic ``/api/cases/{id}/{action}`` route)."""
    _evaluation_routes(api, care.evaluations)
    _visit_routes(api, care)


def _evaluation_routes(api: FastAPI, evaluations: Evaluations) -> None:

    @api.post("/api/cases/{case_id}/evaluate", response_model=m.CaseOut, responses=_ERRORS)
    async def evaluate(request: Request, who: Who, case_id: CaseId, body: EvaluateIn) -> Any:
        """评价 after 结案 by the desk (after a 回访 call, or for the resident); 不满意 is a 返工."""
        phone = request.headers.get("x-linli-channel") == "phone"
        updated = evaluations.evaluate(
            case_id,
            actor=who.actor,
            rating=body.rating,
            role=body.role,
            via=body.via,
            note=body.note,
            assignee=body.assignee,
            channel=Channel.PHONE_PAGE if phone else Channel.CONSOLE,
        )
        return evaluations.case_json(updated)

    @api.get("/api/evaluations/call-backs", response_model=list[CallBackOut], responses=_ERRORS)
    async def call_backs(
        request: Request,
        response: Response,
        who: Who,
        limit: Annotated[int, Query(ge=1, le=500)] = 200,
        offset: Offset = 0,
    ) -> Any:
        """Closed cases still without their 评价 ``evaluation.call_back_after`` after 结案 (回访), oldest first."""
        if not who.may_ever(CaseAction.EVALUATE):
            raise NotAllowedError("the 回访 list is the command centre's")
        made = await run_in_turns(evaluations.call_back_steps(reach=who, limit=limit, offset=offset))
        found = made.due
        page(request, response, found, limit=limit, offset=offset, read=made.read)
        rows = [
            {
                "case_id": d.case_id,
                "grid": d.grid,
                "community": d.community,
                "handler": d.handler,
                "category": d.category,
                "closed_at": iso(d.closed_at),
                "due_at": iso(d.due_at),
            }
            for d in found
        ]
        return await rows_in_turns(response, rows, _CALL_BACK_LIST)

    @api.post("/api/cases/{case_id}/evaluation-link", response_model=LinkOut, responses=_ERRORS)
    async def evaluation_link(request: Request, who: Who, case_id: CaseId, body: LinkIn) -> Any:
        """A signed one-time link for a guardian to evaluate this closed case from his phone."""
        token, expires = evaluations.issue_link(case_id, guardian=body.guardian, actor=who.actor)
        return {"url": f"{request.base_url}e/{token}", "expires_at": iso(expires)}

    @api.get("/api/evaluation-links/{token}", response_model=LinkViewOut, responses=_LINK_ERRORS)
    async def link_view(token: Token) -> Any:
        """No account: what the guardian's page shows (the token is the credential)."""
        view = evaluations.open_link(token)
        return {
            "case_id": view.case_id,
            "guardian": view.guardian,
            "title_zh": view.title_zh,
            "title_en": view.title_en,
            "closed_at": iso(view.closed_at) if view.closed_at is not None else None,
            "expires_at": iso(view.expires_at),
        }

    @api.post("/api/evaluation-links/{token}", response_model=LinkDoneOut, responses=_LINK_ERRORS)
    async def link_evaluate(token: Token, body: LinkEvaluateIn) -> Any:
        """No account: the guardian's 评价 (role guardian, via link); the link is spent with it."""
        updated = evaluations.evaluate_by_link(token, rating=body.rating, note=body.note)
        return {"case_id": updated.id, "state": updated.state.value, "reopened": updated.open}

    @api.get("/e/static/evaluate.js", include_in_schema=False)
    async def link_script() -> Response:
        return _script("evaluate.js")

    @api.get("/e/{token}", include_in_schema=False)
    async def link_page(token: str) -> Response:
        # The page reads the token from its own URL and calls the two routes above.
        return HTMLResponse(_page(), headers={"Cache-Control": "no-store"})


def _recording_for(visits: Visits, who: Reach, task_id: str, person: str) -> Actor:
    """The person a desk records a visit for (``on_behalf_of``), as for case actions.

    The person's own permissions apply (his grids), and the recorder's permission to record for
    others must reach the visit's own place: a duty officer records for his community, not for
    another one's worker and elder.
    """
    if not who.may_ever(Permission.RECORD_FOR_OTHERS):
        raise NotAllowedError("only the command centre records for others")
    role = visits.role_of(person)
    if role is None:
        raise NotAllowedError(f"{person!r} is not in any roster")
    stored = visits.visits.task(_key_of(task_id))
    if stored is None:
        raise NotFoundError(f"no visit task {task_id!r}")
    if not who.allows(Permission.RECORD_FOR_OTHERS, visits.where(stored.task)):
        # As absent as a task that does not exist (found in review: a 403 here told a desk which
        # keys exist in other communities; ``Visits.record`` answers alike).
        raise NotFoundError(f"no visit task {task_id!r}")
    return Actor(person, role)


def _elder_row(
    care: CareServices,
    who: Reach,
    entry: RegisterEntry,
    where: Where,
    now: float,
    *,
    open_per_subject: Mapping[str, int],
) -> dict[str, Any]:
    """One row of the elder register (``GET /api/elders``): three or four reads of the store."""
    visits = care.visits
    elder = entry.elder
    personal = who.allows(Permission.PERSONAL_DATA, where)
    devices = []
    for device in entry.devices:
        state = care.states.get(device.id)
        devices.append(
            {
                "id": device.id,
                "kind": device.kind.value,
                "online": is_online(state, device.heartbeat_s, now),
                "battery": state.battery if state is not None else None,
                "last_seen": iso(state.last_seen) if state is not None else None,
            }
        )
    seen = [d["last_seen"] for d in devices if d["last_seen"] is not None]
    last = visits.visits.last_record(elder.id)
    no_sign = sign_status(visits.care, entry)
    return {
        "id": elder.id,
        "community": elder.community,
        "grid": elder.grid,
        "flags": sorted(elder.flags),
        "assignee": elder.assignee,
        "name": entry.resident.name if personal else None,
        "age": entry.resident.age if personal else None,
        # The register holds residents without their personal data (hub.community.personal).
        "address": visits.whole(entry.resident).address if personal else None,
        "devices": devices,
        "last_activity": max(seen) if seen else None,
        "last_visit": iso(last.record.at) if last is not None else None,
        "last_visit_outcome": last.record.outcome if last is not None else None,
        "open_visits": len(visits.visits.tasks(elder=elder.id, signs_due_by=now)),
        "sign_of_life": None if no_sign is None else no_sign.text,
        "open_cases": visits.open_cases(
            elder.id, [d.id for d in entry.devices], per_subject=open_per_subject
        ),
    }


def _visit_routes(api: FastAPI, care: CareServices) -> None:
    visits = care.visits

    @api.get("/care", include_in_schema=False)
    async def care_page(request: Request) -> Response:
        try:
            await request.app.state.linli.principal(request)
        except NotAuthenticatedError:
            return RedirectResponse("/login", status_code=302)
        return HTMLResponse(resources.files("hub.web.console").joinpath("care.html").read_bytes())

    @api.get("/care/static/{name}", include_in_schema=False)
    async def care_script(name: str) -> Response:
        if name not in _SCRIPTS:
            raise NotFoundError("no such file")
        return _script(name)

    def visit_json(who: Reach, task: Any, now: float) -> dict[str, Any]:
        body = visits.task_json(task, now=now)
        resident = visits.resident(task.task.elder)
        personal = resident is not None and who.allows(Permission.PERSONAL_DATA, visits.where(task.task))
        body |= {
            "id": visit_id(task.key),
            "elder_name": resident.name if personal and resident is not None else None,
            "address": resident.address if personal and resident is not None else None,
        }
        return body

    @api.get("/api/visits", response_model=list[VisitOut], responses=_ERRORS)
    async def visit_list(
        response: Response,
        who: Who,
        include_done: Annotated[bool, Query(alias="done", description="also tasks already done")] = False,
        limit: Annotated[int, Query(ge=1, le=500)] = 200,
        offset: Annotated[int, Query(ge=0, le=10_000_000)] = 0,
    ) -> Any:
        """探访 tasks the caller may see (a grid worker: his grids), urgent first, then by due time."""
        now = visits.now()
        tasks = visits.tasks(reach=who, open_only=not include_done, limit=limit, offset=offset)
        return await rows_in_turns(response, [visit_json(who, t, now) for t in tasks], _VISIT_LIST)

    @api.post("/api/visits/{task_id}/{action}", response_model=VisitRecordOut, responses=_ERRORS)
    async def visit_action(
        request: Request, who: Who, task_id: TaskId, action: Outcome, body: VisitRecordIn | None = None
    ) -> Any:
        """Record an outcome: ``visited_well`` 安好, ``needs_help`` 需要帮助 (files a case), ``not_at_home`` 不在家."""
        phone = request.headers.get("x-linli-channel") == "phone"
        body = body or VisitRecordIn()
        actor = (
            who.actor
            if body.on_behalf_of is None
            else _recording_for(visits, who, task_id, body.on_behalf_of)
        )
        made = visits.record(
            _key_of(task_id),
            action,
            actor=actor,
            note=body.note,
            channel=Channel.PHONE_PAGE.value if phone else Channel.CONSOLE.value,
            # The record is the visitor's; who typed it for him stays with it (audit), as a case
            # entry's ``recorded_by`` does.
            recorded_by=None if body.on_behalf_of is None else who.actor.id,
        )
        return {
            "id": made.id,
            "task": visit_id(made.record.task_key),
            "outcome": made.record.outcome,
            "by": made.record.by,
            "recorded_by": made.record.recorded_by,
            "at": iso(made.record.at),
            "note": made.record.note,
            "alert_id": made.alert_id,
        }

    @api.get("/api/elders", response_model=list[ElderOut], responses=_ERRORS)
    async def elders(
        *,
        request: Request,
        response: Response,
        who: Who,
        grid: Annotated[str | None, Query(max_length=32)] = None,
        limit: Annotated[int, Query(ge=1, le=1000)] = 200,
        offset: Offset = 0,
    ) -> Any:
        """The grid's elder register (老人台账): care flags, devices and health, last activity and
        visit, open work; a page at a time (``Link: rel="next"``), in the register's order."""
        if not who.may_ever(Permission.VISITS):
            raise NotAllowedError("no access to the elder register")
        now = visits.now()
        open_per_subject: dict[str, int] | None = None  # read once for the page, at its first row
        out: list[dict[str, Any]] = []
        skipped = 0
        # A district's register is thousands of elders and each row reads the store three or
        # four times: the page is bounded, and the loop gets a turn every few elders so that
        # an SOS press never waits for the whole register (docs/benchmarks.md, "Twenty-fifth pass").
        for n, entry in enumerate(visits.register(), 1):
            if n % ELDERS_PER_STEP == 0:
                await asyncio.sleep(0)
            elder = entry.elder
            where = Where(community=elder.community, grid=elder.grid, assignee=elder.assignee)
            if (grid is not None and elder.grid != grid) or not who.allows(Permission.VISITS, where):
                continue
            if skipped < offset:
                skipped += 1
                continue
            if len(out) >= limit:
                break
            if len(out) % ROWS_PER_STEP == ROWS_PER_STEP - 1:
                await asyncio.sleep(0)
            if open_per_subject is None:
                open_per_subject = await run_in_turns(visits.open_case_counts())
            out.append(_elder_row(care, who, entry, where, now, open_per_subject=open_per_subject))
        page(request, response, out, limit=limit, offset=offset)
        return await rows_in_turns(response, out, _ELDER_LIST)
