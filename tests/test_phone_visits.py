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
from tests.helpers import WORKER_TOKEN, eventually, hub_settings
from tests.support.servers import Broker
from tests.test_console import NIGHT, browser, log_in

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
