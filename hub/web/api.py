"""HTTP API, console and phone page (FastAPI, served in-process by uvicorn), auth always on.

Who may read or do what is the access table's answer (:mod:`hub.casework.access`), asked
on every route and for every event of the stream, with the caller's :class:`Reach` (role,
and the grids and communities of the roster person the token is bound to).

Authentication: a bearer token (``Authorization: Bearer …``), or a console session made by
``POST /login`` (:mod:`hub.web.sessions`: random id in an HttpOnly SameSite=Strict cookie,
CSRF token and Origin check on every state-changing request). Tokens are configured as
SHA-256 hashes; the token itself is never stored, logged, or accepted in a URL.
``/api/health``, ``/login``, ``/static/…``, ``/docs`` and ``/openapi.json`` need no login and
say nothing about the community.

Every list is paginated (``limit`` up to a maximum, ``offset``); a full page carries a
``Link: <…>; rel="next"`` header and ``X-Next-Offset``. The bodies keep their shapes.

Must not import: ``hub.app``, ``hub.cli``, ``simulators``, ``dashboards``.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import hashlib
import hmac
import logging
import math
import socket
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from importlib import resources
from typing import Annotated, Any
from urllib.parse import parse_qs, urlencode

from fastapi import Depends, FastAPI, Path, Query, Request, Response
from fastapi.exceptions import RequestValidationError
from fastapi.responses import (
    HTMLResponse,
    JSONResponse,
    PlainTextResponse,
    RedirectResponse,
    StreamingResponse,
)
from pydantic import ValidationError
from starlette.exceptions import HTTPException as StarletteHTTPException

from adapters.errors import LinliError
from hub.cases.model import OPEN, TERMINAL, CaseAction, Channel, TimelineEntry
from hub.casework.access import PHONE_ROLES, Actor, Permission, Reach, Scope, Where, needs_person
from hub.casework.service import Casework
from hub.clock import Clock, iso
from hub.community.privacy import resident_json
from hub.community.registry import Registry
from hub.config import ApiToken, HttpSettings
from hub.errors import (
    BadRequestError,
    CaseNotFoundError,
    ConfigError,
    InvalidTransition,
    NotAllowedError,
    NotAuthenticatedError,
    NotFoundError,
    RequestError,
)
from hub.health.metrics import Family, render
from hub.health.readiness import Readiness
from hub.ingest.device_state import DeviceStates
from hub.records import Role, alert_json
from hub.storage.store import Store
from hub.web import models as m
from hub.web.guard import Guard
from hub.web.sessions import COOKIE, CSRF_HEADER, Session, Sessions, csrf_ok
from hub.web.stream import STREAM_SNDBUF, TRANSPORT_EXTENSION, AlertBus
from hub.web.views import community_json, device_json, event_json

log = logging.getLogger(__name__)

SSE_KEEPALIVE_S = 15.0
_STATIC = frozenset({"console.js", "console.css", "phone.js", "docs.js"})
_SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})

#: Largest page of each list (the console asks for 200 alerts; the log is read in bulk).
MAX_PAGE = 1000
MAX_LOG_PAGE = 10_000

_ERRORS: dict[int | str, dict[str, Any]] = {
    code: {"model": m.ErrorOut, "description": text}
    for code, text in (
        (400, "a value the API cannot read"),
        (401, "需要登录 / login required"),
        (403, "the access table refuses this"),
        (404, "nothing with that id that you may see"),
        (413, "request body too large"),
        (422, "invalid request: names the field and why"),
    )
}
_CASE_ERRORS = {**_ERRORS, 409: {"model": m.ErrorOut, "description": "the workflow refuses this action now"}}


def token_hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def check_tokens(tokens: Sequence[ApiToken], role_of: Callable[[str], Role | None]) -> None:
    """Refuse at start a token that would act for nobody or for the wrong person.

    A role whose reach depends on the person (:func:`needs_person`) needs ``person``; that
    person must be in the roster with the token's own role (a ``viewer`` token for a grid
    worker's id would otherwise read as that worker).
    """
    for index, token in enumerate(tokens):
        key = f"api_tokens.{index}.person"
        if token.person is None:
            if needs_person(token.role):
                raise ConfigError(
                    f"token {token.name!r} has role {token.role.value}, which reaches only a person's"
                    " grids, community or cases: bind it with `linli token --person <roster id>`",
                    key=key,
                )
            continue
        role = role_of(token.person)
        if role is None:
            raise ConfigError(f"token {token.name!r}: {token.person!r} is in no roster", key=key)
        if role is not token.role:
            raise ConfigError(
                f"token {token.name!r} has role {token.role.value} but {token.person!r} is"
                f" {role.value} in the roster",
                key=key,
            )


def _time_param(value: str | None, *, default: float, name: str) -> float:
    """RFC 3339 (``2026-11-01T00:00:00+08:00``) or Unix seconds, finite and within 1970–2200."""
    if value is None:
        return default
    try:
        seconds = float(value)
    except ValueError:
        try:
            parsed = datetime.fromisoformat(value)
        except ValueError:
            raise BadRequestError(f"{name}: {value!r} is neither Unix seconds nor an RFC 3339 time") from None
        if parsed.tzinfo is None:
            raise BadRequestError(f"{name}: time {value!r} needs an offset, e.g. +08:00") from None
        seconds = parsed.timestamp()
    if not math.isfinite(seconds) or not 0 <= seconds <= m.MAX_UNIX_S:
        raise BadRequestError(f"{name}: {value!r} is not a time between 1970 and 2200")
    return seconds


_LIGHT_RANK = {"red": 0, "yellow": 1, "green": 2}
_SEVERITY_RANK = {"critical": 0, "major": 1, "minor": 2, "info": 3}


def _urgency(view: dict[str, Any]) -> tuple[int, int, str]:
    worst = min((_LIGHT_RANK[s["light"]] for s in view["sla"] if not s["done"]), default=2)
    return worst, _SEVERITY_RANK.get(view["severity"], 9), view["filed_at"]


def _entry_json(entry: TimelineEntry) -> dict[str, Any]:
    body = entry.to_dict()
    body["ts"] = iso(entry.ts)
    return body


def _error(status: int, error: str, message: str, **extra: Any) -> JSONResponse:
    return JSONResponse({"error": error, "message": message, **extra}, status_code=status)


def _page(request: Request, response: Response, items: Sequence[Any], *, limit: int, offset: int) -> None:
    """A full page says where the next one starts (``Link`` and ``X-Next-Offset``)."""
    if len(items) < limit:
        return
    query = {k: v for k, v in request.query_params.items() if k != "offset"}
    following = offset + limit
    response.headers["Link"] = f'<{request.url.path}?{urlencode({**query, "offset": following})}>; rel="next"'
    response.headers["X-Next-Offset"] = str(following)


@dataclass(frozen=True, slots=True)
class Principal:
    """Who is asking: the token (from the bearer header or the session) and its reach."""

    token: ApiToken
    reach: Reach
    session: Session | None = None

    @property
    def actor(self) -> Actor:
        return self.reach.actor


async def _who(request: Request) -> Principal:
    """Dependency of every API route (module level: FastAPI resolves annotations by name)."""
    api: Api = request.app.state.linli
    return await api.principal(request)


Who = Annotated[Principal, Depends(_who)]
Limit = Annotated[int, Query(ge=1, le=MAX_PAGE, description=f"page size (at most {MAX_PAGE})")]
Offset = Annotated[int, Query(ge=0, le=10_000_000, description="where the page starts (X-Next-Offset)")]


class Api:
    def __init__(
        self,
        *,
        store: Store,
        bus: AlertBus,
        tokens: Sequence[ApiToken],
        stats: Callable[[], Any],
        timezone: str,
        registry: Registry,
        states: DeviceStates,
        clock: Clock,
        casework: Casework,
        reload_rules: Callable[[], int],
        readiness: Callable[[], Readiness],
        metrics: Callable[[], list[Family]],
        advance_clock: Callable[[float], Awaitable[float]] | None = None,
        http: HttpSettings | None = None,
        sessions: Sessions | None = None,
    ) -> None:
        self._http = http or HttpSettings()
        check_tokens(tokens, casework.role_of)
        self._advance_clock = advance_clock
        self._casework = casework
        self._reload_rules = reload_rules
        self._readiness = readiness
        self._metrics = metrics
        self._timezone = timezone
        self._registry = registry
        self._states = states
        self._clock = clock
        self._store = store
        self._bus = bus
        self._tokens = tuple(tokens)
        self._stats = stats
        self.sessions = sessions or Sessions(idle_s=self._http.session_idle_s, max_s=self._http.session_max_s)
        self._closing = asyncio.Event()

    def close_streams(self) -> None:
        """End open event streams so the server can stop without waiting for browsers."""
        self._closing.set()
        self._bus.close_all()

    # -- identity --------------------------------------------------------------------------

    def _token_for(self, secret: str) -> ApiToken | None:
        digest = token_hash(secret)
        found = None
        for candidate in self._tokens:  # no early exit: the time taken says nothing
            if hmac.compare_digest(candidate.sha256, digest):
                found = candidate
        return found

    def _principal_of(self, token: ApiToken, session: Session | None = None) -> Principal:
        actor = Actor(token.person or token.name, token.role)
        return Principal(
            token=token, reach=self._casework.reach(actor, person=token.person is not None), session=session
        )

    def _identify(self, request: Request) -> Principal | None:
        header = request.headers.get("authorization", "")
        if header:
            token = self._token_for(header[7:]) if header.startswith("Bearer ") else None
            return self._principal_of(token) if token is not None else None
        session = self.sessions.get(request.cookies.get(COOKIE, ""))
        return self._principal_of(session.token, session) if session is not None else None

    def _https(self, request: Request) -> bool:
        if self._http.secure_cookies:
            return True
        client = request.client.host if request.client else ""
        return client in self._http.trusted_proxies and request.headers.get("x-forwarded-proto") == "https"

    def _origin_ok(self, request: Request) -> bool:
        """No ``Origin`` (not a browser's cross-site request), or the hub's own, or a configured one."""
        origin = request.headers.get("origin")
        if origin is None:
            return True
        own = f"{'https' if self._https(request) else request.url.scheme}://{request.headers.get('host', '')}"
        return origin == own or origin in self._http.allowed_origins

    async def principal(self, request: Request) -> Principal:
        """Dependency of every API route: who asks; for a session's writes, Origin and CSRF too."""
        principal = self._identify(request)
        if principal is None:
            raise NotAuthenticatedError("需要登录 / login required")
        if principal.session is not None and request.method not in _SAFE_METHODS:
            if not self._origin_ok(request):
                raise NotAllowedError("请求来源不符 / cross-origin request refused")
            if not csrf_ok(principal.session, request.headers.get(CSRF_HEADER)):
                raise NotAllowedError(f"缺少或错误的 {CSRF_HEADER} / missing or wrong CSRF token")
        return principal

    # -- the application -------------------------------------------------------------------

    def app(self) -> Guard:
        """The ASGI application: FastAPI inside the guard (body limit, security headers)."""
        api = FastAPI(
            title="Linli 邻里 hub API",
            version="1",
            description="邻里智慧社区 — alerts, cases, devices of a community. Auth: `Authorization: Bearer <token>`.",
            docs_url=None,
            redoc_url=None,
            openapi_url="/openapi.json",
        )
        api.state.linli = self
        self._errors(api)
        self._pages(api)
        self._routes(api)
        return Guard(api, max_body_bytes=self._http.max_body_bytes)

    def _errors(self, api: FastAPI) -> None:
        @api.exception_handler(RequestValidationError)
        async def invalid(request: Request, exc: RequestValidationError) -> JSONResponse:
            # Never echo the input back: it may be what cannot be encoded (inf, bytes).
            errors = [
                {
                    "loc": [str(p) for p in e.get("loc", ())],
                    "msg": str(e.get("msg", "")),
                    "type": e.get("type"),
                }
                for e in exc.errors()
            ]
            first = errors[0] if errors else {"loc": [], "msg": "invalid"}
            where = ".".join(first["loc"][1:] if len(first["loc"]) > 1 else first["loc"])
            return _error(
                422, "invalid_request", f"请求无效 / invalid request: {where}: {first['msg']}", detail=errors
            )

        @api.exception_handler(StarletteHTTPException)
        async def http_error(request: Request, exc: StarletteHTTPException) -> Response:
            # The framework's own refusals (unknown route, wrong method, unreadable body) in our shape.
            codes = {400: "bad_request", 404: "not_found", 405: "method_not_allowed"}
            return JSONResponse(
                {"error": codes.get(exc.status_code, "error"), "message": str(exc.detail)},
                status_code=exc.status_code,
                headers=exc.headers,
            )

        @api.exception_handler(RequestError)
        async def refused(request: Request, exc: RequestError) -> Response:
            status = {NotAuthenticatedError: 401, NotFoundError: 404}.get(type(exc), 400)
            return _error(status, exc.error, exc.message)

        @api.exception_handler(NotAllowedError)
        async def forbidden(request: Request, exc: NotAllowedError) -> JSONResponse:
            return _error(403, "forbidden", str(exc))

        @api.exception_handler(CaseNotFoundError)
        async def no_case(request: Request, exc: CaseNotFoundError) -> JSONResponse:
            return _error(404, "not_found", "没有这个案件 / no such case")

        @api.exception_handler(InvalidTransition)
        async def invalid_transition(request: Request, exc: InvalidTransition) -> JSONResponse:
            return _error(
                409,
                "invalid_transition",
                str(exc),
                state=exc.state.value,
                action=exc.action.value,
                allowed=[a.value for a in exc.allowed],
            )

    # -- pages -----------------------------------------------------------------------------

    @staticmethod
    def _asset(name: str) -> bytes:
        return resources.files("hub.web.console").joinpath(name).read_bytes()

    def _login_page(self, status: int = 200, message: str = "") -> HTMLResponse:
        page = self._asset("login.html").decode()
        if message:
            page = page.replace("<!--message-->", f'<p class="error" role="alert">{message}</p>')
        return HTMLResponse(page, status_code=status)

    def _pages(self, api: FastAPI) -> None:
        hidden: dict[str, Any] = {"include_in_schema": False}

        @api.get("/", **hidden)
        async def console(request: Request) -> Response:
            if self._identify(request) is None:
                return RedirectResponse("/login", status_code=302)
            return HTMLResponse(self._asset("index.html"))

        @api.get("/m", **hidden)
        async def phone(request: Request) -> Response:
            if self._identify(request) is None:
                return RedirectResponse("/login", status_code=302)
            return HTMLResponse(self._asset("phone.html"))

        @api.get("/login", **hidden)
        async def login_page(request: Request) -> Response:
            if "token" in request.query_params:
                # Finding 4: a token in a URL stays in history, logs and Referer headers.
                return self._login_page(
                    400,
                    "网址中的令牌不再被接受,请在下方输入。/ Tokens in URLs are no longer accepted: enter it below.",
                )
            return self._login_page()

        login_body = {
            "required": True,
            "content": {
                "application/json": {"schema": m.LoginIn.model_json_schema()},
                "application/x-www-form-urlencoded": {"schema": m.LoginIn.model_json_schema()},
            },
        }

        @api.post(
            "/login",
            response_model=m.LoginOut,
            responses={
                **_ERRORS,
                # A form login answers a person: the login page again, with the reason.
                401: {"model": m.ErrorOut, "content": {"text/html": {"schema": {"type": "string"}}}},
                422: {"model": m.ErrorOut, "content": {"text/html": {"schema": {"type": "string"}}}},
                303: {"description": "form login: to the console or phone page"},
            },
            openapi_extra={"requestBody": login_body},
            summary="Log in with a token (JSON or form); sets the session cookie",
        )
        async def login(request: Request) -> Response:
            form = request.headers.get("content-type", "").startswith("application/x-www-form-urlencoded")
            if not self._origin_ok(request):
                return _error(403, "forbidden", "请求来源不符 / cross-origin request refused")
            raw = await request.body()
            try:
                if form:
                    fields = parse_qs(raw.decode("utf-8", "replace"), max_num_fields=4)
                    body = m.LoginIn(token=(fields.get("token") or [""])[0])
                else:
                    body = m.LoginIn.model_validate_json(raw)
            except (ValidationError, ValueError):
                if form:
                    return self._login_page(422, "请输入令牌 / enter your token")
                return _error(422, "invalid_request", '请求无效 / body must be {"token": "…"}')
            token = self._token_for(body.token)
            if token is None:
                if form:
                    return self._login_page(401, "令牌无效 / invalid token")
                return _error(401, "unauthorized", "令牌无效 / invalid token")
            session = self.sessions.open(token)
            landing = "/m" if token.role in PHONE_ROLES else "/"
            response: Response
            if form:
                response = RedirectResponse(landing, status_code=303)
            else:
                out = m.LoginOut(name=token.name, role=token.role.value, next=landing, csrf=session.csrf)
                response = JSONResponse(out.model_dump())
            response.set_cookie(
                COOKIE,
                session.id,
                max_age=int(self._http.session_max_s),
                httponly=True,
                samesite="strict",
                secure=self._https(request),
                path="/",
            )
            log.info("console login: %s (%s)", token.name, token.role.value)
            return response

        @api.post("/logout", responses=_ERRORS, summary="End the console session")
        async def logout(request: Request, principal: Who) -> Response:
            if principal.session is not None:
                self.sessions.close(principal.session.id)
            response = JSONResponse({"status": "logged_out"})
            response.delete_cookie(
                COOKIE, path="/", httponly=True, samesite="strict", secure=self._https(request)
            )
            return response

        @api.get("/static/{name}", **hidden)
        async def static(name: str) -> Response:
            if name not in _STATIC:
                return _error(404, "not_found", "no such file")
            kind = "text/css" if name.endswith(".css") else "text/javascript"
            return Response(self._asset(name), media_type=f"{kind}; charset=utf-8")

        @api.get("/docs", **hidden)
        async def docs() -> HTMLResponse:
            return HTMLResponse(self._asset("docs.html"))

        @api.get("/docs/static/{name}", **hidden)
        async def docs_asset(name: str) -> Response:
            """Swagger UI from the swagger-ui-bundle wheel: /docs works with no Internet (no CDN)."""
            if name not in ("swagger-ui-bundle.js", "swagger-ui.css"):
                return _error(404, "not_found", "no such file")
            path = resources.files("swagger_ui_bundle").joinpath("vendor")
            folder = next(p for p in path.iterdir() if p.name.startswith("swagger-ui"))
            kind = "text/css" if name.endswith(".css") else "text/javascript"
            return Response(folder.joinpath(name).read_bytes(), media_type=f"{kind}; charset=utf-8")

    # -- the API ---------------------------------------------------------------------------

    def _read_scope(self, reach: Reach) -> tuple[frozenset[str] | None, frozenset[str] | None]:
        """(grids, communities) a reader sees alerts of; ``(None, None)`` for everything."""
        scope = reach.scope(Permission.READ)
        if scope is Scope.ALL:
            return None, None
        return (
            reach.grids if scope >= Scope.GRID else frozenset(),
            reach.communities if scope >= Scope.COMMUNITY else frozenset(),
        )

    @staticmethod
    def _may(reach: Reach, action: Permission, community: str, grid: str | None) -> bool:
        return reach.allows(action, Where(community=community, grid=grid))

    def _device_where(self, device_id: str) -> Where:
        device = self._registry.device(device_id)
        if device is None:
            return Where(community=None, grid=None)
        location = self._registry.location(device_id)
        community = location.community.code if location is not None else device.grid[:12]
        return Where(community=community, grid=device.grid)

    def _routes(self, api: FastAPI) -> None:  # noqa: PLR0915 - one closure per route
        @api.get("/api/health", response_model=m.HealthOut, summary="Liveness; says nothing else")
        async def health() -> dict[str, Any]:
            return {"status": "ok"}

        @api.get("/healthz", response_model=m.HealthOut, summary="Liveness: the process answers")
        async def healthz() -> dict[str, Any]:
            return {"status": "ok"}

        @api.get(
            "/readyz",
            summary="Readiness: 200 when every check passes, else 503 naming what is wrong",
            responses={503: {"description": "not ready: the body names every failing check"}},
        )
        async def readyz() -> JSONResponse:
            report = self._readiness()
            return JSONResponse(report.as_json(), status_code=200 if report.ready else 503)

        @api.get(
            "/metrics",
            response_class=PlainTextResponse,
            responses=_ERRORS,
            summary="Prometheus text format (0.0.4), read from the hub's counters; needs a token",
        )
        async def metrics(who: Who) -> PlainTextResponse:
            return PlainTextResponse(
                render(self._metrics()), media_type="text/plain; version=0.0.4; charset=utf-8"
            )

        @api.get("/api/session", response_model=m.SessionOut, responses=_ERRORS)
        async def session(who: Who) -> dict[str, Any]:
            """Who is logged in, the zone every time is shown in, and the session's CSRF token."""
            return {
                "name": who.token.name,
                "role": who.token.role.value,
                "person": who.token.person,
                "timezone": self._timezone,
                "csrf": who.session.csrf if who.session is not None else None,
            }

        @api.get("/api/alerts", response_model=list[m.AlertOut], responses=_ERRORS)
        async def alerts(
            *,
            request: Request,
            response: Response,
            who: Who,
            status: Annotated[str | None, Query(pattern="^(active|resolved)$")] = None,
            limit: Limit = 100,
            offset: Offset = 0,
        ) -> list[dict[str, Any]]:
            """Alerts newest first, those of the grids/community the caller covers."""
            grids, communities = self._read_scope(who.reach)
            found = self._store.alerts(
                limit=limit, offset=offset, status=status, grids=grids, communities=communities
            )
            _page(request, response, found, limit=limit, offset=offset)
            return [alert_json(a) for a in found]

        @api.get("/api/alerts/{alert_id}", response_model=m.AlertDetailOut, responses=_ERRORS)
        async def alert(who: Who, alert_id: Annotated[int, Path(ge=1, le=m.MAX_ID)]) -> dict[str, Any]:
            """One alert; its trace needs ``personal_data``, who was told ``read_notifications``."""
            found = self._store.alert(alert_id)
            where = Where(community=found.community, grid=found.grid) if found else None
            if found is None or where is None or not who.reach.allows(Permission.READ, where):
                raise NotFoundError("没有这条告警 / no such alert")
            body = alert_json(found, with_trace=who.reach.allows(Permission.PERSONAL_DATA, where))
            body.setdefault("trace", {})
            told = who.reach.allows(Permission.READ_NOTIFICATIONS, where)
            body["notifications"] = self._store.notifications_for(found.id) if told else []
            return body

        @api.get("/api/stats", response_model=m.StatsOut, responses=_ERRORS)
        async def stats(who: Who) -> Any:
            if not who.reach.may_ever(Permission.READ):
                raise NotAllowedError("no read access")
            return self._stats()

        @api.get("/api/devices", response_model=list[m.DeviceOut], responses=_ERRORS)
        async def devices(
            *,
            request: Request,
            response: Response,
            who: Who,
            grid: Annotated[str | None, Query(max_length=32)] = None,
            limit: Limit = 200,
            offset: Offset = 0,
        ) -> list[dict[str, Any]]:
            """Registered devices, then unknown ones; those the caller may read, a page at a time."""
            now = self._clock.now()
            ids = [d.id for d in self._registry.devices()] + list(self._registry.unassigned)
            chosen: list[str] = []
            skipped = 0
            for device_id in ids:
                where = self._device_where(device_id)
                if (grid is not None and where.grid != grid) or not who.reach.allows(Permission.READ, where):
                    continue
                if skipped < offset:
                    skipped += 1
                    continue
                chosen.append(device_id)
                if len(chosen) >= limit:
                    break
            views = [
                device_json(
                    self._registry,
                    self._states,
                    i,
                    now=now,
                    locations=who.reach.allows(Permission.LOCATIONS, self._device_where(i)),
                )
                for i in chosen
            ]
            _page(request, response, chosen, limit=limit, offset=offset)
            return [v for v in views if v is not None]

        @api.get("/api/devices/{device_id:path}", response_model=m.DeviceDetailOut, responses=_ERRORS)
        async def device(who: Who, device_id: Annotated[str, Path(max_length=256)]) -> dict[str, Any]:
            """One device; ids may contain ``/`` (Zigbee2MQTT friendly names, Tasmota sub-devices)."""
            where = self._device_where(device_id)
            view = None
            if who.reach.allows(Permission.READ, where):
                view = device_json(
                    self._registry,
                    self._states,
                    device_id,
                    now=self._clock.now(),
                    detail=True,
                    locations=who.reach.allows(Permission.LOCATIONS, where),
                )
            if view is None:
                raise NotFoundError("没有这个设备 / no such device")
            return view

        @api.get("/api/events", response_model=list[m.EventOut], responses=_ERRORS)
        async def events(
            *,
            request: Request,
            response: Response,
            who: Who,
            device_id: Annotated[str | None, Query(max_length=256)] = None,
            limit: Limit = 100,
            offset: Offset = 0,
        ) -> list[dict[str, Any]]:
            """Recent device events, most recent first, of devices the caller may read."""

            def readable(device: str) -> bool:
                return who.reach.allows(Permission.READ, self._device_where(device))

            found = self._states.events(device_id, limit=limit, offset=offset, include=readable)
            _page(request, response, found, limit=limit, offset=offset)
            return [event_json(e) for e in found]

        @api.get(
            "/api/community",
            response_model=m.CommunityTreeOut,
            response_model_exclude_unset=True,
            responses=_ERRORS,
        )
        async def community(who: Who) -> dict[str, Any]:
            """The grids the caller may read; residents whole only where ``personal_data`` reaches."""
            reach = who.reach

            def where(code: str, grid: str | None) -> Where:
                return Where(community=code, grid=grid)

            trees = []
            for c in self._registry.communities:
                tree = community_json(
                    c,
                    personal=functools.partial(self._may, reach, Permission.PERSONAL_DATA, c.code),
                    visible=functools.partial(self._may, reach, Permission.READ, c.code),
                    staff_names=reach.may_ever(Permission.PERSONAL_DATA),
                )
                if tree["grids"] or reach.allows(Permission.READ, where(c.code, None)):
                    trees.append(tree)
            everything = reach.scope(Permission.READ) is Scope.ALL
            unassigned = [
                {"id": d.id, "family": d.family, "first_seen": iso(d.first_seen)}
                for d in list(self._registry.unassigned.values())[:MAX_PAGE]
            ]
            return {"communities": trees, "unassigned_devices": unassigned if everything else []}

        # -- cases ---------------------------------------------------------------------------

        @api.get("/api/cases", response_model=list[m.CaseOut], responses=_ERRORS)
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
        ) -> list[dict[str, Any]]:
            """Open cases (or ``?state=closed``) the caller may read, most urgent first within a page.

            ``?mine=1`` for the caller's own. Pages go newest-filed first.
            """
            actor = who.actor
            states = TERMINAL if state == "closed" else OPEN
            views = self._casework.case_views(
                assignee=actor.id if mine == "1" else assignee,
                grid=grid,
                states=states,
                limit=limit,
                offset=offset,
                visible=self._casework.case_filter(who.reach, Permission.READ),
            )
            _page(request, response, views, limit=limit, offset=offset)
            views.sort(key=_urgency)
            return views

        @api.get(
            "/api/cases/{case_id}",
            response_model=m.CaseDetailOut,
            response_model_exclude_unset=True,
            responses=_ERRORS,
        )
        async def case(who: Who, case_id: Annotated[str, Path(max_length=64)]) -> dict[str, Any]:
            """A case with its timeline; the elder's profile for whom ``personal_data`` reaches it."""
            found = self._casework.load(case_id)
            where = self._casework.where_of(found) if found is not None else None
            if found is None or where is None or not who.reach.allows(Permission.READ, where):
                raise NotFoundError("没有这个案件 / no such case")
            body = self._casework.case_json(found)
            body["timeline"] = [_entry_json(e) for e in self._casework.timeline(found.id)]
            alert_row = self._store.alert(found.alert_id) if found.alert_id is not None else None
            body["alert"] = alert_json(alert_row) if alert_row is not None else None
            device = self._registry.device(found.subject)
            if found.is_sos and device is not None and device.resident is not None:
                resident = self._registry.resident(device.resident)
                if resident is not None and who.reach.allows(Permission.PERSONAL_DATA, where):
                    body["resident"] = resident_json(resident, personal=True)
            located = device is not None and who.reach.allows(Permission.LOCATIONS, where)
            body["location"] = device.location if device is not None and located else ""
            return body

        @api.post("/api/cases/{case_id}/{action}", response_model=m.CaseOut, responses=_CASE_ERRORS)
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
                return _error(
                    400, "unknown_action", f"unknown action {action!r}", allowed=[a.value for a in CaseAction]
                )
            body = body or m.CaseActionIn()
            phone = request.headers.get("x-linli-channel") == "phone"
            channel = Channel.PHONE_PAGE if phone else Channel.CONSOLE
            actor = who.actor
            data = body.data.model_dump(mode="json", exclude_none=True)
            if body.on_behalf_of is not None:
                # The command centre records what a person reported by phone; the person's own
                # permissions apply, and who recorded it stays in the timeline.
                if not who.reach.may_ever(Permission.RECORD_FOR_OTHERS):
                    raise NotAllowedError("only the command centre records for others")
                role = self._casework.role_of(body.on_behalf_of)
                if role is None:
                    raise NotAllowedError(f"{body.on_behalf_of!r} is not in any roster")
                found = self._casework.load(case_id)
                if found is None:
                    raise CaseNotFoundError(case_id)
                if not who.reach.allows(Permission.RECORD_FOR_OTHERS, self._casework.where_of(found)):
                    raise NotAllowedError(f"{actor.id} may not record for others on case {case_id}")
                data["recorded_by"] = actor.id
                actor = Actor(body.on_behalf_of, role)
            elif who.token.person is None and needs_person(actor.role):
                raise NotAllowedError("this token is bound to no person")
            updated = self._casework.act(
                case_id, chosen, actor=actor, channel=channel, note=body.note, data=data
            )
            return self._casework.case_json(updated)

        @api.get("/api/kpis", response_model=m.KpiOut, responses=_ERRORS)
        async def kpis(
            who: Who,
            start: Annotated[str | None, Query(alias="from", max_length=40)] = None,
            end: Annotated[str | None, Query(alias="to", max_length=40)] = None,
            grid: Annotated[str | None, Query(max_length=32)] = None,
        ) -> dict[str, Any]:
            """结案率, 按期结案率, 返工率, 延期率 and response times over the cases the caller may read."""
            now = self._clock.now()
            lo = _time_param(start, default=max(0.0, now - 30 * 86400), name="from")
            hi = _time_param(end, default=now, name="to")
            reach = who.reach
            if not reach.may_ever(Permission.READ):
                raise NotAllowedError("no read access")
            everything = reach.scope(Permission.READ) is Scope.ALL
            try:
                report = self._casework.kpis(
                    start=lo,
                    end=hi,
                    include=None if everything else lambda w: reach.allows(Permission.READ, w),
                )
            except ValueError as exc:
                raise BadRequestError(str(exc)) from None
            by_grid = {k: v.as_dict() for k, v in report.by_grid.items() if grid is None or k == grid}
            staff = reach.may_ever(Permission.STAFF_KPIS)
            return {
                "from": iso(lo),
                "to": iso(hi),
                "overall": report.overall.as_dict(),
                "by_grid": by_grid,
                "by_worker": {k: v.as_dict() for k, v in report.by_worker.items()} if staff else {},
                "by_category": {k: v.as_dict() for k, v in report.by_category.items()},
            }

        @api.post("/api/rules/reload", response_model=m.ReloadOut, responses=_ERRORS)
        async def rules_reload(who: Who) -> Any:
            if not who.reach.may_ever(Permission.RELOAD_RULES):
                raise NotAllowedError("reloading rules needs an admin or command-centre token")
            try:
                count = self._reload_rules()
            except LinliError as exc:
                return _error(422, "invalid_rules", str(exc))
            return {"status": "reloaded", "rules": count}

        @api.get("/api/notifications", response_model=list[m.NotificationLogRow], responses=_ERRORS)
        async def notifications(
            *,
            request: Request,
            response: Response,
            who: Who,
            since: Annotated[float, Query(ge=0, le=m.MAX_UNIX_S, allow_inf_nan=False)] = 0.0,
            limit: Annotated[int, Query(ge=1, le=MAX_LOG_PAGE)] = 500,
            offset: Offset = 0,
        ) -> list[dict[str, Any]]:
            """Every notification attempt with its outcome (the desk: command centre, duty officers)."""
            scope = who.reach.scope(Permission.READ_NOTIFICATIONS)
            if scope is Scope.NONE:
                raise NotAllowedError("for the command centre and duty officers")
            communities = None if scope is Scope.ALL else who.reach.communities
            rows = self._store.notification_log(
                since=since, limit=limit, offset=offset, communities=communities
            )
            _page(request, response, rows, limit=limit, offset=offset)
            return rows

        if self._advance_clock is not None:
            advance = self._advance_clock

            @api.post("/api/test/clock", response_model=m.ClockOut, responses=_ERRORS)
            async def test_clock(who: Who, body: m.ClockIn) -> Any:
                """Scenario testing on a manual clock only."""
                if not who.reach.may_ever(Permission.ADVANCE_TEST_CLOCK):
                    raise NotAllowedError("test clock needs an admin token")
                if body.to - self._clock.now() > 31 * 86400:
                    # Each step runs every rule timer and escalation due: years would block the hub.
                    raise BadRequestError("the test clock moves at most 31 days per call")
                try:
                    return {"now": await advance(body.to)}
                except ValueError as exc:
                    raise BadRequestError(str(exc)) from None

        @api.get(
            "/api/stream",
            response_class=StreamingResponse,
            responses={
                **_ERRORS,
                200: {"content": {"text/event-stream": {"schema": {"type": "string"}}}},
            },
        )
        async def stream(request: Request, who: Who) -> StreamingResponse:
            """Server-sent events: ``alert`` and ``case`` changes the caller may read, nothing else."""
            return StreamingResponse(
                self._events_for(who.reach, request.scope.get("extensions", {}).get(TRANSPORT_EXTENSION)),
                media_type="text/event-stream",
                headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
            )

    def _visible(self, reach: Reach, message: dict[str, Any]) -> bool:
        """The access table's answer for one event of the stream (finding 2: before, everyone got all)."""
        kind = message.get("type")
        body = message.get("case" if kind == "case" else "alert")
        if not isinstance(body, dict):
            return False
        where = Where(community=body.get("community"), grid=body.get("grid"), assignee=body.get("assignee"))
        if reach.allows(Permission.READ, where):
            return True
        if kind == "case" and reach.scope(Permission.READ) >= Scope.ASSIGNED:
            told = self._casework.cases.told(str(body.get("id")))
            return reach.allows(Permission.READ, Where(where.community, where.grid, where.assignee, told))
        return False

    async def _events_for(self, reach: Reach, transport: Any) -> AsyncIterator[bytes]:
        """The stream of one client; it ends when the client falls behind (the bus drops it).

        ``transport`` (from the HTTP server) lets a drop abort the socket even while a write to
        it waits for a client that stopped reading; without it (another ASGI server) the stream
        ends at its next write.
        """
        if transport is not None:
            with contextlib.suppress(OSError, AttributeError):
                transport.get_extra_info("socket").setsockopt(
                    socket.SOL_SOCKET, socket.SO_SNDBUF, STREAM_SNDBUF
                )
        listener = self._bus.subscribe(on_drop=transport.abort if transport is not None else lambda: None)
        if self._closing.is_set():
            listener.closed = True
        try:
            yield b"retry: 2000\n\n"
            while not (listener.closed or listener.dropped):
                batch = await self._bus.next_batch(listener, idle_s=SSE_KEEPALIVE_S)
                if listener.closed or listener.dropped:
                    break
                if not batch:
                    yield b": keepalive\n\n"
                    continue
                visible = functools.partial(self._visible, reach)
                frames = [e.frame for e in batch if e.visible_to(reach, visible)]
                if frames:
                    yield b"".join(frames)
                    await asyncio.sleep(self._bus.pace())  # what arrives meanwhile goes in one write
        finally:
            self._bus.unsubscribe(listener)
