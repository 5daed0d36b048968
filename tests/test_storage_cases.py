"""The case store and the rule-state store on both engines: timelines, version checks, deadlines,
escalation steps sent once, and rule slots that survive a restart."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from hub.cases.model import Case, CaseAction, CaseState, Channel, TimelineEntry
from hub.cases.workflow import apply, case_from_alert, open_case
from hub.errors import StaleCaseError
from hub.ingest.alerts import record_signal
from hub.records import Alert
from hub.steps import run_through
from hub.storage.cases import CaseFilter, CaseStore
from hub.storage.rule_state import RuleStateStore
from hub.storage.store import Store
from rules import MemoryState, Slot
from tests.helpers import drained
from tests.test_store import SUBJECT, T0, signal


@pytest.fixture
def store(store_url: str) -> Iterator[Store]:
    opened = Store(url=store_url)
    yield opened
    opened.close()


def sos_alert(store: Store, subject: str = "btn-1") -> Alert:
    change = record_signal(store, signal(subject=subject), SUBJECT, [])
    assert change is not None
    return change.alert


def opened_case(store: Store, cases: CaseStore, alert: Alert, case_id: str) -> tuple[Case, TimelineEntry]:
    """What casework does on a new alert: 立案 then 派遣, in one transaction."""
    case, filed = case_from_alert(alert, case_id=case_id, at=T0)
    dispatched, dispatch = apply(
        case, CaseAction.DISPATCH, actor="system", at=T0, channel=Channel.SYSTEM, data={"assignee": "w-night"}
    )
    with store.transaction() as tx:
        cases.add(tx, case, filed)
        cases.append(tx, dispatched, dispatch)
        cases.set_deadline(tx, case.id, T0 + 60)
    return dispatched, dispatch


def test_a_case_is_rebuilt_from_its_timeline(store: Store) -> None:
    cases = CaseStore(store=store)
    alert = sos_alert(store)
    dispatched, _ = opened_case(store, cases, alert, "c1")
    loaded = cases.open_for_alert(alert.id)
    assert loaded == dispatched and loaded.state is CaseState.DISPATCHED and loaded.assignee == "w-night"
    assert [e.action for e in cases.timeline("c1")] == [CaseAction.FILE, CaseAction.DISPATCH]
    assert cases.case_ids(assignee="w-night") == ["c1"] and cases.case_ids(grid="nowhere") == []
    # A period's cases, their timelines in one query: in the order asked, unknown ids left out.
    opened_case(store, cases, sos_alert(store, "btn-2"), "c2")
    assert cases.touching(T0 - 1, T0 + 1) == ["c1", "c2"] and cases.touching(T0 + 1, T0 + 2) == ["c1", "c2"]
    assert cases.touching(T0 - 2, T0 - 1) == [], "filed after the period"
    assert cases.timelines_of(["c2", "nope", "c1"]) == [cases.timeline("c2"), cases.timeline("c1")]
    assert cases.told_of(["c1", "nope"]) == {"c1": cases.told("c1"), "nope": frozenset()}


def test_a_stale_append_is_refused_and_rolls_back_everything(store: Store) -> None:
    cases = CaseStore(store=store)
    dispatched, _ = opened_case(store, cases, sos_alert(store), "c1")
    accepted, accept = apply(dispatched, CaseAction.ACCEPT, actor="w-night", at=T0 + 5, channel=Channel.MQTT)
    with store.transaction() as tx:
        cases.append(tx, accepted, accept)
    with pytest.raises(StaleCaseError), store.transaction() as tx:
        cases.set_deadline(tx, "c1", T0 + 999)
        cases.append(tx, accepted, accept)  # the same change again, from an old version
    assert cases.next_deadline() == T0 + 60, "the deadline moved in the refused transaction is rolled back"
    assert len(cases.timeline("c1")) == 3


def test_only_one_open_case_per_alert(store: Store) -> None:
    cases = CaseStore(store=store)
    alert = sos_alert(store)
    opened_case(store, cases, alert, "c1")
    with pytest.raises(Exception, match=r"(?i)unique"):
        opened_case(store, cases, alert, "c2")
    assert cases.case_ids() == ["c1"]


def test_deadlines_and_escalation_steps_are_sent_once(store: Store) -> None:
    cases = CaseStore(store=store)
    opened_case(store, cases, sos_alert(store), "c1")
    assert cases.due(T0 + 59) == [] and cases.due(T0 + 60) == ["c1"]
    with store.transaction() as tx:
        assert cases.mark_sent(tx, "c1/step/1", "c1", T0 + 60)
        assert not cases.mark_sent(tx, "c1/step/1", "c1", T0 + 61)
        cases.set_deadline(tx, "c1", T0 + 120)
    with store.transaction() as tx:
        assert not cases.mark_sent(tx, "c1/step/1", "c1", T0 + 62)
    assert cases.sent_keys("c1") == frozenset({"c1/step/1"})
    assert cases.next_deadline() == T0 + 120
    with store.transaction() as tx:
        cases.set_deadline(tx, "c1", None)
    assert cases.next_deadline() is None


def test_an_alert_whose_case_never_opened_is_found(store: Store) -> None:
    cases = CaseStore(store=store)
    first = sos_alert(store, "btn-1")
    second = sos_alert(store, "btn-2")
    opened_case(store, cases, first, "c1")
    assert cases.alerts_without_case() == [second.id]


def test_rule_state_is_flushed_and_restored(store: Store) -> None:
    states = RuleStateStore(store=store)
    state = MemoryState()
    state.put(("elderly.no_door", "door-1"), Slot("absence", due=T0 + 86_400.5, last_ts=T0))
    state.put(("parking.fire_lane", "lane-b-1"), Slot("duration", due=T0 + 60, value=1.0))
    assert states.flush(state) == 2
    assert states.flush(state) == 0
    state.delete(("parking.fire_lane", "lane-b-1"))
    state.put(("elderly.no_door", "door-1"), Slot("absence", due=T0 + 90_000.25, last_ts=T0 + 1))
    assert states.flush(state) == 2
    restored = states.load()
    assert states.count() == 1
    assert restored.get(("elderly.no_door", "door-1")) == Slot("absence", due=T0 + 90_000.25, last_ts=T0 + 1)
    assert restored.next_due() == T0 + 90_000.25


def test_open_cases_are_counted_per_grid_by_the_store(store: Store) -> None:
    """The map's tiles: open cases and open SOS cases per grid, closed ones left out, only the
    reader's, on both engines (a boolean is not summed on PostgreSQL)."""
    cases = CaseStore(store=store)
    g1, g2 = "110105001001001", "110105001001002"
    with store.transaction() as tx:
        for i, (grid, category) in enumerate(
            [(g1, "sos"), (g1, "door"), (g1, "sos"), (g2, "door"), (None, "sos"), (g2, "door")]
        ):
            case, entry = open_case(
                case_id=f"c{i}", category=category, severity="critical", subject=f"d{i}", at=T0 + i, grid=grid
            )
            cases.add(tx, case, entry)
            if i == 5:  # closed: not counted
                case, entry = apply(
                    case, CaseAction.VOID, actor="lead", at=T0 + 9, channel=Channel.CONSOLE, note="重复"
                )
                cases.append(tx, case, entry)
    assert cases.open_per_grid() == {g1: (3, 2), g2: (1, 0), None: (1, 1)}
    assert cases.open_per_grid(visible=CaseFilter(grids=frozenset({g2}))) == {g2: (1, 0)}
    assert cases.open_per_grid(visible=CaseFilter(person="nobody")) == {}


