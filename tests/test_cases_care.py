"""Care plans and visits (pure): plans from flags and overrides, due times in the zone, lights,
escalation of missed visits, outcomes and 探访完成率."""

from __future__ import annotations

from datetime import datetime, time
from zoneinfo import ZoneInfo

import pytest

from hub.cases.care import (
    CareFlag,
    Elder,
    Outcome,
    TaskKind,
    care_from,
    completed_at,
    due_at,
    escalations_due,
    light,
    load_care,
    next_task,
    plan_for,
    record,
    visit_kpis,
)
from hub.cases.sla import Light
from hub.errors import PolicyError, RequirementNotMet

DAY = 86400.0
SH = "Asia/Shanghai"
T0 = datetime(2026, 3, 2, 9, 0, tzinfo=ZoneInfo(SH)).timestamp()  # a Monday, 09:00 local
CARE = load_care()
ALONE = Elder(id="r1", community="c1", grid="g1", flags=frozenset({CareFlag.LIVING_ALONE}), assignee="w1")


@pytest.mark.parametrize(
    ("flags", "expected"),
    [
        (
            {CareFlag.LIVING_ALONE},
            {TaskKind.SIGN_OF_LIFE: DAY, TaskKind.VISIT: 7 * DAY, TaskKind.CALL: 30 * DAY},
        ),
        (
            {CareFlag.AGED_80, CareFlag.COGNITIVE},
            {TaskKind.SIGN_OF_LIFE: DAY, TaskKind.VISIT: 7 * DAY, TaskKind.CALL: 30 * DAY},
        ),
        (set(), {TaskKind.VISIT: 90 * DAY, TaskKind.CALL: 30 * DAY}),
    ],
)
def test_default_plan_from_flags(flags: set[CareFlag], expected: dict[TaskKind, float]) -> None:
    elder = Elder(id="r", community="c", grid="g", flags=frozenset(flags))
    assert dict(plan_for(CARE, elder).intervals) == expected


def test_overrides_community_then_grid_then_resident() -> None:
    care = care_from(
        {
            "flags": {"living_alone": {"sign_of_life": "1d", "visit": "7d", "call": "30d"}},
            "overrides": [
                {"resident": "r1", "plan": {"visit": "2d"}},
                {"community": "c1", "plan": {"visit": "3d", "call": "14d"}},
                {"grid": "g1", "plan": {"call": None}},
                {"grid": "other", "plan": {"visit": "1d"}},
            ],
        }
    )
    assert dict(plan_for(care, ALONE).intervals) == {TaskKind.SIGN_OF_LIFE: DAY, TaskKind.VISIT: 2 * DAY}
    with pytest.raises(PolicyError):
        care_from({"default": {"visit": "0s"}})
    with pytest.raises(PolicyError):
        care_from({"flags": {"lonely": {}}})


def test_due_time_is_local_and_survives_dst() -> None:
    task = next_task(CARE, ALONE, TaskKind.VISIT, since=T0, zone=SH)
    assert task is not None
    due = datetime.fromtimestamp(task.due_at, ZoneInfo(SH))
    assert (due.date().isoformat(), due.time()) == ("2026-03-09", time(18, 0))
    # Berlin changes to summer time on 2026-03-29: a weekly visit stays at 18:00 local.
    berlin = ZoneInfo("Europe/Berlin")
    start = datetime(2026, 3, 25, 10, 0, tzinfo=berlin).timestamp()
    d = datetime.fromtimestamp(due_at(start, 7 * DAY, zone="Europe/Berlin", due_time=time(18)), berlin)
    assert (d.day, d.hour) == (1, 18)
    assert due_at(T0, 3600, zone=SH, due_time=time(18)) == T0 + 3600  # shorter than a day: not rounded


def test_traffic_light_like_cases() -> None:
    task = next_task(CARE, ALONE, TaskKind.VISIT, since=T0, zone=SH)
    assert task is not None
    window = task.due_at - task.window_start
    assert light(task, T0 + 0.5 * window) is Light.GREEN
    assert light(task, T0 + 0.8 * window) is Light.YELLOW
    assert light(task, task.due_at) is Light.RED
    assert light(task, task.due_at + 10, done_at=task.due_at) is Light.YELLOW  # done exactly on time
    assert light(task, task.due_at + 10, done_at=T0 + 1) is Light.GREEN


