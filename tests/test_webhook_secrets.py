"""Webhook channels keep their secrets, and a store that cannot record an attempt does not make
the dispatcher hammer the endpoint. Found in review:

- aiohttp's errors end with the request URL, so a WeCom robot key kept in the secrets file
  reached the log, ``notifications.last_error``, the API and the console;
- DingTalk's ``access_token`` travels in the address, which the notification rows served;
- when ``mark_failed`` raised (disk full) the row still read as due, and the dispatcher re-sent
  it thousands of times a second.
"""

from __future__ import annotations

import asyncio
import logging
import sqlite3
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer
from pydantic import SecretStr

from hub.channels.messages import CaseNotice, NoticeKind
from hub.channels.preferences import Endpoint, EndpointKind
from hub.channels.webhook import without_secrets
from hub.clock import ManualClock
from hub.ingest.alerts import record_signal
from hub.notify.dispatch import Dispatcher
from hub.notify.webhooks import WebhookSender, outbox_entry
from hub.records import Recipient
from hub.storage.store import Store
from hub.web.models import NotificationAttempt, NotificationLogRow, shown_address
from tests.helpers import eventually
from tests.test_dispatch_faults import FakeMqtt
from tests.test_store import SUBJECT, T0, signal

ROBOT_KEY = "ROBOT-KEY-0123456789"
ZONE = ZoneInfo("Asia/Shanghai")


def _queue(store: Store, endpoint: Endpoint) -> None:
    notice = CaseNotice(case_id="c-1", kind=NoticeKind.NOTIFY, category="sos", severity="critical",
                        title_zh="一键呼救", title_en="SOS", state="filed", filed_at=T0, grid="g1")  # fmt: skip
    channel, address, body = outbox_entry(endpoint, notice)
    record_signal(store, signal(), SUBJECT, [Recipient("w1", channel, address)], render=lambda *_: body)


async def test_a_robot_key_stays_out_of_the_error_the_log_and_the_rows(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    async def answer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.read(65536)  # a proxy's malformed answer: a header over aiohttp's limit
        writer.write(b"HTTP/1.1 200 OK\r\nX-Pad: " + b"a" * 9000 + b"\r\nContent-Length: 2\r\n\r\n{}")
        await writer.drain()
        writer.close()

    server = await asyncio.start_server(answer, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    store = Store(path=tmp_path / "s.sqlite3")
    secrets = {"wecom-g1": SecretStr(f"http://127.0.0.1:{port}/cgi-bin/webhook/send?key={ROBOT_KEY}")}
    sender = WebhookSender(secrets=secrets, zone=ZONE, timeout_s=3)
    _queue(store, Endpoint(kind=EndpointKind.WECOM, secret_ref="wecom-g1"))
    mqtt = FakeMqtt()
    mqtt.connected.set()
    dispatcher = Dispatcher(store=store, mqtt=mqtt, clock=ManualClock(start=T0), webhooks=sender)  # type: ignore[arg-type]
    caplog.set_level(logging.WARNING)
    task = asyncio.create_task(dispatcher.run())
    try:
        await eventually(lambda: dispatcher.failed_attempts >= 1, within=5, what="one failed attempt")
        (row,) = store.notification_log()
        assert row["last_error"] and "/cgi-bin/webhook/send?…" in row["last_error"]
        assert ROBOT_KEY not in row["last_error"]
        assert not [r for r in caplog.records if ROBOT_KEY in r.getMessage()]
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        await sender.close()
        server.close()
        store.close()


def test_notification_rows_show_addresses_and_errors_without_their_query() -> None:
    token = "https://oapi.dingtalk.com/robot/send?access_token=DING-TOKEN-XYZ"
    common: dict[str, Any] = {"id": "n", "recipient": "w1", "channel": "dingtalk", "attempts": 1,
                              "delivered_at": None, "abandoned_at": None}  # fmt: skip
    old_error = f"ClientResponseError: 400, url='{token}&timestamp=1&sign=S'"  # a row from before
    for row in (
        NotificationAttempt(address=token, last_error=old_error, **common),
        NotificationLogRow(
            address=token,
            last_error=old_error,
            alert_id=1,
            case_id=None,
            created_at=T0,
            type="x",
            rule="r",
            **common,
        ),
    ):
        assert row.address == "https://oapi.dingtalk.com/robot/send?…"
        assert row.last_error is not None and "DING-TOKEN-XYZ" not in row.last_error
    assert (
        NotificationAttempt(address="linli/w/w1/notify", last_error=None, **common).address
        == "linli/w/w1/notify"
    )


async def test_a_failure_the_store_cannot_record_waits_its_backoff(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    hits = 0

    async def hook(request: web.Request) -> web.Response:
        nonlocal hits
        hits += 1
        await request.read()
        return web.Response(status=503)

    app = web.Application()
    app.router.add_post("/hook", hook)
    server = TestServer(app, host="127.0.0.1")
    await server.start_server()
    store = Store(path=tmp_path / "s.sqlite3")
    _queue(store, Endpoint(kind=EndpointKind.WEBHOOK, address=f"http://127.0.0.1:{server.port}/hook"))

    def full(*_: Any, **__: Any) -> None:
        raise sqlite3.OperationalError("database or disk is full")

    monkeypatch.setattr(store, "mark_failed", full)
    sender = WebhookSender(secrets={}, zone=ZONE, timeout_s=3)
    mqtt = FakeMqtt()
    mqtt.connected.set()
    dispatcher = Dispatcher(store=store, mqtt=mqtt, clock=ManualClock(start=T0), webhooks=sender)  # type: ignore[arg-type]
    logging.getLogger("hub.notify.dispatch").setLevel(logging.CRITICAL)
    task = asyncio.create_task(dispatcher.run())
    try:
        await asyncio.sleep(2.0)
        assert 1 <= hits <= 3  # the backoff: 0.5-1 s, then 1-2 s
    finally:
        logging.getLogger("hub.notify.dispatch").setLevel(logging.NOTSET)
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        await sender.close()
        await server.close()
        store.close()


def test_a_password_in_a_webhook_url_is_taken_out_too() -> None:
    assert (
        shown_address("https://hub:S3cretPass@hooks.example.com/linli?x=1")
        == "https://…@hooks.example.com/linli?…"
    )
    assert "S3cretPass" not in without_secrets(
        "InvalidURL: https://hub:S3cretPass@hooks.example.com/linli", ""
    )
