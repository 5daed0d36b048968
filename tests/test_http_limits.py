"""The HTTP server's bounds on connections, on real sockets: how many, and how long a body may take.

Each open connection holds a file descriptor of the hub's process, which the store and the
MQTT sessions (with the embedded broker, the sensors' connections) need too.
"""

from __future__ import annotations

import asyncio
import logging
import time
from pathlib import Path
from typing import Any

import pytest

from hub.app import Hub
from hub.clock import ManualClock
from hub.health.metrics import render
from hub.web import server
from hub.web.server import HttpServer
from tests.helpers import hub_settings
from tests.support.servers import Broker

Connection = tuple[asyncio.StreamReader, asyncio.StreamWriter]


async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    """``/stream`` writes a chunk every 0.1 s for 1.5 s; ``/early`` answers without reading the
    body; anything else reads the whole body and answers its length."""
    assert scope["type"] == "http"
    if scope["path"] == "/stream":
        await send({"type": "http.response.start", "status": 200, "headers": []})
        for _ in range(15):
            await send({"type": "http.response.body", "body": b"tick\n", "more_body": True})
            await asyncio.sleep(0.1)
        await send({"type": "http.response.body", "body": b"end\n"})
        return
    size = 0
    if scope["path"] != "/early":
        while True:
            message = await receive()
            if message["type"] != "http.request":
                return  # the client left (or was made to)
            size += len(message.get("body", b""))
            if not message.get("more_body", False):
                break
    body = str(size).encode()
    headers = [(b"content-length", str(len(body)).encode())]
    await send({"type": "http.response.start", "status": 200, "headers": headers})
    await send({"type": "http.response.body", "body": body})


async def closed_by_server(reader: asyncio.StreamReader, within: float) -> bool:
    """The server closed (EOF) or reset the connection within ``within`` seconds."""
    try:
        return await asyncio.wait_for(reader.read(), within) == b""
    except TimeoutError:
        return False
    except ConnectionResetError:
        return True


async def response(reader: asyncio.StreamReader) -> tuple[bytes, bytes]:
    head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 5)
    length = next(
        int(line.split(b":", 1)[1])
        for line in head.split(b"\r\n")
        if line.lower().startswith(b"content-length:")
    )
    return head.split(b"\r\n", 1)[0], await asyncio.wait_for(reader.readexactly(length), 5)


async def until(check: Any, within: float = 5.0) -> None:
    deadline = time.monotonic() + within
    while not check():
        assert time.monotonic() < deadline, "timed out"
        await asyncio.sleep(0.01)


