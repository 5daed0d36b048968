"""``GET /api/stream``: server-sent ``alert`` and ``case`` events, each one the caller may read."""

from __future__ import annotations

import asyncio
import contextlib
import functools
import socket
from collections.abc import AsyncIterator, Callable
from typing import TYPE_CHECKING, Any

from fastapi import FastAPI, Request
from fastapi.responses import StreamingResponse

from hub.casework.access import Permission, Reach, Scope, Where
from hub.web.routes.common import ERRORS, Who
from hub.web.stream import STREAM_SNDBUF, TRANSPORT_EXTENSION

if TYPE_CHECKING:
    from hub.web.api import Api

SSE_KEEPALIVE_S = 15.0


def visible(web: Api, reach: Reach, message: dict[str, Any]) -> bool:
    """The access table's answer for one event of the stream (finding 2: before, everyone got all)."""
    kind = message.get("type")
    body = message.get("case" if kind == "case" else "alert")
    if not isinstance(body, dict):
        return False
    where = Where(community=body.get("community"), grid=body.get("grid"), assignee=body.get("assignee"))
    if reach.allows(Permission.READ, where):
        return True
    if kind == "case" and reach.scope(Permission.READ) >= Scope.ASSIGNED:
        told = web.casework.cases.told(str(body.get("id")))
        return reach.allows(Permission.READ, Where(where.community, where.grid, where.assignee, told))
    return False


async def events_for(
    web: Api, reach: Reach, transport: Any, alive: Callable[[], bool] = lambda: True
) -> AsyncIterator[bytes]:
    """The stream of one client; it ends when the client falls behind (the bus drops it), or
    when ``alive`` says its session ended (logout, expiry): asked before every write, so not
    one event reaches a stream whose session is gone (found in review: a logged-out stream
    kept receiving its grid's cases).

    ``transport`` (from the HTTP server) lets a drop abort the socket even while a write to
    it waits for a client that stopped reading; without it (another ASGI server) the stream
    ends at its next write.
    """
    if transport is not None:
        with contextlib.suppress(OSError, AttributeError):
            transport.get_extra_info("socket").setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, STREAM_SNDBUF)
    listener = web.bus.subscribe(on_drop=transport.abort if transport is not None else lambda: None)
    if web.closing.is_set():
        listener.closed = True
    try:
        yield b"retry: 2000\n\n"
        while not (listener.closed or listener.dropped):
            batch = await web.bus.next_batch(listener, idle_s=SSE_KEEPALIVE_S)
            if listener.closed or listener.dropped or not alive():
                break
            if not batch:
                yield b": keepalive\n\n"
                continue
            check = functools.partial(visible, web, reach)
            frames = [e.frame for e in batch if e.visible_to(reach, check)]
            if frames:
                yield b"".join(frames)
                await asyncio.sleep(web.bus.pace())  # what arrives meanwhile goes in one write
    finally:
        web.bus.unsubscribe(listener)


def add_stream_routes(api: FastAPI, web: Api) -> None:
    @api.get(
        "/api/stream",
        response_class=StreamingResponse,
        responses={**ERRORS, 200: {"content": {"text/event-stream": {"schema": {"type": "string"}}}}},
    )
    async def stream(request: Request, who: Who) -> StreamingResponse:
        """Server-sent events: ``alert`` and ``case`` changes the caller may read, nothing else."""
        session = who.session
        return StreamingResponse(
            events_for(
                web,
                who.reach,
                request.scope.get("extensions", {}).get(TRANSPORT_EXTENSION),
                alive=(lambda: True)
                if session is None
                else functools.partial(web.sessions.alive, session.id),
            ),
            media_type="text/event-stream",
            headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
        )
