"""A PostgreSQL store is backed up with pg_dump and restored with pg_restore (docs/operations.md)."""

from __future__ import annotations

import subprocess
from pathlib import Path

import psycopg

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
