"""SLA: limits per category × severity, traffic lights (80 % / 100 %), 督办 events, policies file."""

from __future__ import annotations

from datetime import datetime
from zoneinfo import ZoneInfo

import pytest

from hub.cases.calendar import Basis, WorkingCalendar
from hub.cases.model import Case, CaseAction, Channel, Stage
from hub.cases.policies import load_policies, policies_from
from hub.cases.sla import Light, SlaBook, SlaPolicy, parse_duration
from hub.cases.workflow import apply, open_case
from hub.errors import PolicyError

SH = ZoneInfo("Asia/Shanghai")
T0 = datetime(2026, 11, 18, 10, 0, tzinfo=SH).timestamp()  # a Wednesday
BOOK = load_policies().sla


def act(case: Case, action: CaseAction, at: float, note: str = "", **data: object) -> Case:
    case, _ = apply(case, action, actor="w1", at=at, channel=Channel.CONSOLE, note=note, data=data)
    return case


def sos_dispatched() -> Case:
    case, _ = open_case(case_id="c9", category="sos", severity="critical", subject="s", at=T0)
    return act(case, CaseAction.DISPATCH, T0, assignee="w1")


def light(book: SlaBook, case: Case, stage: Stage, now: float) -> Light:
    status = next(s for s in book.traffic_light(case, now) if s.stage is stage)
    return status.light


def test_parse_duration() -> None:
    assert parse_duration("60s") == 60
    assert parse_duration("15m") == 900
    assert parse_duration("2h") == 7200
    assert parse_duration("1d") == 86400
    assert parse_duration("2wd", working_day_s=27000) == 54000
    assert parse_duration(90) == 90
    with pytest.raises(ValueError):
        parse_duration("soon")


def test_sos_accept_light_green_yellow_red() -> None:
    case = sos_dispatched()
    assert light(BOOK, case, Stage.ACCEPT, T0 + 47) is Light.GREEN
    assert light(BOOK, case, Stage.ACCEPT, T0 + 48) is Light.YELLOW  # 80 % of 60 s
    assert light(BOOK, case, Stage.ACCEPT, T0 + 59.9) is Light.YELLOW
    assert light(BOOK, case, Stage.ACCEPT, T0 + 60) is Light.RED  # due: overdue from here on
    status = BOOK.traffic_light(case, T0 + 30)
    assert [s.stage for s in status] == [Stage.ACCEPT, Stage.CASE]
    accept = status[0]
    assert (accept.limit, accept.due_at, accept.yellow_at, accept.elapsed) == (60, T0 + 60, T0 + 48, 30)


def test_finished_stage_keeps_its_light() -> None:
    case = act(sos_dispatched(), CaseAction.ACCEPT, T0 + 50)
    assert light(BOOK, case, Stage.ACCEPT, T0 + 3600) is Light.YELLOW
    assert light(BOOK, case, Stage.ARRIVE, T0 + 60) is Light.GREEN
    case = act(sos_dispatched(), CaseAction.ACCEPT, T0 + 60)
    assert light(BOOK, case, Stage.ACCEPT, T0 + 3600) is Light.YELLOW  # exactly on time


def test_due_events_once_per_stage_round() -> None:
    case = sos_dispatched()
    assert BOOK.due_events(case, T0 + 59) == ()
    (event,) = BOOK.due_events(case, T0 + 61)
    assert event.stage is Stage.ACCEPT and event.key == f"c9/supervise/accept/{round(T0 * 1000)}"
    case = act(case, CaseAction.SUPERVISE, T0 + 61, stage="accept")
    assert BOOK.due_events(case, T0 + 62) == ()
    # A reassign starts a new round of the accept stage: a new 督办 once it is red again.
    case = act(case, CaseAction.REASSIGN, T0 + 70, assignee="w2")
    assert BOOK.due_events(case, T0 + 100) == ()
    assert [e.stage for e in BOOK.due_events(case, T0 + 131)] == [Stage.ACCEPT]
    assert BOOK.next_change(case, T0 + 100) == T0 + 70 + 48


