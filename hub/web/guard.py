"""The ASGI layer around the API: request bodies bounded, security headers on every response.

A plain ASGI wrapper rather than framework middleware, so the event stream passes through
unbuffered and a body is refused (413) before anything parses it: a 100 000-deep JSON
document or a 1 MB note never reaches a parser.

Must not import: ``hub.app``, ``hub.cli``.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

import orjson

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
App = Callable[[Scope, Receive, Send], Awaitable[None]]

_HEADERS = (
    (
        b"content-security-policy",
        b"default-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'self'",
    ),
    (b"x-content-type-options", b"nosniff"),
    (b"referrer-policy", b"same-origin"),  # "no-referrer" makes the browser send Origin: null
    (b"x-frame-options", b"DENY"),
    # Answers carry elders' names, phones, addresses and medical notes: kept in no browser or
    # proxy cache unless a route says otherwise (the static assets do). Found in review: only
    # the HTML pages said so, and the phone page's JSON stayed in the phone's cache.
    (b"cache-control", b"no-store"),
)
#: Swagger UI sets inline styles and shows data: images; it still runs no inline script.
_DOCS_CSP = (
    b"default-src 'self'; style-src 'self' 'unsafe-inline'; img-src 'self' data:; frame-ancestors 'none'"
)


#: Methods whose chunked bodies are read (bounded) before the app sees them.
_WITH_BODY = frozenset({"POST", "PUT", "PATCH", "DELETE"})


def _replay(first: Message, receive: Receive) -> Receive:
    """``receive`` that hands out ``first`` once, then the connection's own messages."""
    pending: list[Message] = [first]

    async def replayed() -> Message:
        return pending.pop() if pending else await receive()

    return replayed


class BodyTooLarge(Exception):  # noqa: N818 - internal signal, never leaves this module
    pass


class Guard:
    def __init__(self, app: App, *, max_body_bytes: int) -> None:
        self.app = app
        self._max = max_body_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        docs = scope.get("path", "").startswith("/docs")

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = list(message.get("headers", []))
                present = {k.lower() for k, _ in headers}
                for key, value in _HEADERS:
                    if key not in present:
                        headers.append(
                            (key, _DOCS_CSP if docs and key == b"content-security-policy" else value)
                        )
                message["headers"] = headers
            await send(message)

        declared = dict(scope.get("headers", [])).get(b"content-length")
        if declared is not None and (not declared.isdigit() or int(declared) > self._max):
            await self._too_large(send_with_headers)
            return
        if declared is None and scope.get("method") in _WITH_BODY:
            # A chunked body has no length to refuse up front, and raising mid-read reaches the
            # framework's body parser, which answers any error as 400: read it here, bounded.
            whole = await self._read_bounded(receive)
            if whole is None:
                await self._too_large(send_with_headers)
                return
            receive = _replay(whole, receive)
        received = 0

        async def bounded() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self._max:
                    raise BodyTooLarge
            return message

        started = False

        async def tracking_send(message: Message) -> None:
            nonlocal started
            started = started or message["type"] == "http.response.start"
            await send_with_headers(message)

        try:
            await self.app(scope, bounded, tracking_send)
        except BodyTooLarge:
            if not started:
                await self._too_large(send_with_headers)

    async def _read_bounded(self, receive: Receive) -> Message | None:
        """The whole request body as one message, or ``None`` once it passes the limit."""
        chunks: list[bytes] = []
        size = 0
        while True:
            message = await receive()
            if message["type"] != "http.request":
                return message  # the client left: the app sees the disconnect
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > self._max:
                return None
            chunks.append(chunk)
            if not message.get("more_body", False):
                return {"type": "http.request", "body": b"".join(chunks), "more_body": False}

    async def _too_large(self, send: Send) -> None:
        body = orjson.dumps(
            {"error": "too_large", "message": f"请求体过大 / request body over {self._max} bytes"}
        )
        await send(
            {
                "type": "http.response.start",
                "status": 413,
                "headers": [
                    (b"content-type", b"application/json"),
                    (b"content-length", str(len(body)).encode()),
                ],
            }
        )
        await send({"type": "http.response.body", "body": body})
