"""``linli backup`` / ``linli restore``: a consistent online copy, round trip with open cases, timers
and the spool; refusal over a running hub or an existing store."""

from __future__ import annotations

import json
import sqlite3
import subprocess
import sys
import threading
from pathlib import Path

import pytest
from click.testing import CliRunner

from hub.cli import main
from hub.cli.backup import BackupError, Layout, backup, in_use, restore
from hub.clock import ManualClock
from hub.storage.cases import CaseStore
from hub.storage.rule_state import RuleStateStore
from hub.storage.store import Store

T0 = 1_796_000_000.0


def make_hub_data(data_dir: Path) -> None:
    """A data directory as a hub leaves it: store with open cases and timers, time series, spool, secrets."""
    store = Store(path=data_dir / "linli.sqlite3")  # the hub's real schema
    CaseStore(store=store)
    RuleStateStore(store=store)
    store.close()
    db = sqlite3.connect(data_dir / "linli.sqlite3")
    with db:
        for i in range(50):
            db.execute(
                "INSERT INTO cases (id, category, severity, state, version, filed_at, updated_at)"
                " VALUES (?, 'sos', 'critical', ?, 1, ?, ?)",
                (f"C-{i}", "dispatched" if i % 2 else "closed", T0 + i, T0 + i),
            )
            db.execute(
                "INSERT INTO case_deadlines (case_id, next_at) VALUES (?, ?)", (f"C-{i}", T0 + 900 + i)
            )
        db.execute("INSERT INTO rule_state VALUES ('door_held', 'z2m:door1', x'01020304')")
    db.close()
    ts = sqlite3.connect(data_dir / "timeseries.sqlite")
    ts.execute("PRAGMA journal_mode=WAL")
    with ts:
        ts.execute("CREATE TABLE points (t REAL, v REAL)")
        ts.executemany("INSERT INTO points VALUES (?, ?)", [(T0 + i, i) for i in range(1000)])
    ts.close()
    spool = data_dir / "timeseries-spool"
    spool.mkdir()
    (spool / "000001-500.lp.gz").write_bytes(b"\x1f\x8b batch one")
    (spool / "000002-20.lp.gz").write_bytes(b"\x1f\x8b batch two")
    (spool / "000003-7.lp.gz.tmp").write_bytes(b"half written")
    (data_dir / "secrets.yaml").write_text("hub_password: pw\n")
    (data_dir / "secrets.yaml").chmod(0o600)


def rows(db: Path, sql: str) -> list[tuple[object, ...]]:
    conn = sqlite3.connect(db)
    try:
        return conn.execute(sql).fetchall()
    finally:
        conn.close()


def test_round_trip_keeps_open_cases_timers_spool_and_secrets(tmp_path: Path) -> None:
    data, saved, restored = tmp_path / "data", tmp_path / "backup", tmp_path / "restored"
    data.mkdir()
    make_hub_data(data)
    entries = backup(Layout.default(data), saved, clock=ManualClock(start=T0))
    manifest = json.loads((saved / "manifest.json").read_text())
    assert manifest["created_at"] == "2026-11-30T00:53:20.000Z"
    assert {e.name for e in entries} == {
        "linli.sqlite3",
        "timeseries.sqlite",
        "timeseries-spool/000001-500.lp.gz",
        "timeseries-spool/000002-20.lp.gz",
        "secrets.yaml",
    }
    restore(saved, Layout.default(restored))
    open_cases = "SELECT id FROM cases WHERE state NOT IN ('closed', 'void') ORDER BY id"
    assert rows(restored / "linli.sqlite3", open_cases) == rows(data / "linli.sqlite3", open_cases)
    assert len(rows(restored / "linli.sqlite3", open_cases)) == 25
    timers = "SELECT case_id, next_at FROM case_deadlines ORDER BY case_id"
    assert rows(restored / "linli.sqlite3", timers) == rows(data / "linli.sqlite3", timers)
    assert rows(restored / "linli.sqlite3", "SELECT * FROM rule_state") == [
        ("door_held", "z2m:door1", b"\x01\x02\x03\x04")
    ]
    assert rows(restored / "timeseries.sqlite", "SELECT count(*) FROM points") == [(1000,)]
    assert (restored / "timeseries-spool" / "000002-20.lp.gz").read_bytes() == b"\x1f\x8b batch two"
    assert not (restored / "timeseries-spool" / "000003-7.lp.gz.tmp").exists()
    assert (restored / "secrets.yaml").stat().st_mode & 0o777 == 0o600
    # The restored store opens with the hub's own code (schema and migrations accept it).
    Store(path=restored / "linli.sqlite3").close()


