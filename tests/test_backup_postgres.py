"""A PostgreSQL store is backed up with pg_dump and restored with pg_restore (docs/operations.md)."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import psycopg
import yaml
from click.testing import CliRunner

from hub.cli import main
from hub.cli.pg_backup import split_secret
from hub.ingest.alerts import record_signal
from hub.storage.cases import CaseStore
from hub.storage.store import Store
from rules.model import Severity
from rules.signals import Signal, SignalAction
from rules.subject import Subject
from tests.support.servers import Postgres

BIN = Path("/usr/lib/postgresql/15/bin")
T0 = 1_800_000_000.0


def test_pg_dump_and_pg_restore_round_trip_an_active_sos(
    tmp_path: Path, postgres_server: Postgres, postgres_url: str
) -> None:
    store = Store(url=postgres_url)
    signal = Signal(
        action=SignalAction.RAISE,
        rule_id="elderly.sos",
        category="sos",
        severity=Severity.CRITICAL,
        subject="btn-1",
        ts=T0,
        title_zh="一键呼救",
        title_en="SOS",
        trace={"event": {"kind": "sos_press", "ts": T0}},
    )
    record_signal(store, signal, Subject("btn-1", None, "110105001001001", "110105001001"), [])
    store.close()

    dump = tmp_path / "linli.dump"
    subprocess.run(
        [str(BIN / "pg_dump"), "--format=custom", f"--file={dump}", f"--dbname={postgres_url}"], check=True
    )
    restored = f"{postgres_url}_restored"
    name = restored.rsplit("/", 1)[1]
    with psycopg.connect(postgres_server.url(), autocommit=True) as admin:
        admin.execute(f"CREATE DATABASE {name}")
    try:
        subprocess.run([str(BIN / "pg_restore"), "--no-owner", f"--dbname={restored}", str(dump)], check=True)
        again = Store(url=restored)
        (alert,) = again.alerts()
        assert (alert.rule, alert.status, alert.device_id) == ("elderly.sos", "active", "btn-1")
        assert CaseStore(store=again).alerts_without_case() == [alert.id]  # the case opens on start
        again.close()
    finally:
        with psycopg.connect(postgres_server.url(), autocommit=True) as admin:
            admin.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")


def sos(store: Store, device: str) -> None:
    signal = Signal(
        action=SignalAction.RAISE,
        rule_id="elderly.sos",
        category="sos",
        severity=Severity.CRITICAL,
        subject=device,
        ts=T0,
        title_zh="一键呼救",
        title_en="SOS",
        trace={"event": {"kind": "sos_press", "ts": T0}},
    )
    record_signal(store, signal, Subject(device, None, "110105001001001", "110105001001"), [])


def config(tmp_path: Path, name: str, url: str) -> Path:
    path = tmp_path / f"{name}.yaml"
    path.write_text(yaml.safe_dump({"data_dir": str(tmp_path / name), "store": {"url": url}}))
    return path


def linli(*args: str) -> tuple[int, str]:
    result = CliRunner().invoke(main, list(args))
    return result.exit_code, result.output


def test_linli_backup_and_restore_a_postgresql_store(
    tmp_path: Path, postgres_server: Postgres, postgres_url: str
) -> None:
    store = Store(url=postgres_url)
    sos(store, "btn-1")
    store.close()
    source = config(tmp_path, "source", postgres_url)
    (tmp_path / "source").mkdir()
    (tmp_path / "source" / "reply-keys.yaml").write_text("keys: {}\n")  # beside the store: copied too

    code, output = linli("backup", str(tmp_path / "bak"), "--config", str(source))
    assert code == 0, output
    manifest = json.loads((tmp_path / "bak" / "manifest.json").read_text())
    assert {(f["name"], f["kind"]) for f in manifest["files"]} == {
        ("linli.dump", "pg_dump"),
        ("reply-keys.yaml", "file"),
    }
    assert not (tmp_path / "bak" / "linli.sqlite3").exists()

    restored = f"{postgres_url}_restored"
    with psycopg.connect(postgres_server.url(), autocommit=True) as admin:
        admin.execute(f"CREATE DATABASE {restored.rsplit('/', 1)[1]}")
    target = config(tmp_path, "target", restored)
    try:
        code, output = linli("restore", str(tmp_path / "bak"), "--config", str(target))
        assert code == 0, output
        again = Store(url=restored)
        (alert,) = again.alerts()
        assert (alert.rule, alert.status, alert.device_id) == ("elderly.sos", "active", "btn-1")
        assert (tmp_path / "target" / "reply-keys.yaml").read_text() == "keys: {}\n"
        # A hub connected to the database (this Store is one): a restore would mix two histories.
        code, output = linli("restore", str(tmp_path / "bak"), "--config", str(target), "--force")
        assert code != 0 and "stop every hub first" in output
        sos(again, "btn-2")  # written after the backup: --force puts the backup's state back
        again.close()
        code, output = linli("restore", str(tmp_path / "bak"), "--config", str(target))
        assert code != 0 and "already holds a store" in output
        code, output = linli("restore", str(tmp_path / "bak"), "--config", str(target), "--force")
        assert code == 0, output
        again = Store(url=restored)
        assert [a.device_id for a in again.alerts()] == ["btn-1"]
        again.close()
        # A SQLite configuration cannot take a PostgreSQL dump.
        code, output = linli("restore", str(tmp_path / "bak"), "--data-dir", str(tmp_path / "lite"))
        assert code != 0 and "holds a PostgreSQL store, the configuration names a SQLite one" in output
    finally:
        with psycopg.connect(postgres_server.url(), autocommit=True) as admin:
            admin.execute(f"DROP DATABASE IF EXISTS {restored.rsplit('/', 1)[1]} WITH (FORCE)")


def test_the_password_goes_to_the_environment_not_the_command_line() -> None:
    conninfo, env = split_secret("postgresql://linli:s3cr%40t@db.example:5433/linli")
    assert "s3cr" not in conninfo and env["PGPASSWORD"] == "s3cr@t"
    assert "host=db.example" in conninfo and "port=5433" in conninfo and "dbname=linli" in conninfo


def test_a_failing_pg_dump_names_the_store_without_its_password(tmp_path: Path) -> None:
    url = "postgresql://linli:hunter2@127.0.0.1:1/nowhere"
    target = config(tmp_path, "down", url)
    code, output = linli("backup", str(tmp_path / "bak"), "--config", str(target))
    assert code != 0 and "pg_dump of postgresql://linli:***@127.0.0.1:1/nowhere failed" in output
    assert "hunter2" not in output