async def test_connections_beyond_the_cap_are_closed_on_arrival(caplog: pytest.LogCaptureFixture) -> None:
    # 1 100 idle sockets took the process's `ulimit -n 1024`; now the server holds at most its cap.
    cap = 3
    http = HttpServer(app=app, host="127.0.0.1", port=0, max_connections=cap)
    port = await http.start()
    opened: list[Connection] = []
    try:
        for _ in range(cap):
            opened.append(await asyncio.open_connection("127.0.0.1", port))
        await until(lambda: http.open_connections == cap)
        with caplog.at_level(logging.WARNING, logger="hub.web.server"):
            extra = [await asyncio.open_connection("127.0.0.1", port) for _ in range(5)]
            opened += extra
            for reader, _ in extra:
                assert await closed_by_server(reader, 2), "a connection beyond the cap is closed at once"
        assert http.limits.refused == 5 and http.open_connections == cap
        refusals = [r for r in caplog.records if "http.max_connections" in r.getMessage()]
        assert len(refusals) == 1, "five refusals in a row are one log line, not five"

        # The connections within the cap are untouched and served.
        for reader, _ in opened[:cap]:
            assert not await closed_by_server(reader, 0.1)
        reader, writer = opened[0]
        writer.write(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        assert await response(reader) == (b"HTTP/1.1 200 OK", b"0")

        # A slot freed is a slot taken again: the next connection is served.
        opened[1][1].close()
        await until(lambda: http.open_connections == cap - 1)
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        opened.append((reader, writer))
        writer.write(b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\n\r\nabc")
        assert await response(reader) == (b"HTTP/1.1 200 OK", b"3")
        assert http.limits.refused == 5
    finally:
        for _, writer in opened:
            writer.close()
        await http.stop()


async def test_a_cap_the_fd_limit_cannot_honour_is_said_at_start(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setattr(server.resource, "getrlimit", lambda _which: (256, 4096))
    for cap, warned in ((128, False), (200, True)):
        caplog.clear()
        http = HttpServer(app=app, host="127.0.0.1", port=0, max_connections=cap)
        with caplog.at_level(logging.WARNING, logger="hub.web.server"):
            await http.start()
        await http.stop()
        assert any("ulimit -n" in r.getMessage() for r in caplog.records) is warned, cap


async def test_a_body_must_arrive_within_its_deadline(monkeypatch: pytest.MonkeyPatch) -> None:
    # A body was bounded in size only: ten bytes of a thousand, then nothing, held the connection
    # for good (uvicorn's keep-alive timer is off while a request is being read).
    monkeypatch.setattr(server._Protocol, "body_timeout_s", 0.5)
    http = HttpServer(app=app, host="127.0.0.1", port=0)
    port = await http.start()
    opened: list[Connection] = []

    async def connect() -> Connection:
        opened.append(await asyncio.open_connection("127.0.0.1", port))
        return opened[-1]

    try:
        trickled, _ = await connect()
        opened[-1][1].write(b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 1000\r\n\r\n" + b"x" * 10)
        chunked, _ = await connect()
        opened[-1][1].write(b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n")
        # Answered at once without reading the body; its rest trickled in after the response.
        answered, _ = await connect()
        opened[-1][1].write(b"POST /early HTTP/1.1\r\nHost: x\r\nContent-Length: 1000\r\n\r\n")
        assert await response(answered) == (b"HTTP/1.1 200 OK", b"0")
        opened[-1][1].write(b"x" * 10)
        began = time.monotonic()
        for reader in (trickled, chunked, answered):
            assert await closed_by_server(reader, 3), (
                "a body not in within its deadline closes the connection"
            )
        assert time.monotonic() - began < 3
        assert http.limits.deadline_closes == {"headers": 0, "body": 3}

        # A body in time, in two parts with a pause: served, and the connection kept alive past the
        # deadline (it was cancelled) for a request without a body.
        reader, writer = await connect()
        writer.write(b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 65536\r\n\r\n" + b"x" * 30000)
        await asyncio.sleep(0.2)
        writer.write(b"x" * 35536)
        assert await response(reader) == (b"HTTP/1.1 200 OK", b"65536")
        assert not await closed_by_server(reader, 0.8), "idle keep-alive is not the body deadline's"
        writer.write(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        assert await response(reader) == (b"HTTP/1.1 200 OK", b"0")

        # A response streamed for three times the deadline (the event stream) is not cut.
        reader, writer = await connect()
        writer.write(b"GET /stream HTTP/1.1\r\nHost: x\r\n\r\n")
        streamed = await asyncio.wait_for(reader.readuntil(b"end\n"), 5)
        assert streamed.count(b"tick\n") == 15
        assert http.limits.deadline_closes["body"] == 3
    finally:
        for _, writer in opened:
            writer.close()
        await http.stop()


async def test_the_hub_takes_its_limits_from_the_settings_and_counts_them_on_metrics(
    tmp_path: Path, embedded_broker: Broker, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setattr(server._Protocol, "body_timeout_s", 0.3)
    settings = hub_settings(
        tmp_path, embedded_broker, http={"host": "127.0.0.1", "port": 0, "max_connections": 2}
    )
    async with Hub(settings=settings, clock=ManualClock(start=1_700_000_000.0)) as hub:
        assert hub.http_port is not None
        # A login whose body stops halfway: closed at the deadline, and no traceback in the log
        # (the login read its body itself, and a client gone mid-body was an ASGI exception).
        with caplog.at_level(logging.WARNING):
            reader, writer = await asyncio.open_connection("127.0.0.1", hub.http_port)
            writer.write(
                b"POST /login HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
                b'Content-Length: 100\r\n\r\n{"tok'
            )
            assert await closed_by_server(reader, 3)
            writer.close()
            await until(lambda: hub.http.open_connections == 0)
            await asyncio.sleep(0.2)  # the request's task ends (and would log) after its connection
        assert not [r for r in caplog.records if r.levelno >= logging.ERROR]

        held = [await asyncio.open_connection("127.0.0.1", hub.http_port) for _ in range(2)]
        await until(lambda: hub.http.open_connections == 2)
        refused = await asyncio.open_connection("127.0.0.1", hub.http_port)
        try:
            assert await closed_by_server(refused[0], 2)
            exposed = render(hub.metrics())
            assert "linli_http_connections 2\n" in exposed
            assert "linli_http_connections_refused_total 1\n" in exposed
            # Loopback is never capped per address (a local proxy carries everyone's connections).
            assert "linli_http_connections_refused_per_address_total 0\n" in exposed
            assert hub.http.limits.per_address == 128 and hub.http.limits.by_address == {}
            assert 'linli_http_deadline_closes_total{deadline="body"} 1\n' in exposed
        finally:
            for _, writer in [*held, refused]:
                writer.close()


def test_loopback_and_trusted_proxies_are_never_capped_per_address() -> None:
    limits = server.ConnectionLimits(100, per_address=1, trusted=frozenset({"10.0.0.9"}))
    for local in ("127.0.0.1", "127.3.2.1", "::1", "::ffff:127.0.0.1", "", "10.0.0.9"):
        assert not limits.opened(local) and not limits.address_full(local), local
    assert limits.opened("192.0.2.7") and limits.address_full("192.0.2.7")
    assert limits.opened("::ffff:192.0.2.8") and not limits.address_full("192.0.2.9")
    limits.closed("192.0.2.7")
    assert not limits.address_full("192.0.2.7") and "192.0.2.7" not in limits.by_address


async def test_one_address_cannot_take_every_connection(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """One client opening sockets until the cap keeps the console and the health check out.

    Its address may hold ``per_address`` of them; the rest stay for everyone else. (The test's
    clients all come from loopback, which a hub never caps: a local proxy carries everyone's
    connections. Here loopback is capped like a remote address.)
    """
    monkeypatch.setattr(server, "_uncapped", lambda host, trusted: host in trusted)
    http = HttpServer(app=app, host="127.0.0.1", port=0, max_connections=10, max_connections_per_address=3)
    port = await http.start()
    opened: list[Connection] = []
    try:
        for _ in range(3):
            opened.append(await asyncio.open_connection("127.0.0.1", port))
        await until(lambda: http.open_connections == 3)
        with caplog.at_level(logging.WARNING, logger="hub.web.server"):
            extra = await asyncio.open_connection("127.0.0.1", port)
            opened.append(extra)
            assert await closed_by_server(extra[0], 2), "a 4th connection of the address is closed at once"
        assert (http.limits.refused, http.limits.refused_per_address) == (1, 1)
        assert any("127.0.0.1" in r.getMessage() for r in caplog.records), "the log names the address"
        assert http.open_connections == 3 and http.limits.by_address == {"127.0.0.1": 3}
        # Its own connections are served as before; one closed gives the address a slot again.
        reader, writer = opened[0]
        writer.write(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        assert await response(reader) == (b"HTTP/1.1 200 OK", b"0")
        opened[1][1].close()
        await until(lambda: http.limits.by_address == {"127.0.0.1": 2})
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        opened.append((reader, writer))
        writer.write(b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\n\r\nab")
        assert await response(reader) == (b"HTTP/1.1 200 OK", b"2")
        assert http.limits.refused == 1
    finally:
        for _, writer in opened:
            writer.close()
        await http.stop()
    assert http.limits.by_address == {}, "every connection's count is given back"
