"""The store's invariants: one active alert per (rule, subject), idempotent signals, atomic outbox."""

from __future__ import annotations

import sqlite3
import time
from pathlib import Path

import orjson
import pytest

from hub.ingest.alerts import record_signal
from hub.records import QuarantineRecord, Recipient
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
def store(tmp_path: Path) -> Store:
    return Store(path=tmp_path / "s.sqlite3")


def test_raise_creates_alert_and_notification_in_one_go(store: Store) -> None:
    change = record_signal(store, signal(), SUBJECT, [WORKER])
    assert change is not None and change.created
    assert (change.alert.status, change.alert.grid, change.alert.count) == ("active", "110105001001001", 1)
    (note,) = change.notifications
    body = orjson.loads(note.payload)
    assert body["id"] == note.id and body["type"] == "alert.raised" and body["alert"]["id"] == change.alert.id
    assert [n.id for n in store.pending_notifications(now=T0)] == [note.id]


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


def test_the_schema_itself_refuses_two_active_alerts(store: Store, tmp_path: Path) -> None:
    record_signal(store, signal(), SUBJECT, [])
    db = sqlite3.connect(tmp_path / "s.sqlite3")
    with pytest.raises(sqlite3.IntegrityError):
        db.execute(
            "INSERT INTO alerts (rule, subject, category, severity, status, device_id, title_zh, title_en,"
            " raised_at, last_seen, trace) VALUES ('elderly.sos', 'btn-1', 'sos', 'critical', 'active', 'btn-1',"
            " 'x', 'x', 0, 0, x'7b7d')"
        )
    db.close()


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
    store.mark_delivered(note.id, at=T0 + 31)
    assert store.pending_notifications(now=T0 + 1000) == []
    (row,) = store.notifications_for(change.alert.id)
    assert row["delivered_at"] == T0 + 31 and row["attempts"] == 2 and row["last_error"] is None


def test_state_survives_reopening(tmp_path: Path) -> None:
    store = Store(path=tmp_path / "s.sqlite3")
    record_signal(store, signal(), SUBJECT, [WORKER])
    store.close()
    reopened = Store(path=tmp_path / "s.sqlite3")
    assert len(reopened.alerts(status="active")) == 1
    assert len(reopened.pending_notifications(now=T0)) == 1


def test_quarantine_aggregates_by_topic_and_reason(store: Store) -> None:
    store.add_quarantine([QuarantineRecord("z/a", "malformed_json", "bad", b"{", T0, T0, 2)])
    store.add_quarantine([QuarantineRecord("z/a", "malformed_json", "bad again", b"{x", T0 + 5, T0 + 9, 3)])
    (record,) = store.quarantine()
    assert (record.count, record.first_seen, record.last_seen, record.detail) == (5, T0, T0 + 9, "bad again")


def test_a_full_disk_raises_its_cause_and_leaves_no_transaction_open(store: Store) -> None:
    """SQLite rolls back by itself on SQLITE_FULL: the store must neither hide the cause nor stay stuck."""
    pages = store.db.execute("PRAGMA page_count").fetchone()[0]
    store.db.execute(f"PRAGMA max_page_count = {pages}")
    big = Subject("btn-big", None, "110105001001001", "110105001001")
    with pytest.raises(sqlite3.OperationalError, match="full"):
        for n in range(50):
            record_signal(store, signal(subject=f"btn-{n}"), big, [WORKER])
    assert not store.db.in_transaction
    store.db.execute(f"PRAGMA max_page_count = {pages * 100}")
    assert record_signal(store, signal(subject="btn-after"), SUBJECT, [WORKER]) is not None


def test_a_locked_database_fails_a_write_fast(store: Store, tmp_path: Path) -> None:
    """Another process holding the write lock costs the event loop at most the busy timeout."""
    other = sqlite3.connect(tmp_path / "s.sqlite3", isolation_level=None)
    other.execute("BEGIN EXCLUSIVE")
    try:
        started = time.monotonic()
        with pytest.raises(sqlite3.OperationalError, match="locked"):
            record_signal(store, signal(), SUBJECT, [WORKER])
        assert time.monotonic() - started < BUSY_TIMEOUT_S + 0.5
        assert not store.db.in_transaction
    finally:
        other.execute("ROLLBACK")
        other.close()
    assert record_signal(store, signal(), SUBJECT, [WORKER]) is not None


def test_while_another_process_holds_the_lock_only_the_first_write_waits(
    store: Store, tmp_path: Path
) -> None:
    """A burst of presses during a lock must not freeze the loop for the busy timeout each."""
    other = sqlite3.connect(tmp_path / "s.sqlite3", isolation_level=None)
    other.execute("BEGIN EXCLUSIVE")
    try:
        started = time.monotonic()
        for n in range(20):
            with pytest.raises(sqlite3.OperationalError, match="locked"):
                record_signal(store, signal(subject=f"btn-{n}"), SUBJECT, [WORKER])
        assert time.monotonic() - started < 2 * BUSY_TIMEOUT_S + 0.5
    finally:
        other.execute("ROLLBACK")
        other.close()
    assert record_signal(store, signal(), SUBJECT, [WORKER]) is not None
    # The timeout is back once a write got through.
    assert store.db.execute("PRAGMA busy_timeout").fetchone()[0] == int(BUSY_TIMEOUT_S * 1000)
