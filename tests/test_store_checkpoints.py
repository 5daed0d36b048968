"""WAL checkpoints off the event loop (issue 14, tenth pass; hub/storage/checkpoints.py).

A commit on the hub's connection must never checkpoint while the worker does it; the worker's
rounds must copy the log into the database; a failing or stopped worker must give the commits
their automatic checkpoints back, so the log cannot grow without bound. Real SQLite files,
observed through the files' sizes (the database file grows only by a checkpoint).
"""

from __future__ import annotations

import asyncio
import itertools
import sqlite3
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from hub.app import Hub
from hub.clock import ManualClock
from hub.storage import checkpoints
from hub.storage.store import Store
from tests.helpers import api_stats, eventually, hub_settings
from tests.support.servers import Broker

CHUNK = b"x" * 100_000  # ≈ 25 pages of log per commit: ≈ 40 commits make SQLite's 1 000 pages


@pytest.fixture
def store(tmp_path: Path) -> Iterator[Store]:
    opened = Store(path=tmp_path / "linli.sqlite3")
    with opened.transaction() as tx:
        tx.execute("CREATE TABLE filler (body BLOB)")
    try:
        yield opened
    finally:
        opened.close()


def write(store: Store, commits: int) -> None:
    for _ in range(commits):
        with store.transaction() as tx:
            tx.execute("INSERT INTO filler (body) VALUES (?)", (CHUNK,))


def sizes(store: Store) -> tuple[int, int]:
    """(database file, log file) in bytes."""
    assert store.path is not None
    wal = store.path.with_name(store.path.name + "-wal")
    return store.path.stat().st_size, wal.stat().st_size if wal.exists() else 0


async def test_commits_leave_checkpoints_to_the_worker_which_copies_the_log(store: Store) -> None:
    worker = store.checkpointer(every_s=3600.0)
    assert worker is not None
    task = asyncio.create_task(worker.run())
    try:
        await eventually(lambda: worker.handed_over)
        db_before, _ = sizes(store)
        write(store, 120)  # ≈ 12 MB: three times SQLite's automatic threshold
        db_after, wal = sizes(store)
        assert db_after == db_before  # no commit checkpointed
        assert wal > 10_000_000
        rounds = worker.rounds
        await worker._round()  # what the next tick does
        assert worker.rounds == rounds + 1
        db_checkpointed, _ = sizes(store)
        assert db_checkpointed >= db_before + 11_000_000
    finally:
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
    assert not worker.handed_over
    # Stopped: the commits checkpoint by themselves again (the database file grows with them).
    db_stopped, _ = sizes(store)
    write(store, 80)
    db_auto, wal_auto = sizes(store)
    assert db_auto > db_stopped
    assert wal_auto <= wal  # the log restarts from its beginning, never grows past its size


async def test_another_connection_checkpointing_is_neither_a_failure_nor_a_hand_over(
    store: Store,
) -> None:
    """SQLite answers a PASSIVE checkpoint with (1, -1, -1) while another connection holds the
    checkpoint (the registry's copy-making child, an operator's shell). It was read as "not in
    WAL mode": a failure, a warning and the commits paying for checkpoints again."""
    assert store.path is not None
    write(store, 2)
    reader = sqlite3.connect(store.path, isolation_level=None)
    reader.execute("BEGIN")
    reader.execute("SELECT count(*) FROM filler").fetchall()  # an older snapshot, held
    write(store, 2)
    released = threading.Event()

    def restart_checkpoint() -> None:
        # RESTART waits for the reader (busy handler, up to the timeout) while it holds the
        # checkpoint. A round of the worker's that got there first makes it busy at once: again.
        other = sqlite3.connect(store.path, timeout=10.0, isolation_level=None)
        try:
            while True:
                (row,) = other.execute("PRAGMA wal_checkpoint(RESTART)").fetchall()
                if row[0] == 0 or released.is_set():
                    return
                time.sleep(0.01)
        finally:
            other.close()

    other = threading.Thread(target=restart_checkpoint)
    other.start()
    worker = store.checkpointer(every_s=0.01)
    assert worker is not None
    task: asyncio.Task[None] | None = None

    def release() -> None:
        released.set()
        if reader.in_transaction:
            reader.execute("COMMIT")

    try:
        await eventually(lambda: worker._checkpoint() is None, what="the other checkpoint holding the lock")
        assert await worker._round() is False
        assert (worker.busy, worker.failures) == (1, 0)
        task = asyncio.create_task(worker.run())
        await eventually(lambda: worker.busy >= 3)
        assert worker.failures == 0
        assert not worker.handed_over  # no round of ours has succeeded yet
        release()
        await eventually(lambda: worker.handed_over)  # the next round of ours checkpoints
        assert worker.failures == 0
    finally:
        release()
        reader.close()
        await asyncio.to_thread(other.join, 15)
        if task is not None:
            task.cancel()
            with pytest.raises(asyncio.CancelledError):
                await task


