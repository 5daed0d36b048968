"""评价 after 结案: ratings, who and how, refusals, and 不满意 sending the case back for 返工."""

from __future__ import annotations

from typing import Any

import pytest

from hub.cases.model import (
    Case,
    CaseAction,
    CaseState,
    Channel,
    EvaluationVia,
    EvaluatorRole,
    Rating,
    Resolution,
    TimelineEntry,
)
from hub.cases.workflow import allowed_actions, apply, open_case, replay
from hub.errors import InvalidTransition, RequirementNotMet

A = CaseAction
S = CaseState
T0 = 1_790_000_000.0
GOOD = {"rating": "satisfied", "role": "resident", "via": "phone_call"}
BAD = {"rating": "unsatisfied", "role": "guardian", "via": "link"}


def step(
    case: Case, tl: list[TimelineEntry], action: CaseAction, note: str = "", actor: str = "w1", **data: Any
) -> Case:
    case, entry = apply(
        case, action, actor=actor, at=case.updated_at + 10, channel=Channel.CONSOLE, note=note, data=data
    )
    tl.append(entry)
    return case


def closed_case(category: str = "door") -> tuple[Case, list[TimelineEntry]]:
    case, first = open_case(case_id="c1", category=category, severity="minor", subject="s", at=T0, grid="g")
    tl = [first]
    case = step(case, tl, A.DISPATCH, assignee="w1")
    case = step(case, tl, A.ACCEPT)
    case = step(case, tl, A.ARRIVE)
    case = step(case, tl, A.HANDLE, note="门禁已修复")
    case = step(case, tl, A.VERIFY, actor="leader")
    case = step(case, tl, A.CLOSE, actor="leader")
    return case, tl


@pytest.mark.parametrize(
    ("rating", "stored", "satisfied"),
    [
        ("satisfied", Rating.SATISFIED, True),
        ("basically_satisfied", Rating.BASICALLY_SATISFIED, True),
        ("满意", Rating.SATISFIED, True),
        ("基本满意", Rating.BASICALLY_SATISFIED, True),
    ],
)
def test_a_satisfied_evaluation_keeps_the_case_closed(rating: str, stored: Rating, satisfied: bool) -> None:
    case, tl = closed_case()
    assert A.EVALUATE in allowed_actions(case) and case.awaiting_evaluation
    case = step(case, tl, A.EVALUATE, actor="op1", rating=rating, role="command_centre", via="phone_call")
    assert case.state is S.CLOSED and case.resolution is Resolution.RESOLVED
    assert case.evaluation is not None and case.evaluation.rating is stored
    assert case.evaluation.rating.satisfied is satisfied
    assert (
        case.evaluation.role is EvaluatorRole.COMMAND_CENTRE
        and case.evaluation.via is EvaluationVia.PHONE_CALL
    )
    assert case.evaluation.by == "op1" and case.evaluation_count == 1
    entry = tl[-1]
    assert entry.action is A.EVALUATE and entry.from_state is S.CLOSED and entry.to_state is S.CLOSED
    assert entry.data["rating"] == stored.value  # zh labels are stored as the enum value
    assert A.EVALUATE not in allowed_actions(case) and allowed_actions(case) == ()
    assert replay(tl) == case


def test_evaluated_once_per_closing() -> None:
    case, tl = closed_case()
    case = step(case, tl, A.EVALUATE, **GOOD)
    with pytest.raises(RequirementNotMet, match="already evaluated"):
        step(case, tl, A.EVALUATE, note="再评一次", **BAD)


@pytest.mark.parametrize(
    ("data", "note", "match"),
    [
        ({"role": "resident", "via": "phone_call"}, "", "rating is missing"),
        ({**GOOD, "rating": "great"}, "", "rating is unknown"),
        ({**GOOD, "rating": 5}, "", "rating is missing"),
        ({"rating": "satisfied", "via": "phone_call"}, "", "role is missing"),
        ({**GOOD, "role": "mayor"}, "", "role is unknown"),
        ({"rating": "satisfied", "role": "resident"}, "", "via is missing"),
        ({**GOOD, "via": "pigeon"}, "", "via is unknown"),
        (BAD, "", "needs a note"),
        (BAD, "   ", "needs a note"),
    ],
)
def test_refusals_change_nothing(data: dict[str, Any], note: str, match: str) -> None:
    case, _ = closed_case()
    with pytest.raises(RequirementNotMet, match=match) as info:
        apply(
            case,
            A.EVALUATE,
            actor="op",
            at=case.updated_at + 1,
            channel=Channel.CONSOLE,
            note=note,
            data=data,
        )
    assert info.value.state is S.CLOSED and info.value.action is A.EVALUATE
    assert case.awaiting_evaluation and case.evaluation is None


