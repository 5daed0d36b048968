"""Visits and evaluation links in the store (schema version 4), on both engines: one open task per
elder and kind, insert-only records that complete a task once, deadlines and escalation steps
sent once, and one-time links spent once and never after expiry; who typed a record made for
someone else (version 8), also in a store upgraded from version 7."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import replace

import pytest

import hub.storage.postgres
import hub.storage.sqlite
from hub.cases.care import CareFlag, Elder, Outcome, TaskKind, load_care, next_task, record
from hub.storage.cases import CaseStore
from hub.storage.links import EvaluationLinks, IssuedLink
from hub.storage.schema import SCHEMA_VERSION
from hub.storage.store import Store
from hub.storage.visits import VisitFilter, VisitStore
from tests.test_storage_cases import opened_case, sos_alert
from tests.test_store import T0

DAY = 86400.0
CARE = load_care()
ALONE = Elder(id="r1", community="c1", grid="g1", flags=frozenset({CareFlag.LIVING_ALONE}), assignee="w1")
OTHER = Elder(id="r2", community="c1", grid="g2", flags=frozenset({CareFlag.AGED_80}), assignee="w2")


@pytest.fixture
def store(store_url: str) -> Iterator[Store]:
    opened = Store(url=store_url)
    yield opened
    opened.close()


def weekly(elder: Elder = ALONE, since: float = T0):  # type: ignore[no-untyped-def]
    task = next_task(CARE, elder, TaskKind.VISIT, since=since, zone="Asia/Shanghai")
    assert task is not None
    return task


def test_schema_version_is_8() -> None:
    # 4: the visit tables and evaluation links; 5: the 回访 list's column (docs/cases.md);
    # 6: cases by alert, for casework's reconcile round (docs/benchmarks.md);
    # 7: the communities' start-up copies (docs/benchmarks.md, "Eighth pass");
    # 8: who typed a visit recorded for someone else (``visit_records.recorded_by``).
    assert SCHEMA_VERSION == 8


def test_one_open_task_per_elder_and_kind(store: Store) -> None:
    visits = VisitStore(store=store)
    first, later = weekly(), weekly(since=T0 + DAY)
    assert first.key != later.key
    with store.transaction() as tx:
        assert visits.add_task(tx, first, at=T0)
        assert not visits.add_task(tx, first, at=T0), "the same task twice is kept once"
        assert not visits.add_task(tx, later, at=T0), (
            "a second open weekly visit for the same elder is refused"
        )
        assert visits.add_task(tx, weekly(OTHER), at=T0)
    stored = visits.open_task("r1", TaskKind.VISIT)
    assert stored is not None and stored.task == first and stored.done_at is None and not stored.urgent
    assert [t.key for t in visits.tasks(visible=VisitFilter(grids=frozenset({"g1"})))] == [first.key]
    assert [t.key for t in visits.tasks(visible=VisitFilter(person="w2"))] == [weekly(OTHER).key]
    assert visits.tasks(visible=VisitFilter()) == []
    assert len(visits.tasks()) == 2


def test_a_record_completes_its_task_once_and_a_next_task_can_open(store: Store) -> None:
    visits = VisitStore(store=store)
    task = weekly()
    with store.transaction() as tx:
        visits.add_task(tx, task, at=T0)
    away = record(task, Outcome.NOT_AT_HOME, by="w1", at=T0 + DAY, note="敲门无人应答")
    well = record(task, Outcome.VISITED_WELL, by="w1", at=T0 + 2 * DAY)
    with store.transaction() as tx:
        assert visits.add_record(tx, away, record_id="v1", channel="phone_page")
    still = visits.task(task.key)
    assert still is not None and still.done_at is None, "not at home leaves the task due"
    with store.transaction() as tx:
        assert visits.add_record(tx, well, record_id="v2", channel="phone_page")
        assert not visits.add_record(
            tx, record(task, Outcome.VISITED_WELL, by="w1", at=T0 + 3 * DAY), record_id="v3", channel="api"
        ), "a second completion does not move done_at"
    done = visits.task(task.key)
    assert done is not None and done.done_at == T0 + 2 * DAY
    assert [r.record.outcome for r in visits.records(task.key)] == [
        Outcome.NOT_AT_HOME,
        Outcome.VISITED_WELL,
        Outcome.VISITED_WELL,
    ]
    # Many tasks' records in one query (a period's 探访完成率): the same rows, per task, in order.
    assert visits.records_of([task.key, "no-such-task"]) == {task.key: visits.records(task.key)}
    assert visits.records_of([]) == {}
    last = visits.last_record("r1")
    assert last is not None and last.id == "v3"
    last_any = visits.last_record("r1", completing=False)
    assert last_any is not None and last_any.record.at == T0 + 3 * DAY
    assert visits.last_done("r1", TaskKind.VISIT) == T0 + 2 * DAY
    assert visits.open_task("r1", TaskKind.VISIT) is None
    with store.transaction() as tx:
        assert visits.add_task(tx, weekly(since=T0 + 2 * DAY), at=T0 + 2 * DAY)
    assert visits.tasks_due_between(T0, T0 + 8 * DAY)[0].key == task.key


def test_urgent_once_deadlines_and_steps_sent_once(store: Store) -> None:
    visits = VisitStore(store=store)
    cases = CaseStore(store=store)
    alert = sos_alert(store)
    opened_case(store, cases, alert, "c1")
    task = weekly()
    with store.transaction() as tx:
        visits.add_task(tx, task, at=T0)
        assert visits.mark_urgent(tx, task.key, at=T0 + 10, alert_id=alert.id)
        assert not visits.mark_urgent(tx, task.key, at=T0 + 20, alert_id=alert.id)
        visits.set_deadline(tx, task.key, task.due_at)
    urgent = visits.task(task.key)
    assert urgent is not None and urgent.urgent_at == T0 + 10 and urgent.urgent_alert == alert.id
    assert visits.due(task.due_at - 1) == [] and visits.due(task.due_at) == [task.key]
    assert visits.next_deadline() == task.due_at
    with store.transaction() as tx:
        assert visits.mark_sent(tx, f"{task.key}/escalate/0", task.key, target="w1", at=task.due_at)
        assert not visits.mark_sent(tx, f"{task.key}/escalate/0", task.key, target="w1", at=task.due_at + 5)
        visits.set_deadline(tx, task.key, None)
    assert visits.sent_keys(task.key) == frozenset({f"{task.key}/escalate/0"})
    assert visits.next_deadline() is None


def test_a_link_is_spent_once_and_never_after_it_expires(store: Store) -> None:
    cases = CaseStore(store=store)
    opened_case(store, cases, sos_alert(store), "c1")
    links = EvaluationLinks(store=store)
    with store.transaction() as tx:
        links.issue(
            tx, IssuedLink(nonce="n1", case_id="c1", guardian="女儿", issued_at=T0, expires_at=T0 + DAY)
        )
        links.issue(
            tx, IssuedLink(nonce="n2", case_id="c1", guardian="儿子", issued_at=T0, expires_at=T0 + DAY)
        )
    with store.transaction() as tx:
        assert not links.spend(tx, "n2", at=T0 + DAY), "expired at its expiry time"
        assert not links.spend(tx, "unknown", at=T0)
        assert links.spend(tx, "n1", at=T0 + 60)
        assert not links.spend(tx, "n1", at=T0 + 61), "single use"
    spent = links.get("n1")
    assert spent is not None and spent.used_at == T0 + 60
    assert [link.nonce for link in links.for_case("c1")] == ["n1", "n2"]


def test_an_urgent_task_supersedes_the_planned_one(store: Store) -> None:
    visits = VisitStore(store=store)
    alert = sos_alert(store)
    planned = weekly()
    urgent = replace(planned, window_start=T0 + 10, due_at=T0 + DAY)
    with store.transaction() as tx:
        visits.add_task(tx, planned, at=T0)
        visits.set_deadline(tx, planned.key, planned.due_at)
    with store.transaction() as tx:
        assert visits.supersede(tx, planned.key, urgent.key)
        assert visits.add_task(tx, urgent, at=T0 + 10)
        assert visits.mark_urgent(tx, urgent.key, at=T0 + 10, alert_id=alert.id)
    now_open = visits.open_task("r1", TaskKind.VISIT)
    assert now_open is not None and now_open.key == urgent.key and now_open.urgent
    old = visits.task(planned.key)
    assert old is not None and old.superseded_by == urgent.key and not old.open
    assert visits.due(planned.due_at + 1) == [], "the planned task's deadline went with it"
    assert visits.claimed(alert.id) and not visits.claimed(alert.id + 1)
    assert [t.key for t in visits.tasks_due_between(T0, T0 + 30 * DAY)] == [urgent.key]
    with store.transaction() as tx:
        resolved = store.resolve_alert(tx, alert.id, at=T0 + 20)
        assert resolved is not None and resolved.status == "resolved"
        assert store.resolve_alert(tx, alert.id, at=T0 + 30) is None


def test_a_record_typed_for_the_visitor_keeps_who_typed_it(store: Store) -> None:
    """Review: the desk records a visit ``on_behalf_of`` the worker who phoned it in; the record is
    the worker's (``by``), and who typed it is kept with it, not in the log only."""
    visits = VisitStore(store=store)
    task = weekly()
    with store.transaction() as tx:
        visits.add_task(tx, task, at=T0)
    own = record(task, Outcome.NOT_AT_HOME, by="w1", at=T0 + DAY, note="敲门无人应答")
    typed = record(task, Outcome.VISITED_WELL, by="w1", at=T0 + 2 * DAY, recorded_by="cc-desk")
    with store.transaction() as tx:
        visits.add_record(tx, own, record_id="v1", channel="phone_page")
        visits.add_record(tx, typed, record_id="v2", channel="console")
    assert [(r.id, r.record.by, r.record.recorded_by) for r in visits.records(task.key)] == [
        ("v1", "w1", None),
        ("v2", "w1", "cc-desk"),
    ]
    last = visits.last_record("r1")
    assert last is not None and last.record == typed


