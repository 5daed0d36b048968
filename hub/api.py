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
from importlib import resources
from typing import Any

import orjson
from aiohttp import web

from hub.alert_json import alert_json
from hub.bus import AlertBus
from hub.clock import Clock, iso
from hub.config import ApiToken
from hub.device_state import DeviceStates
from hub.registry import Registry
from hub.store import Store
from hub.views import PERSONAL_DATA_ROLES, community_json, device_json, event_json

log = logging.getLogger(__name__)

COOKIE = "linli_session"
SSE_KEEPALIVE_S = 15.0
_PUBLIC = frozenset({"/api/health", "/login"})
_STATIC = frozenset({"console.js", "console.css"})

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
IDENTITY: web.RequestKey[ApiToken] = web.RequestKey("identity", ApiToken)


def token_hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


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
    ) -> None:
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
        app.router.add_get("/api/alerts", self._alerts)
        app.router.add_get("/api/alerts/{id}", self._alert)
        app.router.add_get("/api/stats", self._stats_handler)
        app.router.add_get("/api/session", self._session)
        app.router.add_get("/api/devices", self._devices)
        # Device ids may contain "/" (Zigbee2MQTT friendly names, Tasmota sub-devices).
        app.router.add_get("/api/devices/{id:.+}", self._device)
        app.router.add_get("/api/events", self._events)
        app.router.add_get("/api/community", self._community)
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
            if request.path.startswith("/api/"):
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
        if token and any(hmac.compare_digest(t.sha256, token_hash(token)) for t in self._tokens):
            response = web.HTTPFound("/")
            response.set_cookie(COOKIE, token, httponly=True, samesite="Strict", path="/")
            raise response
        page = resources.files("hub.console").joinpath("login.html").read_bytes()
        status = 401 if token else 200
        return web.Response(body=page, status=status, content_type="text/html", charset="utf-8")

    async def _console(self, request: web.Request) -> web.StreamResponse:
        page = resources.files("hub.console").joinpath("index.html").read_bytes()
        return web.Response(body=page, content_type="text/html", charset="utf-8")

    async def _static(self, request: web.Request) -> web.StreamResponse:
        name = request.match_info["name"]
        if name not in _STATIC:
            raise web.HTTPNotFound
        body = resources.files("hub.console").joinpath(name).read_bytes()
        kind = "text/css" if name.endswith(".css") else "text/javascript"
        return web.Response(body=body, content_type=kind, charset="utf-8")

    async def _health(self, request: web.Request) -> web.StreamResponse:
        return _json({"status": "ok"})

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
        return _json({"name": identity.name, "role": identity.role, "timezone": self._timezone})

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
        personal = request[IDENTITY].role in PERSONAL_DATA_ROLES
        return _json(
            {
                "communities": [community_json(c, personal=personal) for c in self._registry.communities],
                "unassigned_devices": [
                    {"id": d.id, "family": d.family, "first_seen": iso(d.first_seen)}
                    for d in self._registry.unassigned.values()
                ],
            }
        )

    async def _stats_handler(self, request: web.Request) -> web.StreamResponse:
        return _json(self._stats())

    async def _stream(self, request: web.Request) -> web.StreamResponse:
        """Server-sent events: one ``alert`` event per alert change (text/event-stream)."""
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
                await response.write(b"event: alert\ndata: " + orjson.dumps(message) + b"\n\n")
        except ConnectionResetError:
            log.debug("event stream client went away")
        finally:
            closing.cancel()
            self._bus.unsubscribe(listener)
        return response
