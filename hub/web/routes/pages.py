"""Login, logout, the phone page, the static files and the offline ``/docs`` (console pages: :mod:`.console`)."""

from __future__ import annotations

import logging
from importlib import resources
from typing import TYPE_CHECKING
from urllib.parse import parse_qs

from fastapi import FastAPI, Request, Response
from fastapi.responses import HTMLResponse, JSONResponse, RedirectResponse
from pydantic import ValidationError
from starlette.requests import ClientDisconnect

from hub.casework.access import PHONE_ROLES
from hub.errors import TooManyAttemptsError
from hub.web import models as m
from hub.web.routes.common import ERRORS, HIDDEN, Who, error, retry_after
from hub.web.sessions import COOKIE

if TYPE_CHECKING:
    from hub.web.api import Api

log = logging.getLogger(__name__)

STATIC = frozenset({"console.css", "pages.css", "live.js", "phone.js", "docs.js"})
#: The console's own files hold no personal data: a browser may keep them a few minutes (every
#: other answer is ``no-store``, hub.web.guard).
STATIC_CACHE = {"Cache-Control": "public, max-age=300"}


def asset(name: str) -> bytes:
    return resources.files("hub.web.console").joinpath(name).read_bytes()


def login_page(status: int = 200, message: str = "") -> HTMLResponse:
    text = asset("login.html").decode()
    if message:
        text = text.replace("<!--message-->", f'<p class="error" role="alert">{message}</p>')
    return HTMLResponse(text, status_code=status)


def add_page_routes(api: FastAPI, web: Api) -> None:
    @api.get("/m", **HIDDEN)
    async def phone(request: Request) -> Response:
        if web.identify(request) is None:
            return RedirectResponse("/login", status_code=302)
        return HTMLResponse(asset("phone.html"))

    add_login_routes(api, web)

    @api.get("/static/{name}", **HIDDEN)
    async def static(name: str) -> Response:
        if name not in STATIC:
            return error(404, "not_found", "no such file")
        kind = "text/css" if name.endswith(".css") else "text/javascript"
        return Response(asset(name), media_type=f"{kind}; charset=utf-8", headers=STATIC_CACHE)

    @api.get("/docs", **HIDDEN)
    async def docs() -> HTMLResponse:
        return HTMLResponse(asset("docs.html"))

    @api.get("/docs/static/{name}", **HIDDEN)
    async def docs_asset(name: str) -> Response:
        """Swagger UI from the swagger-ui-bundle wheel: /docs works with no Internet (no CDN)."""
        if name not in ("swagger-ui-bundle.js", "swagger-ui.css"):
            return error(404, "not_found", "no such file")
        path = resources.files("swagger_ui_bundle").joinpath("vendor")
        folder = next(p for p in path.iterdir() if p.name.startswith("swagger-ui"))
        kind = "text/css" if name.endswith(".css") else "text/javascript"
        return Response(
            folder.joinpath(name).read_bytes(), media_type=f"{kind}; charset=utf-8", headers=STATIC_CACHE
        )


def add_login_routes(api: FastAPI, web: Api) -> None:
    @api.get("/login", **HIDDEN)
    async def login_form(request: Request) -> Response:
        if "token" in request.query_params:
            # Finding 4: a token in a URL stays in history, logs and Referer headers.
            return login_page(
                400,
                "网址中的令牌不再被接受,请在下方输入。/ Tokens in URLs are no longer accepted: enter it below.",
            )
        return login_page()

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
            **ERRORS,
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
        if not web.origin_ok(request):
            return error(403, "forbidden", "请求来源不符 / cross-origin request refused")
        try:
            raw = await request.body()
        except ClientDisconnect:
            # The client left mid-body, or the server closed it (a body past its deadline):
            # nobody to answer, and no traceback in the log for what anyone can do at will.
            return Response(status_code=400)
        try:
            if form:
                fields = parse_qs(raw.decode("utf-8", "replace"), max_num_fields=4)
                body = m.LoginIn(token=(fields.get("token") or [""])[0])
            else:
                body = m.LoginIn.model_validate_json(raw)
        except (ValidationError, ValueError):
            if form:
                return login_page(422, "请输入令牌 / enter your token")
            return error(422, "invalid_request", '请求无效 / body must be {"token": "…"}')
        try:
            token = web.check_token(request, body.token)
        except TooManyAttemptsError as exc:
            page = login_page(429, exc.message) if form else error(429, exc.error, exc.message)
            return retry_after(page, exc)
        if token is None:
            if form:
                return login_page(401, "令牌无效 / invalid token")
            return error(401, "unauthorized", "令牌无效 / invalid token")
        session = web.sessions.open(token)
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
            max_age=int(web.http.session_max_s),
            httponly=True,
            samesite="strict",
            secure=web.https(request),
            path="/",
        )
        log.info("console login: %s (%s)", token.name, token.role.value)
        return response

    @api.post("/logout", responses=ERRORS, summary="End the console session")
    async def logout(request: Request, principal: Who) -> Response:
        if principal.session is not None:
            web.sessions.close(principal.session.id)
        response = JSONResponse({"status": "logged_out"})
        response.delete_cookie(COOKIE, path="/", httponly=True, samesite="strict", secure=web.https(request))
        return response
