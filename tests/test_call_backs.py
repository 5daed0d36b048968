"""The 回访 list as a store query (issue 18, schema version 5) on both engines: the same cases, in
the same order, as replaying every timeline (:func:`hub.cases.kpi.awaiting_evaluation`), page by
page; scoped like the case lists; kept by every case write; filled in for cases stored before it."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from hub.app import Hub
from hub.cases.kpi import awaiting_evaluation
from hub.cases.model import Case, CaseAction, Channel
from hub.cases.workflow import apply, case_from_alert
from hub.clock import ManualClock
from hub.storage.cases import CaseFilter, CaseStore
from hub.storage.store import Store
from tests.helpers import TOKEN, drained, hub_settings
from tests.support.servers import Broker
from tests.test_storage_cases import sos_alert
from tests.test_store import T0

HOUR = 3600.0
AFTER = 3 * 86400.0  # evaluation.call_back_after's default


@pytest.fixture
def store(store_url: str) -> Iterator[Store]:
    opened = Store(url=store_url)
    yield opened
    opened.close()


def _step(store: Store, cases: CaseStore, case: Case, action: CaseAction, at: float, **data: Any) -> Case:
    note = str(data.pop("note", ""))
    updated, entry = apply(case, action, actor="w", at=at, channel=Channel.CONSOLE, note=note, data=data)
    with store.transaction() as tx:
        cases.append(tx, updated, entry)
    return updated


def _worked(
    store: Store, cases: CaseStore, case_id: str, at: float, *, end: CaseAction = CaseAction.CLOSE
) -> Case:
    """An SOS filed at ``at``, worked to 结案 (or called back and closed as a false alarm) an hour later."""
    case, filed = case_from_alert(sos_alert(store, subject=f"btn-{case_id}"), case_id=case_id, at=at)
    with store.transaction() as tx:
        cases.add(tx, case, filed)
    case = _step(store, cases, case, CaseAction.DISPATCH, at + 1, assignee="w")
    if end is CaseAction.FALSE_ALARM:
        case = _step(store, cases, case, CaseAction.CALL_BACK, at + 60, note="误触", callback_at=at + 60)
        return _step(store, cases, case, CaseAction.FALSE_ALARM, at + HOUR, note="误触，老人平安")
    case = _step(store, cases, case, CaseAction.ACCEPT, at + 30)
    case = _step(store, cases, case, CaseAction.ARRIVE, at + 600)
    case = _step(store, cases, case, CaseAction.HANDLE, at + 1200, note="已处置")
    case = _step(store, cases, case, CaseAction.VERIFY, at + 1800)
    return _step(store, cases, case, CaseAction.CLOSE, at + HOUR)


def _evaluate(store: Store, cases: CaseStore, case: Case, rating: str, at: float) -> Case:
    note = "地上还有水" if rating == "unsatisfied" else ""
    data = {"rating": rating, "role": "command_centre", "via": "phone_call"}
    return _step(store, cases, case, CaseAction.EVALUATE, at, note=note, **data)


def _oracle(store: Store, cases: CaseStore, now: float) -> list[tuple[str, float]]:
    timelines = [cases.timeline(row[0]) for row in store.execute("SELECT id FROM cases ORDER BY id")]
    return [(d.case_id, d.closed_at) for d in awaiting_evaluation(timelines, now=now, after=AFTER)]


def test_the_query_lists_what_replaying_every_timeline_lists_page_by_page(store: Store) -> None:
    cases = CaseStore(store=store)
    for index in range(7):
        _worked(store, cases, f"c{index}", T0 + index * HOUR)
    _worked(store, cases, "fa", T0 + 2.5 * HOUR, end=CaseAction.FALSE_ALARM)  # nobody to ask
    satisfied = cases.load("c1")
    assert satisfied is not None
    _evaluate(store, cases, satisfied, "satisfied", T0 + 2 * HOUR)
    # 不满意 reopens c2: off the list until it is closed again, then on it from the new 结案.
    reopened = cases.load("c2")
    assert reopened is not None
    reopened = _evaluate(store, cases, reopened, "unsatisfied", T0 + 5 * HOUR)
    assert cases.call_backs(until=T0 + 30 * HOUR) and "c2" not in dict(cases.call_backs(until=T0 + 30 * HOUR))
    for action, at in (
        (CaseAction.ARRIVE, 6),
        (CaseAction.HANDLE, 7),
        (CaseAction.VERIFY, 8),
        (CaseAction.CLOSE, 9),
    ):
        extra = {"note": "已擦干"} if action is CaseAction.HANDLE else {}
        reopened = _step(store, cases, reopened, action, T0 + at * HOUR, **extra)
    for now in (T0 + AFTER + 3.5 * HOUR, T0 + AFTER + 30 * HOUR):
        expected = _oracle(store, cases, now)
        pages: list[tuple[str, float]] = []
        for offset in range(0, 10, 2):
            pages += cases.call_backs(until=now - AFTER, limit=2, offset=offset)
        assert pages == expected
    # All but c1 (evaluated) and the false alarm; c2 last (closed again at +9 h).
    assert [c for c, _ in pages] == ["c0", "c3", "c4", "c5", "c6", "c2"]
    assert dict(pages)["c2"] == T0 + 9 * HOUR
    # Scoped like the case lists: another grid's team sees none of them.
    assert cases.call_backs(until=T0 + 100 * HOUR, visible=CaseFilter(grids=frozenset({"elsewhere"}))) == []
    assert len(cases.call_backs(until=T0 + 100 * HOUR, visible=CaseFilter(person="w"))) == 6


def test_cases_closed_before_version_5_are_filled_in(tmp_path: Path) -> None:
    path = tmp_path / "linli.sqlite3"
    store = Store(path=path)
    cases = CaseStore(store=store)
    _worked(store, cases, "old", T0)
    store.close()
    # As a version-4 file had it: no column, no index (nor the later versions' columns, which
    # the upgrade adds again).
    db = sqlite3.connect(path)
    db.execute("DROP INDEX cases_call_back")
    db.execute("ALTER TABLE cases DROP COLUMN call_back_from")
    db.execute("ALTER TABLE visit_records DROP COLUMN recorded_by")
    db.execute("PRAGMA user_version = 4")
    db.commit()
    db.close()
    store = Store(path=path)
    try:
        assert CaseStore(store=store).call_backs(until=T0 + HOUR) == [("old", T0 + HOUR)]
    finally:
        store.close()


async def test_the_list_is_loaded_in_turns_and_lists_around_an_unreadable_case(
    tmp_path: Path, embedded_broker: Broker
) -> None:
    """The 回访 page (up to 500 closed cases) was loaded a case at a time in one go on the loop,
    and one case whose timeline did not replay failed the whole list."""
    async with Hub(
        settings=hub_settings(tmp_path, embedded_broker), clock=ManualClock(start=T0 + 200 * HOUR)
    ) as hub:
        cases = hub.casework.cases
        for index in range(40):
            _worked(hub.store, cases, f"c{index:02d}", T0 + index * HOUR)
        whole = hub.evaluations.call_backs()
        assert [d.case_id for d in whole] == [f"c{index:02d}" for index in range(40)]
        steps = hub.evaluations.call_back_steps(cases_per_step=16)
        turns, stepped = drained(steps)
        assert turns == 2 and stepped.due == whole and stepped.read == 40
        # Another request evaluates one and reopens another (不满意) while a page is being made:
        # both are left out, as a fresh read leaves them out (each case checked as loaded).
        steps = hub.evaluations.call_back_steps(cases_per_step=16)
        next(steps)
        for case_id, rating in (("c38", "satisfied"), ("c39", "unsatisfied")):
            case = cases.load(case_id)
            assert case is not None
            _evaluate(hub.store, cases, case, rating, T0 + 150 * HOUR)
        with pytest.raises(StopIteration) as done:
            while True:
                next(steps)
        fresh = hub.evaluations.call_backs()
        assert done.value.value.due == fresh and [d.case_id for d in fresh] == [d.case_id for d in whole[:38]]
        # An unreadable case is left out of the list, and reading the list writes nothing for it
        # (the casework round's retries are for open cases), while the page still counts as full.
        hub.store.db.execute(
            "INSERT INTO case_timeline (case_id, seq, ts, entry) VALUES (?, ?, ?, ?)",
            ("c07", 99, T0, b"{not json"),
        )
        deadlines = hub.store.execute("SELECT case_id FROM case_deadlines").fetchall()
        assert [d.case_id for d in hub.evaluations.call_backs()] == [
            d.case_id for d in fresh if d.case_id != "c07"
        ]
        assert hub.store.execute("SELECT case_id FROM case_deadlines").fetchall() == deadlines
        assert "c07" not in hub.casework.failing
        async with httpx.AsyncClient(
            base_url=f"http://127.0.0.1:{hub.http_port}", headers={"Authorization": f"Bearer {TOKEN}"}
        ) as c:
            r = await c.get("/api/evaluations/call-backs?limit=10")
            assert r.status_code == 200 and len(r.json()) == 9 and r.headers["x-next-offset"] == "10"
