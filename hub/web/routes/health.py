"""Liveness, readiness, metrics, the caller's session and the hub's counters."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, PlainTextResponse

from hub.casework.access import Permission, Scope
from hub.errors import NotAllowedError, TooManyAttemptsError
from hub.health.metrics import render
from hub.steps import run_in_turns
from hub.web import models as m
from hub.web.routes.common import ERRORS, Who

if TYPE_CHECKING:
    from hub.web.api import Api


def add_health_routes(api: FastAPI, web: Api) -> None:
    @api.get("/api/health", response_model=m.HealthOut, summary="Liveness; says nothing else")
    async def health() -> dict[str, Any]:
        return {"status": "ok"}

    @api.get("/healthz", response_model=m.HealthOut, summary="Liveness: the process answers")
    async def healthz() -> dict[str, Any]:
        return {"status": "ok"}

    @api.get(
        "/readyz",
        summary="Readiness: 200 when every check passes, else 503 naming what is wrong",
        description=(
            "No token needed for the verdict and the failing checks' names. Each check's reason "
            "and the warnings (files, alert and device ids) only with a token that may read "
            "everywhere (not a grid-scoped one)."
        ),
        responses={503: {"description": "not ready: the body names every failing check"}},
    )
    async def readyz(request: Request) -> JSONResponse:
        report = web.readiness()
        # An unknown or missing token is not an error here: a probe has none and gets the verdict.
        try:
            who = web.identify(request)
        except TooManyAttemptsError:
            who = None  # the address is waiting after failed token checks: a probe's answer
        # The reasons name hub-wide things (alert and device ids of every grid, files, the
        # broker): for a token whose reading reaches every grid, not a grid worker's phone.
        details = who is not None and who.reach.scope(Permission.READ) is Scope.ALL
        return JSONResponse(report.as_json(details=details), status_code=200 if report.ready else 503)

    @api.get(
        "/metrics",
        response_class=PlainTextResponse,
        responses=ERRORS,
        summary="Prometheus text format (0.0.4), read from the hub's counters; needs a token",
    )
    async def metrics(who: Who) -> PlainTextResponse:
        families = await run_in_turns(web.metrics())
        return PlainTextResponse(render(families), media_type="text/plain; version=0.0.4; charset=utf-8")

    @api.get("/api/session", response_model=m.SessionOut, responses=ERRORS)
    async def session(who: Who) -> dict[str, Any]:
        """Who is logged in, the zone every time is shown in, and the session's CSRF token."""
        return {
            "name": who.token.name,
            "role": who.token.role.value,
            "person": who.token.person,
            "timezone": web.timezone,
            "csrf": who.session.csrf if who.session is not None else None,
        }

    @api.get("/api/stats", response_model=m.StatsOut, responses=ERRORS)
    async def stats(who: Who) -> Any:
        if not who.reach.may_ever(Permission.READ):
            raise NotAllowedError("no read access")
        return web.stats()
