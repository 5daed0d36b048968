"""The live console in a real browser (Debian's Chromium via Playwright): an SOS appears without reload."""

from __future__ import annotations

import os
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from playwright.async_api import Browser, Page, async_playwright

from hub.app import Hub
from hub.cases.model import CaseState
from hub.clock import ManualClock
from tests.conftest import server_missing
from tests.helpers import SOS_BUTTON, TOKEN, WORKER_TOKEN, hub_settings, publisher
from tests.support.samples import SAMPLES
from tests.support.servers import Broker, ServerMissingError, find_binary

NIGHT = 1_795_371_180.0  # 2026-11-23 02:13 Asia/Shanghai
CHROMIUM_FLAGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]


async def log_in(page: Page, port: int | None, token: str) -> None:
    """As a person does: the login form, the token typed in, never in the URL (issue 11 #4)."""
    await page.goto(f"http://127.0.0.1:{port}/login")
    await page.fill("#token", token)
    await page.click("#login")
    await page.wait_for_load_state()
    assert token not in page.url


@pytest.fixture
async def browser() -> AsyncIterator[Browser]:
    try:
        executable = find_binary(("/usr/bin/chromium",), "chromium")
    except ServerMissingError as exc:
        server_missing(str(exc))
    async with async_playwright() as pw:
        launched = await pw.chromium.launch(executable_path=executable, args=CHROMIUM_FLAGS, headless=True)
        yield launched
        await launched.close()


async def test_console_shows_a_new_sos_live_in_chinese_and_english(
    tmp_path: Path, mosquitto_broker: Broker, browser: Browser
) -> None:
    async with Hub(settings=hub_settings(tmp_path, mosquitto_broker), clock=ManualClock(start=NIGHT)) as hub:
        page = await browser.new_page(locale="zh-CN")
        await log_in(page, hub.http_port, TOKEN)
        await page.wait_for_selector("#conn.on")  # the event stream is connected
        assert await page.title() == "邻里 · 指挥中心"
        # On 2026-11-23 the installed holiday data lacks 2027: the console says so (issue 17).
        banner = await page.wait_for_selector("#hub-warnings", timeout=10_000)
        assert banner is not None and "2027" in await banner.inner_text()
        assert await page.text_content("#no-cases") == "暂无待办案件"
        await page.evaluate("window.__notReloaded = true")

        gateway = await publisher(mosquitto_broker)
        gateway.publish(
            f"zigbee2mqtt/{SOS_BUTTON}",
            (SAMPLES / "zigbee2mqtt" / "tuya_ts0215a_sos_emergency.json").read_bytes(),
            qos=1,
        )
        # …its case, dispatched to the night worker, appears on top, on time, with its place.
        row = await page.wait_for_selector("#cases tr.sos[data-case-id]", timeout=10_000)
        assert row is not None
        text = await row.inner_text()
        assert "一键呼救" in text and "紧急" in text and "第一网格 3号楼 2单元 401" in text
        assert "w-night" in text and "派遣·待受理" in text and "正常" in text
        assert await page.evaluate("window.__notReloaded") is True, "the row must arrive without a reload"
        assert await page.text_content("#count-sos") == "1"
        # Times are shown in the community's zone (Asia/Shanghai), not the browser's.
        await page.click("#cases tr.sos a")
        await page.wait_for_selector("#timeline li")
        assert "2026-11-23 02:13:00" in await page.inner_text("#timeline")

        await page.click("#lang")
        await page.wait_for_selector("html[lang=en]")
        assert "Timeline" in await page.inner_text("main")
        await gateway.disconnect()


async def test_console_without_session_shows_login(
    tmp_path: Path, mosquitto_broker: Broker, browser: Browser
) -> None:
    async with Hub(settings=hub_settings(tmp_path, mosquitto_broker)) as hub:
        page = await browser.new_page()
        await page.goto(f"http://127.0.0.1:{hub.http_port}/")
        assert page.url.endswith("/login")
        assert "登录" in await page.inner_text("h1")