def test_open_cases_are_counted_per_subject_from_their_headers(store: Store) -> None:
    """The elder register's counts: from each open case's 立案 entry, closed ones left out."""
    cases = CaseStore(store=store)
    with store.transaction() as tx:
        for i, subject in enumerate(["btn-1", "btn-1", "door-2", "door-2"]):
            case, entry = open_case(
                case_id=f"s{i}", category="door", severity="minor", subject=subject, at=T0 + i, grid="g"
            )
            cases.add(tx, case, entry)
            if i == 3:
                case, entry = apply(
                    case, CaseAction.VOID, actor="lead", at=T0 + 9, channel=Channel.CONSOLE, note="重复"
                )
                cases.append(tx, case, entry)
    assert run_through(cases.open_per_subject()) == {"btn-1": 2, "door-2": 1}
    # One case a step: the same counts, a step (a turn of the loop) after each full page.
    pauses, counts = drained(cases.open_per_subject(rows_per_step=1))
    assert (pauses, counts) == (3, {"btn-1": 2, "door-2": 1})


def test_open_cases_per_subject_read_in_steps_keep_their_place(store: Store) -> None:
    """Between two steps, cases are filed and closed: read by id (not OFFSET), a case closed
    behind the read shifts nothing, so no case read after it is skipped or counted twice."""
    cases = CaseStore(store=store)
    opened: dict[str, Case] = {}
    with store.transaction() as tx:
        for i in range(6):
            case, entry = open_case(
                case_id=f"k{i}", category="door", severity="minor", subject=f"dev-{i}", at=T0 + i, grid="g"
            )
            cases.add(tx, case, entry)
            opened[case.id] = case
    steps = cases.open_per_subject(rows_per_step=2)
    next(steps)  # k0 and k1 counted
    with store.transaction() as tx:
        for case_id in ("k0", "k1"):  # closed behind the read: an OFFSET would now skip k2, k3
            case, entry = apply(
                opened[case_id],
                CaseAction.VOID,
                actor="lead",
                at=T0 + 9,
                channel=Channel.CONSOLE,
                note="重复",
            )
            cases.append(tx, case, entry)
        case, entry = open_case(
            case_id="k9", category="sos", severity="critical", subject="btn-9", at=T0 + 9, grid="g"
        )
        cases.add(tx, case, entry)
    pauses, counts = drained(steps)
    assert counts == {f"dev-{i}": 1 for i in range(6)} | {"btn-9": 1}
    assert pauses == 2  # k2–k3, k4–k5, then k9 alone ends the read
