"""评价 after 结案 through the API, on both store engines: who may evaluate (the access table), the
回访 list after ``call_back_after``, a guardian's signed one-time link (no account, single use,
expiry, tampering refused), and 不满意 sending the case back (返工) with fresh deadlines."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any
from urllib.parse import quote

import aiohttp
import pytest

from hub.app import Hub
from hub.cases.workflow import case_from_alert
from hub.clock import ManualClock, iso
from tests.helpers import SOS_BUTTON, TOKEN, VIEWER_TOKEN, WORKER_TOKEN, eventually, hub_settings, publisher
from tests.support.servers import Broker
from tests.test_case_flow import PRESS, SOS, call

DAY = 86400.0


@pytest.fixture
async def hub(tmp_path: Path, mosquitto_broker: Broker, store_url: str) -> AsyncIterator[Hub]:
    clock = ManualClock(start=PRESS)
    settings = hub_settings(tmp_path, mosquitto_broker, store={"url": store_url})
    async with Hub(settings=settings, clock=clock) as running:
        yield running


async def closed_case(hub: Hub, broker: Broker) -> str:
    """An SOS worked to 结案 by the night worker (phone) and the command centre (console)."""
    gateway = await publisher(broker)
    gateway.publish(f"zigbee2mqtt/{SOS_BUTTON}", SOS, qos=1)
    (case_id,) = await eventually(hub.cases.case_ids, what="the SOS case")
    await gateway.disconnect()
    steps: list[tuple[str, str, dict[str, Any]]] = [
        ("accept", WORKER_TOKEN, {}),
        ("arrive", WORKER_TOKEN, {}),
        ("handle", WORKER_TOKEN, {"note": "老人摔倒，已扶起，无大碍"}),
        ("verify", TOKEN, {}),
        ("close", TOKEN, {}),
    ]
    for action, token, body in steps:
        await hub.advance_clock(hub.clock.now() + 60)
        status, answer = await call(hub, "POST", f"/api/cases/{case_id}/{action}", token, body)
        assert status == 200, (action, answer)
    return str(case_id)


async def hub_page(hub: Hub, path: str, token: str) -> str:
    """A console page as the token's holder sees it."""
    headers = {"Authorization": f"Bearer {token}"}
    async with (
        aiohttp.ClientSession() as session,
        session.get(
            f"http://127.0.0.1:{hub.http_port}{path}", headers=headers, allow_redirects=False
        ) as response,
    ):
        assert response.status == 200, response.status
        return await response.text()


async def anonymous(hub: Hub, method: str, path: str, body: dict[str, Any] | None = None) -> tuple[int, Any]:
    """A phone without an account: no token, no cookie."""
    async with (
        aiohttp.ClientSession() as session,
        session.request(method, f"http://127.0.0.1:{hub.http_port}{path}", json=body) as response,
    ):
        text = await response.text()
        return response.status, (
            await response.json() if response.content_type == "application/json" else text
        )


async def test_the_desk_evaluates_after_a_call_back_and_the_grid_team_may_not(
    hub: Hub, mosquitto_broker: Broker
) -> None:
    case_id = await closed_case(hub, mosquitto_broker)
    status, case = await call(hub, "GET", f"/api/cases/{case_id}")
    assert status == 200 and "evaluate" in case["allowed_actions"]
    body = {"rating": "satisfied", "role": "command_centre", "via": "phone_call"}
    status, refused = await call(hub, "POST", f"/api/cases/{case_id}/evaluate", WORKER_TOKEN, body)
    assert status == 403, refused
    status, refused = await call(
        hub, "POST", f"/api/cases/{case_id}/evaluate", TOKEN, {**body, "via": "link"}
    )
    assert status == 403 and "link" in refused["message"]
    # Not yet due for a 回访 (3 days by default) …
    status, listed = await call(hub, "GET", "/api/evaluations/call-backs")
    assert status == 200 and listed == []
    await hub.advance_clock(hub.clock.now() + 3 * DAY)
    status, listed = await call(hub, "GET", "/api/evaluations/call-backs")
    assert [c["case_id"] for c in listed] == [case_id] and listed[0]["handler"] == "w-night"
    status, _ = await call(hub, "GET", "/api/evaluations/call-backs", WORKER_TOKEN)
    assert status == 403, "the 回访 list is the desk's"
    # … then the operator calls back and records it.
    status, evaluated = await call(hub, "POST", f"/api/cases/{case_id}/evaluate", TOKEN, body)
    assert status == 200 and evaluated["state"] == "closed" and "evaluate" not in evaluated["allowed_actions"]
    status, listed = await call(hub, "GET", "/api/evaluations/call-backs")
    assert listed == []
    status, _ = await call(hub, "POST", f"/api/cases/{case_id}/evaluate", TOKEN, body)
    assert status == 409, "one evaluation per closing"
    status, kpis = await call(hub, "GET", f"/api/kpis?to={quote(iso(hub.clock.now() + 60))}")
    assert kpis["overall"]["satisfaction_rate"] == 1.0 and kpis["by_worker"]["w-night"]["satisfied"] == 1


