"""Escalation planner: SOS chain timing, accept stops it, on-site reminder, idempotent restart."""

from __future__ import annotations

from datetime import datetime, time
from zoneinfo import ZoneInfo

from hub.cases.escalation import COMMAND_CENTRE, Phase, TargetKind, plan, step_key
from hub.cases.model import Case, CaseAction, Channel
from hub.cases.policies import load_policies
from hub.cases.workflow import apply, open_case
from hub.community.model import Contact
from hub.community.roster import Leave, Person, Shift
from hub.records import Role

SH = ZoneInfo("Asia/Shanghai")
GRID = "110105001001001"
T0 = datetime(2026, 11, 22, 2, 13, tzinfo=SH).timestamp()  # a Sunday night
POL = load_policies()
NIGHT = Shift(start=time(20, 0), end=time(8, 0))
DAY = Shift(start=time(8, 0), end=time(20, 0))
ROSTER = [
    Person(id="w-night", name="夜班网格员", role=Role.GRID_WORKER, grids=(GRID,), shifts=(NIGHT,)),
    Person(id="w-night2", name="夜班网格员二", role=Role.GRID_WORKER, grids=(GRID,), shifts=(NIGHT,)),
    Person(id="w-day", name="白班网格员", role=Role.GRID_WORKER, grids=(GRID,), shifts=(DAY,)),
    Person(id="leader", name="网格长", role=Role.GRID_LEADER, grids=(GRID,)),
    Person(id="duty", name="社区值班", role=Role.DUTY_OFFICER, grids=(GRID,), shifts=(NIGHT,)),
    Person(id="sup", name="指挥中心", role=Role.COMMAND_SUPERVISOR, shifts=(NIGHT, DAY)),
]
GUARDIANS = (Contact(name="女儿", relation="daughter", phone="13800000000"),)


def sos() -> Case:
    case, _ = open_case(case_id="c1", category="sos", severity="critical", subject="s", at=T0, grid=GRID)
    case, _ = apply(
        case, CaseAction.DISPATCH, actor="system", at=T0, channel=Channel.SYSTEM, data={"assignee": "w-night"}
    )
    return case


def run(
    case: Case, now: float, sent: frozenset[str] = frozenset()
) -> tuple[list[tuple[int, list[str]]], float | None]:
    p = plan(
        case,
        chain=POL.chain(case.category, case.severity),
        sla=POL.sla,
        roster=ROSTER,
        zone=SH,
        now=now,
        contacts=GUARDIANS,
        sent=sent,
    )
    return [(d.step, [t.id for t in d.targets]) for d in p.due], p.next_deadline


def test_sos_chain_at_once_then_60s_then_3min() -> None:
    case = sos()
    due, nxt = run(case, T0)
    assert due == [(0, ["w-night", "duty", "contact:13800000000"])]
    assert nxt == T0 + 60
    sent = frozenset({step_key("c1", Phase.DISPATCHED, T0, 0)})
    due, nxt = run(case, T0 + 59.9, sent)
    assert (due, nxt) == ([], T0 + 60)
    due, nxt = run(case, T0 + 60, sent)
    # The next worker on shift (not the day worker, not the one already told) and the leader.
    assert due == [(1, ["w-night2", "leader"])] and nxt == T0 + 180
    sent |= {step_key("c1", Phase.DISPATCHED, T0, 1)}
    due, nxt = run(case, T0 + 180, sent)
    assert due == [(2, ["sup"])] and nxt is None


def test_restart_after_kill_finds_same_deadline_without_resending() -> None:
    case = sos()
    first = plan(case, chain=POL.chain("sos", "critical"), sla=POL.sla, roster=ROSTER, zone=SH, now=T0)
    sent = frozenset(d.key for d in first.due)
    # "kill -9" at T0 + 30; on restart the hub loads the case and the sent keys and asks again.
    again = plan(
        case, chain=POL.chain("sos", "critical"), sla=POL.sla, roster=ROSTER, zone=SH, now=T0 + 30, sent=sent
    )
    assert again.due == () and again.next_deadline == first.next_deadline == T0 + 60
    # Down until T0 + 200: everything overdue is due once, with the people of its own time.
    late = plan(
        case, chain=POL.chain("sos", "critical"), sla=POL.sla, roster=ROSTER, zone=SH, now=T0 + 200, sent=sent
    )
    assert [d.step for d in late.due] == [1, 2] and late.next_deadline is None
    assert [d.due_at for d in late.due] == [T0 + 60, T0 + 180]


