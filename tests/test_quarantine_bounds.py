"""The quarantine table is bounded on disk, whatever garbage arrives.

Reported: 100 000 messages on distinct 2 000-character topics with a non-JSON payload made
101 052 rows and an 878 MB SQLite file, topics stored whole (65 012 characters seen). Now a
row's topic, detail and payload sample are cut (the topic's full length noted in the
detail), the table keeps the most recently seen rows up to a cap and drops rows not seen
for a while on the hub's clock, and what it prunes is counted.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

import hub.storage.store as store_module
from hub.clock import ManualClock
from hub.ingest.quarantine import Quarantine
from hub.records import QuarantineRecord
from hub.storage.store import (
    QUARANTINE_MAX_AGE_S,
    QUARANTINE_MAX_ROWS,
    QUARANTINE_TOPIC_CHARS,
    Store,
)

#: 2001-09-09: long past on the wall clock, so pruning by the wall clock would show.
T0 = 1_000_000_000.0
DAY = 86_400.0


@pytest.fixture
def store(store_url: str) -> Iterator[Store]:
    opened = Store(url=store_url)
    yield opened
    opened.close()


def rows(store: Store) -> int:
    return int(store.execute("SELECT count(*) FROM quarantine").fetchone()[0])


def garbage_topic(n: int, length: int = 2_000) -> str:
    """Distinct from its first characters on, as the report's were."""
    return f"{n:06d}/" + "x" * (length - 7)


def test_a_long_topic_detail_and_payload_are_cut_and_the_length_kept(store: Store) -> None:
    topic = garbage_topic(1, 65_012)
    record = QuarantineRecord(topic, "malformed_json", "d" * 5_000, b"\xff" * 10_000, T0, T0, 1)
    store.add_quarantine([record])
    (kept,) = store.quarantine()
    assert len(kept.topic) == QUARANTINE_TOPIC_CHARS and kept.topic.endswith("…")
    assert kept.topic.startswith("000001/xxx")
    assert kept.detail.endswith("[topic of 65012 characters, cut]") and len(kept.detail) < 1_100
    assert len(kept.excerpt) == 256
    # Long topics that start alike share the row; their count adds up.
    store.add_quarantine([QuarantineRecord(topic + "yz", "malformed_json", "d", b"{", T0, T0 + 1, 2)])
    (again,) = store.quarantine()
    assert again.topic == kept.topic and again.count == 3


def test_the_table_keeps_the_most_recently_seen_rows(store: Store, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(store_module, "QUARANTINE_MAX_ROWS", 50)
    pruned = 0
    for batch in range(4):
        records = [
            QuarantineRecord(f"t/{n}", "malformed_json", "bad", b"{", T0 + n, T0 + n, 1)
            for n in range(batch * 30, batch * 30 + 30)
        ]
        pruned += store.add_quarantine(records)
    assert rows(store) == 50 and pruned == 70
    kept = {r.topic for r in store.quarantine(limit=100)}
    assert kept == {f"t/{n}" for n in range(70, 120)}


def test_rows_not_seen_for_long_go_by_the_hubs_clock(store: Store) -> None:
    store.add_quarantine([QuarantineRecord("t/old", "malformed_json", "bad", b"{", T0, T0, 1)], at=T0)
    store.add_quarantine([QuarantineRecord("t/new", "malformed_json", "bad", b"{", T0 + DAY, T0 + DAY, 1)])
    # Not pruned by the wall clock (25 years later), nor without the hub's time.
    assert {r.topic for r in store.quarantine()} == {"t/old", "t/new"}
    later = T0 + QUARANTINE_MAX_AGE_S + DAY / 2
    assert store.add_quarantine([], at=later) == 1
    assert [r.topic for r in store.quarantine()] == ["t/new"]


def test_the_reported_flood_stays_bounded(tmp_path: Path) -> None:
    """The report's shape, at a fifth of its size: every row past the cap is pruned and counted."""
    store = Store(path=tmp_path / "linli.sqlite3")
    clock = ManualClock(start=T0)
    quarantine = Quarantine(store=store, clock=clock)
    messages = QUARANTINE_MAX_ROWS * 2
    for n in range(messages):
        quarantine.add(
            topic=garbage_topic(n),
            reason="malformed_json",
            detail="not JSON",
            payload=b"\x00" * 4_000,
            at=clock.now(),
        )
        if n % 2_000 == 1_999:
            quarantine.flush()
            clock.advance(1.0)
    assert quarantine.counts["malformed_json"] == messages  # every message counted, still
    assert rows(store) == QUARANTINE_MAX_ROWS
    assert quarantine.pruned == messages - QUARANTINE_MAX_ROWS
    longest = store.execute("SELECT max(length(topic)) FROM quarantine").fetchone()[0]
    assert longest == QUARANTINE_TOPIC_CHARS
    store.execute("VACUUM")
    store.close()
    # ≈ 600 bytes a row; the whole topics alone were 40 MB for these 20 000 messages.
    assert (tmp_path / "linli.sqlite3").stat().st_size < 16 * 2**20


def test_keys_between_flushes_hold_cut_topics() -> None:
    """Memory between flushes is bounded too: 10 000 keys of 65 000 characters were 650 MB."""

    class NoStore:
        def add_quarantine(self, records: list[QuarantineRecord], *, at: float | None = None) -> int:
            raise AssertionError("not flushed here")

    quarantine = Quarantine(store=NoStore())  # type: ignore[arg-type]
    quarantine.add(topic=garbage_topic(1, 65_012), reason="malformed_json", detail="bad", payload=b"{", at=T0)
    # The memory held between flushes is the point: read the pending keys themselves.
    ((topic, _reason),) = quarantine._pending
    assert len(topic) == QUARANTINE_TOPIC_CHARS
    assert quarantine._pending[topic, "malformed_json"].detail.endswith("[topic of 65012 characters, cut]")