async def test_a_guardian_link_works_once_without_an_account_and_unsatisfied_reopens(
    hub: Hub, mosquitto_broker: Broker
) -> None:
    case_id = await closed_case(hub, mosquitto_broker)
    status, link = await call(
        hub, "POST", f"/api/cases/{case_id}/evaluation-link", TOKEN, {"guardian": "李明"}
    )
    assert status == 200, link
    token = link["url"].rsplit("/e/", 1)[1]
    status, _ = await call(
        hub, "POST", f"/api/cases/{case_id}/evaluation-link", WORKER_TOKEN, {"guardian": "x"}
    )
    assert status == 403, "only the desk sends links"
    # The page and its data need no account.
    status, page = await anonymous(hub, "GET", f"/e/{token}")
    assert status == 200 and "/e/static/evaluate.js" in page
    status, view = await anonymous(hub, "GET", f"/api/evaluation-links/{token}")
    assert status == 200 and view["case_id"] == case_id and view["guardian"] == "李明"
    assert set(view) == {"case_id", "guardian", "title_zh", "title_en", "closed_at", "expires_at"}
    # A forged signature is refused, as is 不满意 without its reason (and neither spends the link).
    nonce, signature = token.split(".")
    forged = f"{nonce}.{signature[:-2]}{'AA' if not signature.endswith('AA') else 'BB'}"
    status, _ = await anonymous(hub, "GET", f"/api/evaluation-links/{forged}")
    assert status == 403
    status, refused = await anonymous(
        hub, "POST", f"/api/evaluation-links/{token}", {"rating": "unsatisfied"}
    )
    assert status == 409 and "note" in refused["message"]
    deadline_before = hub.cases.next_deadline()
    assert deadline_before is None, "a closed case has no deadline"
    status, done = await anonymous(
        hub,
        "POST",
        f"/api/evaluation-links/{token}",
        {"rating": "unsatisfied", "note": "没人回访，地上还有水"},
    )
    assert status == 200 and done == {"case_id": case_id, "state": "accepted", "reopened": True}
    # 返工: back to the same handler with the reason on the timeline, and deadlines again.
    entry = hub.cases.timeline(case_id)[-1]
    assert entry.action.value == "evaluate" and entry.note == "没人回访，地上还有水"
    assert entry.actor == "guardian:李明" and entry.data["role"] == "guardian" and entry.data["via"] == "link"
    assert entry.data["reopened_to"] == "accepted" and entry.data["handler"] == "w-night"
    # The guardian's name is a resident's personal data: the wall display sees "guardian".
    status, seen = await call(hub, "GET", f"/api/cases/{case_id}", VIEWER_TOKEN)
    assert status == 200 and seen["timeline"][-1]["actor"] == "guardian"
    assert "李明" not in str(seen)
    page = await hub_page(hub, f"/cases/{case_id}", VIEWER_TOKEN)
    assert "李明" not in page and "guardian" in page
    status, desk = await call(hub, "GET", f"/api/cases/{case_id}", TOKEN)
    assert desk["timeline"][-1]["actor"] == "guardian:李明"
    assert hub.cases.next_deadline() is not None, "the reopened case is timed again"
    status, _ = await anonymous(hub, "POST", f"/api/evaluation-links/{token}", {"rating": "satisfied"})
    assert status == 403, "a link works once"
    # 返工率 counts it in the period of its original due time (docs/cases.md), 满意率 at the evaluation.
    status, kpis = await call(hub, "GET", f"/api/kpis?to={quote(iso(hub.clock.now() + 30 * DAY))}")
    assert kpis["overall"]["reworked"] == 1 and kpis["overall"]["unsatisfied"] == 1
    assert kpis["overall"]["satisfaction_rate"] == 0.0


async def test_a_link_expires(hub: Hub, mosquitto_broker: Broker) -> None:
    case_id = await closed_case(hub, mosquitto_broker)
    status, link = await call(
        hub, "POST", f"/api/cases/{case_id}/evaluation-link", TOKEN, {"guardian": "李明"}
    )
    token = link["url"].rsplit("/e/", 1)[1]
    await hub.advance_clock(hub.clock.now() + 7 * DAY)
    status, refused = await anonymous(hub, "POST", f"/api/evaluation-links/{token}", {"rating": "satisfied"})
    assert status == 403 and "expired" in refused["message"]
    case = hub.cases.load(case_id)
    assert case is not None and case.awaiting_evaluation, "nothing was recorded"


async def test_unsatisfied_is_refused_when_the_alert_already_has_another_open_case(
    hub: Hub, mosquitto_broker: Broker
) -> None:
    """One open case per alert (the schema's index): the 返工 would break it, so it changes nothing."""
    case_id = await closed_case(hub, mosquitto_broker)
    closed = hub.cases.load(case_id)
    assert closed is not None and closed.alert_id is not None
    alert = hub.store.alert(closed.alert_id)
    assert alert is not None
    # A second case for the same alert (what a later re-raise of the alert could open).
    other, filed = case_from_alert(alert, case_id="other", at=hub.clock.now())
    with hub.store.transaction() as tx:
        hub.cases.add(tx, other, filed)
    before = hub.cases.timeline(case_id)
    body = {"rating": "unsatisfied", "role": "command_centre", "via": "phone_call", "note": "没处理好"}
    status, refused = await call(hub, "POST", f"/api/cases/{case_id}/evaluate", TOKEN, body)
    assert status == 409 and "other" in refused["message"], refused
    assert hub.cases.timeline(case_id) == before, "nothing recorded"
    status, evaluated = await call(
        hub, "POST", f"/api/cases/{case_id}/evaluate", TOKEN, {**body, "rating": "satisfied"}
    )
    assert status == 200 and evaluated["state"] == "closed", "a satisfied evaluation reopens nothing"
