"""The store's invariants: one active alert per (rule, subject), idempotent signals, atomic outbox.

Every test that is about the store's contract runs on both engines (``store`` is parametrized
by ``store_url``); the last ones are about SQLite's own failure modes (full disk, a lock held
by another process) and PostgreSQL's (two hubs writing the same alert at once).
"""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson
import psycopg
import pytest

from hub.ingest.alerts import record_signal
from hub.records import QuarantineRecord, Recipient, UnassignedDevice
from hub.storage.store import BUSY_TIMEOUT_S, Store
from rules.model import Severity
from rules.signals import Signal, SignalAction
from rules.subject import Subject

T0 = 1_800_000_000.0
SUBJECT = Subject("btn-1", None, "110105001001001", "110105001001")
WORKER = Recipient("g1-day", "mqtt", "linli/110105001001/workers/g1-day/notifications")


def signal(action: SignalAction = SignalAction.RAISE, ts: float = T0, subject: str = "btn-1") -> Signal:
    return Signal(
        action=action,
        rule_id="elderly.sos",
        category="sos",
        severity=Severity.CRITICAL,
        subject=subject,
        ts=ts,
        title_zh="一键呼救",
        title_en="SOS",
        trace={"event": {"kind": "sos_press", "ts": ts}},
    )


@pytest.fixture
def store(store_url: str) -> Iterator[Store]:
    opened = Store(url=store_url)
    yield opened
    opened.close()


@pytest.fixture
def sqlite_store(tmp_path: Path) -> Iterator[Store]:
    opened = Store(path=tmp_path / "s.sqlite3")
    yield opened
    opened.close()


def test_raise_creates_alert_and_notification_in_one_go(store: Store) -> None:
    change = record_signal(store, signal(), SUBJECT, [WORKER])
    assert change is not None and change.created
    assert (change.alert.status, change.alert.grid, change.alert.count) == ("active", "110105001001001", 1)
    (note,) = change.notifications
    body = orjson.loads(note.payload)
    assert body["id"] == note.id and body["type"] == "alert.raised" and body["alert"]["id"] == change.alert.id
    assert [n.id for n in store.pending_notifications(now=T0)] == [note.id]


def test_a_new_alert_is_handed_back_as_stored(store: Store) -> None:
    """The alert ``upsert_alert`` returns for a new row is the row as stored, as a later read
    gives it (on PostgreSQL from the insert's RETURNING, without a read of its own), NUL in a
    subject's text replaced as the store keeps it."""
    odd = Subject("btn-\x00-1", "dev-\x00", "110105001001001", "110105001001")
    with store.transaction() as db:
        recorded = store.upsert_alert(db, signal(subject="btn-\x00-1"), odd)
    assert recorded is not None
    alert, created = recorded
    assert created and alert == store.alert(alert.id)
    assert alert.count == 1 and alert.status == "active" and alert.raised_at == alert.last_seen == T0
    assert alert.trace == {"occurrences": [signal().trace]}


def test_second_raise_for_same_rule_and_subject_updates_the_active_alert(store: Store) -> None:
    first = record_signal(store, signal(), SUBJECT, [WORKER])
    second = record_signal(store, signal(ts=T0 + 120), SUBJECT, [WORKER])
    assert first is not None and second is not None
    assert second.alert.id == first.alert.id and not second.created
    assert second.alert.count == 2 and second.alert.last_seen == T0 + 120
    assert orjson.loads(second.notifications[0].payload)["type"] == "alert.repeated"
    assert len(store.alerts()) == 1


def test_update_within_merge_window_counts_but_notifies_nobody(store: Store) -> None:
    record_signal(store, signal(), SUBJECT, [WORKER])
    change = record_signal(store, signal(SignalAction.UPDATE, ts=T0 + 5), SUBJECT, [WORKER])
    assert change is not None and change.alert.count == 2 and change.notifications == ()


def test_redelivered_signal_changes_nothing(store: Store) -> None:
    record_signal(store, signal(), SUBJECT, [WORKER])
    assert record_signal(store, signal(), SUBJECT, [WORKER]) is None
    assert record_signal(store, signal(SignalAction.UPDATE), SUBJECT, [WORKER]) is None
    (alert,) = store.alerts()
    assert alert.count == 1
    assert len(store.pending_notifications(now=T0)) == 1


def test_the_schema_itself_refuses_two_active_alerts(store: Store) -> None:
    record_signal(store, signal(), SUBJECT, [])
    with pytest.raises((sqlite3.IntegrityError, psycopg.errors.UniqueViolation)), store.transaction() as tx:
        tx.execute(
            "INSERT INTO alerts (rule, subject, category, severity, status, device_id, title_zh, title_en,"
            " raised_at, last_seen, trace) VALUES ('elderly.sos', 'btn-1', 'sos', 'critical', 'active', 'btn-1',"
            " 'x', 'x', 0, 0, ?)",
            (b"{}",),
        )
    assert len(store.alerts()) == 1


