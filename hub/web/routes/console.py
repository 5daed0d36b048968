"""The command centre's pages (server-rendered, zh-CN first): overview, case, map, devices, roster, KPIs.

Every page asks the access table through the caller's reach; without a session (or token)
the browser goes to the login page. ``?part=main`` answers only the page's live part.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated
from zoneinfo import ZoneInfo

from fastapi import FastAPI, Path, Query, Request, Response
from fastapi.responses import RedirectResponse

from hub.errors import NotFoundError
from hub.steps import run_in_turns
from hub.web.pages.case import case_detail
from hub.web.pages.devices import MAX_PAGE as MAX_DEVICE_PAGE
from hub.web.pages.devices import PAGE, Show, device_page_steps
from hub.web.pages.grids import grid_detail_steps, grid_map
from hub.web.pages.kpis import kpi_page
from hub.web.pages.overview import IngestMeter, overview_steps
from hub.web.pages.render import Renderer
from hub.web.pages.roster import roster_page
from hub.web.routes.common import HIDDEN, Principal

if TYPE_CHECKING:
    from hub.web.api import Api


def add_console_routes(api: FastAPI, web: Api) -> None:
    renderer = Renderer(zone=ZoneInfo(web.timezone))
    meter = IngestMeter()

    async def page(request: Request, who: Principal, name: str, **context: object) -> Response:
        return await run_in_turns(renderer.page_steps(request, name, {"who_name": who.token.name, **context}))

    def missing(request: Request, who: Principal, exc: NotFoundError) -> Response:
        return renderer.page(
            request, "page_missing.html", {"who_name": who.token.name, "message": exc.message}, status=404
        )

    @api.get("/", **HIDDEN)
    async def console(request: Request) -> Response:
        who = web.identify(request)
        if who is None:
            return RedirectResponse("/login", status_code=302)
        found = await run_in_turns(overview_steps(web, who.reach, meter=meter))
        return await page(request, who, "page_overview.html", o=found)

    @api.get("/cases/{case_id}", **HIDDEN)
    async def case_page(request: Request, case_id: Annotated[str, Path(max_length=64)]) -> Response:
        who = web.identify(request)
        if who is None:
            return RedirectResponse("/login", status_code=302)
        try:
            return await page(request, who, "page_case.html", d=case_detail(web, who.reach, case_id))
        except NotFoundError as exc:
            return missing(request, who, exc)

    @api.get("/map", **HIDDEN)
    async def map_page(request: Request) -> Response:
        who = web.identify(request)
        if who is None:
            return RedirectResponse("/login", status_code=302)
        return await page(request, who, "page_map.html", maps=grid_map(web, who.reach))

    @api.get("/map/{code}", **HIDDEN)
    async def grid_page(request: Request, code: Annotated[str, Path(max_length=32)]) -> Response:
        who = web.identify(request)
        if who is None:
            return RedirectResponse("/login", status_code=302)
        try:
            detail = await run_in_turns(grid_detail_steps(web, who.reach, code))
            return await page(request, who, "page_grid.html", g=detail)
        except NotFoundError as exc:
            return missing(request, who, exc)

    @api.get("/devices", **HIDDEN)
    async def devices_page(
        request: Request,
        grid: Annotated[str, Query(max_length=32)] = "",
        show: Show = Show.ALL,
        offset: Annotated[int, Query(ge=0, le=10_000_000)] = 0,
        limit: Annotated[int, Query(ge=1, le=MAX_DEVICE_PAGE)] = PAGE,
    ) -> Response:
        who = web.identify(request)
        if who is None:
            return RedirectResponse("/login", status_code=302)
        found = await run_in_turns(
            device_page_steps(web, who.reach, grid=grid, show=show, offset=offset, limit=limit)
        )
        return await page(request, who, "page_devices.html", p=found)

    @api.get("/roster", **HIDDEN)
    async def roster(request: Request) -> Response:
        who = web.identify(request)
        if who is None:
            return RedirectResponse("/login", status_code=302)
        return await page(request, who, "page_roster.html", grids=roster_page(web, who.reach))

    @api.get("/kpis", **HIDDEN)
    async def kpis_page(
        request: Request,
        start: Annotated[str | None, Query(alias="from", max_length=10)] = None,
        end: Annotated[str | None, Query(alias="to", max_length=10)] = None,
    ) -> Response:
        who = web.identify(request)
        if who is None:
            return RedirectResponse("/login", status_code=302)
        return await page(
            request,
            who,
            "page_kpis.html",
            k=await kpi_page(web, who.reach, start=start or None, end=end or None),
        )
