"""The command centre's pages in real headless Chromium (Debian's chromium via Playwright).

An SOS published to Mosquitto appears on the overview with its place without a reload; the
worker accepts it on the phone page in a second browser context and the overview follows;
a grid worker's session sees his grid only; every page renders with 100 000 devices
registered. Screenshots of every page (1920×1080, phone 390×844) and the measured times go
to ``test-artifacts/`` (git-ignored): figures, not pass/fail thresholds.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import aiohttp
from playwright.async_api import Browser, Page

from hub.app import Hub
from hub.clock import ManualClock
from tests.helpers import (
    GRID,
    REGISTRY,
    SOS_BUTTON,
    TOKEN,
    VIEWER_TOKEN,
    WORKER_TOKEN,
    eventually,
    hub_settings,
    publisher,
    with_doors,
)
from tests.support.samples import SAMPLES
from tests.support.servers import Broker
from tests.test_console import NIGHT, browser, log_in

__all__ = ["browser"]  # the fixture, shared with test_console

ARTIFACTS = Path(__file__).parents[1] / "test-artifacts"
SHOTS = ARTIFACTS / "screenshots"
WALL = {"width": 1920, "height": 1080}
PHONE = {"width": 390, "height": 844}
SOS_SAMPLE = SAMPLES / "zigbee2mqtt" / "tuya_ts0215a_sos_emergency.json"
OTHER_GRID = "110105001001002"
#: A second community file: an SOS button in the second grid, which w-night does not cover.
TWO_GRIDS = REGISTRY.replace(
    "    devices:\n",
    f'    devices:\n      - {{id: sos-2, kind: sos_button, model: TS0215A, grid: "{OTHER_GRID}", location: 5号楼}}\n',
)


async def shot(page: Page, name: str) -> None:
    SHOTS.mkdir(parents=True, exist_ok=True)
    await page.screenshot(path=str(SHOTS / f"{name}.png"), full_page=False)


def record(name: str, figures: dict[str, object]) -> None:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    (ARTIFACTS / f"{name}.json").write_text(json.dumps(figures, indent=2) + "\n", encoding="utf-8")


async def test_sos_live_on_the_overview_accepted_on_the_phone_and_every_page_shot(
    tmp_path: Path, mosquitto_broker: Broker, browser: Browser
) -> None:
    async with Hub(settings=hub_settings(tmp_path, mosquitto_broker), clock=ManualClock(start=NIGHT)) as hub:
        wall = await browser.new_context(viewport=WALL, locale="zh-CN")
        page = await wall.new_page()
        await log_in(page, hub.http_port, TOKEN)
        await page.wait_for_selector("#conn.on")
        await page.evaluate("window.__notReloaded = true")

        gateway = await publisher(mosquitto_broker)
        sent = time.monotonic()
        gateway.publish(f"zigbee2mqtt/{SOS_BUTTON}", SOS_SAMPLE.read_bytes(), qos=1)
        row = await page.wait_for_selector("#cases tr.sos[data-case-id]", timeout=10_000)
        appeared = time.monotonic() - sent
        assert row is not None
        assert await page.evaluate("window.__notReloaded") is True
        text = await row.inner_text()
        assert "第一网格 3号楼 2单元 401" in text, "the place: grid, building, unit, room"
        assert "王秀英" in text, "the command centre sees the elder's name"
        assert "派遣·待受理" in text and "正常" in text, "stage and the light's label, never colour alone"
        assert await page.evaluate("window.__linliCues") == 1, "a new SOS sounds its cue once"
        case_id = await row.get_attribute("data-case-id")
        await shot(page, "overview")

        # The operator can switch the cue off; the choice survives a reload.
        await page.click("#sound")
        assert await page.get_attribute("#sound", "aria-pressed") == "false"
        await page.reload()
        assert await page.get_attribute("#sound", "aria-pressed") == "false"

        # Case detail: place, timeline, who was told, the elder with contacts, allowed actions.
        await page.click(f'#cases tr[data-case-id="{case_id}"] a')
        await page.wait_for_selector("#timeline li")
        assert "3号楼" in await page.inner_text("#case-meta")
        resident = await page.inner_text("#resident")
        assert "王秀英" in resident and "13987654321" in resident
        assert await page.locator("#notices tbody tr").count() >= 1
        assert await page.locator('#case-actions button[data-action="supervise"]').count() == 1
        await shot(page, "case")
        # The workflow's refusal is shown: a false alarm on an SOS needs a recorded call-back first.
        await page.click('#case-actions button[data-action="false_alarm"]')
        refusal = await page.wait_for_selector("#action-error:not(:empty)")
        assert refusal is not None and await refusal.inner_text() != ""

        # The worker accepts on the phone page, in a second browser context.
        phone_ctx = await browser.new_context(viewport=PHONE, locale="zh-CN")
        phone = await phone_ctx.new_page()
        await log_in(phone, hub.http_port, WORKER_TOKEN)
        item = await phone.wait_for_selector("li.case", timeout=10_000)
        assert item is not None
        await shot(phone, "phone-list")
        await item.click()
        card = await phone.wait_for_selector("#d-resident:not([hidden])")
        assert card is not None and "3号楼2单元401" in await card.inner_text()
        assert await phone.locator('#d-resident a[href^="tel:"]').count() >= 1
        await shot(phone, "phone-case")

        await page.goto(f"http://127.0.0.1:{hub.http_port}/")
        await page.wait_for_selector("#conn.on")
        await page.evaluate("window.__notReloaded = true")
        await phone.click('button[data-action="accept"]')
        accepted = page.locator(f'#cases tr[data-case-id="{case_id}"]', has_text="已受理")
        await accepted.wait_for(timeout=10_000)
        assert await page.evaluate("window.__notReloaded") is True, "the overview follows without a reload"

        for path, name in (
            ("/map", "map"),
            (f"/map/{GRID}", "grid"),
            ("/devices", "devices"),
            ("/roster", "roster"),
            ("/kpis", "kpis"),
        ):
            await page.goto(f"http://127.0.0.1:{hub.http_port}{path}")
            await page.wait_for_selector("main h2")
            await shot(page, name)
        await page.goto(f"http://127.0.0.1:{hub.http_port}/map")
        tile = await page.inner_text(f'.grid-tile[data-grid="{GRID}"]')
        assert "1" in tile and "SOS" in tile, "the grid with the open SOS is marked, with its number"
        record("sos-to-overview", {"seconds_publish_to_row": round(appeared, 3)})
        await gateway.disconnect()
        await phone_ctx.close()
        await wall.close()


async def test_a_grid_workers_session_sees_his_grid_only(
    tmp_path: Path, mosquitto_broker: Broker, browser: Browser
) -> None:
    community = tmp_path / "two-grids.yaml"
    community.write_text(TWO_GRIDS, encoding="utf-8")
    settings = hub_settings(tmp_path, mosquitto_broker, community_file=str(community))
    async with Hub(settings=settings, clock=ManualClock(start=NIGHT)) as hub:
        gateway = await publisher(mosquitto_broker)
        gateway.publish(f"zigbee2mqtt/{SOS_BUTTON}", SOS_SAMPLE.read_bytes(), qos=1)
        gateway.publish("zigbee2mqtt/sos-2", SOS_SAMPLE.read_bytes(), qos=1)
        context = await browser.new_context(viewport=WALL, locale="zh-CN")
        page = await context.new_page()
        # The command centre sees both SOS …
        await log_in(page, hub.http_port, TOKEN)
        await page.wait_for_function("() => document.querySelectorAll('#cases tr.sos').length === 2")
        other = await page.get_attribute('#cases tr.sos:has-text("第二网格")', "data-case-id")
        assert other is not None
        await context.close()

        # … the night worker of the first grid, in his own session, only his.
        context = await browser.new_context(viewport=WALL, locale="zh-CN")
        page = await context.new_page()
        await log_in(page, hub.http_port, WORKER_TOKEN)
        base = f"http://127.0.0.1:{hub.http_port}"
        await page.goto(f"{base}/")
        await page.wait_for_selector("#cases tr.sos")
        assert await page.locator("#cases tr[data-case-id]").count() == 1
        assert "第二网格" not in await page.inner_text("main")
        response = await page.goto(f"{base}/cases/{other}")
        assert response is not None and response.status == 404
        assert "第二网格" not in await page.inner_text("main")
        await page.goto(f"{base}/map")
        assert await page.locator(f'.grid-tile[data-grid="{OTHER_GRID}"]').count() == 0
        assert await page.locator(f'.grid-tile[data-grid="{GRID}"]').count() == 1
        response = await page.goto(f"{base}/map/{OTHER_GRID}")
        assert response is not None and response.status == 404
        await page.goto(f"{base}/devices")
        assert await page.locator('tr[data-device-id="sos-2"]').count() == 0
        assert await page.locator(f'tr[data-device-id="{SOS_BUTTON}"]').count() == 1
        await page.goto(f"{base}/roster")
        assert await page.locator(f'#duty tr[data-grid="{OTHER_GRID}"]').count() == 0
        await page.goto(f"{base}/kpis")
        assert OTHER_GRID not in await page.inner_text("main")
        await context.close()
        await gateway.disconnect()


async def test_every_page_renders_with_100_000_devices_and_the_devices_page_is_bounded(
    tmp_path: Path, mosquitto_broker: Broker, browser: Browser
) -> None:
    registry = with_doors(100_000)  # the test community plus 100 000 door sensors in its first grid
    settings = hub_settings(tmp_path, mosquitto_broker)
    async with Hub(settings=settings, clock=ManualClock(start=NIGHT), registry=registry) as hub:
        gateway = await publisher(mosquitto_broker)
        gateway.publish(f"zigbee2mqtt/{SOS_BUTTON}", SOS_SAMPLE.read_bytes(), qos=1)
        context = await browser.new_context(viewport=WALL, locale="zh-CN")
        page = await context.new_page()
        await log_in(page, hub.http_port, TOKEN)
        await page.wait_for_selector("#cases tr.sos")
        case_id = await page.get_attribute("#cases tr.sos", "data-case-id")
        base = f"http://127.0.0.1:{hub.http_port}"
        figures: dict[str, float] = {}
        for path in (
            "/",
            f"/cases/{case_id}",
            "/map",
            f"/map/{GRID}",
            "/devices",
            "/devices?offset=99900",
            "/roster",
            "/kpis",
        ):
            started = time.monotonic()
            response = await page.goto(f"{base}{path}", wait_until="load")
            figures[path] = round(time.monotonic() - started, 3)
            assert response is not None and response.status == 200, path
        await page.goto(f"{base}/devices")
        assert await page.text_content("#device-total") == "100005"
        assert await page.locator("#devices tbody tr").count() == 100, "one bounded page, not 100 000 rows"
        assert await page.locator("#next").count() == 1
        await shot(page, "devices-100k")
        await page.click("#next")
        await page.wait_for_url("**offset=100**")
        assert await page.locator("#devices tbody tr").count() == 100
        record("pages-100k-devices", {"seconds_to_load": figures})
        await context.close()
        await gateway.disconnect()


async def test_a_wall_display_sees_the_sos_without_the_elders_name_room_or_contacts(
    tmp_path: Path, mosquitto_broker: Broker
) -> None:
    """The ``viewer`` role (a wall in a public office): the elder masked, the place only to the grid."""
    async with Hub(settings=hub_settings(tmp_path, mosquitto_broker), clock=ManualClock(start=NIGHT)) as hub:
        gateway = await publisher(mosquitto_broker)
        gateway.publish(f"zigbee2mqtt/{SOS_BUTTON}", SOS_SAMPLE.read_bytes(), qos=1)
        await eventually(hub.cases.case_ids, what="the SOS case")
        (case_id,) = hub.cases.case_ids()
        base = f"http://127.0.0.1:{hub.http_port}"
        async with aiohttp.ClientSession(headers={"Authorization": f"Bearer {VIEWER_TOKEN}"}) as http:
            async with http.get(f"{base}/?part=main") as response:
                overview = await response.text()
            async with http.get(f"{base}/cases/{case_id}") as response:
                detail = await response.text()
        assert response.status == 200
        assert "王**" in overview and "王秀英" not in overview
        assert "第一网格" in overview and "2单元" not in overview and "3号楼" not in overview
        assert "王秀英" not in detail and "13987654321" not in detail and "13812345678" not in detail
        assert "3号楼" not in detail and 'data-action="' not in detail, "a wall display never acts"
        assert 'id="notices"' not in detail, "nor sees who was told"
        await gateway.disconnect()


CONTRAST_JS = """() => {
  // WCAG 2 contrast of every label's text on its own background (lights, severities, nav, SOS).
  const lum = (rgb) => {
    const [r, g, b] = rgb.match(/\\d+(\\.\\d+)?/g).slice(0, 3).map(Number).map((v) => {
      const c = v / 255; return c <= 0.03928 ? c / 12.92 : ((c + 0.055) / 1.055) ** 2.4; });
    return 0.2126 * r + 0.7152 * g + 0.0722 * b;
  };
  const background = (el) => {
    for (let e = el; e; e = e.parentElement) {
      const bg = getComputedStyle(e).backgroundColor;
      if (bg && !bg.startsWith("rgba(0, 0, 0, 0)")) return bg;
    }
    return "rgb(255, 255, 255)";
  };
  return [...document.querySelectorAll(".sev, .light-tag, header a, header button, tr.sos td, .stat")].map((el) => {
    const [a, b] = [lum(getComputedStyle(el).color), lum(background(el))];
    return [el.className || el.tagName, (Math.max(a, b) + 0.05) / (Math.min(a, b) + 0.05)];
  });
}"""


async def test_pages_are_keyboard_operable_and_labels_readable(
    tmp_path: Path, mosquitto_broker: Broker, browser: Browser
) -> None:
    async with Hub(settings=hub_settings(tmp_path, mosquitto_broker), clock=ManualClock(start=NIGHT)) as hub:
        gateway = await publisher(mosquitto_broker)
        gateway.publish(f"zigbee2mqtt/{SOS_BUTTON}", SOS_SAMPLE.read_bytes(), qos=1)
        context = await browser.new_context(viewport=WALL, locale="zh-CN")
        page = await context.new_page()
        await log_in(page, hub.http_port, TOKEN)
        await page.wait_for_selector("#cases tr.sos")
        low = [(name, round(ratio, 2)) for name, ratio in await page.evaluate(CONTRAST_JS) if ratio < 4.5]
        assert low == [], "text below WCAG AA contrast (4.5:1)"

        # Only the keyboard: the skip link first, then the navigation; Enter opens the case.
        await page.keyboard.press("Tab")
        assert await page.evaluate("document.activeElement.className") == "skip"
        await page.keyboard.press("Tab")
        assert await page.evaluate("document.activeElement.getAttribute('href')") == "/"
        await page.focus("#cases tr.sos a")
        await page.keyboard.press("Enter")
        await page.wait_for_selector("#timeline li")
        assert "/cases/" in page.url
        low = [(name, round(ratio, 2)) for name, ratio in await page.evaluate(CONTRAST_JS) if ratio < 4.5]
        assert low == []
        # A note and an action, by keyboard alone; what is typed survives a live refresh.
        await page.focus("#case-actions textarea")
        await page.keyboard.type("已电话联系老人")
        before = await page.evaluate("window.__linliRefreshes || 0")
        gateway.publish("zigbee2mqtt/heiman-1", SOS_SAMPLE.read_bytes(), qos=1)  # another case: an event
        await page.wait_for_function(f"() => (window.__linliRefreshes || 0) > {before}")
        assert await page.input_value("#case-actions textarea") == "已电话联系老人"
        await page.focus('#case-actions button[data-action="note"]')
        await page.keyboard.press("Enter")
        await page.locator("#timeline li", has_text="已电话联系老人").wait_for(timeout=10_000)
        await context.close()
        await gateway.disconnect()


async def test_the_kpi_page_computes_its_rates_from_the_store_over_the_chosen_period(
    tmp_path: Path, mosquitto_broker: Broker
) -> None:
    clock = ManualClock(start=NIGHT)
    async with Hub(settings=hub_settings(tmp_path, mosquitto_broker), clock=clock) as hub:
        gateway = await publisher(mosquitto_broker)
        gateway.publish(f"zigbee2mqtt/{SOS_BUTTON}", SOS_SAMPLE.read_bytes(), qos=1)
        await eventually(hub.cases.case_ids, what="the SOS case")
        (case_id,) = hub.cases.case_ids()
        base = f"http://127.0.0.1:{hub.http_port}"
        async with aiohttp.ClientSession(headers={"Authorization": f"Bearer {TOKEN}"}) as http:
            for action, body in (
                ("accept", {"on_behalf_of": "w-night"}),
                ("arrive", {"on_behalf_of": "w-night"}),
                ("handle", {"on_behalf_of": "w-night", "note": "老人无碍"}),
                ("verify", {"data": {"passed": True}}),
                ("close", {}),
            ):
                clock.advance(60)
                async with http.post(f"{base}/api/cases/{case_id}/{action}", json=body) as response:
                    assert response.status == 200, (action, await response.text())
            clock.advance(3 * 3600)  # past the case's deadline: it counts as due (结案率's denominator)
            async with http.get(f"{base}/kpis?from=2026-11-23&to=2026-11-23") as response:
                day = await response.text()
            async with http.get(f"{base}/kpis?from=2026-11-01&to=2026-11-22") as response:
                before = await response.text()
            async with http.get(f"{base}/kpis?from=2026-11-23&to=2026-11-01") as response:
                assert response.status == 400, "a period that ends before it starts is refused"
        row = day.split(f'data-key="{GRID}"')[1].split("</tr>")[0]
        assert row.count("100.0 %") == 2 and "0.0 %" in row, "结案率 and 按期结案率 100 %, 返工率 0 %"
        assert 'data-key="w-night"' in day, "per worker for the command centre"
        assert f'data-key="{GRID}"' not in before, "nothing in a period without cases"
        await gateway.disconnect()
