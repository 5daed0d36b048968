"""The store is versioned: an older database upgrades on start, a newer one is refused — on both engines."""

from __future__ import annotations

import re
import shutil
import sqlite3
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import psycopg
import pytest

from hub.errors import SchemaVersionError, StoreError
from hub.storage.cases import CaseStore
from hub.storage.rule_state import RuleStateStore
from hub.storage.schema import SCHEMA_VERSION, schema_version
from hub.storage.store import Store

#: Written by main at b7c1bf1 (before versions existed): one SOS alert with its open case,
#: outbox rows and rule state (tests/fixtures/stores/README.md says how).
OLD_STORE = Path(__file__).parent / "fixtures" / "stores" / "main-b7c1bf1.sqlite3"


def version_of(path: Path) -> int:
    db = sqlite3.connect(path)
    try:
        return schema_version(db)
    finally:
        db.close()


def test_a_store_written_before_versions_opens_and_upgrades(tmp_path: Path) -> None:
    path = tmp_path / "linli.sqlite3"
    shutil.copy(OLD_STORE, path)
    assert version_of(path) == 0
    store = Store(path=path)
    try:
        (alert,) = store.alerts()
        assert (alert.rule, alert.status) == ("elderly.sos", "active")
        case = CaseStore(store=store).open_for_alert(alert.id)
        assert case is not None and case.assignee
        assert len(store.notification_log()) == 3
        assert RuleStateStore(store=store).count() > 0
    finally:
        store.close()
    assert version_of(path) == SCHEMA_VERSION


def test_a_fresh_store_has_the_current_version(tmp_path: Path) -> None:
    Store(path=tmp_path / "s.sqlite3").close()
    assert version_of(tmp_path / "s.sqlite3") == SCHEMA_VERSION


def test_a_newer_schema_is_refused_and_left_untouched(tmp_path: Path) -> None:
    path = tmp_path / "linli.sqlite3"
    Store(path=path).close()
    db = sqlite3.connect(path)
    db.execute(f"PRAGMA user_version = {SCHEMA_VERSION + 1}")
    db.close()
    before = path.read_bytes()
    with pytest.raises(SchemaVersionError) as refused:
        Store(path=path)
    assert isinstance(refused.value, StoreError)
    assert (refused.value.found, refused.value.supported) == (SCHEMA_VERSION + 1, SCHEMA_VERSION)
    assert str(path) in str(refused.value) and "newer" in str(refused.value)
    assert path.read_bytes() == before


def test_reopening_changes_nothing(tmp_path: Path) -> None:
    path = tmp_path / "linli.sqlite3"
    shutil.copy(OLD_STORE, path)
    Store(path=path).close()
    db = sqlite3.connect(path)
    tables = db.execute("SELECT name, sql FROM sqlite_master ORDER BY name").fetchall()
    db.close()
    Store(path=path).close()
    db = sqlite3.connect(path)
    assert db.execute("SELECT name, sql FROM sqlite_master ORDER BY name").fetchall() == tables
    db.close()


# -- both engines: the same migrations, the version kept where each engine keeps it ----------


def test_a_fresh_store_has_the_current_version_on_every_engine(store_url: str) -> None:
    store = Store(url=store_url)
    try:
        assert store.schema_version() == SCHEMA_VERSION
    finally:
        store.close()


def test_postgres_keeps_the_version_in_a_table_and_refuses_a_newer_one(postgres_url: str) -> None:
    Store(url=postgres_url).close()
    with psycopg.connect(postgres_url, autocommit=True) as db:
        assert db.execute("SELECT version FROM schema_version").fetchall() == [(SCHEMA_VERSION,)]
        db.execute("UPDATE schema_version SET version = %s", (SCHEMA_VERSION + 1,))
        before = db.execute("SELECT count(*) FROM information_schema.columns WHERE table_schema = 'public'")
        columns = before.fetchone()
    with pytest.raises(SchemaVersionError) as refused:
        Store(url=postgres_url)
    assert (refused.value.found, refused.value.supported) == (SCHEMA_VERSION + 1, SCHEMA_VERSION)
    assert "newer" in str(refused.value)
    with psycopg.connect(postgres_url, autocommit=True) as db:
        after = db.execute("SELECT count(*) FROM information_schema.columns WHERE table_schema = 'public'")
        assert after.fetchone() == columns
        assert db.execute("SELECT version FROM schema_version").fetchall() == [(SCHEMA_VERSION + 1,)]


def test_postgres_reopening_changes_nothing_and_hubs_starting_together_migrate_once(
    postgres_url: str,
) -> None:
    def shape() -> list[tuple[object, ...]]:
        with psycopg.connect(postgres_url, autocommit=True) as db:
            return (
                db.execute(
                    "SELECT table_name, column_name, data_type FROM information_schema.columns"
                    " WHERE table_schema = 'public' ORDER BY 1, 2"
                ).fetchall()
                + db.execute(
                    "SELECT indexname, indexdef FROM pg_indexes WHERE schemaname = 'public' ORDER BY 1"
                ).fetchall()
            )

    with ThreadPoolExecutor(4) as pool:
        stores = list(pool.map(lambda _: Store(url=postgres_url), range(4)))
    for store in stores:
        store.close()
    first = shape()
    Store(url=postgres_url).close()
    assert shape() == first
    types = {(row[0], row[1]): row[2] for row in first if len(row) == 3}
    # SQLite's 8-byte REAL and BLOB, not PostgreSQL's 4-byte real.
    assert types[("alerts", "raised_at")] == "double precision"
    assert types[("alerts", "trace")] == "bytea"
    assert types[("alerts", "id")] == "bigint"
    assert any("alerts_one_active" in str(row[0]) and "WHERE" in str(row[1]) for row in first)


def test_a_bad_store_url_is_a_store_error(tmp_path: Path) -> None:
    with pytest.raises(StoreError, match="unknown scheme"):
        Store(url="mysql://x@y/z")
    with pytest.raises(
        StoreError, match=re.escape("cannot open store postgresql://linli:***@127.0.0.1:1/x")
    ) as e:
        Store(url="postgresql://linli:hunter2@127.0.0.1:1/x")
    assert "hunter2" not in str(e.value)
    Store(url=f"sqlite://{tmp_path / 'x.sqlite3'}").close()
    assert (tmp_path / "x.sqlite3").is_file()


def test_reconcile_finds_alerts_without_a_case_by_index_not_by_scanning_every_case(tmp_path: Path) -> None:
    """The casework round asks this every few seconds on the event loop: without an index on
    ``cases.alert_id`` each active alert scanned every case ever filed (closed ones included)."""
    store = Store(path=tmp_path / "s.sqlite3")
    try:
        asked: list[str] = []
        store.db.set_trace_callback(asked.append)
        assert CaseStore(store=store).alerts_without_case() == []
        store.db.set_trace_callback(None)
        (query,) = (q for q in asked if "NOT EXISTS" in q)
        plan = " | ".join(row[3] for row in store.execute(f"EXPLAIN QUERY PLAN {query}"))
        assert "SEARCH c USING COVERING INDEX cases_by_alert" in plan, plan
        assert "SCAN c" not in plan, plan
    finally:
        store.close()
