"""A restart with an unchanged community file serves the registry from the store: no YAML parsed."""

from __future__ import annotations

import stat
from pathlib import Path

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
