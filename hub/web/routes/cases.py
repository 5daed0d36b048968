"""Cases: the open (or closed) list most urgent first, one case with its timeline, case actions."""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated, Any

from fastapi import FastAPI, Path, Query, Request, Response
from pydantic import TypeAdapter

from hub.cases.model import OPEN, TERMINAL, CaseAction, Channel
from hub.casework.access import Actor, Permission, Reach, Where, needs_person
from hub.community.privacy import resident_json
from hub.errors import CaseNotFoundError, NotAllowedError, NotFoundError
from hub.records import alert_json
from hub.steps import Steps, run_in_turns
from hub.storage.cases import CaseFilter
from hub.web import models as m
from hub.web.routes.common import (
    CASE_ERRORS,
    ERRORS,
    Limit,
    Offset,
    Principal,
    Who,
    error,
    page,
    rows_in_turns,
)
from hub.web.views import timeline_json

if TYPE_CHECKING:
    from hub.web.api import Api

_LIGHT_RANK = {"red": 0, "yellow": 1, "green": 2}
_SEVERITY_RANK = {"critical": 0, "major": 1, "minor": 2, "info": 3}
_CASE_LIST: TypeAdapter[list[m.CaseOut]] = TypeAdapter(list[m.CaseOut])


def urgency(view: dict[str, Any]) -> tuple[int, int, str]:
    """Sort key: worst open stage light, then severity, then the oldest filed first."""
    worst = min((_LIGHT_RANK[s["light"]] for s in view["sla"] if not s["done"]), default=2)
    return worst, _SEVERITY_RANK.get(view["severity"], 9), view["filed_at"]


def place_and_elder(web: Api, reach: Reach, *, subject: str, sos: bool, where: Where) -> dict[str, Any]:
    """The case's place (building / unit / room or named place) for roles with ``locations`` there,
    and for an SOS the elder (address, phone: the call link) for roles with ``personal_data``.

    The same answer on the list (the phone page's cases) and on one case.
    """
    body: dict[str, Any] = {"place": None, "resident": None}
    device = web.registry.device(subject)
    if device is None:
        return body
    if reach.allows(Permission.LOCATIONS, where):
        body["place"] = web.registry.place_label(subject)
    if sos and device.resident is not None:
        resident = web.registry.resident(device.resident)
        if resident is not None and reach.allows(Permission.PERSONAL_DATA, where):
            body["resident"] = resident_json(resident, personal=True)
    return body


def acting_as(web: Api, who: Principal, case_id: str, body: m.CaseActionIn) -> tuple[Actor, dict[str, Any]]:
    """Who the action is recorded for, and its data (the command centre may record for another)."""
    actor = who.actor
    data = body.data.model_dump(mode="json", exclude_none=True)
    if body.on_behalf_of is not None:
        # The command centre records what a person reported by phone; the person's own
        # permissions apply, and who recorded it stays in the timeline.
        if not who.reach.may_ever(Permission.RECORD_FOR_OTHERS):
            raise NotAllowedError("only the command centre records for others")
        role = web.casework.role_of(body.on_behalf_of)
        if role is None:
            raise NotAllowedError(f"{body.on_behalf_of!r} is not in any roster")
        found = web.casework.load(case_id)
        if found is None:
            raise CaseNotFoundError(case_id)
        if not who.reach.allows(Permission.RECORD_FOR_OTHERS, web.casework.where_of(found)):
            raise NotAllowedError(f"{actor.id} may not record for others on case {case_id}")
        data["recorded_by"] = actor.id
        actor = Actor(body.on_behalf_of, role)
    elif who.token.person is None and needs_person(actor.role):
        raise NotAllowedError("this token is bound to no person")
    return actor, data


#: Views given their place and elder between two turns of the loop (≈ 10 µs each).
PLACES_PER_STEP = 128


def _placed(web: Api, reach: Reach, views: list[dict[str, Any]]) -> Steps[None]:
    """Each view given its place and elder (:func:`place_and_elder`), in steps."""
    told = web.casework.cases.told_of([view["id"] for view in views])  # one query for the page
    for i, view in enumerate(views):
        if i and i % PLACES_PER_STEP == 0:
            yield
        where = Where(
            community=view["community"], grid=view["grid"], assignee=view["assignee"], told=told[view["id"]]
        )
        sos = view["category"] == "sos"
        view.update(place_and_elder(web, reach, subject=view["subject"], sos=sos, where=where))


