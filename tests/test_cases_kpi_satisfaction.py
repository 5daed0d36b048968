"""满意率 and the call-back list, from timelines, checked against hand-computed figures."""

from __future__ import annotations

from typing import Any

import pytest

from hub.cases.calendar import WorkingCalendar
from hub.cases.kpi import awaiting_evaluation, compute
from hub.cases.model import CaseAction, Channel, Resolution, TimelineEntry
from hub.cases.policies import load_policies, policies_from
from hub.cases.sla import SlaBook, SlaPolicy
from hub.cases.workflow import apply, open_case
from hub.errors import PolicyError

A = CaseAction
P0 = 1_790_000_000.0
DAY = 86400.0
BOOK = SlaBook(policies=(SlaPolicy(case=1000),), calendar=WorkingCalendar())
CLOSE = [
    (A.DISPATCH, "sys", "", {}),
    (A.ARRIVE, "", "", {}),
    (A.HANDLE, "", "修好", {}),
    (A.VERIFY, "lead", "", {}),
    (A.CLOSE, "lead", "", {}),
]


def evaluate(rating: str, note: str = "", **data: Any) -> tuple[CaseAction, str, str, dict[str, Any]]:
    return (A.EVALUATE, "op", note, {"rating": rating, "role": "resident", "via": "phone_call", **data})


def timeline(
    case_id: str,
    grid: str,
    worker: str,
    steps: list[tuple[CaseAction, str, str, dict[str, Any]]],
    *,
    at: float = 0,
) -> list[TimelineEntry]:
    """Each step 100 s after the previous one, from ``P0 + at``."""
    case, entry = open_case(
        case_id=case_id, category="door", severity="minor", subject=case_id, at=P0 + at, grid=grid
    )
    entries = [entry]
    for i, (action, actor, note, given) in enumerate(steps, start=1):
        data = {"assignee": worker, **given} if action is A.DISPATCH else given
        case, entry = apply(
            case,
            action,
            actor=actor or worker,
            at=P0 + at + 100 * i,
            channel=Channel.CONSOLE,
            note=note,
            data=data,
        )
        entries.append(entry)
    return entries


def dataset() -> list[list[TimelineEntry]]:
    return [
        timeline("A", "g1", "w1", [*CLOSE, evaluate("satisfied")]),
        timeline("B", "g1", "w1", [*CLOSE, evaluate("basically_satisfied")]),
        # 不满意 → 返工 → re-closed → 满意: one evaluated case, counted with its last rating.
        timeline(
            "C", "g1", "w2", [*CLOSE, evaluate("unsatisfied", "没修好"), *CLOSE[1:], evaluate("satisfied")]
        ),
        timeline("D", "g2", "w3", [*CLOSE, evaluate("unsatisfied", "态度差")]),
        timeline("E", "g2", "w3", CLOSE),  # closed, never evaluated
        # Unsatisfied with a new handler: the judged worker is w3, not the new assignee w4.
        timeline("F", "g2", "w3", [*CLOSE, evaluate("unsatisfied", "换人", assignee="w4")]),
    ]


def test_satisfaction_rate_overall_per_grid_and_worker() -> None:
    report = compute(dataset(), sla=BOOK, start=P0, end=P0 + DAY)
    o = report.overall
    assert (o.evaluated, o.satisfied, o.basically_satisfied, o.unsatisfied) == (5, 2, 1, 2)
    assert o.satisfaction_rate == pytest.approx(3 / 5)
    g1, g2 = report.by_grid["g1"], report.by_grid["g2"]
    assert (g1.evaluated, g1.satisfaction_rate) == (3, 1.0)
    assert (g2.evaluated, g2.satisfaction_rate) == (2, 0.0)
    w = report.by_worker
    assert (w["w1"].evaluated, w["w1"].satisfaction_rate) == (2, 1.0)
    assert (w["w2"].evaluated, w["w2"].satisfaction_rate) == (1, 1.0)
    assert (w["w3"].evaluated, w["w3"].unsatisfied, w["w3"].satisfaction_rate) == (2, 2, 0.0)
    assert "w4" not in w or w["w4"].evaluated == 0
    assert o.as_dict()["satisfaction_rate"] == pytest.approx(0.6)


