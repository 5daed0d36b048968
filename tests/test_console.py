"""The live console in a real browser (Debian's Chromium via Playwright): an SOS appears without reload."""

from __future__ import annotations

import os
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from playwright.async_api import Browser, async_playwright

from hub.app import Hub
from hub.clock import ManualClock
from tests.conftest import SAMPLES, server_missing
from tests.helpers import SOS_BUTTON, TOKEN, hub_settings, publisher
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
        await page.goto(f"http://127.0.0.1:{hub.http_port}/login?token={TOKEN}")
        await page.wait_for_selector("#conn.on")  # the event stream is connected
        assert await page.title() == "邻里 · 指挥中心"
        assert await page.text_content("#empty") == "暂无告警"
        await page.evaluate("window.__notReloaded = true")

        gateway = await publisher(mosquitto_broker)
        gateway.publish(
            f"zigbee2mqtt/{SOS_BUTTON}",
            (SAMPLES / "zigbee2mqtt" / "tuya_ts0215a_sos_emergency.json").read_bytes(),
            qos=1,
        )
        row = await page.wait_for_selector('tr[data-rule="elderly.sos"]', timeout=10_000)
        assert row is not None
        text = await row.inner_text()
        assert "一键呼救" in text and "紧急" in text and SOS_BUTTON in text and "110105001001001" in text
        assert "02:13:00" in text, (
            "times are shown in the community's zone (Asia/Shanghai), not the browser's"
        )
        assert await page.evaluate("window.__notReloaded") is True, "the row must arrive without a reload"
        assert await page.text_content("#count-active") == "1"
        if os.environ.get("LINLI_SCREENSHOTS"):
            await page.screenshot(path=os.environ["LINLI_SCREENSHOTS"] + "/console-zh.png", full_page=True)

        await page.click("#lang")
        assert (
            "SOS button pressed" in await row.inner_text()
            or "SOS button pressed" in await page.inner_text("#alerts")
        )
        assert await page.get_attribute("html", "lang") == "en"
        await gateway.disconnect()


async def test_console_without_session_shows_login(
    tmp_path: Path, mosquitto_broker: Broker, browser: Browser
) -> None:
    async with Hub(settings=hub_settings(tmp_path, mosquitto_broker)) as hub:
        page = await browser.new_page()
        await page.goto(f"http://127.0.0.1:{hub.http_port}/")
        assert page.url.endswith("/login")
        assert "登录" in await page.inner_text("h1")