def add_case_routes(api: FastAPI, web: Api) -> None:
    @api.get("/api/cases", response_model=list[m.CaseOut], responses=ERRORS)
    async def cases(
        *,
        request: Request,
        response: Response,
        who: Who,
        state: Annotated[str | None, Query(pattern="^(open|closed)$")] = None,
        mine: Annotated[str | None, Query(max_length=8)] = None,
        assignee: Annotated[str | None, Query(max_length=64)] = None,
        grid: Annotated[str | None, Query(max_length=32)] = None,
        limit: Limit = 200,
        offset: Offset = 0,
    ) -> Response:
        """Open cases (or ``?state=closed``) the caller may read, most urgent first within a page.

        ``?mine=1`` for the caller's own; ``?mine=told`` also those escalated to the caller (every
        case a notification went to him about: the phone page's list). Pages go newest-filed first.
        """
        visible = web.casework.case_filter(who.reach, Permission.READ)
        if mine == "told":
            # Narrower than any reader's filter: given to this person, or told about by the hub.
            visible = CaseFilter(person=who.actor.id)
        states = TERMINAL if state == "closed" else OPEN
        ids = web.casework.cases.case_ids(
            assignee=who.actor.id if mine == "1" else assignee,
            grid=grid,
            states=states,
            limit=limit,
            offset=offset,
            visible=visible,
        )
        views = await run_in_turns(web.casework.view_steps(ids, states=states))
        page(request, response, views, limit=limit, offset=offset, read=len(ids))
        await run_in_turns(_placed(web, who.reach, views))
        views.sort(key=urgency)
        return await rows_in_turns(response, views, _CASE_LIST)

    @api.get(
        "/api/cases/{case_id}",
        response_model=m.CaseDetailOut,
        response_model_exclude_unset=True,
        responses=ERRORS,
    )
    async def case(who: Who, case_id: Annotated[str, Path(max_length=64)]) -> dict[str, Any]:
        """A case with its timeline; the elder's profile for whom ``personal_data`` reaches it."""
        found = web.casework.load(case_id)
        where = web.casework.where_of(found) if found is not None else None
        if found is None or where is None or not who.reach.allows(Permission.READ, where):
            raise NotFoundError("没有这个案件 / no such case")
        body = web.casework.case_json(found)
        personal = who.reach.allows(Permission.PERSONAL_DATA, where)
        body["timeline"] = [timeline_json(e, personal=personal) for e in web.casework.timeline(found.id)]
        alert_row = web.store.alert(found.alert_id) if found.alert_id is not None else None
        body["alert"] = alert_json(alert_row) if alert_row is not None else None
        device = web.registry.device(found.subject)
        found_at = place_and_elder(web, who.reach, subject=found.subject, sos=found.is_sos, where=where)
        body["place"] = found_at["place"]
        if found_at["resident"] is not None:
            body["resident"] = found_at["resident"]
        located = device is not None and who.reach.allows(Permission.LOCATIONS, where)
        body["location"] = device.location_text if device is not None and located else ""
        return body

    @api.post("/api/cases/{case_id}/{action}", response_model=m.CaseOut, responses=CASE_ERRORS)
    async def case_action(
        request: Request,
        who: Who,
        case_id: Annotated[str, Path(max_length=64)],
        action: Annotated[str, Path(max_length=32, description="a case action (accept, arrive, …)")],
        body: m.CaseActionIn | None = None,
    ) -> Any:
        """Act on a case; the access table and the workflow decide (403 / 409 say why)."""
        try:
            chosen = CaseAction(action)
        except ValueError:
            return error(
                400, "unknown_action", f"unknown action {action!r}", allowed=[a.value for a in CaseAction]
            )
        found = web.casework.load(case_id)
        where = web.casework.where_of(found) if found is not None else None
        if found is None or where is None or not who.reach.allows(Permission.READ, where):
            # As for a read: a case the caller may not see does not exist for him. A 403 here
            # told a worker which ids are cases in other grids (one per guess).
            raise NotFoundError("没有这个案件 / no such case")
        body = body or m.CaseActionIn()
        phone = request.headers.get("x-linli-channel") == "phone"
        channel = Channel.PHONE_PAGE if phone else Channel.CONSOLE
        actor, data = acting_as(web, who, case_id, body)
        updated = web.casework.act(case_id, chosen, actor=actor, channel=channel, note=body.note, data=data)
        return web.casework.case_json(updated)
