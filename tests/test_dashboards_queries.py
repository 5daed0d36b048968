"""Every panel query of every generated dashboard, run against a real InfluxDB filled with a day.

The day is built here from the schema's own functions (no simulators): a community with three
grids, door sensors (some in homes of residents living alone), SOS buttons, parking sensors,
motion sensors; alerts, cases with their transitions, and the periodic gauges.
"""

from __future__ import annotations

import asyncio
import json
import random
import re
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from adapters.events import Event, EventKind
from hub.timeseries import (
    AlertTransition,
    CaseStage,
    CaseTransition,
    InfluxWriter,
    Point,
    SubjectInfo,
    TimeseriesKind,
    TimeseriesSettings,
    TrafficLight,
    alert_point,
    case_open_point,
    case_point,
    event_points,
    fleet_point,
    hub_point,
    quarantine_point,
    visit_point,
)
from tests.conftest import server_missing
from tests.support.influx import InfluxServer, influxdb
from tests.support.servers import ServerMissingError

GENERATED = Path(__file__).parents[1] / "dashboards" / "generated"
DB = "linli"
COMMUNITY = "370105005001"
GRIDS = ("370105005001001", "370105005001002", "370105005001003")
WORKERS = {GRIDS[0]: "王芳", GRIDS[1]: "李强", GRIDS[2]: "张敏"}


class _Alert:
    """A stand-in with the shape of ``hub.store.Alert`` (the schema takes any such object)."""

    def __init__(self, **kw: Any) -> None:
        self.__dict__.update(kw)


#: The test's "now", for the data and for the queries alike: InfluxDB's own now() is its clock,
#: which need not be ours (under ``faketime`` only this process moves; influxd, a Go binary, reads
#: the real clock), and a query relative to it would find a day of data in the future.
NOW = time.time()