@pytest.mark.parametrize("state_actions", [[], [A.DISPATCH], [A.DISPATCH, A.ARRIVE]])
def test_evaluate_is_refused_before_closing(state_actions: list[CaseAction]) -> None:
    case, first = open_case(case_id="c1", category="door", severity="minor", subject="s", at=T0)
    tl = [first]
    for action in state_actions:
        case = step(case, tl, action, assignee="w1")
    assert A.EVALUATE not in allowed_actions(case)
    with pytest.raises(InvalidTransition, match="evaluate"):
        step(case, tl, A.EVALUATE, **GOOD)


def test_a_void_case_is_never_evaluated() -> None:
    case, first = open_case(case_id="c1", category="door", severity="minor", subject="s", at=T0)
    tl = [first]
    case = step(case, tl, A.VOID, note="重复上报")
    with pytest.raises(InvalidTransition):
        step(case, tl, A.EVALUATE, **GOOD)


def test_unsatisfied_goes_back_to_the_same_handler_as_rework() -> None:
    case, tl = closed_case()
    clock = case.clock_started_at
    case = step(case, tl, A.EVALUATE, note="门还是关不严", actor="guardian:李", **BAD)
    assert case.state is S.ACCEPTED and case.assignee == "w1"
    assert case.closed_at is None and case.resolution is None and case.rework_count == 1
    assert case.accepted_at == tl[-1].ts and case.on_site_at is None and case.handled_at is None
    assert case.verified_at is None and case.clock_started_at == clock  # the case clock never restarts
    assert tl[-1].note == "门还是关不严" and tl[-1].data["reopened_to"] == "accepted"
    assert not case.awaiting_evaluation and A.EVALUATE not in allowed_actions(case)
    # Reworked, re-closed, evaluated again.
    case = step(case, tl, A.ARRIVE)
    case = step(case, tl, A.HANDLE, note="更换闭门器")
    case = step(case, tl, A.VERIFY, actor="leader")
    case = step(case, tl, A.CLOSE, actor="leader")
    assert case.awaiting_evaluation and A.EVALUATE in allowed_actions(case)
    case = step(case, tl, A.EVALUATE, rating="basically_satisfied", role="guardian", via="link")
    assert case.state is S.CLOSED and case.evaluation_count == 2
    assert case.evaluation is not None and case.evaluation.rating is Rating.BASICALLY_SATISFIED
    assert replay(tl) == case


def test_unsatisfied_with_another_assignee_is_redispatched() -> None:
    case, tl = closed_case()
    case = step(case, tl, A.EVALUATE, note="态度不好", assignee="w2", **BAD)
    assert case.state is S.DISPATCHED and case.assignee == "w2" and case.dispatched_at == tl[-1].ts
    assert tl[-1].data["reopened_to"] == "dispatched" and case.rework_count == 1


def test_unsatisfied_on_a_case_never_dispatched_goes_to_the_dispatcher() -> None:
    case, first = open_case(case_id="c1", category="door", severity="minor", subject="s", at=T0)
    tl = [first]
    case = step(case, tl, A.AUTO_CLEAR, actor="system")
    assert case.state is S.CLOSED and case.assignee is None
    case = step(
        case, tl, A.EVALUATE, note="门其实还是坏的", rating="unsatisfied", role="resident", via="visit"
    )
    assert case.state is S.FILED and case.assignee is None and case.resolution is None
    assert A.DISPATCH in allowed_actions(case)


def test_an_sos_false_alarm_can_be_evaluated_by_the_command_centre() -> None:
    case, first = open_case(case_id="c1", category="sos", severity="critical", subject="s", at=T0)
    tl = [first]
    case = step(case, tl, A.CALL_BACK, note="回拨：误触，老人平安")
    case = step(case, tl, A.FALSE_ALARM, note="误触")
    case = step(case, tl, A.EVALUATE, rating="satisfied", role="command_centre", via="phone_call")
    assert case.state is S.CLOSED and case.resolution is Resolution.FALSE_ALARM