def test_accepting_stops_escalation_then_on_site_reminder() -> None:
    case = sos()
    case, _ = apply(case, CaseAction.ACCEPT, actor="w-night", at=T0 + 30, channel=Channel.PHONE_PAGE)
    due, nxt = run(case, T0 + 120)
    assert due == [] and nxt == T0 + 30 + 900  # on-site limit 15 min after acceptance
    due, nxt = run(case, T0 + 930)
    assert due == [(0, ["w-night"])] and nxt == T0 + 930 + 300
    p = plan(case, chain=POL.chain("sos", "critical"), sla=POL.sla, roster=ROSTER, zone=SH, now=T0 + 930)
    assert p.due[0].phase is Phase.ACCEPTED and p.due[0].kind.value == "remind"
    due, _ = run(case, T0 + 1230, frozenset({p.due[0].key}))
    assert due == [(1, ["leader", "duty"])]
    case, _ = apply(case, CaseAction.ARRIVE, actor="w-night", at=T0 + 1240, channel=Channel.PHONE_PAGE)
    assert run(case, T0 + 5000) == ([], None)


def test_reassign_starts_a_new_round_with_new_keys() -> None:
    case = sos()
    case, _ = apply(
        case,
        CaseAction.REASSIGN,
        actor="duty",
        at=T0 + 100,
        channel=Channel.CONSOLE,
        data={"assignee": "w-night2"},
    )
    p = plan(case, chain=POL.chain("sos", "critical"), sla=POL.sla, roster=ROSTER, zone=SH, now=T0 + 100)
    assert (
        p.due[0].key
        == step_key("c1", Phase.DISPATCHED, T0 + 100, 0)
        != step_key("c1", Phase.DISPATCHED, T0, 0)
    )
    assert p.due[0].targets[0].id == "w-night2"


def test_nobody_on_duty_goes_to_the_command_centre() -> None:
    case, _ = open_case(
        case_id="c2", category="sos", severity="critical", subject="s", at=T0, grid="999999999999999"
    )
    case, _ = apply(
        case,
        CaseAction.DISPATCH,
        actor="system",
        at=T0,
        channel=Channel.SYSTEM,
        data={"assignee": "nobody-known"},
    )
    p = plan(case, chain=POL.chain("sos", "critical"), sla=POL.sla, roster=[], zone=SH, now=T0 + 200)
    kinds = [[t.kind for t in d.targets] for d in p.due]
    assert kinds[1] == [TargetKind.COMMAND_CENTRE] and p.due[1].targets[0].id == COMMAND_CENTRE
    assert kinds[2] == [TargetKind.COMMAND_CENTRE]


def test_closed_case_plans_nothing() -> None:
    case = sos()
    case, _ = apply(
        case, CaseAction.CALL_BACK, actor="duty", at=T0 + 20, channel=Channel.CONSOLE, note="误触，老人平安"
    )
    case, _ = apply(
        case, CaseAction.FALSE_ALARM, actor="duty", at=T0 + 21, channel=Channel.CONSOLE, note="误触"
    )
    assert run(case, T0 + 500) == ([], None)


def test_an_escalation_step_skips_people_on_leave_and_falls_back_to_the_command_centre() -> None:
    """Found in review: nobody of the role on shift meant "tell all of them", people on leave
    included: an inactivity case's last step went to a leader in hospital, and the command
    centre (told when nobody is found) never heard of it."""
    all_day = Shift(start=time(0, 0), end=time(0, 0))
    leave = Leave(start=datetime(2026, 11, 20), end=datetime(2026, 11, 30))
    roster = [
        Person(id="worker", name="网格员", role=Role.GRID_WORKER, grids=(GRID,), shifts=(all_day,)),
        Person(
            id="leader",
            name="网格长",
            role=Role.GRID_LEADER,
            grids=(GRID,),
            shifts=(all_day,),
            leave=(leave,),
        ),
    ]
    case, _ = open_case(
        case_id="c1", category="inactivity", severity="major", subject="door-1", at=T0, grid=GRID
    )
    case, _ = apply(
        case, CaseAction.DISPATCH, actor="system", at=T0, channel=Channel.SYSTEM, data={"assignee": "worker"}
    )
    chain = POL.chain("inactivity", "major")
    due = plan(case, chain=chain, sla=POL.sla, roster=roster, zone=SH, now=T0 + 1800).due
    leader_steps = [d for d in due if any(t.selector.value == "grid_leader" for t in d.targets)]
    assert leader_steps and all(t.id != "leader" for d in leader_steps for t in d.targets)
    assert any(t.id == COMMAND_CENTRE for d in leader_steps for t in d.targets)
    # Back from leave (off shift, nobody else of the role): he is told, as before.
    back = [roster[0], roster[1].model_copy(update={"leave": (), "shifts": ()})]
    due = plan(case, chain=chain, sla=POL.sla, roster=back, zone=SH, now=T0 + 1800).due
    assert any(t.id == "leader" for d in due for t in d.targets)
