"""Per-person channels: DingTalk (signed), WeCom and generic webhooks, from the outbox, with retries."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import yaml
from aiohttp import web
from aiohttp.test_utils import TestServer

from hub.app import Hub
from hub.channels.formats import verify_generic
from hub.clock import ManualClock
from tests.helpers import SOS_BUTTON, eventually, hub_settings, publisher
from tests.support.samples import SAMPLES
from tests.support.servers import Broker

PRESS = 1_795_371_180.0
DING_SECRET = "SECtest-secret"
HOOK_SECRET = "hook-secret"


class Robots:
    """A DingTalk robot, a WeCom robot and a webhook receiver, as their APIs answer."""

    def __init__(self) -> None:
        self.dingtalk: list[tuple[dict[str, list[str]], dict[str, Any]]] = []
        self.wecom: list[dict[str, Any]] = []
        self.hook: list[tuple[dict[str, str], bytes]] = []
        self.hook_failures = 1

    def app(self) -> web.Application:
        app = web.Application()
        app.router.add_post("/robot/send", self._ding)
        app.router.add_post("/cgi-bin/webhook/send", self._wecom)
        app.router.add_post("/hook", self._hook)
        return app

    async def _ding(self, request: web.Request) -> web.Response:
        self.dingtalk.append((parse_qs(urlsplit(str(request.url)).query), await request.json()))
        return web.json_response({"errcode": 0, "errmsg": "ok"})

    async def _wecom(self, request: web.Request) -> web.Response:
        self.wecom.append(await request.json())
        return web.json_response({"errcode": 93000, "errmsg": "invalid webhook url"})  # permanent

    async def _hook(self, request: web.Request) -> web.Response:
        self.hook.append((dict(request.headers), await request.read()))
        if self.hook_failures > 0:
            self.hook_failures -= 1
            return web.Response(status=503)
        return web.Response(status=204)


async def test_sos_reaches_each_channel_of_the_on_duty_worker(
    tmp_path: Path, mosquitto_broker: Broker
) -> None:
    robots = Robots()
    server = TestServer(robots.app(), host="127.0.0.1")
    await server.start_server()
    base = f"http://127.0.0.1:{server.port}"
    channels = tmp_path / "channels.yaml"
    channels.write_text(
        yaml.safe_dump(
            {
                "people": [
                    {
                        "person_id": "w-night",
                        "endpoints": [
                            {
                                "kind": "dingtalk",
                                "address": f"{base}/robot/send?access_token=abc",
                                "secret_ref": "ding",
                            },
                            {"kind": "webhook", "address": f"{base}/hook", "secret_ref": "hook"},
                            {"kind": "wecom", "address": f"{base}/cgi-bin/webhook/send?key=k1"},
                        ],
                    }
                ]
            }
        )
    )
    settings = hub_settings(
        tmp_path,
        mosquitto_broker,
        channels_file=str(channels),
        channel_secrets={"ding": DING_SECRET, "hook": HOOK_SECRET},
    )
    clock = ManualClock(start=PRESS)
    try:
        async with Hub(settings=settings, clock=clock) as hub:
            gateway = await publisher(mosquitto_broker)
            gateway.publish(
                f"zigbee2mqtt/{SOS_BUTTON}",
                (SAMPLES / "zigbee2mqtt" / "tuya_ts0215a_sos_emergency.json").read_bytes(),
                qos=1,
            )
            await eventually(
                lambda: robots.dingtalk and robots.wecom and robots.hook, what="all three channels"
            )

            # DingTalk: signed per its custom-robot docs, Chinese markdown.
            query, body = robots.dingtalk[0]
            timestamp, sign = query["timestamp"][0], query["sign"][0]
            expected = base64.b64encode(
                hmac.new(
                    DING_SECRET.encode(), f"{timestamp}\n{DING_SECRET}".encode(), hashlib.sha256
                ).digest()
            ).decode()
            assert sign == expected and query["access_token"] == ["abc"]
            assert body["msgtype"] == "markdown" and "一键呼救" in body["markdown"]["text"]

            # WeCom answered a permanent errcode: given up, with the reason kept, never retried.
            await eventually(lambda: hub.dispatcher.abandoned == 1, what="WeCom abandoned")
            (alert,) = hub.store.alerts()
            rows = {n["channel"]: n for n in hub.store.notifications_for(alert.id)}
            assert rows["wecom"]["abandoned_at"] is not None and "93000" in rows["wecom"]["last_error"]

            # The webhook said 503 once: retried with backoff, then delivered, signed each time.
            assert rows["webhook"]["delivered_at"] is None and rows["webhook"]["last_error"] == "HTTP 503"
            clock.advance(10)
            hub.dispatcher.wake()
            await eventually(lambda: len(robots.hook) == 2, what="the webhook retry")
            headers, raw = robots.hook[1]
            assert verify_generic(
                HOOK_SECRET, int(headers["X-Linli-Timestamp"]), raw, headers["X-Linli-Signature"]
            )
            assert json.loads(raw)["case_id"] and "一键呼救" in json.loads(raw)["text"]
            await eventually(
                lambda: {n["channel"]: n for n in hub.store.notifications_for(alert.id)}["webhook"][
                    "delivered_at"
                ],
                what="the webhook delivered",
            )
            assert len(robots.wecom) == 1
            stored = b"".join(row[0] for row in hub.store.db.execute("SELECT payload FROM notifications"))
            assert DING_SECRET.encode() not in stored and HOOK_SECRET.encode() not in stored  # never stored
            await gateway.disconnect()
    finally:
        await server.close()
