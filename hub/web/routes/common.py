"""What every route module shares: the caller (:class:`Principal`), paging, the error shape.

The :data:`Who` dependency resolves the caller through the :class:`hub.web.api.Api` kept in
``app.state.linli``, so route modules need no import of it at run time.
"""

from __future__ import annotations

import asyncio
import math
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Annotated, Any
from urllib.parse import urlencode

from fastapi import Depends, Query, Request, Response
from fastapi.exceptions import ResponseValidationError
from fastapi.responses import JSONResponse
from pydantic import TypeAdapter, ValidationError

from hub.casework.access import Actor, Reach
from hub.config import ApiToken
from hub.errors import BadRequestError, TooManyAttemptsError
from hub.web import models as m
from hub.web.sessions import Session

if TYPE_CHECKING:
    from hub.web.api import Api

#: Largest page of each list (the console asks for 200 alerts; the log is read in bulk).
MAX_PAGE = 1000
MAX_LOG_PAGE = 10_000

ERRORS: dict[int | str, dict[str, Any]] = {
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
CASE_ERRORS = {**ERRORS, 409: {"model": m.ErrorOut, "description": "the workflow refuses this action now"}}
HIDDEN: dict[str, Any] = {"include_in_schema": False}


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
    web: Api = request.app.state.linli
    return await web.principal(request)


Who = Annotated[Principal, Depends(_who)]
Limit = Annotated[int, Query(ge=1, le=MAX_PAGE, description=f"page size (at most {MAX_PAGE})")]
Offset = Annotated[int, Query(ge=0, le=10_000_000, description="where the page starts (X-Next-Offset)")]


def error(status: int, code: str, message: str, **extra: Any) -> JSONResponse:
    return JSONResponse({"error": code, "message": message, **extra}, status_code=status)


def retry_after(response: Response, exc: TooManyAttemptsError) -> Response:
    """429's ``Retry-After`` in whole seconds, rounded up (RFC 9110 §10.2.3, RFC 6585 §4)."""
    response.headers["Retry-After"] = str(math.ceil(exc.retry_after_s))
    return response


def page(
    request: Request,
    response: Response,
    items: Sequence[Any],
    *,
    limit: int,
    offset: int,
    read: int | None = None,
) -> None:
    """A full page says where the next one starts (``Link`` and ``X-Next-Offset``).

    ``read``: how many rows the page was cut from, where some of them may be left out (a case
    that cannot be read, or left the list's states while the page was made in turns): the
    page is full when ``limit`` rows were read, however many it shows, or a client paging by
    the link would stop before the end.
    """
    if (len(items) if read is None else read) < limit:
        return
    query = {k: v for k, v in request.query_params.items() if k != "offset"}
    following = offset + limit
    response.headers["Link"] = f'<{request.url.path}?{urlencode({**query, "offset": following})}>; rel="next"'
    response.headers["X-Next-Offset"] = str(following)


#: Rows of a JSON list answer checked and written between two turns of the loop (a case ≈ 20 µs).
ROWS_PER_TURN = 100


def _in_list(loc: tuple[int | str, ...], start: int) -> tuple[int | str, ...]:
    """A piece's error location as one in the whole list (its row index moved by ``start``)."""
    if loc and isinstance(loc[0], int):
        return (start + loc[0], *loc[1:])
    return loc


async def rows_in_turns(response: Response, rows: Sequence[Any], shape: TypeAdapter[list[Any]]) -> Response:
    """``rows`` answered as FastAPI answers a route's ``response_model=list[…]``, in turns.

    FastAPI checks the whole list against the model and writes it in one go: 15–20 ms of the
    event loop for a page of 1 000 cases, 30–45 ms for 10 000 rows of the notification log, in
    which no SOS press is handled. Here the same check and the same writer (pydantic's, by
    alias) run :data:`ROWS_PER_TURN` rows at a time, so the bytes are FastAPI's own. The
    route keeps its ``response_model`` for the OpenAPI schema; returning a ``Response`` is
    what makes FastAPI skip its own pass, so the headers set on ``response`` (the page's
    ``Link``) are carried over here, as FastAPI does.
    """
    parts: list[bytes] = []
    for start in range(0, len(rows), ROWS_PER_TURN):
        if start:
            await asyncio.sleep(0)
        try:
            checked = shape.validate_python(rows[start : start + ROWS_PER_TURN], from_attributes=True)
        except ValidationError as exc:  # the hub's own bug, as FastAPI reports it: a 500, logged
            # Located as FastAPI locates them: ("response", row in the whole list, field …).
            errors = [
                {**e, "loc": ("response", *_in_list(e["loc"], start))} for e in exc.errors(include_url=False)
            ]
            raise ResponseValidationError(errors) from exc
        parts.append(shape.dump_json(checked, by_alias=True)[1:-1])
    answer = Response(content=b"[" + b",".join(parts) + b"]", media_type="application/json")
    answer.headers.raw.extend(response.headers.raw)
    return answer


def time_param(value: str | None, *, default: float, name: str) -> float:
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
