"""KPIs from timelines, checked against hand-computed figures (formulas in hub.cases.kpi / docs/cases.md)."""

from __future__ import annotations

from typing import Any

import pytest

from hub.cases.calendar import WorkingCalendar
from hub.cases.kpi import compute, percentile
from hub.cases.model import CaseAction, Channel, TimelineEntry
from hub.cases.sla import SlaBook, SlaPolicy
from hub.cases.workflow import apply, open_case

A = CaseAction
P0 = 1_790_000_000.0
BOOK = SlaBook(policies=(SlaPolicy(case=1000),), calendar=WorkingCalendar())


def timeline(
    case_id: str,
    grid: str,
    category: str,
    filed: float,
    steps: list[tuple[CaseAction, float, str, dict[str, Any]]],
) -> list[TimelineEntry]:
    case, entry = open_case(
        case_id=case_id, category=category, severity="minor", subject=case_id, at=P0 + filed, grid=grid
    )
    entries = [entry]
    for action, t, actor, data in steps:
        note = "note" if action in (A.HANDLE, A.REWORK, A.EXTEND, A.VOID) else ""
        case, entry = apply(
            case, action, actor=actor, at=P0 + t, channel=Channel.CONSOLE, note=note, data=data
        )
        entries.append(entry)
    return entries


def dataset() -> list[list[TimelineEntry]]:
    a = timeline("A", "g1", "door", 0, [
        (A.DISPATCH, 0, "sys", {"assignee": "w1"}),
        (A.ACCEPT, 100, "w1", {}),
        (A.ARRIVE, 300, "w1", {}),
        (A.HANDLE, 400, "w1", {}),
        (A.VERIFY, 500, "lead", {}),
        (A.CLOSE, 600, "lead", {}),
    ])  # fmt: skip
    b = timeline("B", "g1", "door", 100, [
        (A.DISPATCH, 100, "sys", {"assignee": "w2"}),
        (A.ACCEPT, 400, "w2", {}),
        (A.ARRIVE, 1100, "w2", {}),
        (A.HANDLE, 1200, "w2", {}),
        (A.REWORK, 1300, "lead", {}),
        (A.ARRIVE, 1400, "w2", {}),
        (A.HANDLE, 1500, "w2", {}),
        (A.VERIFY, 1600, "lead", {}),
        (A.CLOSE, 1700, "lead", {}),
    ])  # fmt: skip
    c = timeline("C", "g2", "sos", 200, [
        (A.DISPATCH, 200, "sys", {"assignee": "w3"}),
        (A.ACCEPT, 250, "w3", {}),
        (A.EXTEND, 300, "w3", {"approver": "lead", "seconds": 20000}),
    ])  # fmt: skip
    d = timeline("D", "g2", "door", 300, [(A.DISPATCH, 300, "sys", {"assignee": "w4"})])
    e = timeline("E", "g2", "door", 400, [(A.VOID, 450, "lead", {})])
    f = timeline("F", "g1", "door", 20000, [(A.DISPATCH, 20000, "sys", {"assignee": "w1"})])
    return [a, b, c, d, e, f]


def test_overall_figures() -> None:
    report = compute(dataset(), sla=BOOK, start=P0, end=P0 + 10000)
    o = report.overall
    # due A,B,C,D (E void, F outside); C deferred (extended past the period end, still open).
    assert (o.due, o.deferred, o.closed, o.closed_on_time, o.reworked, o.extended) == (4, 1, 2, 1, 1, 1)
    assert o.closure_rate == pytest.approx(2 / 3)
    assert o.on_time_rate == pytest.approx(1 / 3)
    assert o.rework_rate == pytest.approx(1 / 3)
    assert o.extension_rate == pytest.approx(1 / 4)
    # filed→accepted: A 100, B 300, C 50 → p50 100, p90 300; filed→on site: A 300, B 1000.
    assert (o.accept_p50, o.accept_p90) == (100, 300)
    assert (o.on_site_p50, o.on_site_p90) == (300, 1000)


def test_grouped_figures() -> None:
    report = compute(dataset(), sla=BOOK, start=P0, end=P0 + 10000)
    g1, g2 = report.by_grid["g1"], report.by_grid["g2"]
    assert (g1.due, g1.closed, g1.closed_on_time, g1.closure_rate, g1.on_time_rate) == (2, 2, 1, 1.0, 0.5)
    assert (g2.due, g2.deferred, g2.closed, g2.closure_rate) == (2, 1, 0, 0.0)
    assert report.by_category["sos"].accept_times == (50,)
    assert report.by_worker["w2"].accept_times == (300,) and report.by_worker["w2"].reworked == 1
    assert report.by_worker["w4"].due == 1 and report.by_worker["w4"].closure_rate == 0.0
    assert report.by_category["door"].as_dict()["due"] == 3


def test_next_period_counts_each_case_once() -> None:
    later = compute(dataset(), sla=BOOK, start=P0 + 10000, end=P0 + 30000)
    # Only F (due at +21000); C's anchor (its original due time) lay in the first period.
    assert later.overall.due == 1 and later.overall.closed == 0


def test_empty_period_has_no_rates() -> None:
    o = compute([], sla=BOOK, start=P0, end=P0 + 1).overall
    assert o.closure_rate is None and o.accept_p50 is None


def test_percentile_nearest_rank() -> None:
    values = [15, 20, 35, 40, 50]
    assert percentile(values, 50) == 35
    assert percentile(values, 90) == 50
    assert percentile(values, 0) == 15
    assert percentile([], 50) is None