def test_clear_resolves_and_a_new_raise_opens_a_new_alert(store: Store) -> None:
    first = record_signal(store, signal(), SUBJECT, [])
    cleared = record_signal(store, signal(SignalAction.CLEAR, ts=T0 + 10), SUBJECT, [])
    assert cleared is not None and cleared.alert.status == "resolved" and cleared.alert.resolved_at == T0 + 10
    again = record_signal(store, signal(ts=T0 + 20), SUBJECT, [])
    assert first is not None and again is not None and again.created and again.alert.id != first.alert.id
    assert record_signal(store, signal(SignalAction.CLEAR, ts=T0 + 30, subject="nobody"), SUBJECT, []) is None


def test_failure_in_payload_builder_rolls_back_the_alert(store: Store) -> None:
    def broken(*args: object) -> bytes:
        raise RuntimeError("boom")

    with pytest.raises(RuntimeError):
        record_signal(store, signal(), SUBJECT, [WORKER], render=broken)
    assert store.alerts() == []
    assert store.pending_notifications(now=T0) == []


def test_outbox_retry_bookkeeping(store: Store) -> None:
    change = record_signal(store, signal(), SUBJECT, [WORKER])
    assert change is not None
    note = change.notifications[0]
    store.mark_failed(note.id, error="broker down", retry_at=T0 + 30)
    assert store.pending_notifications(now=T0 + 29) == []
    assert store.next_retry_at() == T0 + 30
    (again,) = store.pending_notifications(now=T0 + 30)
    assert again.attempts == 1
    store.mark_delivered_all([note.id], at=T0 + 31)
    assert store.pending_notifications(now=T0 + 1000) == []
    (row,) = store.notifications_for(change.alert.id)
    assert row["delivered_at"] == T0 + 31 and row["attempts"] == 2 and row["last_error"] is None


def test_state_survives_reopening(store_url: str) -> None:
    store = Store(url=store_url)
    record_signal(store, signal(), SUBJECT, [WORKER])
    store.close()
    reopened = Store(url=store_url)
    assert len(reopened.alerts(status="active")) == 1
    assert len(reopened.pending_notifications(now=T0)) == 1
    reopened.close()


def test_timestamps_and_payloads_round_trip_exactly(store: Store) -> None:
    """Unix times keep their fraction (8-byte floats on both engines) and payloads their bytes."""
    ts = T0 + 0.123456
    change = record_signal(store, signal(ts=ts), SUBJECT, [WORKER])
    assert change is not None
    (alert,) = store.alerts()
    assert alert.raised_at == ts and alert.last_seen == ts
    (note,) = store.pending_notifications(now=ts)
    assert note.payload == change.notifications[0].payload and isinstance(note.payload, bytes)
    (row,) = store.notification_log(since=ts)
    assert row["created_at"] == ts and row["rule"] == "elderly.sos" and row["type"] == "alert.raised"


def test_registry_and_unassigned_devices(store: Store) -> None:
    store.add_unassigned(UnassignedDevice("0xabc", "zigbee2mqtt", T0))
    store.add_unassigned(UnassignedDevice("0xabc", "zigbee2mqtt", T0 + 5))  # seen again: kept once
    assert [(d.id, d.first_seen) for d in store.unassigned()] == [("0xabc", T0)]


def test_quarantine_aggregates_by_topic_and_reason(store: Store) -> None:
    store.add_quarantine([QuarantineRecord("z/a", "malformed_json", "bad", b"{", T0, T0, 2)])
    store.add_quarantine([QuarantineRecord("z/a", "malformed_json", "bad again", b"{x", T0 + 5, T0 + 9, 3)])
    (record,) = store.quarantine()
    assert (record.count, record.first_seen, record.last_seen, record.detail) == (5, T0, T0 + 9, "bad again")


def test_a_full_disk_raises_its_cause_and_leaves_no_transaction_open(sqlite_store: Store) -> None:
    """SQLite rolls back by itself on SQLITE_FULL: the store must neither hide the cause nor stay stuck."""
    pages = sqlite_store.db.execute("PRAGMA page_count").fetchone()[0]
    sqlite_store.db.execute(f"PRAGMA max_page_count = {pages}")
    big = Subject("btn-big", None, "110105001001001", "110105001001")
    with pytest.raises(sqlite3.OperationalError, match="full"):
        for n in range(50):
            record_signal(sqlite_store, signal(subject=f"btn-{n}"), big, [WORKER])
    assert not sqlite_store.db.in_transaction
    sqlite_store.db.execute(f"PRAGMA max_page_count = {pages * 100}")
    assert record_signal(sqlite_store, signal(subject="btn-after"), SUBJECT, [WORKER]) is not None


def test_a_locked_database_fails_a_write_fast(sqlite_store: Store, tmp_path: Path) -> None:
    """Another process holding the write lock costs the event loop at most the busy timeout."""
    other = sqlite3.connect(tmp_path / "s.sqlite3", isolation_level=None)
    other.execute("BEGIN EXCLUSIVE")
    try:
        started = time.monotonic()
        with pytest.raises(sqlite3.OperationalError, match="locked"):
            record_signal(sqlite_store, signal(), SUBJECT, [WORKER])
        assert time.monotonic() - started < BUSY_TIMEOUT_S + 0.5
        assert not sqlite_store.db.in_transaction
    finally:
        other.execute("ROLLBACK")
        other.close()
    assert record_signal(sqlite_store, signal(), SUBJECT, [WORKER]) is not None