def test_backup_while_a_writer_commits_is_consistent(tmp_path: Path) -> None:
    data = tmp_path / "data"
    data.mkdir()
    make_hub_data(data)
    stop = threading.Event()

    def writer() -> None:
        db = sqlite3.connect(data / "linli.sqlite3")
        i = 1000
        while not stop.is_set():
            with db:  # a case and its deadline in one transaction, as the hub writes them
                db.execute(
                    "INSERT INTO cases (id, category, severity, state, version, filed_at, updated_at)"
                    " VALUES (?, 'sos', 'critical', 'dispatched', 1, ?, ?)",
                    (f"C-{i}", T0, T0),
                )
                db.execute("INSERT INTO case_deadlines VALUES (?, ?)", (f"C-{i}", T0))
            i += 1
        db.close()

    thread = threading.Thread(target=writer)
    thread.start()
    try:
        for n in range(3):
            backup(Layout.default(data), tmp_path / f"b{n}", clock=ManualClock(start=T0))
    finally:
        stop.set()
        thread.join()
    for n in range(3):
        db = tmp_path / f"b{n}" / "linli.sqlite3"
        missing = "SELECT count(*) FROM cases c LEFT JOIN case_deadlines d ON d.case_id = c.id WHERE d.case_id IS NULL"
        assert rows(db, missing) == [(0,)]
        assert rows(db, "PRAGMA integrity_check") == [("ok",)]


def test_restore_refuses_an_existing_store_without_force(tmp_path: Path) -> None:
    data = tmp_path / "data"
    data.mkdir()
    make_hub_data(data)
    backup(Layout.default(data), tmp_path / "b", clock=ManualClock(start=T0))
    with pytest.raises(BackupError, match="--force"):
        restore(tmp_path / "b", Layout.default(data))
    # --force replaces it, and a stale WAL of the replaced store is not replayed over the restore.
    (data / "linli.sqlite3-wal").write_bytes(b"stale")
    restore(tmp_path / "b", Layout.default(data), force=True)
    assert not (data / "linli.sqlite3-wal").exists()
    assert rows(data / "linli.sqlite3", "PRAGMA integrity_check") == [("ok",)]


def test_restore_refuses_a_running_hub_even_with_force(tmp_path: Path) -> None:
    data = tmp_path / "data"
    data.mkdir()
    make_hub_data(data)
    backup(Layout.default(data), tmp_path / "b", clock=ManualClock(start=T0))
    # Another process holding the store open in WAL mode, as a running hub does.
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import sqlite3, sys, time; db = sqlite3.connect(sys.argv[1]); db.execute('PRAGMA journal_mode=WAL');"
            " db.execute('SELECT count(*) FROM cases').fetchall(); print('open', flush=True); time.sleep(60)",
            str(data / "linli.sqlite3"),
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "open"
        assert in_use(data / "linli.sqlite3")
        with pytest.raises(BackupError, match="running"):
            restore(tmp_path / "b", Layout.default(data), force=True)
    finally:
        holder.kill()
        holder.wait()
    assert not in_use(data / "linli.sqlite3")


def test_damaged_backup_is_refused_before_anything_is_written(tmp_path: Path) -> None:
    data = tmp_path / "data"
    data.mkdir()
    make_hub_data(data)
    backup(Layout.default(data), tmp_path / "b", clock=ManualClock(start=T0))
    with (tmp_path / "b" / "timeseries-spool" / "000001-500.lp.gz").open("ab") as fh:
        fh.write(b"x")
    with pytest.raises(BackupError, match="SHA-256"):
        restore(tmp_path / "b", Layout.default(tmp_path / "new"))
    assert not (tmp_path / "new").exists()