def test_unsatisfied_counts_as_rework() -> None:
    report = compute(dataset(), sla=BOOK, start=P0, end=P0 + DAY)
    # C, D and F were sent back by a 不满意 evaluation.
    assert report.overall.reworked == 3


def test_a_later_evaluation_never_changes_a_past_period() -> None:
    c = timeline(
        "C", "g1", "w2", [*CLOSE, evaluate("unsatisfied", "没修好"), *CLOSE[1:], evaluate("satisfied")]
    )
    first_eval = c[6].ts
    before = compute([c], sla=BOOK, start=P0, end=first_eval + 1)
    after = compute([c], sla=BOOK, start=first_eval + 1, end=P0 + DAY)
    assert (before.overall.evaluated, before.overall.unsatisfied, before.overall.satisfaction_rate) == (
        1,
        1,
        0.0,
    )
    assert (after.overall.evaluated, after.overall.satisfied, after.overall.satisfaction_rate) == (1, 1, 1.0)


def test_no_evaluations_no_rate() -> None:
    report = compute([timeline("E", "g2", "w3", CLOSE)], sla=BOOK, start=P0, end=P0 + DAY)
    assert report.overall.evaluated == 0 and report.overall.satisfaction_rate is None


@pytest.mark.parametrize(
    ("now", "after", "listed"),
    [
        (P0 + 500, 0, ["E"]),  # closed at P0 + 500: due at once
        (P0 + 499, 0, []),
        (P0 + 500 + 3 * DAY - 1, 3 * DAY, []),
        (P0 + 500 + 3 * DAY, 3 * DAY, ["E"]),
    ],
)
def test_cases_closed_without_evaluation_after_n_days(now: float, after: float, listed: list[str]) -> None:
    due = awaiting_evaluation(dataset(), now=now, after=after)
    assert [d.case_id for d in due] == listed
    if due:
        assert due[0].closed_at == P0 + 500 and due[0].due_at == P0 + 500 + after and due[0].handler == "w3"


def test_recleared_after_rework_is_listed_again_and_evaluated_ones_are_not() -> None:
    reopened = timeline("R", "g1", "w1", [*CLOSE, evaluate("unsatisfied", "没修好"), *CLOSE[1:]])
    due = awaiting_evaluation([*dataset(), reopened], now=P0 + 10 * DAY, after=3 * DAY)
    assert [d.case_id for d in due] == ["E", "R"]
    assert due[1].closed_at == reopened[-1].ts


def test_only_the_chosen_resolutions_are_listed() -> None:
    case, first = open_case(case_id="X", category="door", severity="minor", subject="x", at=P0)
    case, cleared = apply(case, A.AUTO_CLEAR, actor="sensor", at=P0 + 1, channel=Channel.SYSTEM)
    assert awaiting_evaluation([[first, cleared]], now=P0 + 10 * DAY, after=DAY) == ()
    everything = frozenset(Resolution)
    assert [
        d.case_id
        for d in awaiting_evaluation([[first, cleared]], now=P0 + 10 * DAY, after=DAY, resolutions=everything)
    ] == ["X"]
    with pytest.raises(ValueError, match="negative"):
        awaiting_evaluation([], now=P0, after=-1)


def test_call_back_delay_comes_from_the_policies() -> None:
    assert load_policies().file.evaluation.call_back_after_s == 3 * DAY
    assert (
        policies_from({"evaluation": {"call_back_after": "36h"}}).file.evaluation.call_back_after_s
        == 1.5 * DAY
    )
    with pytest.raises(PolicyError, match="calendar"):
        policies_from({"evaluation": {"call_back_after": "2wd"}})
