"""Webhook sender against a real aiohttp server on 127.0.0.1 (port 0): outcomes and exact URLs."""

from __future__ import annotations

import socket
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer

from hub.channels.formats import (
    Flavor,
    PreparedRequest,
    dingtalk_markdown,
    dingtalk_sign,
    generic_webhook,
    wecom_text,
)
from hub.channels.webhook import OutcomeKind, classify, send

SECRET = "SEC0123456789abcdef"


@pytest.fixture
async def server() -> AsyncIterator[tuple[TestServer, list[dict[str, Any]]]]:
    seen: list[dict[str, Any]] = []

    async def handler(request: web.Request) -> web.StreamResponse:
        body = await request.read()
        seen.append(
            {
                "path": request.path,
                "query": dict(request.query),
                "raw_path": request.raw_path,
                "body": body,
                "headers": dict(request.headers),
            }
        )
        mode = request.match_info["mode"]
        if mode == "ok":
            return web.json_response({"ok": True})
        if mode == "busy":
            return web.Response(status=503, text="try later")
        if mode == "gone":
            return web.Response(status=404, text="no such hook " + "x" * 1000)
        if mode == "moved":
            raise web.HTTPFound("/hook/ok")
        if mode == "ding":
            ts = int(request.query["timestamp"])
            good = request.query.get("sign") == dingtalk_sign(SECRET, ts)
            return web.json_response(
                {"errcode": 0 if good else 310000, "errmsg": "ok" if good else "sign not match"}
            )
        if mode == "wecom-limit":
            return web.json_response({"errcode": 45009, "errmsg": "api freq out of limit"})
        if mode == "proxy":
            return web.Response(text="<html>captive portal</html>")
        raise AssertionError(mode)

    app = web.Application()
    app.router.add_post("/hook/{mode}", handler)
    srv = TestServer(app, host="127.0.0.1", port=0)
    await srv.start_server()
    try:
        yield srv, seen
    finally:
        await srv.close()


async def post(request: PreparedRequest) -> Any:
    async with aiohttp.ClientSession() as session:
        return await send(session, request, timeout_s=5)


async def test_ok_and_body_delivered(server: tuple[TestServer, list[dict[str, Any]]]) -> None:
    srv, seen = server
    outcome = await post(
        generic_webhook(str(srv.make_url("/hook/ok")), {"case": "c1"}, secret="s", timestamp=1)
    )
    assert outcome.kind is OutcomeKind.OK and outcome.status == 200
    assert seen[0]["body"] == b'{"case":"c1"}' and seen[0]["headers"]["X-Linli-Timestamp"] == "1"


@pytest.mark.parametrize(
    ("mode", "kind", "status"),
    [
        ("busy", OutcomeKind.RETRYABLE, 503),
        ("gone", OutcomeKind.PERMANENT, 404),
        ("moved", OutcomeKind.PERMANENT, 302),
    ],
)
async def test_status_classification(
    server: tuple[TestServer, list[dict[str, Any]]], mode: str, kind: OutcomeKind, status: int
) -> None:
    srv, _ = server
    outcome = await post(generic_webhook(str(srv.make_url(f"/hook/{mode}")), {}))
    assert (outcome.kind, outcome.status) == (kind, status)
    assert len(outcome.body_excerpt) <= 300


async def test_dingtalk_signature_survives_the_trip(server: tuple[TestServer, list[dict[str, Any]]]) -> None:
    srv, seen = server
    url = str(srv.make_url("/hook/ding")) + "?access_token=t"
    # This sign contains '/' and '=': the URL must reach the server exactly as prepared.
    request = dingtalk_markdown(url, title="t", text="x", secret=SECRET, timestamp_ms=1700000000000)
    outcome = await post(request)
    assert outcome.kind is OutcomeKind.OK, outcome
    assert "sign=TSZbRFUuvaSQaRKUpF970OPCb2%2FLcQAP3wOvwZIzBZk%3D" in seen[0]["raw_path"]
    wrong = dingtalk_markdown(url, title="t", text="x", secret="other", timestamp_ms=1700000000000)
    bad = await post(wrong)
    assert bad.kind is OutcomeKind.PERMANENT and "310000" in bad.error


async def test_wecom_rate_limit_is_retryable(server: tuple[TestServer, list[dict[str, Any]]]) -> None:
    srv, _ = server
    outcome = await post(wecom_text(str(srv.make_url("/hook/wecom-limit")) + "?key=k", content="x"))
    assert outcome.kind is OutcomeKind.RETRYABLE and "45009" in outcome.error


async def test_robot_answer_without_errcode_is_retryable(
    server: tuple[TestServer, list[dict[str, Any]]],
) -> None:
    srv, _ = server
    outcome = await post(wecom_text(str(srv.make_url("/hook/proxy")) + "?key=k", content="x"))
    assert outcome.kind is OutcomeKind.RETRYABLE


async def test_connection_refused_is_retryable() -> None:
    # A port that was just free: bind, note it, close.
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    outcome = await post(generic_webhook(f"http://127.0.0.1:{port}/hook", {}))
    assert outcome.kind is OutcomeKind.RETRYABLE and outcome.status is None and outcome.error


def test_classify_pure() -> None:
    assert classify(Flavor.GENERIC, 204, "").kind is OutcomeKind.OK
    assert classify(Flavor.GENERIC, 429, "").kind is OutcomeKind.RETRYABLE
    assert (
        classify(Flavor.DINGTALK, 200, '{"errcode":130101,"errmsg":"send too fast"}').kind
        is OutcomeKind.RETRYABLE
    )
    assert (
        classify(Flavor.DINGTALK, 200, '{"errcode":300001,"errmsg":"token is not exist"}').kind
        is OutcomeKind.PERMANENT
    )
    assert classify(Flavor.WECOM, 200, '{"errcode":0,"errmsg":"ok"}').kind is OutcomeKind.OK
