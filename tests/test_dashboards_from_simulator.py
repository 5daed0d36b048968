"""The dashboards against data the simulator made and the hub wrote: every panel query returns data.

A simulated community behaves for a day and a half; its messages go through the hub's real
pipeline (rules, casework, time-series writer) into a real InfluxDB 1.6; grid workers handle
most cases. Then every panel query of every dashboard runs, as Grafana would send it.
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import Iterator
from typing import Any

import pytest

from hub.app import Hub
from hub.cases.model import CaseAction, CaseState, Channel, EvaluationVia, EvaluatorRole, Rating
from hub.casework.service import Actor
from hub.clock import ManualClock
from hub.config import load_settings
from simulators.behaviour import Behaviour
from simulators.community import generate
from simulators.types import Act
from tests.conftest import server_missing
from tests.support.influx import InfluxServer, influxdb
from tests.support.servers import ServerMissingError
from tests.test_dashboards_queries import QUERIES, _group_tags

START = 1_795_200_000.0  # 2026-11-21 03:20 Asia/Shanghai
HOURS = 36
WORK = (
    (CaseAction.ACCEPT, ""),
    (CaseAction.ARRIVE, ""),
    (CaseAction.HANDLE, "已处置"),
    (CaseAction.VERIFY, ""),
    (CaseAction.CLOSE, ""),
)


def community_tags() -> tuple[str, str]:
    doc = generate(seed=3).document["communities"][0]
    return doc["code"], doc["grids"][0]["code"]


def evaluate_closed(hub: Hub, rng: random.Random) -> None:
    """The command centre calls back closed cases (回访) and records the 评价; 不满意 reopens one."""
    for case_id in hub.cases.case_ids(states=[CaseState.CLOSED], limit=10_000):
        case = hub.cases.load(case_id)
        if case is None or not case.awaiting_evaluation or rng.random() < 0.5:
            continue
        rating = rng.choice(("satisfied", "satisfied", "basically_satisfied", "unsatisfied"))
        hub.evaluations.evaluate(
            case_id,
            actor=Actor("ops", "command_centre"),
            rating=Rating(rating),
            role=EvaluatorRole.COMMAND_CENTRE,
            via=EvaluationVia.PHONE_CALL,
            note="地面未清理" if rating == "unsatisfied" else "",
        )


def visit_elders(hub: Hub, rng: random.Random) -> None:
    """Grid workers visit some elders early in the week (done on time: 探访完成率)."""
    hub.visits.schedule()
    for task in hub.visits.visits.tasks(limit=10_000):
        if task.task.assignee is None or rng.random() < 0.9:
            continue
        hub.visits.record(task.key, "visited_well", actor=Actor(task.task.assignee, "grid_worker"))


def act_on_cases(hub: Hub, rng: random.Random) -> None:
    """Grid workers work most open cases a step further; some are left to go overdue."""
    for case_id in hub.cases.case_ids():
        case = hub.cases.load(case_id)
        if case is None or rng.random() < 0.2:
            continue
        step = {
            CaseState.DISPATCHED: 0,
            CaseState.ACCEPTED: 1,
            CaseState.ON_SITE: 2,
            CaseState.HANDLED: 3,
            CaseState.VERIFIED: 4,
        }.get(case.state)
        if step is None:
            continue
        action, note = WORK[step]
        who = (
            Actor(case.assignee or "command-centre", "grid_worker")
            if step < 3
            else Actor("ops", "command_centre")
        )
        if step < 3 and case.assignee == "command-centre":
            who = Actor("ops", "command_centre")
        hub.casework.act(
            case_id, action, actor=who, channel=Channel.CONSOLE, note=note, data={"passed": True}
        )


@pytest.fixture(scope="module")
def influx_filled_by_simulator(tmp_path_factory: pytest.TempPathFactory) -> Iterator[InfluxServer]:
    workdir = tmp_path_factory.mktemp("dash-sim")
    community = generate(seed=3)
    community.write(workdir / "community.yaml")
    try:
        with influxdb(workdir / "influx") as server:
            server.create_db("linli")

            async def fill() -> None:
                settings = load_settings(
                    None,
                    environ={},
                    overrides={
                        "data_dir": str(workdir / "data"),
                        "community_file": str(workdir / "community.yaml"),
                        "mqtt": {"url": "mqtt://127.0.0.1:1"},  # not started: messages go straight in
                        "timeseries": {
                            "kind": "influx_v1",
                            "url": server.url,
                            "db": "linli",
                            "flush_interval_s": 0.2,
                        },
                    },
                )
                clock = ManualClock(start=START)
                hub = Hub(settings=settings, clock=clock)
                await hub.timeseries.start()
                behaviour = Behaviour(devices=community.devices, start=START)
                # One elder living alone stays in all along: their door never opens (the
                # inactivity rule's story); everything else is the behaviour model's own.
                stays_in = next(
                    d.id
                    for d in community.devices
                    if d.kind == "door_sensor" and d.living_alone and d.household
                )
                rng = random.Random(5)
                now = START
                while now < START + HOURS * 3600:
                    now += 600
                    for emission in behaviour.emissions(now):
                        if emission.device == stays_in and emission.act in (Act.DOOR_OPEN, Act.DOOR_CLOSE):
                            continue
                        for topic, payload, qos, retain in emission.messages:
                            hub.pipeline.handle(topic, payload, qos, retain)
                    clock.set(now)
                    hub.run_due_rules()
                    hub.casework.tick()
                    act_on_cases(hub, rng)
                    evaluate_closed(hub, rng)
                    visit_elders(hub, rng)
                    hub.quarantine.flush()
                    hub.write_gauges()
                    await asyncio.sleep(0)
                await hub.timeseries.stop()
                assert hub.timeseries.stats.points_quarantined == 0
                hub.store.close()

            asyncio.run(fill())
            yield server
    except ServerMissingError as exc:
        server_missing(str(exc))


def substitute(query: str, community: str, grid: str) -> str:
    # The data ends at START + 36 h (Nov 22 15:20 local); Grafana's range is "the last 30 h" of it.
    end_ns = int((START + HOURS * 3600) * 1e9)
    query = query.replace("$timeFilter", f"time > {end_ns - 30 * 3600 * 10**9} AND time <= {end_ns}")
    query = query.replace("now()", f"{end_ns}")
    query = query.replace("$__interval", "10m").replace("$community", community).replace("$grid", grid)
    return query


@pytest.mark.needs_server("influxd")
@pytest.mark.parametrize(("uid", "title", "target"), QUERIES, ids=[f"{u}:{t}" for u, t, _ in QUERIES])
def test_panel_returns_data_after_the_simulator_filled_influxdb(
    influx_filled_by_simulator: InfluxServer, uid: str, title: str, target: dict[str, Any]
) -> None:
    community, grid = community_tags()
    query = substitute(target["query"], community, grid)
    result = influx_filled_by_simulator.query(query, db="linli")["results"][0]
    assert "error" not in result, result
    series = result.get("series")
    assert series, f"{uid} / {title}: no data for {query}"
    assert any(v is not None for s in series for row in s["values"] for v in row[1:]), f"{title}: only nulls"
    for tag in _group_tags(query):
        if not tag.startswith("time"):
            assert all(tag in s.get("tags", {}) for s in series), f"{title}: not grouped by {tag}"


def test_the_simulated_day_is_believable(influx_filled_by_simulator: InfluxServer) -> None:
    def count(query: str) -> int:
        series = influx_filled_by_simulator.query(query, db="linli")["results"][0].get("series") or []
        return int(sum(row[1] or 0 for s in series for row in s["values"]))

    assert count('SELECT count("open") FROM "door"') > 100
    assert count('SELECT sum("n") FROM "alert" WHERE "category" = \'sos\'') >= 1
    assert count('SELECT sum("closed") FROM "case_transition"') >= 10
    # 评价 after the 回访 calls: some satisfied, never more than were evaluated.
    evaluated = count('SELECT sum("evaluated") FROM "case_transition"')
    assert evaluated >= 3 and 0 < count('SELECT sum("satisfied") FROM "case_transition"') <= evaluated
    assert count('SELECT sum("on_time") FROM "visit"') >= 3
    assert count('SELECT sum("n") FROM "alert" WHERE "category" = \'inactivity\'') >= 1
