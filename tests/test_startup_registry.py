"""A restart with an unchanged community file serves the registry from the store: no YAML parsed."""

from __future__ import annotations

import stat
import threading
import time
from pathlib import Path

import psycopg
import pytest

import hub.app
from hub.app import IMPORTED_MARK, import_community_file
from hub.storage.store import Store
from tests.helpers import REGISTRY


def test_an_unchanged_file_is_not_parsed_again(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "community.yaml"
    path.write_text(REGISTRY, encoding="utf-8")
    data = tmp_path / "data"
    data.mkdir()
    parsed: list[Path] = []
    real = hub.app.load_yaml
    monkeypatch.setattr(hub.app, "load_yaml", lambda p: parsed.append(p) or real(p))

    store = Store(path=data / "linli.sqlite3")
    assert import_community_file(store, path, data_dir=data, at=1.0) is True
    assert import_community_file(store, path, data_dir=data, at=2.0) is False  # the restart
    assert parsed == [path]
    assert stat.S_IMODE((data / IMPORTED_MARK).stat().st_mode) == 0o600

    path.write_text(REGISTRY.replace("幸福里社区", "幸福里社区（新）"), encoding="utf-8")
    assert import_community_file(store, path, data_dir=data, at=3.0) is True  # edited: parsed again
    assert [c.name for c in store.communities()] == ["幸福里社区（新）"]
    store.close()


def test_a_store_without_the_communities_imports_again(tmp_path: Path) -> None:
    """The mark alone is not trusted: a store restored empty (or replaced) is filled again."""
    path = tmp_path / "community.yaml"
    path.write_text(REGISTRY, encoding="utf-8")
    data = tmp_path / "data"
    data.mkdir()
    first = Store(path=data / "linli.sqlite3")
    import_community_file(first, path, data_dir=data, at=1.0)
    first.close()
    (data / "linli.sqlite3").unlink()
    fresh = Store(path=data / "linli.sqlite3")
    assert import_community_file(fresh, path, data_dir=data, at=2.0) is True
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
    import_community_file(first, path, data_dir=tmp_path / "a", at=1.0)
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
    assert import_community_file(second, path, data_dir=tmp_path / "b", at=2.0) is True
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
            import_community_file(stores[i], path, data_dir=tmp_path / f"n{i}", at=1.0)
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