def test_while_another_process_holds_the_lock_only_the_first_write_waits(
    sqlite_store: Store, tmp_path: Path
) -> None:
    """A burst of presses during a lock must not freeze the loop for the busy timeout each."""
    other = sqlite3.connect(tmp_path / "s.sqlite3", isolation_level=None)
    other.execute("BEGIN EXCLUSIVE")
    try:
        started = time.monotonic()
        for n in range(20):
            with pytest.raises(sqlite3.OperationalError, match="locked"):
                record_signal(sqlite_store, signal(subject=f"btn-{n}"), SUBJECT, [WORKER])
        assert time.monotonic() - started < 2 * BUSY_TIMEOUT_S + 0.5
    finally:
        other.execute("ROLLBACK")
        other.close()
    assert record_signal(sqlite_store, signal(), SUBJECT, [WORKER]) is not None
    # The timeout is back once a write got through.
    assert sqlite_store.db.execute("PRAGMA busy_timeout").fetchone()[0] == int(BUSY_TIMEOUT_S * 1000)


# -- PostgreSQL: several hubs on one database --------------------------------------------------


@pytest.fixture
def two_hubs(postgres_url: str) -> Iterator[tuple[Store, Store]]:
    first, second = Store(url=postgres_url), Store(url=postgres_url)
    yield first, second
    first.close()
    second.close()


def test_two_hubs_raising_the_same_alert_at_once_make_one_alert(two_hubs: tuple[Store, Store]) -> None:
    """The second insert meets the partial unique index, fails after the lock timeout, and its
    retry (what the hub does with a refused message) updates the alert the first one made."""
    a, b = two_hubs
    with a.transaction() as tx:
        assert a.upsert_alert(tx, signal(), SUBJECT) is not None  # inserted, not yet committed
        started = time.monotonic()
        with pytest.raises(psycopg.errors.LockNotAvailable):
            record_signal(b, signal(ts=T0 + 120, subject="btn-1"), SUBJECT, [WORKER])
        assert time.monotonic() - started < 1.0, "waits at most the lock timeout"
    again = record_signal(b, signal(ts=T0 + 120), SUBJECT, [WORKER])
    assert again is not None and not again.created and again.alert.count == 2
    assert len(a.alerts()) == 1 and b.pending_notifications(now=T0 + 120) != []


def test_an_update_waits_for_the_row_lock_and_loses_nothing(two_hubs: tuple[Store, Store]) -> None:
    a, b = two_hubs
    record_signal(a, signal(), SUBJECT, [])
    with a.transaction() as tx:
        assert a.upsert_alert(tx, signal(ts=T0 + 120), SUBJECT) is not None  # holds the row lock
        with pytest.raises(psycopg.errors.LockNotAvailable):
            record_signal(b, signal(ts=T0 + 240), SUBJECT, [])
    assert record_signal(b, signal(ts=T0 + 240), SUBJECT, []) is not None
    (alert,) = b.alerts()
    assert (alert.count, alert.last_seen) == (3, T0 + 240)


def test_a_broken_connection_fails_one_write_and_the_next_reconnects(
    two_hubs: tuple[Store, Store], postgres_url: str
) -> None:
    a, _ = two_hubs
    record_signal(a, signal(), SUBJECT, [])
    with psycopg.connect(postgres_url, autocommit=True) as admin:
        admin.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
            " WHERE application_name = 'linli-hub' AND pid <> pg_backend_pid()"
        )
    with pytest.raises(psycopg.OperationalError):
        record_signal(a, signal(subject="btn-2"), SUBJECT, [])
    assert record_signal(a, signal(subject="btn-2"), SUBJECT, []) is not None
    a.check_writable()


def test_a_batch_of_no_rows_goes_nowhere_on_postgresql(
    postgres_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """psycopg's ``executemany`` makes a round trip (a Sync) even for no rows: the engine sends
    none for an empty batch, in a transaction or not; a batch given as a generator is written whole."""
    store = Store(url=postgres_url)
    sent: list[str] = []
    original = psycopg.Cursor.executemany

    def counted(self: psycopg.Cursor[object], query: Any, params_seq: Any, **kwargs: Any) -> None:
        sent.append(str(query))
        original(self, query, params_seq, **kwargs)

    monkeypatch.setattr(psycopg.Cursor, "executemany", counted)
    delete = "DELETE FROM rule_state WHERE rule = ? AND subject = ?"
    insert = "INSERT INTO rule_state (rule, subject, state) VALUES (?, ?, ?)"
    try:
        store._engine.executemany(delete, [])
        with store.transaction() as db:
            db.executemany(delete, iter(()))
            db.executemany(insert, ((f"r{i}", "s", "{}") for i in range(3)))
        assert len(sent) == 1 and sent[0].startswith("INSERT")
        assert store.execute("SELECT count(*) FROM rule_state").fetchone()[0] == 3
    finally:
        store.close()
