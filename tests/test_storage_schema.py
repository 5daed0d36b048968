"""The one database file is versioned: an older file upgrades on start, a newer one is refused."""

from __future__ import annotations

import shutil
import sqlite3
from pathlib import Path

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
