"""The guardian's 评价 link sent on his own channel when his elder's case closes (issue 18): once per
结案, only to guardians with a channel, only with a public address to link to; a real hub, broker
and both store engines, the guardian's MQTT endpoint read by a subscriber like his app."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import pytest

from hub.app import Hub
from hub.clock import ManualClock
from hub.storage.links import EvaluationLinks
from tests.helpers import REGISTRY, TOKEN, WORKER_TOKEN, Phone, eventually, hub_settings
from tests.support.servers import Broker
from tests.test_case_flow import PRESS, call
from tests.test_evaluations import anonymous, closed_case

PUBLIC = "https://linli.example.org"
SON_TOPIC = "guardians/g-son/notices"
#: Two guardians: the son has a channel (an id and endpoints), the neighbour only a phone number.
CONTACTS = (
    'emergency_contacts: [{id: g-son, name: 李明, relation: 儿子, phone: "13987654321"},'
    ' {name: 张阿姨, relation: 邻居, phone: "13700000000"}]'
)


def _files(tmp_path: Path) -> dict[str, Any]:
    original = 'emergency_contacts: [{name: 李明, relation: 儿子, phone: "13987654321"}]'
    assert original in REGISTRY
    registry = tmp_path / "guardians.yaml"
    registry.write_text(REGISTRY.replace(original, CONTACTS), encoding="utf-8")
    channels = tmp_path / "channels.yaml"
    channels.write_text(
        f"people:\n  - person_id: g-son\n    endpoints: [{{kind: mqtt, address: {SON_TOPIC}}}]\n",
        encoding="utf-8",
    )
    return {"community_file": str(registry), "channels_file": str(channels)}


@asynccontextmanager
async def _hub(tmp_path: Path, broker: Broker, store_url: str, **http: Any) -> AsyncIterator[Hub]:
    settings = hub_settings(
        tmp_path,
        broker,
        store={"url": store_url},
        http={"host": "127.0.0.1", "port": 0, **http},
        **_files(tmp_path),
    )
    async with Hub(settings=settings, clock=ManualClock(start=PRESS)) as hub:
        yield hub


@pytest.fixture
async def son(mosquitto_broker: Broker) -> AsyncIterator[Phone]:
    phone = Phone(mosquitto_broker, client_id="guardian-son")
    await phone.start("guardians/+/notices")
    yield phone
    await phone.stop()


def _links(phone: Phone) -> list[str]:
    return [body["notice"]["link"] for topic, body, _ in phone.messages if topic == SON_TOPIC]


async def test_a_closed_case_sends_the_guardian_his_link_once_and_again_after_rework(
    tmp_path: Path, mosquitto_broker: Broker, store_url: str, son: Phone
) -> None:
    async with _hub(tmp_path, mosquitto_broker, store_url, public_url=PUBLIC + "/") as hub:
        case_id = await closed_case(hub, mosquitto_broker)
        (url,) = await eventually(lambda: _links(son), what="the son's 评价 link")
        assert url.startswith(f"{PUBLIC}/e/")
        (_, body, _) = next(m for m in son.messages if m[0] == SON_TOPIC)
        assert body["notice"]["kind"] == "evaluate" and body["notice"]["case_id"] == case_id
        # Only the son: the neighbour has no channel of her own (the desk calls her).
        assert [link.guardian for link in EvaluationLinks(store=hub.store).for_case(case_id)] == ["李明"]
        # Once: the same closing seen again (a replayed change, a restart) sends nothing.
        case = hub.cases.load(case_id)
        assert case is not None and hub.guardian_links.on_case_changed(case) == 0
        assert len(EvaluationLinks(store=hub.store).for_case(case_id)) == 1
        # The link he got works without an account; 不满意 sends the case back …
        token = url.rsplit("/e/", 1)[1]
        status, view = await anonymous(hub, "GET", f"/api/evaluation-links/{token}")
        assert status == 200 and view["guardian"] == "李明"
        status, done = await anonymous(
            hub, "POST", f"/api/evaluation-links/{token}", {"rating": "unsatisfied", "note": "地上还有水"}
        )
        assert status == 200 and done["reopened"] is True
        # … and its new 结案 is a new closing: a new link.
        steps = [("arrive", WORKER_TOKEN), ("handle", WORKER_TOKEN), ("verify", TOKEN), ("close", TOKEN)]
        for action, token_of in steps:
            await hub.advance_clock(hub.clock.now() + 60)
            body_in = {"note": "已擦干"} if action == "handle" else {}
            status, answer = await call(hub, "POST", f"/api/cases/{case_id}/{action}", token_of, body_in)
            assert status == 200, (action, answer)
        await eventually(lambda: len(_links(son)) == 2, what="the second link")
        assert _links(son)[1] != url


async def test_without_a_public_address_no_link_is_sent(
    tmp_path: Path, mosquitto_broker: Broker, store_url: str, son: Phone
) -> None:
    async with _hub(tmp_path, mosquitto_broker, store_url) as hub:
        case_id = await closed_case(hub, mosquitto_broker)
        case = hub.cases.load(case_id)
        assert case is not None and case.awaiting_evaluation
        assert [c.id for c in hub.guardian_links.guardians(case)] == ["g-son"]
        assert hub.guardian_links.on_case_changed(case) == 0
        assert EvaluationLinks(store=hub.store).for_case(case_id) == [] and _links(son) == []
