"""Care visits (探访) through a real hub on both store engines: tasks from the elder's care plan on
the hub's clock, a missed weekly visit escalating step by step (once each, to the grid's chain),
outcomes through the API scoped by the access table, an inactivity alert raising the visit to
urgent and answered by it without a case, and "needs help" filing a case."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import datetime
from pathlib import Path
from typing import Any
from urllib.parse import quote
from zoneinfo import ZoneInfo

import pytest

from hub.app import Hub
from hub.cases.care import TaskKind
from hub.cases.model import CaseState
from hub.cases.workflow import open_case
from hub.clock import ManualClock, iso
from hub.timeseries import Aggregate, query_series
from tests.helpers import (
    COMMUNITY,
    GRID,
    REGISTRY,
    SOS_BUTTON,
    TOKEN,
    VIEWER_TOKEN,
    WORKER_TOKEN,
    Phone,
    eventually,
    hub_settings,
    publisher,
)
from tests.support.servers import Broker
from tests.test_case_flow import PRESS, call

DAY = 86400.0
WORKERS = f"linli/{COMMUNITY}/workers"
#: zigbee2mqtt: ``contact: false`` is an open door (samples/SOURCES.md).
DOOR_OPEN = b'{"contact": false, "battery": 90, "linkquality": 120}'


@asynccontextmanager
async def hub_with_phone(
    tmp_path: Path, broker: Broker, store_url: str, *, door: bool = True
) -> AsyncIterator[tuple[Hub, Phone]]:
    phone = Phone(broker)
    await phone.start(f"{WORKERS}/+/notifications", "linli/command-centre/notifications")
    overrides: dict[str, Any] = {"store": {"url": store_url}}
    if not door:
        # Without the door sensor no inactivity alert interrupts a week of simulated time.
        registry = tmp_path / "no-door.yaml"
        registry.write_text(
            "\n".join(line for line in REGISTRY.splitlines() if "id: door-1" not in line), encoding="utf-8"
        )
        overrides["community_file"] = str(registry)
    settings = hub_settings(tmp_path, broker, **overrides)
    async with Hub(settings=settings, clock=ManualClock(start=PRESS)) as hub:
        yield hub, phone
    await phone.stop()


@pytest.fixture
async def running(
    tmp_path: Path, mosquitto_broker: Broker, store_url: str
) -> AsyncIterator[tuple[Hub, Phone]]:
    async with hub_with_phone(tmp_path, mosquitto_broker, store_url) as both:
        yield both


@pytest.fixture
async def no_door(
    tmp_path: Path, mosquitto_broker: Broker, store_url: str
) -> AsyncIterator[tuple[Hub, Phone]]:
    async with hub_with_phone(tmp_path, mosquitto_broker, store_url, door=False) as both:
        yield both


def escalations(phone: Phone) -> list[tuple[str, int]]:
    return sorted(
        (topic.split("/")[-2], body["step"])
        for topic, body, _ in phone.messages
        if body.get("type") == "visit.escalate"
    )


def inactivity_cases(hub: Hub) -> list[str]:
    ids = hub.cases.case_ids(states=list(CaseState))
    return [c for c in ids if (case := hub.cases.load(c)) is not None and case.category == "inactivity"]


async def visits_of(hub: Hub, token: str = TOKEN, query: str = "") -> list[dict[str, Any]]:
    status, body = await call(hub, "GET", f"/api/visits{query}", token)
    assert status == 200, body
    return list(body)


async def test_a_missed_weekly_visit_escalates_once_per_step_and_a_visit_closes_it(
    no_door: tuple[Hub, Phone],
) -> None:
    hub, phone = no_door
    await eventually(lambda: hub.visits.visits.open_task("r1", TaskKind.VISIT), what="r1's weekly visit")
    (visit,) = [v for v in await visits_of(hub) if v["kind"] == "visit"]
    # Registered on Monday 02:13 local: due in 7 local days, at 18:00 Asia/Shanghai.
    due = datetime.fromisoformat(visit["due_at"]).astimezone(ZoneInfo("Asia/Shanghai"))
    assert (due.date().isoformat(), due.hour, due.minute) == ("2026-11-30", 18, 0)
    assert visit["assignee"] == "w-day" and visit["light"] == "green" and visit["elder_name"] == "王秀英"
    # The grid's night worker sees his grid's visits, but not the elder's name (not his visit) …
    (night_view,) = [v for v in await visits_of(hub, WORKER_TOKEN) if v["kind"] == "visit"]
    assert night_view["elder_name"] is None and night_view["address"] is None
    # … and a wall display sees none.
    status, _ = await call(hub, "GET", "/api/visits", VIEWER_TOKEN)
    assert status == 403
    due_at = datetime.fromisoformat(visit["due_at"]).timestamp()
    await hub.advance_clock(due_at - 1)
    assert escalations(phone) == [], [
        (b["step"], b["visit"]) for _, b, _ in phone.messages if b["type"] == "visit.escalate"
    ]
    (late,) = [v for v in await visits_of(hub) if v["kind"] == "visit"]
    assert late["light"] == "yellow"
    await hub.advance_clock(due_at + 60)
    await eventually(lambda: escalations(phone) == [("w-day", 0)], what="step 0 to the visitor")
    await hub.advance_clock(due_at + 3 * DAY)
    await eventually(
        lambda: escalations(phone) == [("duty", 2), ("g-leader", 1), ("w-day", 0)], what="leader, then duty"
    )
    (red,) = [v for v in await visits_of(hub) if v["kind"] == "visit"]
    assert red["light"] == "red"
    overdue = hub.store.active_alert("care.visit_overdue", "elder:r1")
    assert overdue is not None and hub.cases.open_for_alert(overdue.id) is None, "an info alert: no case"
    # The night worker visits: recorded as him, the overdue alert resolved, the next week planned.
    status, recorded = await call(
        hub, "POST", f"/api/visits/{red['id']}/visited_well", WORKER_TOKEN, {"note": ""}
    )
    assert status == 200 and recorded["by"] == "w-night", recorded
    status, again = await call(hub, "POST", f"/api/visits/{red['id']}/visited_well", WORKER_TOKEN)
    assert status == 403, again
    assert hub.store.active_alert("care.visit_overdue", "elder:r1") is None
    (following,) = [v for v in await visits_of(hub) if v["kind"] == "visit"]
    assert following["key"] != red["key"] and following["light"] == "green"
    await hub.advance_clock(hub.clock.now() + DAY)
    assert len(escalations(phone)) == 3, "nothing is sent twice"
    # 探访完成率: the weekly visit was due in the period and done late (by the night worker).
    period = f"from={quote(iso(PRESS))}&to={quote(iso(hub.clock.now()))}"
    status, kpis = await call(hub, "GET", f"/api/kpis?{period}")
    overall = kpis["overall"]
    assert (overall["visits_due"], overall["visits_on_time"], overall["visits_late"]) == (1, 0, 1)
    assert overall["visit_completion_rate"] == 0.0
    assert kpis["by_worker"]["w-night"]["visits_late"] == 1 and kpis["by_grid"][GRID]["visits_due"] == 1
    status, wall = await call(hub, "GET", f"/api/kpis?{period}", VIEWER_TOKEN)
    assert status == 200 and "visits_due" not in wall["overall"], "a wall display gets case KPIs only"
    status, register = await call(hub, "GET", "/api/elders")
    (r1,) = register
    assert r1["flags"] == ["aged_80", "living_alone"] and r1["name"] == "王秀英"
    assert r1["last_visit_outcome"] == "visited_well" and r1["open_visits"] == 2
    assert [d["kind"] for d in r1["devices"]] == ["sos_button"] and r1["devices"][0]["online"] is None
    status, register = await call(hub, "GET", "/api/elders", WORKER_TOKEN)
    assert status == 200 and register[0]["name"] is None, "personal data only for the roles allowed"


async def test_inactivity_raises_an_urgent_visit_that_resolves_it_without_a_case(
    running: tuple[Hub, Phone], mosquitto_broker: Broker
) -> None:
    hub, _ = running
    await eventually(lambda: hub.visits.visits.open_task("r1", TaskKind.VISIT), what="r1's weekly visit")
    gateway = await publisher(mosquitto_broker)
    gateway.publish("zigbee2mqtt/door-1", DOOR_OPEN, qos=1)
    await eventually(lambda: hub.states.get("door-1"), what="the door event")
    await gateway.disconnect()
    await hub.advance_clock(PRESS + 25 * 3600)
    alert = await eventually(
        lambda: hub.store.active_alert("elderly.living_alone_inactive", "door-1"), what="the inactivity alert"
    )
    urgent = hub.visits.visits.open_task("r1", TaskKind.VISIT)
    assert (
        urgent is not None and urgent.urgent_alert == alert.id and urgent.task.due_at <= hub.clock.now() + DAY
    )
    (case_id,) = inactivity_cases(hub)  # the alert's own case, with its call/guardian escalation
    (first,) = [v for v in await visits_of(hub) if v["urgent"]]
    status, _ = await call(hub, "POST", f"/api/visits/{first['id']}/visited_well", WORKER_TOKEN)
    assert status == 200
    resolved = hub.store.alert(alert.id)
    assert resolved is not None and resolved.status == "resolved"
    # The record resolves the alert and names it; the alert's case auto-clears; no new case is filed.
    (record,) = hub.visits.visits.records(urgent.key)
    assert record.alert_id == alert.id and record.record.by == "w-night"
    closed = hub.cases.load(case_id)
    assert closed is not None and closed.state is CaseState.CLOSED and closed.resolution is not None
    assert closed.resolution.value == "auto_cleared"
    assert inactivity_cases(hub) == [case_id]


async def test_needs_help_files_a_case_and_not_at_home_needs_a_note(running: tuple[Hub, Phone]) -> None:
    hub, _ = running
    await eventually(lambda: hub.visits.visits.open_task("r1", TaskKind.VISIT), what="r1's weekly visit")
    (visit,) = [v for v in await visits_of(hub) if v["kind"] == "visit"]
    status, refused = await call(hub, "POST", f"/api/visits/{visit['id']}/not_at_home", WORKER_TOKEN)
    assert status == 409 and "note" in refused["message"]
    status, away = await call(
        hub,
        "POST",
        f"/api/visits/{visit['id']}/not_at_home",
        WORKER_TOKEN,
        {"note": "敲门无人，邻居说去了女儿家"},
    )
    assert status == 200 and away["outcome"] == "not_at_home"
    status, helped = await call(
        hub, "POST", f"/api/visits/{visit['id']}/needs_help", WORKER_TOKEN, {"note": "腿疼，需要送医"}
    )
    assert status == 200 and helped["alert_id"] is not None
    case = await eventually(
        lambda: hub.cases.open_for_alert(helped["alert_id"]), what="the case filed for the elder"
    )
    assert case is not None and case.alert_id == helped["alert_id"] and case.category == "care"
    assert case.assignee in {"w-day", "w-night"}
    # The register counts the elder's open cases: his care case, his button's, nobody else's.
    with hub.store.transaction() as db:
        for case_id, subject in (("btn", SOS_BUTTON), ("other", "door-elsewhere")):
            filed, entry = open_case(
                case_id=case_id, category="sos", severity="critical", subject=subject, at=hub.clock.now()
            )
            hub.casework.cases.add(db, filed, entry)
    status, register = await call(hub, "GET", "/api/elders")
    assert status == 200 and register[0]["id"] == "r1" and register[0]["open_cases"] == 2
    status, _ = await call(hub, "POST", "/api/visits/bm90LWEta2V5/visited_well", WORKER_TOKEN)
    assert status == 404


async def test_a_visit_the_desk_records_for_a_worker_keeps_who_typed_it(running: tuple[Hub, Phone]) -> None:
    """Review: the command centre records a visit ``on_behalf_of`` the worker who phoned it in. The
    record is the worker's (``by``) and keeps who typed it (``recorded_by``), in the store and in
    the answer; before, only the log had it. The worker's own record names nobody else."""
    hub, _ = running
    task = await eventually(
        lambda: hub.visits.visits.open_task("r1", TaskKind.VISIT), what="r1's weekly visit"
    )
    (visit,) = [v for v in await visits_of(hub) if v["kind"] == "visit"]
    status, typed = await call(
        hub,
        "POST",
        f"/api/visits/{visit['id']}/not_at_home",
        TOKEN,
        {"note": "日班网格员电话报告：敲门无人", "on_behalf_of": "w-day"},
    )
    # The desk's token names no roster person: it acts under the token's name, as for case actions.
    assert status == 200 and (typed["by"], typed["recorded_by"]) == ("w-day", "t"), typed
    status, own = await call(hub, "POST", f"/api/visits/{visit['id']}/visited_well", WORKER_TOKEN)
    assert status == 200 and (own["by"], own["recorded_by"]) == ("w-night", None), own
    # Both at the same clock time: records of one instant come in id order, so compare by id.
    stored = {r.id: (r.record.by, r.record.recorded_by) for r in hub.visits.visits.records(task.key)}
    assert stored == {typed["id"]: ("w-day", "t"), own["id"]: ("w-night", None)}