def test_backup_refuses_a_non_empty_target_and_a_dir_without_store(tmp_path: Path) -> None:
    (tmp_path / "t").mkdir()
    (tmp_path / "t" / "x").write_text("x")
    with pytest.raises(BackupError, match="no store"):
        backup(Layout.default(tmp_path / "empty"), tmp_path / "b", clock=ManualClock(start=T0))
    data = tmp_path / "data"
    data.mkdir()
    make_hub_data(data)
    with pytest.raises(BackupError, match="not empty"):
        backup(Layout.default(data), tmp_path / "t", clock=ManualClock(start=T0))


def test_cli_round_trip(tmp_path: Path) -> None:
    data = tmp_path / "data"
    data.mkdir()
    make_hub_data(data)
    runner = CliRunner()
    result = runner.invoke(main, ["backup", str(tmp_path / "b"), "--data-dir", str(data)])
    assert result.exit_code == 0, result.output
    assert "backed up 5 files" in result.output
    result = runner.invoke(main, ["restore", str(tmp_path / "b"), "--data-dir", str(data)])
    assert result.exit_code == 1 and "--force" in result.output
    result = runner.invoke(main, ["restore", str(tmp_path / "b"), "--data-dir", str(tmp_path / "new")])
    assert result.exit_code == 0, result.output
    assert rows(tmp_path / "new" / "linli.sqlite3", "SELECT count(*) FROM case_deadlines") == [(50,)]


# -- found in review: the store, the keys and the import mark where the hub has them ------------


def _store_with_a_case(path: Path) -> None:
    store = Store(url=f"sqlite://{path}")
    CaseStore(store=store)
    store.close()
    db = sqlite3.connect(path)
    with db:
        db.execute(
            "INSERT INTO cases (id, category, severity, state, version, filed_at, updated_at)"
            " VALUES ('C-1', 'sos', 'critical', 'dispatched', 1, 1, 1)"
        )
    db.close()


def test_backup_and_restore_follow_a_configured_sqlite_store_and_keys_file(tmp_path: Path) -> None:
    """``store.url: sqlite:///…`` and ``replies.keys_file``: backup read, and restore wrote, the
    data directory's files, which such a hub never opens; the guardians' link key was left out."""
    data, elsewhere, keys = (
        tmp_path / "data",
        tmp_path / "db" / "hub.sqlite3",
        tmp_path / "keys" / "reply.yaml",
    )
    for folder in (data, elsewhere.parent, keys.parent):
        folder.mkdir()
    _store_with_a_case(elsewhere)
    keys.write_text("keys: {}\n", encoding="utf-8")
    (data / "link-keys.yaml").write_text("keys: {evaluation-links: abc}\n", encoding="utf-8")
    config = tmp_path / "linli.yaml"
    config.write_text(
        f"data_dir: {data}\nstore:\n  url: sqlite://{elsewhere}\nreplies:\n  keys_file: {keys}\n",
        encoding="utf-8",
    )
    runner = CliRunner()
    made = runner.invoke(main, ["backup", str(tmp_path / "b"), "--config", str(config)])
    assert made.exit_code == 0, made.output
    names = {f["name"] for f in json.loads((tmp_path / "b" / "manifest.json").read_text())["files"]}
    assert {"linli.sqlite3", "reply-keys.yaml", "link-keys.yaml"} <= names
    for path in (elsewhere, keys, data / "link-keys.yaml"):
        path.unlink()
    back = runner.invoke(main, ["restore", str(tmp_path / "b"), "--config", str(config)])
    assert back.exit_code == 0, back.output
    assert sqlite3.connect(elsewhere).execute("SELECT id FROM cases").fetchall() == [("C-1",)]
    assert keys.read_text(encoding="utf-8") == "keys: {}\n" and (data / "link-keys.yaml").is_file()
    assert not (data / "linli.sqlite3").exists()


def test_restore_drops_the_community_file_import_mark(tmp_path: Path) -> None:
    """Left, the mark made the next start skip the import and run on the backup's older
    registry: buttons registered since were unknown devices."""
    data = tmp_path / "data"
    data.mkdir()
    _store_with_a_case(data / "linli.sqlite3")
    backup(Layout.default(data), tmp_path / "b", clock=ManualClock(start=1.0))
    (data / "community-file.sha256").write_text("0" * 64 + "\n", encoding="ascii")
    restore(tmp_path / "b", Layout.default(data), force=True)
    assert not (data / "community-file.sha256").exists()