async def test_worker_phone_page_takes_an_sos_through_accept_arrive_and_report(
    tmp_path: Path, mosquitto_broker: Broker, browser: Browser
) -> None:
    async with Hub(settings=hub_settings(tmp_path, mosquitto_broker), clock=ManualClock(start=NIGHT)) as hub:
        gateway = await publisher(mosquitto_broker)
        gateway.publish(
            f"zigbee2mqtt/{SOS_BUTTON}",
            (SAMPLES / "zigbee2mqtt" / "tuya_ts0215a_sos_emergency.json").read_bytes(),
            qos=1,
        )
        context = await browser.new_context(viewport={"width": 390, "height": 844}, locale="zh-CN")  # a phone
        page = await context.new_page()
        await log_in(page, hub.http_port, WORKER_TOKEN)
        assert page.url.endswith("/m"), "a worker's login lands on the phone page"
        item = await page.wait_for_selector("li.case", timeout=10_000)
        assert item is not None and "一键呼救" in await item.inner_text()
        assert await item.get_attribute("class") == "case green"
        await item.click()
        card = await page.wait_for_selector("#d-resident:not([hidden])")
        assert card is not None
        text = await card.inner_text()
        assert (
            "王秀英" in text and "13987654321" in text and "独居" in text
        )  # the assigned worker sees the elder

        await page.click('button[data-action="accept"]')
        await page.wait_for_selector('button[data-action="arrive"]')
        await page.click('button[data-action="arrive"]')
        await page.wait_for_selector('button[data-action="handle"]')
        await page.click('button[data-action="handle"]')
        assert await page.text_content("#d-error") == "请填写处置情况"  # a report needs a note
        await page.fill("#d-note", "已到场,老人无碍")
        await page.click('button[data-action="handle"]')
        await page.wait_for_selector('button[data-action="handle"]', state="detached")
        if os.environ.get("LINLI_DEV_SCREENSHOTS"):
            await page.screenshot(path=os.environ["LINLI_DEV_SCREENSHOTS"] + "/phone-zh.png", full_page=True)
        (case_id,) = hub.cases.case_ids(states=[CaseState.HANDLED])
        timeline = [(e.action.value, e.actor, e.channel.value) for e in hub.cases.timeline(case_id)]
        assert timeline[-3:] == [
            ("accept", "w-night", "phone_page"),
            ("arrive", "w-night", "phone_page"),
            ("handle", "w-night", "phone_page"),
        ]
        await context.close()
        await gateway.disconnect()


async def test_console_session_logs_out_and_refuses_a_post_from_another_port(
    tmp_path: Path, mosquitto_broker: Broker, browser: Browser
) -> None:
    """Issue 11 #4: a page on another loopback port (same site) cannot use the session to post."""
    async with Hub(settings=hub_settings(tmp_path, mosquitto_broker), clock=ManualClock(start=NIGHT)) as hub:
        context = await browser.new_context()
        page = await context.new_page()
        await log_in(page, hub.http_port, TOKEN)
        await page.wait_for_selector("#conn.on")
        (cookie,) = [c for c in await context.cookies() if c["name"] == "linli_session"]
        assert cookie["httpOnly"] and cookie["sameSite"] == "Strict" and cookie["value"] != TOKEN
        # The console's own POST carries the CSRF token and works …
        status = await page.evaluate(
            """async () => { const s = await (await fetch('/api/session')).json();
              const r = await fetch('/api/rules/reload', {method: 'POST', headers: {'X-CSRF-Token': s.csrf}});
              return r.status; }"""
        )
        assert status == 200
        # … a forged one without it does not (the attacker's page cannot read the token).
        status = await page.evaluate(
            "async () => (await fetch('/api/rules/reload', {method: 'POST'})).status"
        )
        assert status == 403
        await page.click("#logout")
        await page.wait_for_url("**/login")
        await page.goto(f"http://127.0.0.1:{hub.http_port}/")
        assert page.url.endswith("/login"), "after logout the old cookie opens nothing"
        await context.close()
