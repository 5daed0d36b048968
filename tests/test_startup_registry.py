"""A restart with an unchanged community file serves the registry from the store: no YAML parsed."""

from __future__ import annotations

import stat
import threading
import time
from pathlib import Path

import psycopg
import pytest
from click.testing import CliRunner

import hub.app
from hub.app import Hub, import_community_file
from hub.cli import main
from hub.clock import ManualClock
from hub.community.files import IMPORTED_MARK
from hub.errors import RegistryError
from hub.storage.store import Store
from tests.helpers import REGISTRY, SOS_BUTTON, hub_settings
from tests.support.samples import SAMPLES
from tests.support.servers import Broker

T0 = 1_795_371_180.0
SOS = (SAMPLES / "zigbee2mqtt" / "tuya_ts0215a_sos_emergency.json").read_bytes()


def test_an_unchanged_file_is_not_parsed_again(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "community.yaml"
    path.write_text(REGISTRY, encoding="utf-8")
    data = tmp_path / "data"
    data.mkdir()
    parsed: list[Path] = []
    real = hub.app.load_yaml
    monkeypatch.setattr(hub.app, "load_yaml", lambda p: parsed.append(p) or real(p))

    store = Store(path=data / "linli.sqlite3")
    assert import_community_file(store, path, data_dir=data, at=1.0, topic_prefix="linli") is True
    assert (
        import_community_file(store, path, data_dir=data, at=2.0, topic_prefix="linli") is False
    )  # the restart
    assert parsed == [path]
    assert stat.S_IMODE((data / IMPORTED_MARK).stat().st_mode) == 0o600

    path.write_text(REGISTRY.replace("幸福里社区", "幸福里社区（新）"), encoding="utf-8")
    assert (
        import_community_file(store, path, data_dir=data, at=3.0, topic_prefix="linli") is True
    )  # edited: parsed again
    assert [c.name for c in store.communities()] == ["幸福里社区（新）"]
    store.close()


def test_a_store_without_the_communities_imports_again(tmp_path: Path) -> None:
    """The mark alone is not trusted: a store restored empty (or replaced) is filled again."""
    path = tmp_path / "community.yaml"
    path.write_text(REGISTRY, encoding="utf-8")
    data = tmp_path / "data"
    data.mkdir()
    first = Store(path=data / "linli.sqlite3")
    import_community_file(first, path, data_dir=data, at=1.0, topic_prefix="linli")
    first.close()
    (data / "linli.sqlite3").unlink()
    fresh = Store(path=data / "linli.sqlite3")
    assert import_community_file(fresh, path, data_dir=data, at=2.0, topic_prefix="linli") is True
    assert fresh.communities_count() == 1
    fresh.close()


def test_hubs_started_together_on_postgres_import_one_after_the_other(
    tmp_path: Path, postgres_url: str
) -> None:
    """A second hub importing while the first one's transaction holds the rows waits its turn.

    Found by the multiprocess bench: nodes started together on a fresh database died in
    ``save_communities`` with ``LockNotAvailable`` after the 200 ms row-lock timeout. Here a
    session holds the community's row for 0.8 s (four times that timeout) while a hub imports
    an edited file: the import waits and lands.
    """
    path = tmp_path / "community.yaml"
    path.write_text(REGISTRY, encoding="utf-8")
    first = Store(url=postgres_url)
    import_community_file(first, path, data_dir=tmp_path / "a", at=1.0, topic_prefix="linli")
    code = first.communities()[0].code

    held = threading.Event()

    def hold_the_row() -> None:
        with psycopg.connect(postgres_url) as conn:  # not autocommit: one open transaction
            conn.execute("SELECT doc FROM communities WHERE code = %s FOR UPDATE", (code,))
            held.set()
            time.sleep(0.8)
            conn.commit()

    holder = threading.Thread(target=hold_the_row)
    holder.start()
    assert held.wait(10)
    path.write_text(REGISTRY.replace("幸福里社区", "幸福里社区（新）"), encoding="utf-8")
    second = Store(url=postgres_url)
    started = time.monotonic()
    assert import_community_file(second, path, data_dir=tmp_path / "b", at=2.0, topic_prefix="linli") is True
    waited = time.monotonic() - started
    holder.join()
    assert waited >= 0.5  # it did wait for the holder (not a stale read)
    assert [c.name for c in second.communities()] == ["幸福里社区（新）"]
    first.close()
    second.close()


def test_concurrent_imports_on_postgres_all_succeed(tmp_path: Path, postgres_url: str) -> None:
    """Four hubs import the same file at once on a fresh database: none fails, one row each."""
    path = tmp_path / "community.yaml"
    path.write_text(REGISTRY, encoding="utf-8")
    stores = [Store(url=postgres_url) for _ in range(4)]
    barrier = threading.Barrier(len(stores))
    errors: list[BaseException] = []

    def start(i: int) -> None:
        barrier.wait()
        try:
            import_community_file(stores[i], path, data_dir=tmp_path / f"n{i}", at=1.0, topic_prefix="linli")
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=start, args=(i,)) for i in range(len(stores))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    assert stores[0].communities_count() == 1
    for store in stores:
        store.close()