@pytest.mark.parametrize(
    ("outcome", "note", "match"),
    [
        ("visited_well", "", None),
        ("needs_help", "", "note"),
        ("not_at_home", " ", "note"),
        ("gone", "x", "unknown"),
    ],
)
def test_outcomes_and_their_requirements(outcome: str, note: str, match: str | None) -> None:
    task = next_task(CARE, ALONE, TaskKind.VISIT, since=T0, zone=SH)
    assert task is not None
    if match:
        with pytest.raises(RequirementNotMet, match=match):
            record(task, outcome, by="w1", at=T0 + 10, note=note)
    else:
        assert record(task, outcome, by="w1", at=T0 + 10).outcome is Outcome.VISITED_WELL
    with pytest.raises(RequirementNotMet, match="before"):
        record(task, "visited_well", by="w1", at=T0 - 10)


def test_not_at_home_keeps_the_task_due_and_escalation_runs() -> None:
    task = next_task(CARE, ALONE, TaskKind.VISIT, since=T0, zone=SH)
    assert task is not None
    tried = record(
        task, Outcome.NOT_AT_HOME, by="w1", at=task.due_at - 3600, note="敲门无人应，邻居说去女儿家"
    )
    assert completed_at(task, [tried]) is None
    due, nxt = escalations_due(task, CARE, now=task.due_at - 1, done_at=None)
    assert due == () and nxt == task.due_at
    due, nxt = escalations_due(task, CARE, now=task.due_at + DAY, done_at=None)
    assert [(s.step, s.target) for s in due] == [
        (0, "assignee"),
        (1, "grid_leader"),
    ] and nxt == task.due_at + 2 * DAY
    sent = frozenset(s.key for s in due)
    again, _ = escalations_due(task, CARE, now=task.due_at + DAY + 5, done_at=None, sent=sent)
    assert again == ()  # idempotent
    well = record(task, Outcome.VISITED_WELL, by="w2", at=task.due_at + DAY + 60)
    done = completed_at(task, [tried, well])
    assert done == well.at
    assert escalations_due(task, CARE, now=task.due_at + 5 * DAY, done_at=done) == ((), None)


def test_a_record_typed_by_the_desk_is_the_visitors_work() -> None:
    """``recorded_by`` (who typed it, on_behalf_of) is kept beside ``by``: 探访完成率 still counts the
    visit as the worker's, and an empty recorder is refused rather than read as "someone"."""
    task = next_task(CARE, ALONE, TaskKind.VISIT, since=T0, zone=SH)
    assert task is not None
    typed = record(task, Outcome.VISITED_WELL, by="w1", at=task.due_at - 100, recorded_by="cc-desk")
    assert (typed.by, typed.recorded_by) == ("w1", "cc-desk")
    assert record(task, Outcome.VISITED_WELL, by="w1", at=task.due_at - 100).recorded_by is None
    report = visit_kpis([task], [typed], start=T0, end=T0 + 30 * DAY, now=T0 + 30 * DAY)
    assert set(report.by_worker) == {"w1"} and report.by_worker["w1"].on_time == 1
    with pytest.raises(RequirementNotMet, match="recorder"):
        record(task, Outcome.VISITED_WELL, by="w1", at=task.due_at - 100, recorded_by="")


def test_visit_completion_rate_per_grid_and_worker() -> None:
    e2 = Elder(id="r2", community="c1", grid="g2", flags=frozenset({CareFlag.AGED_80}), assignee="w2")
    e3 = Elder(id="r3", community="c1", grid="g2", flags=frozenset({CareFlag.DISABLED}), assignee="w2")
    tasks = [next_task(CARE, e, TaskKind.VISIT, since=T0, zone=SH) for e in (ALONE, e2, e3)]
    t1, t2, t3 = (t for t in tasks if t is not None)
    records = [
        record(t1, Outcome.VISITED_WELL, by="w1", at=t1.due_at - 100),  # on time
        record(t2, Outcome.NEEDS_HELP, by="w3", at=t2.due_at + 100, note="需要送餐"),  # late, by w3
        record(t3, Outcome.NOT_AT_HOME, by="w2", at=t3.due_at - 100, note="不在家"),  # missed
    ]
    report = visit_kpis([t1, t2, t3], records, start=T0, end=T0 + 30 * DAY, now=T0 + 30 * DAY)
    o = report.overall
    assert (o.due, o.on_time, o.late, o.missed) == (3, 1, 1, 1)
    assert o.completion_rate == pytest.approx(1 / 3)
    assert report.by_grid["g1"].completion_rate == 1.0 and report.by_grid["g2"].completion_rate == 0.0
    assert report.by_worker["w3"].late == 1 and report.by_worker["w2"].missed == 1
    # A task not yet due at ``now`` is not counted.
    early = visit_kpis([t1], records, start=T0, end=T0 + 30 * DAY, now=t1.due_at - 1)
    assert early.overall.due == 0 and early.overall.completion_rate is None