async def test_the_log_stays_bounded_while_commits_land_during_every_round(store: Store) -> None:
    """SQLite starts the log over only when a write finds every frame copied; a round that
    commits race past never finishes the log, so the worker hands a long log back to the
    commits (whose own checkpoint then ends it) instead of letting it grow."""
    worker = store.checkpointer(every_s=0.01)
    assert worker is not None
    task = asyncio.create_task(worker.run())
    try:
        await eventually(lambda: worker.handed_over)
        peak, frames = 0, [0]
        for n in range(1200):  # ≈ 120 MB of log, commits landing while rounds run in their thread
            write(store, 1)
            peak = max(peak, sizes(store)[1])
            if worker.log_frames != frames[-1]:
                frames.append(worker.log_frames)
            if n % 3 == 0:
                # Paced, so the rounds keep turning on a loaded machine (CI peaked at 85 MB when
                # a round there took as long as 40 unpaced commits); without the hand-back the log
                # still holds every commit.
                await asyncio.sleep(0.002)
        # The log started over (frames at a round fell), and its file never held all that was
        # written: without the hand-back it grows with every commit (≈ 120 MB here).
        assert any(b < a for a, b in itertools.pairwise(frames)), frames
        assert peak < 80_000_000, f"the log grew to {peak / 1e6:.0f} MB"
    finally:
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task


async def test_a_failing_worker_gives_the_commits_their_checkpoints_back(
    store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(checkpoints, "RETRY_FIRST_S", 0.01)
    worker = store.checkpointer(every_s=0.01)
    assert worker is not None
    task = asyncio.create_task(worker.run())
    healthy = worker._checkpoint
    failing = True

    def broken() -> int:
        if failing:
            raise sqlite3.OperationalError("disk I/O error")
        return healthy()

    try:
        await eventually(lambda: worker.handed_over)
        monkeypatch.setattr(worker, "_checkpoint", broken)
        await eventually(lambda: worker.failures >= 1 and not worker.handed_over)
        db_before, _ = sizes(store)
        write(store, 80)  # while the worker fails, commits checkpoint: the log stays bounded
        db_after, wal = sizes(store)
        assert db_after > db_before
        assert wal < 6_000_000
        failing = False
        await eventually(lambda: worker.handed_over)  # a round succeeded: handed over again
    finally:
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task


async def test_the_hub_checkpoints_in_its_named_task_and_stops_it(
    tmp_path: Path, mosquitto_broker: Broker
) -> None:
    hub = Hub(settings=hub_settings(tmp_path, mosquitto_broker), clock=ManualClock(start=1_795_371_180.0))
    await hub.start()
    try:
        names = {t.get_name() for t in asyncio.all_tasks()}
        assert "linli-store-checkpoints" in names
        await eventually(lambda: hub.stats()["store_checkpoints"]["handed_over"])
        # What an operator sees: the worker's rounds over the API.
        stats = await asyncio.to_thread(api_stats, hub.http_port)
        assert stats["store_checkpoints"]["handed_over"] is True
        assert stats["store_checkpoints"]["rounds"] >= 1
    finally:
        await hub.stop()
    assert "linli-store-checkpoints" not in {t.get_name() for t in asyncio.all_tasks() if not t.done()}
