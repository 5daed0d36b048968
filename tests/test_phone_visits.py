"""The worker's visit list on the phone page in a real browser (Debian's Chromium via Playwright):
his grid's visits appear with a traffic light, an outcome needing a note refuses without one, and
a tap records the visit as him from the phone page. The guardian's one-time 评价 page works
without an account."""

from __future__ import annotations

from pathlib import Path

from playwright.async_api import Browser

from hub.app import Hub
from hub.cases.care import Outcome, TaskKind
from hub.clock import ManualClock
from tests.helpers import TOKEN, WORKER_TOKEN, eventually, hub_settings
from tests.support.servers import Broker
from tests.test_case_flow import call
from tests.test_console import NIGHT, browser, log_in
from tests.test_evaluations import closed_case

__all__ = ["browser"]  # the Chromium fixture, shared with the console tests


async def test_the_worker_records_a_visit_from_his_phone(
    tmp_path: Path, mosquitto_broker: Broker, browser: Browser
) -> None:
    async with Hub(settings=hub_settings(tmp_path, mosquitto_broker), clock=ManualClock(start=NIGHT)) as hub:
        task = await eventually(lambda: hub.visits.visits.open_task("r1", TaskKind.VISIT), what="r1's visit")
        context = await browser.new_context(viewport={"width": 390, "height": 844}, locale="zh-CN")
        page = await context.new_page()
        await log_in(page, hub.http_port, WORKER_TOKEN)
        item = await page.wait_for_selector(f'li.visit[data-key="{task.key}"]', timeout=10_000)
        assert item is not None
        assert await item.get_attribute("class") == "visit green"
        assert "上门探访" in await item.inner_text()
        assert len(await page.query_selector_all("li.visit")) == 2, "the weekly visit and the monthly call"
        await page.click(f'li.visit[data-key="{task.key}"] button[data-outcome="not_at_home"]')
        error = await page.text_content(f'li.visit[data-key="{task.key}"] p.error')
        assert error == "请填写情况说明", "not at home needs a note"
        assert hub.visits.visits.records(task.key) == []
        await page.click(f'li.visit[data-key="{task.key}"] button[data-outcome="visited_well"]')
        await page.wait_for_selector(f'li.visit[data-key="{task.key}"]', state="detached")
        (recorded,) = hub.visits.visits.records(task.key)
        assert (recorded.record.outcome, recorded.record.by, recorded.channel) == (
            Outcome.VISITED_WELL,
            "w-night",
            "phone_page",
        )
        # The next weekly visit took its place in the list, a week after this one (done the day it opened).
        following = hub.visits.visits.open_task("r1", TaskKind.VISIT)
        assert following is not None and following.task.due_at == task.task.due_at + 7 * 86400
        await page.wait_for_selector(f'li.visit[data-key="{following.key}"]')
        await context.close()


async def test_a_guardian_evaluates_from_the_link_on_his_phone_without_an_account(
    tmp_path: Path, mosquitto_broker: Broker, browser: Browser
) -> None:
    async with Hub(settings=hub_settings(tmp_path, mosquitto_broker), clock=ManualClock(start=NIGHT)) as hub:
        case_id = await closed_case(hub, mosquitto_broker)
        status, link = await call(
            hub, "POST", f"/api/cases/{case_id}/evaluation-link", TOKEN, {"guardian": "李明"}
        )
        assert status == 200
        context = await browser.new_context(viewport={"width": 390, "height": 844}, locale="zh-CN")
        page = await context.new_page()  # no login: a fresh browser with the link only
        await page.goto(link["url"])
        await page.wait_for_selector("#form:not([hidden])")
        assert "李明" in await page.inner_text("#hello")
        await page.click('button[data-rating="unsatisfied"]')
        assert await page.text_content("#error") == "不满意时请写明原因。"
        await page.fill("#note", "地上的水没有清理")
        await page.click('button[data-rating="unsatisfied"]')
        await page.wait_for_selector("#form", state="hidden")
        assert "返工" in await page.inner_text("#message")
        entry = hub.cases.timeline(case_id)[-1]
        assert (entry.action.value, entry.actor, entry.note) == (
            "evaluate",
            "guardian:李明",
            "地上的水没有清理",
        )
        await page.reload()
        await page.wait_for_selector("#error:text('链接已使用 / this link was already used')")
        await context.close()


async def test_the_console_care_view_records_a_call_back_and_lists_visits(
    tmp_path: Path, mosquitto_broker: Broker, browser: Browser
) -> None:
    async with Hub(settings=hub_settings(tmp_path, mosquitto_broker), clock=ManualClock(start=NIGHT)) as hub:
        case_id = await closed_case(hub, mosquitto_broker)
        await hub.advance_clock(hub.clock.now() + 3 * 86400)  # evaluation.call_back_after
        context = await browser.new_context(locale="zh-CN")
        page = await context.new_page()
        await log_in(page, hub.http_port, TOKEN)
        await page.goto(f"http://127.0.0.1:{hub.http_port}/care")
        row = await page.wait_for_selector(f'#callbacks tr[data-case="{case_id}"]', timeout=10_000)
        assert row is not None and "w-night" in await row.inner_text()
        assert "上门探访" in await page.inner_text("#visit-table")
        await page.click(f'#callbacks tr[data-case="{case_id}"] button[data-rating="basically_satisfied"]')
        await page.wait_for_selector(f'#callbacks tr[data-case="{case_id}"]', state="detached")
        entry = hub.cases.timeline(case_id)[-1]
        assert (entry.action.value, entry.channel.value, entry.data["rating"], entry.data["via"]) == (
            "evaluate",
            "console",
            "basically_satisfied",
            "phone_call",
        )
        await context.close()
