"""Restart: a community row's start-up copy (``hub.storage.community_pack``), on both engines.

The copy is read instead of the JSON only while it provably is that JSON's: the same models
as the JSON gives, strings still shared; a stale, damaged or foreign copy is ignored (the
JSON is read, the copy made again), never a crash and never the wrong registry.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from typing import Any

import pytest

from hub.community.model import Community
from hub.errors import StoreError
from hub.storage import community_pack
from hub.storage.store import Store
from tests.test_registry_trusted import T0, _community, _same


@pytest.fixture
def store(store_url: str) -> Iterator[Store]:
    opened = Store(url=store_url)
    yield opened
    opened.close()


def _packed(store: Store) -> bytes | None:
    (value,) = store.execute("SELECT packed FROM communities").fetchone()
    return None if value is None else bytes(value)


def _set_packed(store: Store, value: bytes | None) -> None:
    with store.transaction() as db:
        db.execute("UPDATE communities SET packed = ?", (value,))


class Parses:
    """Counts the reads that parse the JSON (the copy was not used)."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.count = 0
        real = community_pack.parse

        def counting(doc: bytes, memo: dict[str, str]) -> dict[str, Any]:
            self.count += 1
            return real(doc, memo)

        monkeypatch.setattr(community_pack, "parse", counting)


def test_the_second_read_comes_from_the_copy_and_gives_the_same_models(
    store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    parses = Parses(monkeypatch)
    original = _community()
    store.save_communities([original], at=T0)
    assert _packed(store) is None
    [first] = store.communities()
    assert parses.count == 1 and _packed(store) is not None
    [second] = store.communities()
    assert parses.count == 1  # not parsed again
    _same(second, first)
    _same(second, Community.model_validate(original.model_dump(mode="json")))
    assert second.model_dump(mode="json") == original.model_dump(mode="json")
    # Still one object per repeated string (hub.community.compact), as the JSON way gives.
    grids = {id(d.grid) for d in second.devices if d.grid == second.devices[0].grid}
    assert len(grids) == 1


def test_a_changed_community_drops_its_copy(store: Store, monkeypatch: pytest.MonkeyPatch) -> None:
    parses = Parses(monkeypatch)
    original = _community()
    store.save_communities([original], at=T0)
    store.communities()
    renamed = original.model_copy(update={"name": "新名字社区"})
    assert store.save_communities([renamed], at=T0 + 1) == 1
    assert _packed(store) is None
    [back] = store.communities()
    assert back.name == "新名字社区" and parses.count == 2


def test_a_doc_edited_without_its_copy_is_read_from_the_json(
    store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    """By hand or by an older Linli that does not know the column: the copy is stale."""
    original = _community()
    store.save_communities([original], at=T0)
    store.communities()
    edited = original.model_dump_json().replace(original.name, "手改社区").encode()
    with store.transaction() as db:
        db.execute("UPDATE communities SET doc = ?", (edited,))
    parses = Parses(monkeypatch)
    [back] = store.communities()
    assert back.name == "手改社区" and parses.count == 1
    [again] = store.communities()  # the copy was made again, of the edited doc
    assert again.name == "手改社区" and parses.count == 1


def _damaged(packed: bytes) -> list[tuple[str, bytes]]:
    middle = len(packed) // 2
    flipped = packed[:middle] + bytes([packed[middle] ^ 0xFF]) + packed[middle + 1 :]
    writer = bytearray(packed)
    writer[5:7] = bytes((2, 7))  # as if Python 2.7 had written it
    return [
        ("a flipped byte", flipped),
        ("truncated", packed[: len(packed) - 100]),
        ("header only", packed[:30]),
        ("not a copy", b"garbage"),
        ("empty", b""),
        ("another Python's", bytes(writer)),
    ]


def test_a_damaged_copy_is_ignored_and_made_again(store: Store, monkeypatch: pytest.MonkeyPatch) -> None:
    original = _community()
    store.save_communities([original], at=T0)
    store.communities()
    sound = _packed(store)
    assert sound is not None
    for what, bad in _damaged(sound):
        _set_packed(store, bad)
        parses = Parses(monkeypatch)
        [back] = store.communities()
        assert back == original, what
        assert parses.count == 1, what
        assert _packed(store) == sound, what


def test_unpack_refuses_what_is_not_this_docs_copy() -> None:
    doc = _community().model_dump_json().encode()
    parsed = community_pack.parse(doc, {})
    packed = community_pack.pack(doc, parsed)
    assert community_pack.unpack(doc, packed, code=parsed["code"]) == parsed
    assert community_pack.unpack(doc, packed, code="another community") is None
    assert community_pack.unpack(doc + b" ", packed, code=parsed["code"]) is None
    assert community_pack.unpack(doc, None, code=parsed["code"]) is None
    # A body that passes the digests but is not a community document.
    forged = community_pack.pack(doc, ["not", "a", "dict"])  # type: ignore[arg-type]
    assert community_pack.unpack(doc, forged, code=parsed["code"]) is None


def test_a_copy_that_cannot_be_saved_only_costs_time(
    store: Store, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    original = _community()
    store.save_communities([original], at=T0)
    real = store.transaction

    def refusing(**kwargs: Any) -> Any:
        raise StoreError("database or disk is full")

    monkeypatch.setattr(store, "transaction", refusing)
    with caplog.at_level(logging.WARNING, logger="hub.storage.store"):
        [back] = store.communities()
    assert back == original
    assert "start-up copy not saved" in caplog.text and "disk is full" in caplog.text
    monkeypatch.setattr(store, "transaction", real)
    assert _packed(store) is None
    store.communities()
    assert _packed(store) is not None
