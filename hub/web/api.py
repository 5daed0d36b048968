"""The HTTP application (FastAPI, served in-process by uvicorn): who is asking, and the route set-up.

Who may read or do what is the access table's answer (:mod:`hub.casework.access`), asked
on every route and for every event of the stream, with the caller's :class:`Reach` (role,
and the grids and communities of the roster person the token is bound to).

Authentication: a bearer token (``Authorization: Bearer …``), or a console session made by
``POST /login`` (:mod:`hub.web.sessions`: random id in an HttpOnly SameSite=Strict cookie,
CSRF token and Origin check on every state-changing request). Tokens are configured as
SHA-256 hashes; the token itself is never stored, logged, or accepted in a URL.
``/api/health``, ``/login``, ``/static/…``, ``/docs`` and ``/openapi.json`` need no login and
say nothing about the community.

The routes live in :mod:`hub.web.routes`, one module per area, registered by
:data:`ROUTES` (a new area: one line there). Every list is paginated (``limit`` up to a maximum, ``offset``); a full page carries a
``Link: <…>; rel="next"`` header and ``X-Next-Offset``. The bodies keep their shapes.

Must not import: ``hub.app``, ``hub.cli``, ``simulators``, ``dashboards``.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

from fastapi import FastAPI, Request

from hub.casework.access import Actor, Permission, Reach, Scope, Where, needs_person
from hub.casework.service import Casework
from hub.clock import Clock
from hub.community.registry import Registry
from hub.config import ApiToken, HttpSettings
from hub.errors import ConfigError, NotAllowedError, NotAuthenticatedError
from hub.health.metrics import Family
from hub.health.readiness import Readiness
from hub.ingest.device_state import DeviceStates
from hub.records import Role
from hub.steps import Steps
from hub.storage.store import Store
from hub.web.auth_throttle import AuthThrottle, client_address
from hub.web.care import CareServices, add_care_routes
from hub.web.guard import Guard
from hub.web.routes.alerts import add_alert_routes
from hub.web.routes.cases import add_case_routes
from hub.web.routes.common import Principal
from hub.web.routes.community import add_community_routes
from hub.web.routes.console import add_console_routes
from hub.web.routes.devices import add_device_routes
from hub.web.routes.errors import add_error_handlers
from hub.web.routes.health import add_health_routes
from hub.web.routes.kpis import add_kpi_routes
from hub.web.routes.pages import add_page_routes
from hub.web.routes.stream import add_stream_routes
from hub.web.sessions import COOKIE, CSRF_HEADER, Session, Sessions, csrf_ok
from hub.web.stream import AlertBus
from rules.model import Rule

_SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})


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
            if role_of(token.name) is not None:
                # The actor of a token bound to nobody is its name: under a roster id, the desk's
                # actions would be recorded (and counted in the KPIs) as that person's work.
                raise ConfigError(
                    f"token {token.name!r} is named like a roster person but bound to nobody: rename it,"
                    " or bind it with `linli token --person <roster id>`",
                    key=f"api_tokens.{index}.name",
                )
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
        metrics: Callable[[], Steps[list[Family]]],
        rules: Callable[[], Sequence[Rule]] = tuple,
        advance_clock: Callable[[float], Awaitable[float]] | None = None,
        http: HttpSettings | None = None,
        sessions: Sessions | None = None,
        throttle: AuthThrottle | None = None,
        care: CareServices | None = None,
    ) -> None:
        self.care = care
        self.http = http or HttpSettings()
        check_tokens(tokens, casework.role_of)
        self.advance_clock = advance_clock
        self.casework = casework
        self.reload_rules = reload_rules
        #: The rules in force now (after any reload): pages read thresholds from them.
        self.rules = rules
        self.readiness = readiness
        self.metrics = metrics
        self.timezone = timezone
        self.registry = registry
        self.states = states
        self.clock = clock
        self.store = store
        self.bus = bus
        self._tokens = tuple(tokens)
        self.stats = stats
        self.sessions = sessions or Sessions(idle_s=self.http.session_idle_s, max_s=self.http.session_max_s)
        self.throttle = throttle or AuthThrottle(
            attempts=self.http.auth_attempts, refill_s=self.http.auth_refill_s
        )
        self.closing = asyncio.Event()

    def close_streams(self) -> None:
        """End open event streams so the server can stop without waiting for browsers."""
        self.closing.set()
        self.bus.close_all()

    # -- identity --------------------------------------------------------------------------

    def token_for(self, secret: str) -> ApiToken | None:
        digest = token_hash(secret)
        found = None
        for candidate in self._tokens:  # no early exit: the time taken says nothing
            if hmac.compare_digest(candidate.sha256, digest):
                found = candidate
        return found

    def principal_of(self, token: ApiToken, session: Session | None = None) -> Principal:
        actor = Actor(token.person or token.name, token.role)
        return Principal(
            token=token, reach=self.casework.reach(actor, person=token.person is not None), session=session
        )

    def client_address(self, request: Request) -> str:
        """Who a token check is counted against (:func:`hub.web.auth_throttle.client_address`)."""
        peer = request.client.host if request.client else ""
        return client_address(peer, request.headers.get("x-forwarded-for"), self.http.trusted_proxies)

    def check_token(self, request: Request, secret: str) -> ApiToken | None:
        """``secret``'s token, counted per client address: raises :class:`TooManyAttemptsError`
        while the address waits (before looking, so a hit and a miss answer alike)."""
        address = self.client_address(request)
        self.throttle.check(address)
        token = self.token_for(secret)
        if token is None:
            self.throttle.failed(address)
        return token

    def identify(self, request: Request) -> Principal | None:
        header = request.headers.get("authorization", "")
        if header:
            token = self.check_token(request, header[7:]) if header.startswith("Bearer ") else None
            return self.principal_of(token) if token is not None else None
        session = self.sessions.get(request.cookies.get(COOKIE, ""))
        return self.principal_of(session.token, session) if session is not None else None

    def https(self, request: Request) -> bool:
        if self.http.secure_cookies:
            return True
        client = request.client.host if request.client else ""
        return client in self.http.trusted_proxies and request.headers.get("x-forwarded-proto") == "https"

    def origin_ok(self, request: Request) -> bool:
        """No ``Origin`` (not a browser's cross-site request), or the hub's own, or a configured one."""
        origin = request.headers.get("origin")
        if origin is None:
            return True
        own = f"{'https' if self.https(request) else request.url.scheme}://{request.headers.get('host', '')}"
        return origin == own or origin in self.http.allowed_origins

    async def principal(self, request: Request) -> Principal:
        """Dependency of every API route: who asks; for a session's writes, Origin and CSRF too."""
        principal = self.identify(request)
        if principal is None:
            raise NotAuthenticatedError("需要登录 / login required")
        if principal.session is not None and request.method not in _SAFE_METHODS:
            if not self.origin_ok(request):
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
        add_error_handlers(api, self)
        for add_routes in ROUTES:
            add_routes(api, self)
        return Guard(api, max_body_bytes=self.http.max_body_bytes)

    # -- what several areas ask ----------------------------------------------------------

    def read_scope(self, reach: Reach) -> tuple[frozenset[str] | None, frozenset[str] | None]:
        """(grids, communities) a reader sees alerts of; ``(None, None)`` for everything."""
        scope = reach.scope(Permission.READ)
        if scope is Scope.ALL:
            return None, None
        return (
            reach.grids if scope >= Scope.GRID else frozenset(),
            reach.communities if scope >= Scope.COMMUNITY else frozenset(),
        )

    def device_where(self, device_id: str) -> Where:
        device = self.registry.device(device_id)
        if device is None:
            return Where(community=None, grid=None)
        location = self.registry.location(device_id)
        community = location.community.code if location is not None else device.grid[:12]
        return Where(community=community, grid=device.grid)


#: Every area's routes, registered in this order (pages first: ``/`` and ``/login`` before the
#: API). A new area is a module with an ``add_*_routes(api, web)`` function and ONE line here.
ROUTES: tuple[Callable[[FastAPI, Api], None], ...] = (
    add_page_routes,
    add_console_routes,
    add_health_routes,
    add_alert_routes,
    add_device_routes,
    add_community_routes,
    add_care_routes,  # issue 18: before the generic case-action route (POST …/evaluate is typed)
    add_case_routes,
    add_kpi_routes,
    add_stream_routes,
)
