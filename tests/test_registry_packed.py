"""Restart: a community row's start-up copy (``hub.storage.community_pack``), on both engines.

The copy is read instead of the JSON only while it provably is that JSON's: the same models
as the JSON gives, strings still shared; a stale, damaged or foreign copy is ignored (the
JSON is read, the copy made again), never a crash and never the wrong registry. Copies are
made by a child process (``hub.storage.community_copies``) after a hub that read the JSON
is up: a real child here, with a real hub.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from hub import app
from hub.app import Hub
from hub.clock import ManualClock
from hub.community import columns
from hub.community.model import Community
from hub.storage import community_pack
from hub.storage.community_copies import make_copies, make_in_child, make_in_child_now
from hub.storage.store import Store
from tests.helpers import SOS_BUTTON, hub_settings
from tests.support.servers import Broker
from tests.test_registry_trusted import T0, _community, _same


@pytest.fixture
def store(store_url: str) -> Iterator[Store]:
    opened = Store(url=store_url)
    yield opened
    opened.close()


def _packed(store: Store) -> bytes | None:
    row = store.execute("SELECT packed FROM community_copies").fetchone()
    return None if row is None else bytes(row[0])


def _set_packed(store: Store, value: bytes) -> None:
    with store.transaction() as db:
        db.execute("UPDATE community_copies SET packed = ?", (value,))


class Parses:
    """Counts the reads that parse the JSON (the copy was not used)."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.count = 0
        real = community_pack.parse

        def counting(doc: bytes, memo: dict[str, str]) -> dict[str, Any]:
            self.count += 1
            return real(doc, memo)

        monkeypatch.setattr(community_pack, "parse", counting)