async def test_visit_points_count_a_missed_task_as_due_once_and_its_late_visit_as_late(
    tmp_path: Path, mosquitto_broker: Broker, store_url: str
) -> None:
    async with hub_with_phone(tmp_path, mosquitto_broker, store_url, door=False) as (hub, _):
        task = await eventually(lambda: hub.visits.visits.open_task("r1", TaskKind.VISIT), what="r1's visit")
        await hub.advance_clock(task.task.due_at + 2 * DAY)  # three steps, one "fell due" point
        (red,) = [v for v in await visits_of(hub) if v["kind"] == "visit"]
        status, _ = await call(hub, "POST", f"/api/visits/{red['id']}/visited_well", WORKER_TOKEN)
        assert status == 200
    path = tmp_path / "data" / "timeseries.sqlite"

    def total(field: str) -> float:
        found = query_series(
            path,
            measurement="visit",
            field=field,
            start=PRESS,
            end=task.task.due_at + 3 * DAY,
            bucket_s=30 * DAY,
            aggregate=Aggregate.SUM,
            where={"kind": "visit"},
        )
        return sum(value for series in found for _, value in series.points)

    # 探访完成率 = sum(on_time) / sum(due) = 0 / 1; the late visit is counted as late, not due again.
    assert (total("due"), total("on_time"), total("late")) == (1.0, 0.0, 1.0)
