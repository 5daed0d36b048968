"""The HTTP server's own limits, on a real socket: a client that never finishes its headers."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from hub.web import server
from hub.web.server import HttpServer


async def hello(scope: dict[str, Any], receive: Any, send: Any) -> None:
    assert scope["type"] == "http"
    await send({"type": "http.response.start", "status": 200, "headers": [(b"content-length", b"2")]})
    await send({"type": "http.response.body", "body": b"ok"})


async def closed_by_server(reader: asyncio.StreamReader, within: float) -> bool:
    try:
        return await asyncio.wait_for(reader.read(), within) == b""
    except TimeoutError:
        return False


async def test_a_client_that_never_finishes_its_headers_is_closed(monkeypatch: pytest.MonkeyPatch) -> None:
    # Slow-loris: 1 100 such sockets took a default `ulimit -n 1024` (the health check, and with
    # the embedded broker the sensors' connections) because nothing ever closed them.
    monkeypatch.setattr(server._Protocol, "headers_timeout_s", 0.3)
    http = HttpServer(app=hello, host="127.0.0.1", port=0)
    port = await http.start()
    try:
        silent = await asyncio.open_connection("127.0.0.1", port)  # sends nothing at all
        partial = await asyncio.open_connection("127.0.0.1", port)
        partial[1].write(b"GET / HTTP/1.1\r\nHost: x\r\n")  # and never the blank line
        assert await closed_by_server(silent[0], 5), "a connection that says nothing is closed"
        assert await closed_by_server(partial[0], 5), "half a request's headers are closed"

        # A client that is in time is served, and its idle keep-alive is uvicorn's (30 s), not ours.
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 5)
        assert head.startswith(b"HTTP/1.1 200") and await reader.readexactly(2) == b"ok"
        assert not await closed_by_server(reader, 1.0), "kept alive past the header deadline"
        # Its next request, started after a pause and never finished, has the deadline again.
        writer.write(b"GET / HTTP/1.1\r\n")
        assert await closed_by_server(reader, 5)
        for _, w in (silent, partial, (reader, writer)):
            w.close()
    finally:
        await http.stop()
