"""One SOS press through every layer, against real Mosquitto and against the embedded broker."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import datetime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import aiohttp
import orjson
import pytest

from hub.app import Hub
from hub.clock import ManualClock
from tests.helpers import COMMUNITY, GRID, SOS_BUTTON, TOKEN, Phone, eventually, hub_settings, publisher
from tests.support.samples import SAMPLES
from tests.support.servers import Broker

SHANGHAI = ZoneInfo("Asia/Shanghai")
NIGHT = datetime(2026, 11, 23, 2, 13, tzinfo=SHANGHAI).timestamp()  # 02:13, the night shift
SOS_SAMPLE = (SAMPLES / "zigbee2mqtt" / "tuya_ts0215a_sos_emergency.json").read_bytes()
WORKER_TOPIC = f"linli/{COMMUNITY}/workers/w-night/notifications"
COMMAND_TOPIC = "linli/command-centre/notifications"
AUTH = {"Authorization": f"Bearer {TOKEN}"}


@pytest.fixture(params=["mosquitto", "embedded"])
def broker(request: pytest.FixtureRequest) -> Broker:
    fixture = "mosquitto_broker" if request.param == "mosquitto" else "embedded_broker"
    value: Broker = request.getfixturevalue(fixture)
    return value


@pytest.fixture
async def hub(tmp_path: Path, broker: Broker) -> AsyncIterator[Hub]:
    async with Hub(settings=hub_settings(tmp_path, broker), clock=ManualClock(start=NIGHT)) as running:
        yield running


@pytest.fixture
async def http(hub: Hub) -> AsyncIterator[tuple[aiohttp.ClientSession, str]]:
    # unsafe=True: accept cookies from an IP-address host (127.0.0.1), as a browser does.
    async with aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True)) as session:
        yield session, f"http://127.0.0.1:{hub.http_port}"


@pytest.fixture
async def phone(broker: Broker) -> AsyncIterator[Phone]:
    phone = Phone(broker)
    await phone.start("linli/+/workers/+/notifications", COMMAND_TOPIC)
    yield phone
    await phone.stop()


async def get_alerts(http: tuple[aiohttp.ClientSession, str]) -> list[dict[str, Any]]:
    session, base = http
    async with session.get(f"{base}/api/alerts", headers=AUTH) as response:
        assert response.status == 200
        result: list[dict[str, Any]] = await response.json()
        return result


async def test_sos_press_reaches_api_console_stream_and_on_duty_worker(
    hub: Hub, broker: Broker, http: tuple[aiohttp.ClientSession, str], phone: Phone
) -> None:
    session, base = http
    stream = await session.get(f"{base}/api/stream", headers=AUTH)
    assert stream.status == 200 and stream.headers["Content-Type"].startswith("text/event-stream")

    gateway = await publisher(broker)
    gateway.publish(f"zigbee2mqtt/{SOS_BUTTON}", SOS_SAMPLE, qos=1)

    # (c) the on-duty (night) worker of the grid gets the case at QoS 1, with what they need
    # to act: the elder's profile and where to reply.
    await eventually(lambda: phone.on(WORKER_TOPIC), what="worker notification")
    (note,) = phone.on(WORKER_TOPIC)
    assert (
        note["schema"] == "linli.notification.v1"
        and note["type"] == "case.notify"
        and note["recipient"] == "w-night"
    )
    assert note["alert"]["device_id"] == SOS_BUTTON and note["alert"]["grid"] == GRID
    assert note["case"]["assignee"] == "w-night" and note["case"]["state"] == "dispatched"
    assert note["resident"]["name"] == "王秀英" and note["location"].startswith("第一网格 3号楼 2单元 401")
    assert note["reply_topic"] == f"linli/{COMMUNITY}/workers/w-night/replies"
    assert [qos for t, _, qos in phone.messages if t == WORKER_TOPIC] == [1]
    assert not phone.on(f"linli/{COMMUNITY}/workers/w-day/notifications"), (
        "the day worker is off duty at 02:13"
    )
    # At the same time: the community duty officer, and the command centre with the
    # guardians to call (handbook §4).
    await eventually(lambda: phone.on(f"linli/{COMMUNITY}/workers/duty/notifications"), what="duty officer")
    await eventually(lambda: phone.on(COMMAND_TOPIC), what="command centre")
    (centre,) = phone.on(COMMAND_TOPIC)
    assert centre["call_guardians"] == [{"name": "李明", "phone": "13987654321", "relation": "儿子"}]

    # (a) the API lists it with the required fields.
    (alert,) = await get_alerts(http)
    assert {k: alert[k] for k in ("rule", "category", "severity", "status", "device_id", "grid")} == {
        "rule": "elderly.sos",
        "category": "sos",
        "severity": "critical",
        "status": "active",
        "device_id": SOS_BUTTON,
        "grid": GRID,
    }
    assert alert["id"] == note["alert"]["id"]
    assert (
        alert["raised_at"] == "2026-11-22T18:13:00.000Z"
    )  # device time unknown: the hub clock's receive time

    # (b) the console's event stream carried it.
    line = b""
    while not line.startswith(b"data: "):
        line = await asyncio.wait_for(stream.content.readline(), 5)
    event = orjson.loads(line[6:])
    assert event["created"] is True and event["alert"]["id"] == alert["id"]
    stream.close()

    # The alert's detail says why it fired and who was told.
    async with session.get(f"{base}/api/alerts/{alert['id']}", headers=AUTH) as response:
        detail = await response.json()
    assert detail["trace"]["occurrences"][0]["event"]["attrs"]["action"] == "emergency"
    await eventually(lambda: hub.dispatcher.delivered == 3, what="PUBACKs recorded")
    async with session.get(f"{base}/api/alerts/{alert['id']}", headers=AUTH) as response:
        sent = (await response.json())["notifications"]
    assert {n["recipient"] for n in sent} == {"w-night", "duty", "command-centre"}
    assert all(n["delivered_at"] is not None for n in sent)
    await gateway.disconnect()


async def test_sos_from_unknown_device_goes_to_command_centre(
    hub: Hub, broker: Broker, http: tuple[aiohttp.ClientSession, str], phone: Phone
) -> None:
    gateway = await publisher(broker)
    gateway.publish("zigbee2mqtt/0xdeadbeef00000001", SOS_SAMPLE, qos=1)
    await eventually(lambda: phone.on(COMMAND_TOPIC), what="command centre notification")
    (alert,) = await get_alerts(http)
    assert alert["device_id"] == "0xdeadbeef00000001" and alert["grid"] is None
    assert "0xdeadbeef00000001" in hub.registry.unassigned
    assert hub.quarantine.counts["unknown_device"] == 2  # the press and the link quality of one message
    assert [d.id for d in hub.store.unassigned()] == ["0xdeadbeef00000001"]
    assert not [t for t, _, _ in phone.messages if "/workers/" in t]
    await gateway.disconnect()


async def test_repeated_press_and_redelivery_keep_one_alert(
    hub: Hub, broker: Broker, http: tuple[aiohttp.ClientSession, str], phone: Phone
) -> None:
    gateway = await publisher(broker)
    for _ in range(3):  # the same message three times (a gateway retrying, or three presses)
        gateway.publish(f"zigbee2mqtt/{SOS_BUTTON}", SOS_SAMPLE, qos=1)
    await eventually(lambda: hub.pipeline.stats.messages >= 3, what="three messages")
    (alert,) = await get_alerts(http)
    # Not resent by the broker (no DUP), so each is a press, even at the same instant of the
    # hub's clock: counted into the one alert within its merge window, notified once. (A
    # button's next press must never pass for a copy: test_redelivery_idempotent.)
    assert alert["count"] == 3
    assert len(phone.on(WORKER_TOPIC)) <= 1
    await gateway.disconnect()


async def test_bad_input_is_quarantined_and_the_pipeline_goes_on(
    hub: Hub, broker: Broker, http: tuple[aiohttp.ClientSession, str]
) -> None:
    gateway = await publisher(broker)
    gateway.publish(f"zigbee2mqtt/{SOS_BUTTON}", b"{garbage", qos=1)
    gateway.publish("zigbee2mqtt/door-1", b'{"contact": "open"}', qos=1)
    gateway.publish("zigbee2mqtt/big", b"x" * (70 * 1024), qos=1)
    gateway.publish(f"zigbee2mqtt/{SOS_BUTTON}", SOS_SAMPLE, qos=1)
    await eventually(lambda: hub.pipeline.stats.alerts_raised == 1, what="the SOS after the garbage")
    # The press may come in first on the SOS lane while the bulk lane still reads the rest.
    await eventually(lambda: sum(hub.quarantine.counts.values()) >= 3, what="the bad input quarantined")
    assert hub.quarantine.counts == {"malformed_json": 1, "wrong_type": 1, "oversized": 1}
    hub.quarantine.flush()
    reasons = {(r.topic, r.reason) for r in hub.store.quarantine()}
    assert reasons == {
        (f"zigbee2mqtt/{SOS_BUTTON}", "malformed_json"),
        ("zigbee2mqtt/door-1", "wrong_type"),
        ("zigbee2mqtt/big", "oversized"),
    }
    await gateway.disconnect()


async def test_api_requires_a_token(hub: Hub, http: tuple[aiohttp.ClientSession, str]) -> None:
    session, base = http
    async with session.get(f"{base}/api/alerts") as response:
        assert response.status == 401
    async with session.get(f"{base}/api/alerts", headers={"Authorization": "Bearer wrong"}) as response:
        assert response.status == 401
    async with session.get(f"{base}/", allow_redirects=False) as response:
        assert response.status == 302 and response.headers["Location"] == "/login"
    async with session.get(f"{base}/api/health") as response:
        assert response.status == 200
    async with session.get(f"{base}/login?token={TOKEN}", allow_redirects=False) as response:
        assert response.status == 400 and "linli_session" not in response.cookies  # never from a URL
    async with session.post(f"{base}/login", data={"token": TOKEN}, allow_redirects=False) as response:
        assert response.status == 303 and response.headers["Location"] == "/"
        cookie = response.cookies["linli_session"]
        assert cookie["httponly"] and cookie["samesite"].lower() == "strict"
        assert cookie.value != TOKEN, "the cookie is a session id, not the token"
    async with session.get(f"{base}/api/alerts") as response:  # now with the session cookie
        assert response.status == 200


async def test_retained_press_replayed_on_subscribe_is_not_a_new_sos(tmp_path: Path, broker: Broker) -> None:
    gateway = await publisher(broker)
    gateway.publish(f"zigbee2mqtt/{SOS_BUTTON}", SOS_SAMPLE, qos=1, retain=True)
    await asyncio.sleep(0.2)
    async with Hub(settings=hub_settings(tmp_path, broker), clock=ManualClock(start=NIGHT)) as hub:
        # One replay per subscribing lane (the bulk lane's root, the SOS lane's exact topic):
        # each is the topic's last state, skipped as a press, and neither pays for the other.
        await eventually(lambda: hub.pipeline.stats.retained_presses_skipped == 2, what="the retained copies")
        assert hub.store.alerts() == []
    gateway.publish(f"zigbee2mqtt/{SOS_BUTTON}", b"", qos=1, retain=True)  # clear the retained message
    await gateway.disconnect()


async def test_sos_published_while_hub_is_down_is_raised_when_it_returns(
    tmp_path: Path, broker: Broker
) -> None:
    settings = hub_settings(tmp_path, broker)
    async with Hub(settings=settings, clock=ManualClock(start=NIGHT)):
        pass  # first start creates the persistent session and its subscriptions
    gateway = await publisher(broker)
    gateway.publish(f"zigbee2mqtt/{SOS_BUTTON}", SOS_SAMPLE, qos=1)
    await asyncio.sleep(0.2)
    async with Hub(settings=settings, clock=ManualClock(start=NIGHT + 60)) as hub:
        await eventually(lambda: hub.pipeline.stats.alerts_raised == 1, what="the queued SOS")
        (alert,) = hub.store.alerts()
        assert alert.device_id == SOS_BUTTON
    await gateway.disconnect()