def test_extension_moves_due_time() -> None:
    case, _ = open_case(case_id="d1", category="door", severity="minor", subject="s", at=T0)
    case = act(case, CaseAction.DISPATCH, T0, assignee="w1")
    # door accept limit: 1 working hour → 11:00.
    assert BOOK.due_at(case, Stage.ACCEPT) == T0 + 3600
    case = act(case, CaseAction.EXTEND, T0 + 10, note="等物业", approver="leader", seconds=3600)
    # 10:00 + 2 working hours = 12:00 (lunch starts there).
    assert BOOK.due_at(case, Stage.ACCEPT) == T0 + 7200
    assert BOOK.due_at(case, Stage.ACCEPT, with_extensions=False) == T0 + 3600
    # The case limit (3 working days = 22.5 h) from Wed 10:00 ends Mon 10:00; +1 h → Mon 11:00.
    assert (
        BOOK.due_at(case, Stage.CASE, with_extensions=False)
        == datetime(2026, 11, 23, 10, tzinfo=SH).timestamp()
    )
    assert BOOK.due_at(case, Stage.CASE) == datetime(2026, 11, 23, 11, tzinfo=SH).timestamp()


def test_working_basis_light_stands_still_over_the_weekend() -> None:
    friday = datetime(2026, 11, 20, 17, 0, tzinfo=SH).timestamp()
    case, _ = open_case(case_id="d2", category="door", severity="minor", subject="s", at=friday)
    case = act(case, CaseAction.DISPATCH, friday, assignee="w1")
    saturday = datetime(2026, 11, 21, 12, 0, tzinfo=SH).timestamp()
    status = next(s for s in BOOK.traffic_light(case, saturday) if s.stage is Stage.ACCEPT)
    assert status.elapsed == 1800 and status.light is Light.GREEN
    assert status.due_at == datetime(2026, 11, 23, 9, 0, tzinfo=SH).timestamp()


def test_most_specific_policy_wins() -> None:
    book = SlaBook(
        policies=(
            SlaPolicy(stages={Stage.ACCEPT: "1h"}),
            SlaPolicy(category="sos", stages={Stage.ACCEPT: "3m"}),
            SlaPolicy(category="sos", severity="critical", stages={Stage.ACCEPT: "60s"}),
        ),
        calendar=WorkingCalendar(),
    )
    assert book.base_limit("sos", "critical", Stage.ACCEPT) == (60, Basis.CALENDAR)
    assert book.base_limit("sos", "major", Stage.ACCEPT) == (180, Basis.CALENDAR)
    assert book.base_limit("door", "major", Stage.ACCEPT) == (3600, Basis.CALENDAR)
    assert book.base_limit("door", "major", Stage.CASE) is None


def test_policy_file_errors_are_clear() -> None:
    with pytest.raises(PolicyError, match="working days"):
        policies_from({"sla": [{"basis": "working", "stages": {"accept": "1d"}}]})
    with pytest.raises(PolicyError, match="extra"):
        policies_from({"sla": [{"stages": {"accept": "1h"}, "surprise": 1}]})
    with pytest.raises(PolicyError, match="order"):
        policies_from(
            {
                "escalation": [
                    {
                        "dispatched": [
                            {"after": "3m", "targets": ["grid_leader"]},
                            {"after": "1m", "targets": ["grid_leader"]},
                        ]
                    }
                ]
            }
        )


def test_shipped_defaults() -> None:
    p = load_policies()
    assert p.sla.base_limit("sos", "critical", Stage.ACCEPT) == (60, Basis.CALENDAR)
    assert p.sla.base_limit("sos", "critical", Stage.ARRIVE) == (900, Basis.CALENDAR)
    assert p.sla.base_limit("sos", "critical", Stage.CASE) == (7200, Basis.CALENDAR)
    assert p.sla.base_limit("device", "minor", Stage.CASE) == (5 * 27000, Basis.WORKING)
    chain = p.chain("sos", "critical")
    assert chain is not None and [s.after_s for s in chain.dispatched] == [0, 60, 180]
