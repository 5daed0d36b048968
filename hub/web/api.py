"""HTTP API and the live console (aiohttp), bound to loopback by default, auth always on.

Auth: a bearer token (``Authorization: Bearer …``) or the session cookie set by
``/login?token=…``. Tokens are configured as SHA-256 hashes; the token itself is never
stored or logged. ``/api/health`` is the only unauthenticated route and says nothing.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import hmac
import logging
from collections.abc import Awaitable, Callable, Sequence
from datetime import datetime
from importlib import resources
from typing import Any

import orjson
from aiohttp import web

from adapters.errors import LinliError
from hub.cases.model import OPEN, TERMINAL, CaseAction, Channel, TimelineEntry
from hub.casework.access import PHONE_ROLES, Actor, Permission, Scope, can
from hub.casework.service import Casework
from hub.clock import Clock, iso
from hub.community.privacy import resident_json
from hub.community.registry import Registry
from hub.config import ApiToken
from hub.errors import CaseNotFoundError, InvalidTransition, NotAllowedError
from hub.health.metrics import Family, render
from hub.health.readiness import Readiness
from hub.ingest.device_state import DeviceStates
from hub.records import alert_json
from hub.storage.store import Store
from hub.web.stream import AlertBus
from hub.web.views import community_json, device_json, event_json

log = logging.getLogger(__name__)

COOKIE = "linli_session"
SSE_KEEPALIVE_S = 15.0
_PUBLIC = frozenset({"/api/health", "/healthz", "/readyz", "/login"})
_STATIC = frozenset({"console.js", "console.css", "phone.js"})

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
IDENTITY: web.RequestKey[ApiToken] = web.RequestKey("identity", ApiToken)


def token_hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def _time_param(value: str | None, *, default: float) -> float:
    """RFC 3339 (``2026-11-01T00:00:00+08:00``) or Unix seconds."""
    if value is None:
        return default
    try:
        return float(value)
    except ValueError:
        parsed = datetime.fromisoformat(value)
        if parsed.tzinfo is None:
            raise ValueError(f"time {value!r} needs an offset, e.g. +08:00") from None
        return parsed.timestamp()


_LIGHT_RANK = {"red": 0, "yellow": 1, "green": 2}
_SEVERITY_RANK = {"critical": 0, "major": 1, "minor": 2, "info": 3}


def _urgency(view: dict[str, Any]) -> tuple[int, int, str]:
    worst = min((_LIGHT_RANK[s["light"]] for s in view["sla"] if not s["done"]), default=2)
    return worst, _SEVERITY_RANK.get(view["severity"], 9), view["filed_at"]


def _entry_json(entry: TimelineEntry) -> dict[str, Any]:
    body = entry.to_dict()
    body["ts"] = iso(entry.ts)
    return body


def _json(data: Any, *, status: int = 200) -> web.Response:
    return web.Response(body=orjson.dumps(data), status=status, content_type="application/json")


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
    ) -> None:
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
        self._closing = asyncio.Event()

    def app(self) -> web.Application:
        app = web.Application(middlewares=[self._security_headers, self._auth])
        app.router.add_get("/", self._console)
        app.router.add_get("/login", self._login)
        app.router.add_get("/static/{name}", self._static)
        app.router.add_get("/api/health", self._health)
        app.router.add_get("/healthz", self._health)
        app.router.add_get("/readyz", self._ready)
        app.router.add_get("/metrics", self._metrics_handler)
        app.router.add_get("/api/alerts", self._alerts)
        app.router.add_get("/api/alerts/{id}", self._alert)
        app.router.add_get("/api/stats", self._stats_handler)
        app.router.add_get("/api/session", self._session)
        app.router.add_get("/api/devices", self._devices)
        # Device ids may contain "/" (Zigbee2MQTT friendly names, Tasmota sub-devices).
        app.router.add_get("/api/devices/{id:.+}", self._device)
        app.router.add_get("/api/events", self._events)
        app.router.add_get("/api/community", self._community)
        app.router.add_get("/api/cases", self._cases)
        app.router.add_get("/api/cases/{id}", self._case)
        app.router.add_post("/api/cases/{id}/{action}", self._case_action)
        app.router.add_get("/api/kpis", self._kpis)
        app.router.add_post("/api/rules/reload", self._rules_reload)
        app.router.add_get("/api/notifications", self._notifications)
        if self._advance_clock is not None:
            app.router.add_post("/api/test/clock", self._test_clock)
        app.router.add_get("/m", self._phone)
        app.router.add_get("/api/stream", self._stream)
        app.on_shutdown.append(self._on_shutdown)
        return app

    async def _on_shutdown(self, app: web.Application) -> None:
        # End open event streams so the server can stop without waiting for browsers.
        self._closing.set()

    def _identify(self, request: web.Request) -> ApiToken | None:
        header = request.headers.get("Authorization", "")
        token = header[7:] if header.startswith("Bearer ") else request.cookies.get(COOKIE, "")
        if not token:
            return None
        digest = token_hash(token)
        for candidate in self._tokens:
            if hmac.compare_digest(candidate.sha256, digest):
                return candidate
        return None

    @web.middleware
    async def _auth(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        if request.path in _PUBLIC or request.path.startswith("/static/"):
            return await handler(request)
        identity = self._identify(request)
        if identity is None:
            if request.path.startswith("/api/") or request.path == "/metrics":
                return _json({"error": "unauthorized", "message": "需要登录 / login required"}, status=401)
            raise web.HTTPFound("/login")
        request[IDENTITY] = identity
        return await handler(request)

    @web.middleware
    async def _security_headers(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        response = await handler(request)
        response.headers.setdefault("Content-Security-Policy", "default-src 'self'; frame-ancestors 'none'")
        response.headers.setdefault("X-Content-Type-Options", "nosniff")
        response.headers.setdefault("Referrer-Policy", "no-referrer")
        return response

    async def _login(self, request: web.Request) -> web.StreamResponse:
        token = request.query.get("token", "")
        identity = next((t for t in self._tokens if hmac.compare_digest(t.sha256, token_hash(token))), None)
        if token and identity is not None:
            response = web.HTTPFound("/m" if identity.role in PHONE_ROLES else "/")
            response.set_cookie(COOKIE, token, httponly=True, samesite="Strict", path="/")
            raise response
        page = resources.files("hub.web.console").joinpath("login.html").read_bytes()
        status = 401 if token else 200
        return web.Response(body=page, status=status, content_type="text/html", charset="utf-8")

    async def _console(self, request: web.Request) -> web.StreamResponse:
        page = resources.files("hub.web.console").joinpath("index.html").read_bytes()
        return web.Response(body=page, content_type="text/html", charset="utf-8")

    async def _static(self, request: web.Request) -> web.StreamResponse:
        name = request.match_info["name"]
        if name not in _STATIC:
            raise web.HTTPNotFound
        body = resources.files("hub.web.console").joinpath(name).read_bytes()
        kind = "text/css" if name.endswith(".css") else "text/javascript"
        return web.Response(body=body, content_type=kind, charset="utf-8")

    async def _health(self, request: web.Request) -> web.StreamResponse:
        """Liveness: the process answers. Says nothing else (it needs no token)."""
        return _json({"status": "ok"})

    async def _ready(self, request: web.Request) -> web.StreamResponse:
        """Readiness: 200 when every check passes, else 503 naming what is wrong."""
        report = self._readiness()
        return _json(report.as_json(), status=200 if report.ready else 503)

    async def _metrics_handler(self, request: web.Request) -> web.StreamResponse:
        """Prometheus text format; needs a token (any role) like the rest of the API."""
        body = render(self._metrics())
        return web.Response(
            text=body, content_type="text/plain", charset="utf-8", headers={"X-Format": "0.0.4"}
        )

    async def _alerts(self, request: web.Request) -> web.StreamResponse:
        status = request.query.get("status")
        if status not in (None, "active", "resolved"):
            return _json({"error": "bad_request", "message": "status must be active or resolved"}, status=400)
        return _json([alert_json(a) for a in self._store.alerts(limit=self._limit(request), status=status)])

    async def _alert(self, request: web.Request) -> web.StreamResponse:
        try:
            alert = self._store.alert(int(request.match_info["id"]))
        except ValueError:
            alert = None
        if alert is None:
            return _json({"error": "not_found", "message": "没有这条告警 / no such alert"}, status=404)
        body = alert_json(alert, with_trace=True)
        body["notifications"] = self._store.notifications_for(alert.id)
        return _json(body)

    async def _session(self, request: web.Request) -> web.StreamResponse:
        """Who is logged in and the zone every time is shown in (the community's, not the browser's)."""
        identity = request[IDENTITY]
        return _json({"name": identity.name, "role": identity.role.value, "timezone": self._timezone})

    def _limit(self, request: web.Request, default: int = 100, most: int = 1000) -> int:
        try:
            return max(1, min(most, int(request.query.get("limit", str(default)))))
        except ValueError:
            raise web.HTTPBadRequest(
                body=orjson.dumps({"error": "bad_request", "message": "limit must be a number"}),
                content_type="application/json",
            ) from None

    async def _devices(self, request: web.Request) -> web.StreamResponse:
        now = self._clock.now()
        ids = [d.id for d in self._registry.devices()] + list(self._registry.unassigned)
        grid = request.query.get("grid")
        views = [device_json(self._registry, self._states, i, now=now) for i in ids]
        return _json([v for v in views if v is not None and (grid is None or v["grid"] == grid)])

    async def _device(self, request: web.Request) -> web.StreamResponse:
        view = device_json(
            self._registry, self._states, request.match_info["id"], now=self._clock.now(), detail=True
        )
        if view is None:
            return _json({"error": "not_found", "message": "没有这个设备 / no such device"}, status=404)
        return _json(view)

    async def _events(self, request: web.Request) -> web.StreamResponse:
        device_id = request.query.get("device_id")
        events = self._states.events(device_id, limit=self._limit(request))
        return _json([event_json(e) for e in events])

    async def _community(self, request: web.Request) -> web.StreamResponse:
        personal = can(request[IDENTITY].role, Permission.PERSONAL_DATA)
        return _json(
            {
                "communities": [community_json(c, personal=personal) for c in self._registry.communities],
                "unassigned_devices": [
                    {"id": d.id, "family": d.family, "first_seen": iso(d.first_seen)}
                    for d in self._registry.unassigned.values()
                ],
            }
        )

    # -- cases ---------------------------------------------------------------------------------

    def _actor(self, request: web.Request) -> Actor:
        identity = request[IDENTITY]
        return Actor(identity.person or identity.name, identity.role)

    async def _cases(self, request: web.Request) -> web.StreamResponse:
        """Open cases (or ``?state=closed``), most urgent first; ``?mine=1`` for the caller's own."""
        actor = self._actor(request)
        states = TERMINAL if request.query.get("state") == "closed" else OPEN
        assignee = actor.id if request.query.get("mine") == "1" else request.query.get("assignee")
        if not can(actor.role, Permission.READ, at_least=Scope.ALL):
            assignee = actor.id  # people outside the command centre see their own cases only
        views = self._casework.case_views(
            assignee=assignee, grid=request.query.get("grid"), states=states, limit=self._limit(request, 200)
        )
        views.sort(key=_urgency)
        return _json(views)

    async def _case(self, request: web.Request) -> web.StreamResponse:
        case = self._casework.load(request.match_info["id"])
        actor = self._actor(request)
        if case is None or (
            not can(actor.role, Permission.READ, at_least=Scope.ALL) and case.assignee != actor.id
        ):
            return _json({"error": "not_found", "message": "没有这个案件 / no such case"}, status=404)
        body = self._casework.case_json(case)
        body["timeline"] = [_entry_json(e) for e in self._casework.timeline(case.id)]
        alert = self._store.alert(case.alert_id) if case.alert_id is not None else None
        body["alert"] = alert_json(alert) if alert is not None else None
        # The elder's profile and contacts: for the assigned handler and the command centre only.
        device = self._registry.device(case.subject)
        if case.is_sos and device is not None and device.resident is not None:
            resident = self._registry.resident(device.resident)
            if resident is not None:
                body["resident"] = resident_json(resident, personal=True)
        location = device.location if device is not None else ""
        body["location"] = location
        return _json(body)

    async def _case_action(self, request: web.Request) -> web.StreamResponse:
        try:
            action = CaseAction(request.match_info["action"])
        except ValueError:
            return _json({"error": "unknown_action", "allowed": [a.value for a in CaseAction]}, status=400)
        try:
            doc = await request.json() if request.can_read_body else {}
        except ValueError:
            return _json({"error": "bad_request", "message": "body must be JSON"}, status=400)
        if not isinstance(doc, dict) or not isinstance(doc.get("data", {}), dict):
            return _json(
                {"error": "bad_request", "message": "body must be an object; data an object"}, status=400
            )
        channel = Channel.PHONE_PAGE if request.headers.get("X-Linli-Channel") == "phone" else Channel.CONSOLE
        actor = self._actor(request)
        data = dict(doc.get("data") or {})
        on_behalf_of = doc.get("on_behalf_of")
        if on_behalf_of is not None:
            # The command centre records what a person reported by phone; the person's own
            # permissions apply, and who recorded it stays in the timeline.
            if not can(actor.role, Permission.RECORD_FOR_OTHERS):
                return _json(
                    {"error": "forbidden", "message": "only the command centre records for others"},
                    status=403,
                )
            role = self._casework.role_of(str(on_behalf_of))
            if role is None:
                return _json(
                    {"error": "forbidden", "message": f"{on_behalf_of!r} is not in any roster"}, status=403
                )
            data["recorded_by"] = actor.id
            actor = Actor(str(on_behalf_of), role)
        try:
            case = self._casework.act(
                request.match_info["id"],
                action,
                actor=actor,
                channel=channel,
                note=str(doc.get("note", "")),
                data=data,
            )
        except CaseNotFoundError:
            return _json({"error": "not_found", "message": "没有这个案件 / no such case"}, status=404)
        except NotAllowedError as exc:
            return _json({"error": "forbidden", "message": str(exc)}, status=403)
        except InvalidTransition as exc:
            return _json(
                {
                    "error": "invalid_transition",
                    "message": str(exc),
                    "state": exc.state.value,
                    "action": exc.action.value,
                    "allowed": [a.value for a in exc.allowed],
                },
                status=409,
            )
        return _json(self._casework.case_json(case))

    async def _kpis(self, request: web.Request) -> web.StreamResponse:
        """结案率, 按期结案率, 返工率, 延期率 and response times from the case timelines (docs/cases.md)."""
        now = self._clock.now()
        try:
            start = _time_param(request.query.get("from"), default=now - 30 * 86400)
            end = _time_param(request.query.get("to"), default=now)
            report = self._casework.kpis(start=start, end=end)
        except ValueError as exc:
            return _json({"error": "bad_request", "message": str(exc)}, status=400)
        grid = request.query.get("grid")
        by_grid = {k: v.as_dict() for k, v in report.by_grid.items() if grid is None or k == grid}
        return _json(
            {
                "from": iso(start),
                "to": iso(end),
                "overall": report.overall.as_dict(),
                "by_grid": by_grid,
                "by_worker": {k: v.as_dict() for k, v in report.by_worker.items()},
                "by_category": {k: v.as_dict() for k, v in report.by_category.items()},
            }
        )

    async def _rules_reload(self, request: web.Request) -> web.StreamResponse:
        if not can(request[IDENTITY].role, Permission.RELOAD_RULES):
            return _json(
                {"error": "forbidden", "message": "reloading rules needs an admin or command-centre token"},
                status=403,
            )
        try:
            count = self._reload_rules()
        except LinliError as exc:
            return _json({"error": "invalid_rules", "message": str(exc)}, status=422)
        return _json({"status": "reloaded", "rules": count})

    async def _notifications(self, request: web.Request) -> web.StreamResponse:
        """Every notification attempt with its outcome (command centre only)."""
        if not can(request[IDENTITY].role, Permission.READ_NOTIFICATIONS):
            return _json({"error": "forbidden", "message": "for the command centre"}, status=403)
        try:
            since = float(request.query.get("since", "0"))
        except ValueError:
            return _json({"error": "bad_request", "message": "since must be a number"}, status=400)
        return _json(self._store.notification_log(since=since, limit=self._limit(request, 500, 10_000)))

    async def _test_clock(self, request: web.Request) -> web.StreamResponse:
        if not can(request[IDENTITY].role, Permission.ADVANCE_TEST_CLOCK) or self._advance_clock is None:
            return _json({"error": "forbidden", "message": "test clock needs an admin token"}, status=403)
        try:
            to = float((await request.json())["to"])
            now = await self._advance_clock(to)
        except (ValueError, KeyError, TypeError) as exc:
            return _json({"error": "bad_request", "message": str(exc)}, status=400)
        return _json({"now": now})

    async def _phone(self, request: web.Request) -> web.StreamResponse:
        page = resources.files("hub.web.console").joinpath("phone.html").read_bytes()
        return web.Response(body=page, content_type="text/html", charset="utf-8")

    async def _stats_handler(self, request: web.Request) -> web.StreamResponse:
        return _json(self._stats())

    async def _stream(self, request: web.Request) -> web.StreamResponse:
        """Server-sent events (text/event-stream): an ``alert`` event per alert change, a ``case`` event per case change."""
        response = web.StreamResponse(
            headers={"Content-Type": "text/event-stream", "Cache-Control": "no-cache"}
        )
        await response.prepare(request)
        listener = self._bus.subscribe()
        closing = asyncio.ensure_future(self._closing.wait())
        try:
            await response.write(b"retry: 2000\n\n")
            while not self._closing.is_set():
                getter = asyncio.ensure_future(listener.queue.get())
                done, _ = await asyncio.wait(
                    {getter, closing}, timeout=SSE_KEEPALIVE_S, return_when="FIRST_COMPLETED"
                )
                if getter not in done:
                    getter.cancel()
                    with contextlib.suppress(asyncio.CancelledError):
                        await getter
                    if listener.overflowed:
                        break
                    await response.write(b": keepalive\n\n")
                    continue
                message = getter.result()
                # One SSE event name per message type ("alert", "case"), so listeners pick theirs.
                kind = str(message.get("type", "alert")).encode()
                await response.write(b"event: " + kind + b"\ndata: " + orjson.dumps(message) + b"\n\n")
        except ConnectionResetError:
            log.debug("event stream client went away")
        finally:
            closing.cancel()
            self._bus.unsubscribe(listener)
        return response
