"""Alerts, the notification log, rule reloads and (on a manual clock) the test clock."""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated, Any

from fastapi import FastAPI, Path, Query, Request, Response
from pydantic import TypeAdapter

from adapters.errors import LinliError
from hub.casework.access import Permission, Scope, Where
from hub.errors import BadRequestError, NotAllowedError, NotFoundError
from hub.records import alert_json
from hub.web import models as m
from hub.web.routes.common import ERRORS, MAX_LOG_PAGE, Limit, Offset, Who, error, page, rows_in_turns

if TYPE_CHECKING:
    from hub.web.api import Api

_ALERT_LIST: TypeAdapter[list[m.AlertOut]] = TypeAdapter(list[m.AlertOut])
_LOG: TypeAdapter[list[m.NotificationLogRow]] = TypeAdapter(list[m.NotificationLogRow])


def add_alert_routes(api: FastAPI, web: Api) -> None:
    @api.get("/api/alerts", response_model=list[m.AlertOut], responses=ERRORS)
    async def alerts(
        *,
        request: Request,
        response: Response,
        who: Who,
        status: Annotated[str | None, Query(pattern="^(active|resolved)$")] = None,
        limit: Limit = 100,
        offset: Offset = 0,
    ) -> Response:
        """Alerts newest first, those of the grids/community the caller covers."""
        grids, communities = web.read_scope(who.reach)
        found = web.store.alerts(
            limit=limit, offset=offset, status=status, grids=grids, communities=communities
        )
        page(request, response, found, limit=limit, offset=offset)
        return await rows_in_turns(response, [alert_json(a) for a in found], _ALERT_LIST)

    @api.get("/api/alerts/{alert_id}", response_model=m.AlertDetailOut, responses=ERRORS)
    async def alert(who: Who, alert_id: Annotated[int, Path(ge=1, le=m.MAX_ID)]) -> dict[str, Any]:
        """One alert; its trace needs ``personal_data``, who was told ``read_notifications``."""
        found = web.store.alert(alert_id)
        where = Where(community=found.community, grid=found.grid) if found else None
        if found is None or where is None or not who.reach.allows(Permission.READ, where):
            raise NotFoundError("没有这条告警 / no such alert")
        body = alert_json(found, with_trace=who.reach.allows(Permission.PERSONAL_DATA, where))
        body.setdefault("trace", {})
        told = who.reach.allows(Permission.READ_NOTIFICATIONS, where)
        body["notifications"] = web.store.notifications_for(found.id) if told else []
        return body

    @api.post("/api/rules/reload", response_model=m.ReloadOut, responses=ERRORS)
    async def rules_reload(who: Who) -> Any:
        if not who.reach.may_ever(Permission.RELOAD_RULES):
            raise NotAllowedError("reloading rules needs an admin or command-centre token")
        try:
            count = web.reload_rules()
        except LinliError as exc:
            return error(422, "invalid_rules", str(exc))
        return {"status": "reloaded", "rules": count}

    @api.get("/api/notifications", response_model=list[m.NotificationLogRow], responses=ERRORS)
    async def notifications(
        *,
        request: Request,
        response: Response,
        who: Who,
        since: Annotated[float, Query(ge=0, le=m.MAX_UNIX_S, allow_inf_nan=False)] = 0.0,
        limit: Annotated[int, Query(ge=1, le=MAX_LOG_PAGE)] = 500,
        offset: Offset = 0,
    ) -> Response:
        """Every notification attempt with its outcome (the desk: command centre, duty officers)."""
        scope = who.reach.scope(Permission.READ_NOTIFICATIONS)
        if scope is Scope.NONE:
            raise NotAllowedError("for the command centre and duty officers")
        communities = None if scope is Scope.ALL else who.reach.communities
        rows = web.store.notification_log(since=since, limit=limit, offset=offset, communities=communities)
        page(request, response, rows, limit=limit, offset=offset)
        return await rows_in_turns(response, rows, _LOG)

    if web.advance_clock is not None:
        advance = web.advance_clock

        @api.get("/api/test/clock", response_model=m.ClockOut, responses=ERRORS)
        async def read_test_clock(who: Who) -> Any:
            """The hub's time, for a scenario to start from (a test clock or the demo's)."""
            if not who.reach.may_ever(Permission.ADVANCE_TEST_CLOCK):
                raise NotAllowedError("test clock needs an admin token")
            return {"now": web.clock.now()}

        @api.post("/api/test/clock", response_model=m.ClockOut, responses=ERRORS)
        async def test_clock(who: Who, body: m.ClockIn) -> Any:
            """Scenario testing: a manual clock, or the demo's (forward only); never a production hub's."""
            if not who.reach.may_ever(Permission.ADVANCE_TEST_CLOCK):
                raise NotAllowedError("test clock needs an admin token")
            if body.to - web.clock.now() > 31 * 86400:
                # Each step runs every rule timer and escalation due: years would block the hub.
                raise BadRequestError("the test clock moves at most 31 days per call")
            try:
                return {"now": await advance(body.to)}
            except ValueError as exc:
                raise BadRequestError(str(exc)) from None