def test_a_read_writes_nothing_and_says_when_a_copy_is_worth_making(
    store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    store.save_communities([_community()], at=T0)
    store.communities()
    assert _packed(store) is None
    assert not store.copies_wanted  # a few kB of JSON: not worth a process
    monkeypatch.setattr(community_pack, "WORTH_BYTES", 0)
    store.communities()
    assert store.copies_wanted and _packed(store) is None
    assert make_copies(store) == 1
    store.communities()
    assert not store.copies_wanted
    assert make_copies(store) == 0  # sound already


def test_a_read_from_the_copy_gives_the_same_models(store: Store, monkeypatch: pytest.MonkeyPatch) -> None:
    original = _community()
    store.save_communities([original], at=T0)
    [first] = store.communities()
    make_copies(store)
    parses = Parses(monkeypatch)
    [second] = store.communities()
    assert parses.count == 0  # not parsed
    _same(second, first)
    _same(second, Community.model_validate(original.model_dump(mode="json")))
    assert second.model_dump(mode="json") == original.model_dump(mode="json")
    # Still one object per repeated string (hub.community.compact), as the JSON way gives.
    grids = {id(d.grid) for d in second.devices if d.grid == second.devices[0].grid}
    assert len(grids) == 1


def _dicts(value: Any) -> Iterator[dict[str, Any]]:
    if isinstance(value, dict):
        yield value
        value = list(value.values())
    if isinstance(value, list | tuple):
        for item in value:
            yield from _dicts(item)


def test_the_copy_holds_the_many_records_as_columns(store: Store) -> None:
    """No dict per device, resident, contact or household in what a restart reads: freed once the
    records were built, those left ≈ 60 MB of pages at 10⁵ devices that could not be handed back."""
    original = _community()
    store.save_communities([original], at=T0)
    make_copies(store)
    code, raw, packed = store.execute(
        "SELECT c.code, c.doc, p.packed FROM communities c JOIN community_copies p ON p.code = c.code"
    ).fetchone()
    doc = bytes(raw)
    unpacked = community_pack.unpack(doc, packed, code=code)
    assert unpacked is not None
    records = {"heartbeat_s", "living_alone", "relation", "room"}  # a field of each of the four
    assert [d for d in _dicts(unpacked) if records & d.keys()] == []
    # The columns are the document's records, all of them, nested contacts included.
    parsed = community_pack.parse(doc, {})
    assert list(columns.rows(unpacked["devices"])) == parsed["devices"]
    assert list(columns.rows(unpacked["residents"])) == parsed["residents"]
    assert sum(len(r["emergency_contacts"]) for r in parsed["residents"]) >= 2
    units = [u for g in unpacked["grids"] for b in g["buildings"] for u in b["units"]]
    assert [list(columns.rows(u["households"])) for u in units] == [
        u["households"] for g in parsed["grids"] for b in g["buildings"] for u in b["units"]
    ]
    # Equal heartbeats are one object in the copy (JSON gives each device its own).
    assert len(
        {id(beat) for beat in unpacked["devices"][2][unpacked["devices"][1].index("heartbeat_s")]}
    ) == len({d["heartbeat_s"] for d in parsed["devices"]})


def test_a_changed_community_drops_its_copy(store: Store, monkeypatch: pytest.MonkeyPatch) -> None:
    original = _community()
    store.save_communities([original], at=T0)
    make_copies(store)
    parses = Parses(monkeypatch)
    renamed = original.model_copy(update={"name": "新名字社区"})
    assert store.save_communities([renamed], at=T0 + 1) == 1
    assert _packed(store) is None
    [back] = store.communities()
    assert back.name == "新名字社区" and parses.count == 1


def test_a_doc_edited_without_its_copy_is_read_from_the_json(
    store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    """By hand or by an older Linli that does not know the column: the copy is stale."""
    original = _community()
    store.save_communities([original], at=T0)
    make_copies(store)
    edited = original.model_dump_json().replace(original.name, "手改社区").encode()
    with store.transaction() as db:
        db.execute("UPDATE communities SET doc = ?", (edited,))
    parses = Parses(monkeypatch)
    [back] = store.communities()
    assert back.name == "手改社区" and parses.count == 1
    assert make_copies(store) == 1
    parsed = parses.count
    [again] = store.communities()  # from the copy made again, of the edited doc
    assert again.name == "手改社区" and parses.count == parsed


def test_a_copy_of_a_doc_replaced_meanwhile_is_not_written(
    store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An import lands while the child makes its copy: the copy is of the old doc, so it is dropped."""
    original = _community()
    store.save_communities([original], at=T0)
    real = community_pack.pack

    def import_meanwhile(doc: bytes, parsed: dict[str, Any]) -> bytes:
        store.save_communities([original.model_copy(update={"name": "新导入"})], at=T0 + 1)
        return real(doc, parsed)

    monkeypatch.setattr(community_pack, "pack", import_meanwhile)
    make_copies(store)
    assert _packed(store) is None
    [back] = store.communities()
    assert back.name == "新导入"


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
        # LNP1 held the parsed document as it was (no columns): read as JSON, made again.
        ("the previous format", b"LNP1" + packed[4:]),
    ]


def test_a_damaged_copy_is_ignored_and_made_again(store: Store, monkeypatch: pytest.MonkeyPatch) -> None:
    original = _community()
    store.save_communities([original], at=T0)
    make_copies(store)
    sound = _packed(store)
    assert sound is not None
    for what, bad in _damaged(sound):
        _set_packed(store, bad)
        parses = Parses(monkeypatch)
        [back] = store.communities()
        assert back == original, what
        assert parses.count == 1, what
        assert make_copies(store) == 1, what
        assert _packed(store) == sound, what


def test_unpack_refuses_what_is_not_this_docs_copy() -> None:
    doc = _community().model_dump_json().encode()
    parsed = community_pack.parse(doc, {})
    packed = community_pack.pack(doc, parsed)
    assert community_pack.unpack(doc, packed, code=parsed["code"]) == community_pack.tabulated(parsed)
    assert community_pack.unpack(doc, packed, code="another community") is None
    assert community_pack.unpack(doc + b" ", packed, code=parsed["code"]) is None
    assert community_pack.unpack(doc, None, code=parsed["code"]) is None
    # A body that passes the digests but is not a community document.
    forged = community_pack.pack(doc, ["not", "a", "dict"])  # type: ignore[arg-type]
    assert community_pack.unpack(doc, forged, code=parsed["code"]) is None


async def test_the_child_makes_the_copies(store: Store, store_url: str) -> None:
    store.save_communities([_community()], at=T0)
    assert await make_in_child(store_url)
    assert _packed(store) is not None
    store.communities()
    assert not store.copies_wanted


async def test_a_child_that_fails_is_logged_without_the_password(caplog: pytest.LogCaptureFixture) -> None:
    url = "postgresql://linli:s3cret-pw@127.0.0.1:1/linli"  # nothing listens on port 1
    with caplog.at_level(logging.WARNING, logger="hub.storage.community_copies"):
        assert not await make_in_child(url)
    assert "start-up copies not made (exit 1" in caplog.text
    assert "s3cret-pw" not in caplog.text


async def test_a_cancelled_child_is_killed_and_awaited(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    children: list[asyncio.subprocess.Process] = []
    real = asyncio.create_subprocess_exec

    async def spawn(*args: Any, **kwargs: Any) -> asyncio.subprocess.Process:
        # A child that never ends by itself (stands in for a store that hangs).
        child = await real(*args[:1], "-c", "import time; time.sleep(60)", **kwargs)
        children.append(child)
        return child

    monkeypatch.setattr(asyncio, "create_subprocess_exec", spawn)
    task = asyncio.create_task(make_in_child(f"sqlite:///{tmp_path / 's.sqlite3'}"))
    await asyncio.sleep(0.5)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    (child,) = children
    assert child.returncode is not None  # killed, and awaited (no zombie)
    assert not await make_in_child(f"sqlite:///{tmp_path / 's.sqlite3'}", timeout_s=0.5)


async def test_a_hub_starting_on_a_community_without_a_copy_has_it_made_first(
    tmp_path: Path, mosquitto_broker: Broker, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A cold start (or a changed file) reads its registry from a copy a child made before: the
    JSON's parse never enters the hub's heap (hub.storage.community_copies.make_in_child_now)."""
    monkeypatch.setattr(community_pack, "WORTH_BYTES", 0)  # the test community is small
    read: list[int] = []
    monkeypatch.setattr(community_pack, "parse", lambda doc, strings: read.append(len(doc)) or {})
    settings = hub_settings(tmp_path, mosquitto_broker)
    async with Hub(settings=settings, clock=ManualClock(start=T0)) as hub:
        assert not hub.store.copies_wanted and not read  # built from the copy, no JSON parsed
        assert "linli-community-copies" not in {t.get_name() for t in asyncio.all_tasks()}
        assert hub.registry.device(SOS_BUTTON) is not None
        assert _packed(hub.store) is not None


async def test_a_hub_that_read_the_json_has_the_copies_made_once_it_is_up(
    tmp_path: Path, mosquitto_broker: Broker, monkeypatch: pytest.MonkeyPatch
) -> None:
    """… and where that child failed, the hub reads the JSON and has the copies made once it is up."""
    monkeypatch.setattr(community_pack, "WORTH_BYTES", 0)  # the test community is small
    monkeypatch.setattr(app, "make_in_child_now", lambda url: False)
    settings = hub_settings(tmp_path, mosquitto_broker)
    async with Hub(settings=settings, clock=ManualClock(start=T0)) as hub:
        assert hub.store.copies_wanted
        (task,) = [t for t in asyncio.all_tasks() if t.get_name() == "linli-community-copies"]
        await asyncio.wait_for(task, 60)
    store = Store(url=settings.store.resolved_url(Path(settings.data_dir)))
    try:
        assert _packed(store) is not None
        registry = store.communities()
        assert not store.copies_wanted
    finally:
        store.close()
    async with Hub(settings=settings, clock=ManualClock(start=T0)) as again:
        assert not again.store.copies_wanted
        assert "linli-community-copies" not in {t.get_name() for t in asyncio.all_tasks()}
        held = again.registry
        # The registry holds residents without their personal data (hub.community.personal).
        whole = tuple(
            c.model_copy(update={"residents": tuple(map(held.whole, c.residents))}) for c in held.communities
        )
        assert whole == tuple(registry)


def test_a_sound_copy_that_does_not_build_is_read_from_the_json_and_made_again(
    store: Store, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """A copy that passes its digests but a bug in the version that wrote it left unbuildable
    (here: a device column one value short) must not keep the hub from starting."""
    original = _community()
    store.save_communities([original], at=T0)
    real = community_pack.tabulated

    def one_short(parsed: Any) -> Any:
        doc = real(parsed)
        doc["devices"][2][0].pop()
        return doc

    with monkeypatch.context() as patch:
        patch.setattr(community_pack, "tabulated", one_short)
        assert make_copies(store) == 1
    broken = _packed(store)
    parses = Parses(monkeypatch)
    with caplog.at_level(logging.WARNING, logger="hub.storage.store"):
        [back] = store.communities()
    _same(back, Community.model_validate(original.model_dump(mode="json")))
    assert parses.count == 1 and "start-up copy does not build" in caplog.text
    assert store.copies_wanted or len(_json(store)) < community_pack.WORTH_BYTES
    assert make_copies(store) == 1  # the child makes it again, soundly this time
    assert _packed(store) != broken
    parsed = parses.count
    [again] = store.communities()
    assert again == original and parses.count == parsed  # from the copy


def _json(store: Store) -> bytes:
    return bytes(store.execute("SELECT doc FROM communities").fetchone()[0])


def test_copies_made_before_a_start_fail_soft(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    """A child that fails or takes too long never keeps the hub from starting: it reads the JSON."""
    caplog.set_level(logging.WARNING)
    assert not make_in_child_now("nosuchdb://127.0.0.1/linli")
    assert "start-up copies not made (exit" in caplog.text
    assert not make_in_child_now(f"sqlite:///{tmp_path / 's.sqlite3'}", timeout_s=0.01)
    assert "not made within" in caplog.text