async def test_a_broken_community_file_at_restart_keeps_the_registry_last_imported(tmp_path: Path) -> None:
    """A typo or a half-finished copy of the community file stopped the start with
    ``RegistryError``, though the store held the last good import: after a power cut nobody's
    SOS was handled until someone fixed the file. The hub now starts on the registry it last
    imported and says so (critical log, ``/readyz`` warning); with nothing imported yet it
    still refuses, since it would know no device."""
    settings = hub_settings(tmp_path, Broker("127.0.0.1", 1, "u", "p"))
    community_file = settings.community_file
    assert community_file is not None
    Hub(settings=settings, clock=ManualClock(start=T0)).close()
    community_file.write_text(REGISTRY + "\n  - this: [is not closed\n", encoding="utf-8")
    hub = Hub(settings=settings, clock=ManualClock(start=T0 + 60))
    try:
        hub.pipeline.handle(f"zigbee2mqtt/{SOS_BUTTON}", SOS, 1, False)
        assert len(hub.cases.case_ids()) == 1, "the press became a case on the registry kept"
        (warning,) = [w for w in hub.readiness().warnings if "community file was refused" in w]
        assert "not valid YAML" in warning
    finally:
        hub.close()
    # Fixed: imported again, and the warning is gone.
    community_file.write_text(REGISTRY, encoding="utf-8")
    hub = Hub(settings=settings, clock=ManualClock(start=T0 + 120))
    try:
        assert not [w for w in hub.readiness().warnings if "community file" in w]
    finally:
        hub.close()


def test_a_broken_community_file_on_a_first_start_still_stops_it(tmp_path: Path) -> None:
    settings = hub_settings(tmp_path, Broker("127.0.0.1", 1, "u", "p"))
    assert settings.community_file is not None
    settings.community_file.write_text("communities: [unclosed\n", encoding="utf-8")
    with pytest.raises(RegistryError, match="not valid YAML"):
        Hub(settings=settings, clock=ManualClock(start=T0))


def test_doctor_checks_the_community_file_before_a_restart(tmp_path: Path) -> None:
    path = tmp_path / "community.yaml"
    env = {"LINLI_DATA_DIR": str(tmp_path / "data"), "LINLI_COMMUNITY_FILE": str(path)}
    path.write_text(REGISTRY, encoding="utf-8")
    good = CliRunner().invoke(main, ["doctor", "--mqtt", "mqtt://127.0.0.1:9"], env=env)
    assert f"community file {path}: 1 communities" in good.output, good.output
    path.write_text(REGISTRY + "\n  - this: [is not closed\n", encoding="utf-8")
    bad = CliRunner().invoke(main, ["doctor", "--mqtt", "mqtt://127.0.0.1:9"], env=env)
    assert "community file:" in bad.output and "not valid YAML" in bad.output, bad.output
    assert bad.exit_code == 1


def test_a_garbled_import_mark_means_import_again(tmp_path: Path) -> None:
    """The mark beside the store is read as ASCII: bytes that are not (a disk error, a stray
    write) were a ``UnicodeDecodeError`` that stopped the start; now the file is imported again."""
    path = tmp_path / "community.yaml"
    path.write_text(REGISTRY, encoding="utf-8")
    data = tmp_path / "data"
    data.mkdir()
    store = Store(path=data / "linli.sqlite3")
    try:
        assert import_community_file(store, path, data_dir=data, at=1.0, topic_prefix="linli") is True
        (data / IMPORTED_MARK).write_bytes(b"\xff\xfe garbled")
        assert import_community_file(store, path, data_dir=data, at=2.0, topic_prefix="linli") is True
        assert import_community_file(store, path, data_dir=data, at=3.0, topic_prefix="linli") is False
    finally:
        store.close()
