"""Parts of the console pages: the ingest rate on the hub's clock, words for people, the overview's list."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from starlette.requests import Request

from hub.casework.access import Actor, Reach
from hub.clock import ManualClock
from hub.community.files import parse_yaml
from hub.community.registry import Registry
from hub.health.readiness import Readiness
from hub.records import Role
from hub.steps import Steps
from hub.web.pages.overview import IngestMeter, overview
from hub.web.pages.render import Renderer
from hub.web.pages.text import Lang, Words
from tests.helpers import COMMUNITY, GRID, REGISTRY, SOS_BUTTON, drained


def test_the_ingest_rate_is_measured_between_looks_on_the_hubs_clock() -> None:
    meter = IngestMeter()
    assert meter.sample(now=1000.0, count=0) is None, "one look says nothing about a rate"
    assert meter.sample(now=1000.5, count=400) is None, "looks closer than a second are not a rate"
    assert meter.sample(now=1002.0, count=1000) == 500.0
    assert meter.sample(now=1004.0, count=1000) == 0.0, "a quiet hub shows 0, not the last rate"


def test_durations_and_labels_in_both_languages() -> None:
    zh, en = Words(lang=Lang.ZH), Words(lang=Lang.EN)
    assert zh.duration(65) == "1 分 05 秒" and en.duration(3725) == "1 h 02 min"
    assert zh.duration(-3) == "0 分 00 秒", "a clock step never shows a negative time"
    assert (zh.of("light", "red"), en.of("light", "red")) == ("超时", "overdue")
    assert zh.of("category", "a_new_rule_category") == "a_new_rule_category", "unknown shows as-is"
    assert zh["overview"] == "总览" and en["overview"] == "Overview"


def _view(i: int, category: str) -> dict[str, Any]:
    return {
        "id": f"c{i:04d}",
        "community": COMMUNITY,
        "grid": GRID,
        "assignee": "w-night",
        "subject": SOS_BUTTON if category == "sos" else "door-1",
        "sla": [{"stage": "accept", "light": "green", "done": False}],
        "category": category,
        "severity": "critical" if category == "sos" else "minor",
        "title": {"zh": category, "en": category},
        "state": "dispatched",
        "filed_at": "2026-11-22T18:13:00.000Z",
    }


def test_an_old_sos_stays_on_top_of_the_overview_behind_a_thousand_newer_cases() -> None:
    """The list reads 500 cases newest first; an SOS filed before 1 000 others must not fall off."""
    cases = [_view(i, "device") for i in range(1000)] + [_view(1000, "sos")]  # newest first

    by_id = {view["id"]: view for view in cases}
    made: list[str] = []

    def open_index(*, limit: int, **_: Any) -> list[tuple[str, str, str | None]]:
        return [(v["id"], v["category"], v["grid"]) for v in cases[:limit]]

    def view_steps(case_ids: list[str], **_: Any) -> Steps[list[dict[str, Any]]]:
        yield
        made.extend(case_ids)
        return [by_id[case_id] for case_id in case_ids]

    (community,) = parse_yaml(REGISTRY, file="test")
    web = SimpleNamespace(
        clock=ManualClock(start=1_795_371_180.0),
        casework=SimpleNamespace(
            cases=SimpleNamespace(open_index=open_index),
            view_steps=view_steps,
            case_filter=lambda reach, action: None,
        ),
        registry=Registry(communities=[community]),
        readiness=lambda: Readiness(checks=()),
        stats=lambda: {"pipeline": {"messages": 0}},
    )
    found = overview(web, Reach(Actor("cc", Role.COMMAND_CENTRE)), meter=IngestMeter())  # type: ignore[arg-type]
    assert found.rows[0].sos and found.rows[0].id == "c1000"
    assert found.open_total == 1001 and found.sos_open == 1
    assert dict(found.by_category) == {"device": 1000, "sos": 1}
    assert dict(found.by_grid) == {"第一网格": 1001}
    assert len(made) == 501, "views only for the listed rows: the newest 500 and older SOS"


@pytest.mark.parametrize("query", [b"", b"part=main"])
def test_a_page_rendered_in_steps_is_the_page_rendered_in_one_go(query: bytes) -> None:
    """The console renders its pages piece by piece, yielding between pieces (the overview
    with a thousand open cases was 60–110 ms of the loop in one ``render``): same text."""
    renderer = Renderer(zone=ZoneInfo("Asia/Shanghai"))
    request = Request({"type": "http", "method": "GET", "path": "/x", "query_string": query, "headers": []})
    context = {"who_name": "指挥中心", "message": "没有这个案件 / no such case"}
    whole = renderer.page(request, "page_missing.html", context, status=404)
    steps = renderer.page_steps(request, "page_missing.html", context, status=404, chunks_per_step=2)
    turns, stepped = drained(steps)
    assert turns >= 2 and stepped.body == whole.body and stepped.status_code == 404
    assert "没有这个案件" in whole.body.decode()