def simulated_day(now: float, rng: random.Random) -> list[Point]:
    start = now - 24 * 3600
    points: list[Point] = []
    devices: list[tuple[str, SubjectInfo]] = []
    for g, grid in enumerate(GRIDS):
        for b in range(1, 4):
            building = f"{g + 1}号楼{b}"
            for h in range(3):
                care = "living_alone" if h == 0 else ""
                devices.append(
                    (
                        f"door-{g}{b}{h}",
                        SubjectInfo(
                            community=COMMUNITY,
                            grid=grid,
                            building=building,
                            device_kind="door_sensor",
                            model="SNZB-04",
                            care=care,
                        ),
                    )
                )
            devices.append(
                (
                    f"sos-{g}{b}",
                    SubjectInfo(
                        community=COMMUNITY,
                        grid=grid,
                        building=building,
                        device_kind="sos_button",
                        model="SOS-100",
                        care="living_alone",
                    ),
                )
            )
        for s in range(6):
            devices.append(
                (
                    f"park-{g}{s}",
                    SubjectInfo(
                        community=COMMUNITY,
                        grid=grid,
                        device_kind="parking_sensor",
                        model="PS-9",
                        place=f"P{g % 2 + 1}",
                    ),
                )
            )
    for device_id, info in devices:
        kind = info.device_kind
        t = start + rng.uniform(0, 600)
        while t < now:
            if kind == "door_sensor":
                if device_id == "door-010":  # a resident living alone: no door activity for 30 h
                    t = now
                    break
                for k in (EventKind.DOOR_OPEN, EventKind.DOOR_CLOSED):
                    points += event_points(Event(device_id, k, t, "z2m"), info)
                    t += rng.uniform(5, 60)
                t += rng.expovariate(1 / 3600)
            elif kind == "parking_sensor":
                occupied = rng.random() < 0.6
                points += event_points(Event(device_id, EventKind.OCCUPANCY, t, "lorawan", occupied), info)
                t += rng.expovariate(1 / 2400)
            else:
                points += event_points(Event(device_id, EventKind.HEARTBEAT, t, "z2m"), info)
                t += 1800
        # device health every 2 h
        for i in range(12):
            at = start + i * 7200 + rng.uniform(0, 60)
            points += event_points(
                Event(device_id, EventKind.BATTERY, at, "z2m", 100.0 - i * rng.uniform(0, 2), {"volts": 3.0}),
                info,
            )
            points += event_points(
                Event(
                    device_id,
                    EventKind.SIGNAL,
                    at,
                    "z2m",
                    -60.0 - rng.uniform(0, 40),
                    {"snr": rng.uniform(-5, 10)},
                ),
                info,
            )
        online = EventKind.OFFLINE if device_id in ("park-01", "sos-11") else EventKind.ONLINE
        points += event_points(Event(device_id, online, now - 3600, "z2m"), info)
    door_000 = next(i for d, i in devices if d == "door-010")
    points += event_points(Event("door-010", EventKind.DOOR_OPEN, now - 30 * 3600, "z2m"), door_000)
    # SOS and service presses
    for n in range(14):
        device_id, info = rng.choice([d for d in devices if d[1].device_kind == "sos_button"])
        kind = EventKind.SOS_PRESS if n % 2 else EventKind.SERVICE_REQUEST
        points += event_points(Event(device_id, kind, start + 1800 + n * 5800, "z2m", "single"), info)
    # alerts
    categories = ("sos", "inactivity", "fire_lane", "door_held", "device")
    for alert_id in range(1, 61):
        grid = GRIDS[alert_id % 3]
        category = categories[alert_id % len(categories)]
        raised = start + alert_id * 1400
        resolved = raised + rng.uniform(60, 3600)
        alert = _Alert(
            id=alert_id,
            rule=f"{category}_rule",
            category=category,
            severity="critical" if category == "sos" else "warning",
            status="resolved",
            device_id=f"dev-{alert_id}",
            grid=grid,
            community=COMMUNITY,
            title_zh=f"{category} 告警 {alert_id}",
            raised_at=raised,
            last_seen=resolved,
            count=1,
            resolved_at=resolved,
        )
        points.append(alert_point(alert, transition=AlertTransition.RAISED))
        if resolved < now:
            points.append(alert_point(alert, transition=AlertTransition.RESOLVED))
    # cases: filed → dispatched → accepted → handled → closed, some overdue, some extended
    for case_no in range(45):
        grid = GRIDS[case_no % 3]
        filed = start + case_no * 1800
        deadline = filed + 4 * 3600
        at = filed
        entered = filed
        stages = [CaseStage.DISPATCHED, CaseStage.ACCEPTED, CaseStage.HANDLED, CaseStage.CLOSED]
        if case_no % 7 == 0:
            stages.insert(2, CaseStage.EXTENDED)
        if case_no % 9 == 0:
            stages.insert(3, CaseStage.REWORK)
        for stage in stages:
            at += rng.uniform(300, 3000) if stage is not CaseStage.CLOSED else rng.uniform(600, 9000)
            if at > now:
                break
            if stage is CaseStage.CLOSED and at > deadline:
                points.append(
                    case_point(
                        CaseTransition(
                            case_id=f"C{case_no}",
                            stage=CaseStage.OVERDUE,
                            at=deadline,
                            stage_entered_at=entered,
                            filed_at=filed,
                            deadline=deadline,
                            light=TrafficLight.RED,
                            community=COMMUNITY,
                            grid=grid,
                            category="环境卫生",
                            severity="normal",
                            worker=WORKERS[grid],
                        )
                    )
                )
            light = TrafficLight.GREEN if at < filed + 0.8 * 4 * 3600 else TrafficLight.YELLOW
            points.append(
                case_point(
                    CaseTransition(
                        case_id=f"C{case_no}",
                        stage=stage,
                        at=at,
                        stage_entered_at=entered,
                        filed_at=filed,
                        deadline=deadline,
                        light=light,
                        community=COMMUNITY,
                        grid=grid,
                        category="环境卫生",
                        severity="urgent" if case_no % 5 == 0 else "normal",
                        worker=WORKERS[grid],
                    )
                )
            )
            entered = at
            if stage is CaseStage.CLOSED and at + 3600 < now:
                # 评价 at the 回访 call an hour after 结案: mostly satisfied, some not (返工).
                rating = ("satisfied", "basically_satisfied", "unsatisfied")[case_no % 3]
                points.append(
                    case_point(
                        CaseTransition(
                            case_id=f"C{case_no}",
                            stage=CaseStage.EVALUATED if rating != "unsatisfied" else CaseStage.REWORK,
                            at=at + 3600,
                            stage_entered_at=at,
                            filed_at=filed,
                            deadline=deadline,
                            light=light,
                            community=COMMUNITY,
                            grid=grid,
                            category="环境卫生",
                            severity="normal",
                            worker=WORKERS[grid],
                            rating=rating,
                        )
                    )
                )
    # care visits: most done on time, some late, some falling due undone
    for visit_no in range(30):
        grid = GRIDS[visit_no % 3]
        due_at = start + 3600 + visit_no * 2700
        done_at = None if visit_no % 5 == 0 else due_at + (3600 if visit_no % 7 == 0 else -7200)
        points.append(
            visit_point(
                community=COMMUNITY,
                grid=grid,
                worker=WORKERS[grid],
                kind="visit",
                due_at=due_at,
                done_at=done_at,
                ts=due_at if done_at is None else done_at,
            )
        )
    # periodic gauges every 10 minutes, hub self-metrics every minute
    messages = 0
    for i in range(24 * 6):
        at = start + i * 600
        for grid in GRIDS:
            for severity, light in (
                ("urgent", TrafficLight.RED),
                ("normal", TrafficLight.GREEN),
                ("normal", TrafficLight.YELLOW),
            ):
                points.append(
                    case_open_point(
                        community=COMMUNITY,
                        grid=grid,
                        severity=severity,
                        light=light,
                        open_cases=rng.randint(0, 5),
                        ts=at,
                    )
                )
            for kind in ("door_sensor", "sos_button", "parking_sensor"):
                points.append(
                    fleet_point(
                        community=COMMUNITY,
                        grid=grid,
                        device_kind=kind,
                        total=9,
                        online=rng.randint(7, 9),
                        low_battery=rng.randint(0, 2),
                        ts=at,
                    )
                )
        for reason in ("invalid_json", "unknown_device"):
            points.append(
                quarantine_point(
                    instance="hub-1", reason=reason, count=i * 2 + (reason == "invalid_json"), ts=at
                )
            )
    for minute in range(24 * 60):
        messages += rng.randint(100, 200)
        points.append(
            hub_point(
                instance="hub-1",
                metrics={
                    "messages": messages,
                    "events": messages,
                    "ts_points_spooled": 0,
                    "ts_points_dropped": 0,
                    "ts_points_quarantined": minute // 600,
                    "loop_lag_ms": 0.4,
                },
                ts=start + minute * 60,
            )
        )
    return points


