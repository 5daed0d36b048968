"""Every refusal in one JSON shape (``{"error", "message", …}``), framework refusals included."""

from __future__ import annotations

from typing import TYPE_CHECKING

from fastapi import FastAPI, Request, Response
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from hub.errors import (
    CalendarError,
    CaseNotFoundError,
    InvalidTransition,
    NotAllowedError,
    NotAuthenticatedError,
    NotFoundError,
    RequestError,
    TooManyAttemptsError,
)
from hub.web.routes.common import error, retry_after

if TYPE_CHECKING:
    from hub.web.api import Api


def add_error_handlers(api: FastAPI, web: Api) -> None:
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
        return error(
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
        if isinstance(exc, TooManyAttemptsError):
            return retry_after(error(429, exc.error, exc.message), exc)
        status = {NotAuthenticatedError: 401, NotFoundError: 404}.get(type(exc), 400)
        return error(status, exc.error, exc.message)

    @api.exception_handler(CalendarError)
    async def no_working_time(request: Request, exc: CalendarError) -> JSONResponse:
        # A due time the working-day calendar cannot give (it looks ten years ahead): the action
        # is refused and nothing is stored, rather than a server error.
        return error(409, "calendar", f"工作日历无法排期 / the working-day calendar cannot place it: {exc}")

    @api.exception_handler(NotAllowedError)
    async def forbidden(request: Request, exc: NotAllowedError) -> JSONResponse:
        return error(403, "forbidden", str(exc))

    @api.exception_handler(CaseNotFoundError)
    async def no_case(request: Request, exc: CaseNotFoundError) -> JSONResponse:
        return error(404, "not_found", "没有这个案件 / no such case")

    @api.exception_handler(InvalidTransition)
    async def invalid_transition(request: Request, exc: InvalidTransition) -> JSONResponse:
        return error(
            409,
            "invalid_transition",
            str(exc),
            state=exc.state.value,
            action=exc.action.value,
            allowed=[a.value for a in exc.allowed],
        )
