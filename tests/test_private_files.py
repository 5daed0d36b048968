"""Finding 6 (data files): everything the hub writes holds elders' data or credentials, so it is
created owner-only (0600 files, 0700 directories) whatever the umask."""

from __future__ import annotations

import os
import stat
from collections.abc import Iterator
from pathlib import Path

import pytest

from hub.app import Hub
from hub.cli.backup import Layout, backup, restore
from hub.clock import ManualClock
from hub.demo import load_or_create
from hub.files import private_dir, touch_private, write_private
from hub.storage.store import Store
from hub.timeseries.spool import Spool
from hub.timeseries.sqlite_sink import SqliteSink
from tests.helpers import hub_settings
from tests.support.servers import Broker


def mode(path: Path) -> int:
    return stat.S_IMODE(os.stat(path).st_mode)


@pytest.fixture(autouse=True)
def permissive_umask() -> Iterator[None]:
    """The attack: a default umask would leave new files world-readable (0644)."""
    old = os.umask(0o022)
    try:
        yield
    finally:
        os.umask(old)


def test_helpers_create_owner_only_files_and_directories(tmp_path: Path) -> None:
    target = tmp_path / "a" / "b"
    private_dir(target)
    assert mode(tmp_path / "a") == 0o700 and mode(target) == 0o700
    write_private(target / "secret", b"x")
    assert mode(target / "secret") == 0o600 and (target / "secret").read_bytes() == b"x"
    assert mode(touch_private(target / "new")) == 0o600
    loose = tmp_path / "loose"
    loose.mkdir(mode=0o755)
    loose.chmod(0o755)
    private_dir(loose, tighten=True)
    assert mode(loose) == 0o700


def test_store_and_its_wal_are_0600(tmp_path: Path) -> None:
    store = Store(path=tmp_path / "data" / "linli.sqlite3")
    store.add_quarantine([])
    with store.transaction() as db:
        db.execute("CREATE TABLE IF NOT EXISTS t (x)")
    assert mode(tmp_path / "data") == 0o700
    for name in ("linli.sqlite3", "linli.sqlite3-wal", "linli.sqlite3-shm"):
        assert mode(tmp_path / "data" / name) == 0o600, name
    store.close()


async def test_time_series_files_and_spool_are_0600(tmp_path: Path) -> None:
    sink = SqliteSink(
        path=tmp_path / "ts" / "timeseries.sqlite", retention_days=1, clock=ManualClock(start=0)
    )
    await sink.start()
    await sink.stop()
    assert mode(tmp_path / "ts" / "timeseries.sqlite") == 0o600
    spool = Spool(directory=tmp_path / "spool", max_bytes=1 << 20)
    await spool.open()
    await spool.append(b"\x1f\x8b batch", lines=1)
    assert mode(tmp_path / "spool") == 0o700
    assert [mode(p) for p in (tmp_path / "spool").iterdir()] == [0o600]


def test_demo_secrets_are_0600(tmp_path: Path) -> None:
    load_or_create(tmp_path / "demo" / "secrets.yaml", ("a", "b"))
    assert mode(tmp_path / "demo" / "secrets.yaml") == 0o600


def test_the_hub_tightens_its_data_directory(tmp_path: Path) -> None:
    data = tmp_path / "data"
    data.mkdir()
    data.chmod(0o755)
    hub = Hub(settings=hub_settings(tmp_path, Broker("127.0.0.1", 1, "u", "p")), clock=ManualClock(start=0))
    try:
        assert mode(data) == 0o700
        assert mode(data / "linli.sqlite3") == 0o600
    finally:
        hub.store.close()


def test_backups_and_restores_are_owner_only_and_keep_the_reply_keys(tmp_path: Path) -> None:
    """A backup is a copy of elders' data and credentials: the same modes as the data directory."""
    data, saved, restored = tmp_path / "data", tmp_path / "backup", tmp_path / "restored"
    store = Store(path=data / "linli.sqlite3")
    store.close()
    write_private(data / "reply-keys.yaml", b"keys: {w-night: k}\n")
    spool = data / "timeseries-spool"
    private_dir(spool)
    write_private(spool / "000001-5.lp.gz", b"\x1f\x8b batch")
    entries = backup(Layout.default(data), saved, clock=ManualClock(start=0))
    assert "reply-keys.yaml" in {e.name for e in entries}
    assert mode(saved) == 0o700
    for entry in entries:
        assert mode(saved / entry.name) == 0o600, entry.name
    restore(saved, Layout.default(restored))
    assert mode(restored) == 0o700
    for entry in entries:
        assert mode(restored / entry.name) == 0o600, entry.name


def test_write_private_does_not_follow_a_symlink_planted_at_a_predictable_name(tmp_path: Path) -> None:
    """Found in review: the temporary name was ``.{name}.{pid}.tmp``, opened without O_EXCL, so
    a symlink planted there received the data (residents' phones, keys)."""
    target = tmp_path / "out" / "residents.csv"
    target.parent.mkdir()
    loot = tmp_path / "loot"
    for pid in range(os.getpid() - 2, os.getpid() + 3):
        (target.parent / f".{target.name}.{pid}.tmp").symlink_to(loot)
    write_private(target, b"secret")
    assert target.read_bytes() == b"secret" and not target.is_symlink()
    assert not loot.exists()
    assert {p.name for p in target.parent.iterdir() if not p.is_symlink()} == {"residents.csv"}