@pytest.fixture(scope="module")
def filled_influx(tmp_path_factory: pytest.TempPathFactory) -> Iterator[InfluxServer]:
    workdir = tmp_path_factory.mktemp("dash")
    try:
        with influxdb(workdir / "influx") as server:
            server.create_db(DB)
            points = simulated_day(NOW, random.Random(7))

            async def fill() -> InfluxWriter:
                settings = TimeseriesSettings(kind=TimeseriesKind.INFLUX_V1, url=server.url, db=DB)
                writer = InfluxWriter(settings=settings, spool_dir=workdir / "spool")
                await writer.start()
                writer.write_many(points)
                await writer.stop()
                return writer

            writer = asyncio.run(fill())
            assert writer.stats.points_delivered == len(points)
            assert writer.stats.points_quarantined == 0
            yield server
    except ServerMissingError as exc:
        server_missing(str(exc))


def panel_queries() -> list[tuple[str, str, dict[str, Any]]]:
    found = []
    for path in sorted(GENERATED.glob("*.json")):
        board = json.loads(path.read_text(encoding="utf-8"))
        for panel in board["panels"]:
            for target in panel.get("targets", []):
                found.append((board["uid"], panel["title"], target))
    return found


def substitute(query: str) -> str:
    # With an upper bound: GROUP BY time() otherwise stops at the server's now().
    query = query.replace("$timeFilter", "time > now() - 30h AND time <= now() + 1m")
    query = query.replace("now()", str(int(NOW * 1e9)))  # the test's now, in ns (see NOW)
    query = query.replace("$__interval", "10m")
    query = query.replace("$community", COMMUNITY).replace("$grid", GRIDS[0])
    assert not re.search(r"\$[A-Za-z_]", query), query  # every macro and variable replaced
    return query


def _group_tags(query: str) -> list[str]:
    """Tag keys of the outermost GROUP BY."""
    tail = query.rsplit(")", 1)[-1] if query.count("FROM (") else query
    match = re.search(r"GROUP BY (.*?)(?: fill\(|$| ORDER| LIMIT)", tail)
    if not match:
        return []
    return re.findall(r'"([^"]+)"', match.group(1))


QUERIES = panel_queries()


def test_every_dashboard_has_queries() -> None:
    assert len({uid for uid, _, _ in QUERIES}) == 6
    assert len(QUERIES) >= 40


@pytest.mark.needs_server("influxd")
@pytest.mark.parametrize(("uid", "title", "target"), QUERIES, ids=[f"{u}:{t}" for u, t, _ in QUERIES])
def test_panel_query_returns_data_of_the_expected_shape(
    filled_influx: InfluxServer, uid: str, title: str, target: dict[str, Any]
) -> None:
    query = substitute(target["query"])
    result = filled_influx.query(query, db=DB)["results"][0]
    assert "error" not in result, result
    series = result.get("series")
    assert series, f"{uid} / {title}: no data for {query}"
    for s in series:
        assert s["values"], s
        values = [v for row in s["values"] for v in row[1:] if v is not None]
        assert values, f"{title}: only nulls in {s}"
    if "GROUP BY time(" in query.rsplit("FROM (", 1)[-1].split(")")[-1] or (
        "FROM (" not in query and "GROUP BY time(" in query
    ):
        assert max(len(s["values"]) for s in series) >= 2, f"{title}: expected a time series"
    for tag in _group_tags(query):
        if tag.startswith("time"):
            continue
        assert all(tag in s.get("tags", {}) for s in series), f"{title}: not grouped by {tag}"


@pytest.mark.needs_server("influxd")
def test_living_alone_resident_without_door_activity_is_listed(filled_influx: InfluxServer) -> None:
    (_, _, target) = next(q for q in QUERIES if q[1].startswith("独居住户最后开门时间"))
    result = filled_influx.query(substitute(target["query"]), db=DB, epoch="s")["results"][0]
    last_seen = {s["tags"]["device_id"]: s["values"][0][0] for s in result["series"]}
    stale = sorted(d for d, ts in last_seen.items() if ts < NOW - 24 * 3600)
    assert stale == ["door-010"]


@pytest.mark.needs_server("influxd")
def test_offline_devices_panel_lists_exactly_the_offline_ones(filled_influx: InfluxServer) -> None:
    (_, _, target) = next(q for q in QUERIES if q[1] == "离线设备")
    result = filled_influx.query(substitute(target["query"]), db=DB)["results"][0]
    assert sorted(s["tags"]["device_id"] for s in result["series"]) == ["park-01", "sos-11"]
