"""The phone page's case list (issue 15): each case's place, and for an SOS the elder's address
with a ``tel:`` call link, on a 390×844 screen — only for roles the access table lets see them."""

from __future__ import annotations

from pathlib import Path

import aiohttp
from playwright.async_api import Browser

from hub.app import Hub
from hub.clock import ManualClock
from tests.helpers import SOS_BUTTON, VIEWER_TOKEN, WORKER_TOKEN, eventually, hub_settings, publisher
from tests.support.samples import SAMPLES
from tests.support.servers import Broker
from tests.test_console import NIGHT, browser, log_in
from tests.test_console_pages import PHONE, shot

__all__ = ["browser"]  # the fixture

SOS_SAMPLE = SAMPLES / "zigbee2mqtt" / "tuya_ts0215a_sos_emergency.json"
PLACE = "第一网格 3号楼 2单元 401"  # grid, building, unit, room: each once


async def test_the_phone_list_shows_where_to_go_and_whom_to_call_at_390x844(
    tmp_path: Path, mosquitto_broker: Broker, browser: Browser
) -> None:
    async with Hub(settings=hub_settings(tmp_path, mosquitto_broker), clock=ManualClock(start=NIGHT)) as hub:
        gateway = await publisher(mosquitto_broker)
        gateway.publish(f"zigbee2mqtt/{SOS_BUTTON}", SOS_SAMPLE.read_bytes(), qos=1)
        await eventually(hub.cases.case_ids, what="the SOS case")

        context = await browser.new_context(viewport=PHONE, locale="zh-CN")
        page = await context.new_page()
        await log_in(page, hub.http_port, WORKER_TOKEN)
        item = await page.wait_for_selector("li.case .where", timeout=10_000)
        assert item is not None
        assert await page.text_content("li.case .place") == PLACE
        address = await page.text_content("li.case .address")
        assert address is not None and "王秀英" in address and "3号楼2单元401" in address
        call = await page.wait_for_selector('li.case a[href^="tel:"]')
        assert call is not None and await call.get_attribute("href") == "tel:13812345678"
        assert "拨打" in await call.inner_text()
        # Made for the phone: nothing wider than the screen, the call link inside it and big enough.
        assert await page.evaluate("document.documentElement.scrollWidth") <= PHONE["width"]
        box = await call.bounding_box()
        assert box is not None and box["x"] + box["width"] <= PHONE["width"] and box["height"] >= 24
        await shot(page, "phone-list-390x844")
        # The call link calls; the rest of the row still opens the case.
        await page.click("li.case strong")
        await page.wait_for_selector("#d-resident:not([hidden])")
        assert PLACE in (await page.text_content("#d-meta") or "")
        await page.click("#lang")
        await page.click("#back")
        english = await page.wait_for_selector('li.case a[href^="tel:"]')
        assert english is not None and "Call" in await english.inner_text()
        await context.close()

        # A wall display (viewer) reads the same list through the API without place or elder.
        headers = {"Authorization": f"Bearer {VIEWER_TOKEN}"}
        async with (
            aiohttp.ClientSession(headers=headers) as http,
            http.get(f"http://127.0.0.1:{hub.http_port}/api/cases") as response,
        ):
            assert response.status == 200
            (seen,) = await response.json()
        assert seen["place"] is None and seen["resident"] is None
        await gateway.disconnect()