#: The last version whose ``visit_records`` has no ``recorded_by``.
BEFORE_RECORDED_BY = 7


def test_records_of_a_version_7_store_read_as_typed_by_nobody_after_the_upgrade(
    store_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A store the previous release wrote (the real steps up to 7, on either engine) migrates on
    open; its records keep every field and read ``recorded_by`` None: who typed them was never
    stored. New records in the upgraded store keep theirs."""
    task = weekly()
    with monkeypatch.context() as older:
        for engine in (hub.storage.sqlite, hub.storage.postgres):
            older.setattr(engine, "SCHEMA_VERSION", BEFORE_RECORDED_BY)
        old = Store(url=store_url)
        try:
            assert old.schema_version() == BEFORE_RECORDED_BY
            with old.transaction() as tx:
                VisitStore.add_task(tx, task, at=T0)
                # As the previous release wrote a record: its columns, no more.
                tx.execute(
                    "INSERT INTO visit_records (id, task_key, outcome, by_person, at, note, channel,"
                    " case_id, alert_id) VALUES (?, ?, ?, ?, ?, ?, ?, NULL, NULL)",
                    ("v1", task.key, "not_at_home", "w1", T0 + DAY, "敲门无人应答", "console"),
                )
        finally:
            old.close()
    upgraded = Store(url=store_url)
    try:
        assert upgraded.schema_version() == SCHEMA_VERSION
        visits = VisitStore(store=upgraded)
        (before,) = visits.records(task.key)
        assert before.id == "v1" and before.channel == "console"
        assert before.record == record(
            task, Outcome.NOT_AT_HOME, by="w1", at=T0 + DAY, note="敲门无人应答"
        ), "every old field as it was"
        assert before.record.recorded_by is None
        typed = record(task, Outcome.VISITED_WELL, by="w1", at=T0 + 2 * DAY, recorded_by="cc-desk")
        with upgraded.transaction() as tx:
            assert visits.add_record(tx, typed, record_id="v2", channel="console")
        assert [r.record.recorded_by for r in visits.records(task.key)] == [None, "cc-desk"]
    finally:
        upgraded.close()
