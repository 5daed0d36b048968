"""``GET /api/stream``: server-sent ``alert`` and ``case`` events, each one the caller may read."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING, Any

import orjson
from fastapi import FastAPI
from fastapi.responses import StreamingResponse

from hub.casework.access import Permission, Reach, Scope, Where
from hub.web.routes.common import ERRORS, Who

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


async def events_for(web: Api, reach: Reach) -> AsyncIterator[bytes]:
    listener = web.bus.subscribe()
    closing = asyncio.ensure_future(web.closing.wait())
    try:
        yield b"retry: 2000\n\n"
        while not web.closing.is_set():
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
                yield b": keepalive\n\n"
                continue
            message = getter.result()
            if not visible(web, reach, message):
                continue
            # One SSE event name per message type ("alert", "case"), so listeners pick theirs.
            kind = str(message.get("type", "alert")).encode()
            yield b"event: " + kind + b"\ndata: " + orjson.dumps(message) + b"\n\n"
    finally:
        closing.cancel()
        web.bus.unsubscribe(listener)


def add_stream_routes(api: FastAPI, web: Api) -> None:
    @api.get(
        "/api/stream",
        response_class=StreamingResponse,
        responses={**ERRORS, 200: {"content": {"text/event-stream": {"schema": {"type": "string"}}}}},
    )
    async def stream(who: Who) -> StreamingResponse:
        """Server-sent events: ``alert`` and ``case`` changes the caller may read, nothing else."""
        return StreamingResponse(
            events_for(web, who.reach),
            media_type="text/event-stream",
            headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
        )
