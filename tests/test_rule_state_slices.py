"""The routine rule-state flush writes in slices with the event loop's turn in between.

Written in one piece, thousands of slots held the loop for 200-500 ms every 5 s: the largest
stall an SOS press waited behind (docs/benchmarks.md). Slicing must not lose or corrupt state:
a slot changed between slices goes out with its newest value, keys left when the flush is
cancelled go out with the final flush, and a device handed to another node meanwhile keeps
the rows its new owner loads.
"""

from __future__ import annotations

import asyncio
import threading
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from hub.clock import ManualClock
from hub.community.model import CommunityFile
from hub.community.registry import Registry
from hub.ingest import rule_runtime
from hub.ingest.rule_runtime import RuleRuntime
from hub.storage.rule_state import RuleStateStore
from hub.storage.rule_state_file import RuleStateFile, path_beside
from hub.storage.store import Store
from tests.cluster_support import registry

T0 = 1_795_371_180.0


def _runtime(state_store: RuleStateStore) -> RuleRuntime:
    return RuleRuntime(
        rule_paths=[],
        rules=None,
        overrides={},
        zone="Asia/Shanghai",
        registry=Registry(communities=CommunityFile.model_validate(registry()).communities),
        state_store=state_store,
        clock=ManualClock(start=T0),
    )


@pytest.fixture
def parts(tmp_path: Path) -> tuple[Store, RuleStateStore, RuleRuntime]:
    store = Store(path=tmp_path / "linli.sqlite3")
    state_store = RuleStateStore(store=store)
    return store, state_store, _runtime(state_store)


def _stored_and_marked_again(runtime: RuleRuntime) -> list[tuple[str, str]]:
    """Every slot stored once, then all of them changed again: the keys."""
    keys = list(_slots(runtime))
    runtime.flush(include_routine=True)
    runtime._state.mark_dirty(keys)
    return keys


def _slots(runtime: RuleRuntime) -> dict[tuple[str, str], object]:
    snapshot = runtime._state.snapshot()
    return {(row["rule"], row["subject"]): row["state"] for row in snapshot["slots"]}


async def test_the_loop_gets_turns_between_slices_and_every_slot_is_written(
    parts: tuple[Store, RuleStateStore, RuleRuntime],
) -> None:
    store, state_store, runtime = parts
    slots = _slots(runtime)
    assert len(slots) >= 6, "the district arms absence deadlines for its devices"
    turns = 0

    async def ticker() -> None:
        nonlocal turns
        while True:
            turns += 1
            await asyncio.sleep(0)

    tick = asyncio.create_task(ticker())
    await asyncio.sleep(0)
    before = turns
    written = await runtime.flush_in_slices(slice_size=2)
    tick.cancel()
    assert written == len(slots)
    assert turns - before >= len(slots) // 2 - 1  # one turn per slice boundary at least
    assert state_store.count() == len(slots)
    store.close()


async def test_a_slot_changed_between_slices_is_written_with_its_newest_value(
    parts: tuple[Store, RuleStateStore, RuleRuntime],
) -> None:
    store, state_store, runtime = parts
    keys = list(_slots(runtime))
    state = runtime._state
    flush = asyncio.create_task(runtime.flush_in_slices(slice_size=1))
    await asyncio.sleep(0)  # the first slice is written, the rest waits for its turn
    assert not flush.done()
    # A slot the flush has not reached yet: which one comes first follows the dirty set's
    # order, i.e. string hashes, which differ per process (PYTHONHASHSEED=28 took keys[-1]).
    # One it has already written is marked dirty again by the put and goes out with the next flush.
    written = {(r, s) for r, s, _ in state_store.load_subjects(sorted({k[1] for k in keys}))}
    assert len(written) == 1
    last = next(key for key in reversed(keys) if key not in written)
    slot = state.get(last)
    assert slot is not None
    state.put(last, replace(slot, raised=not slot.raised, since=T0 + 60.0), durable=True)
    await flush
    stored = {(r, s): doc for r, s, doc in state_store.load_subjects([last[1]])}
    assert stored[last] == state.snapshot([last])["slots"][0]["state"]
    store.close()


async def test_keys_left_by_a_cancelled_flush_go_out_with_the_final_flush(
    parts: tuple[Store, RuleStateStore, RuleRuntime],
) -> None:
    store, state_store, runtime = parts
    slots = _slots(runtime)
    flush = asyncio.create_task(runtime.flush_in_slices(slice_size=1))
    await asyncio.sleep(0)
    await asyncio.sleep(0)
    flush.cancel()
    with pytest.raises(asyncio.CancelledError):
        await flush
    assert 0 < state_store.count() < len(slots)
    runtime.close()
    assert state_store.count() == len(slots)
    store.close()


async def test_a_device_forgotten_during_the_flush_keeps_its_stored_rows(
    parts: tuple[Store, RuleStateStore, RuleRuntime],
) -> None:
    store, state_store, runtime = parts
    keys = _stored_and_marked_again(runtime)
    device = keys[-1][1]
    rows_before = state_store.load_subjects([device])
    assert rows_before
    flush = asyncio.create_task(runtime.flush_in_slices(slice_size=1))
    await asyncio.sleep(0)
    runtime.forget([device])  # handed over: this node holds no slot for it now
    await flush
    assert state_store.load_subjects([device]) == rows_before
    store.close()


async def test_the_routine_flush_waits_for_the_writer_instead_of_queueing_every_row(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A burst marks a slot per device and rule; their rows' text must not all wait in memory
    # for the file's writer at once. The marks wait instead, and nothing is lost.
    monkeypatch.setattr(rule_runtime, "ROUTINE_BACKLOG_ROWS", 3)
    monkeypatch.setattr(rule_runtime, "ROUTINE_BACKLOG_POLL_S", 0.001)
    store = Store(path=tmp_path / "linli.sqlite3")
    file = RuleStateFile(path=path_beside(tmp_path / "linli.sqlite3"))
    state_store = RuleStateStore(store=store, file=file)
    runtime = _runtime(state_store)
    slots = _slots(runtime)
    marked = runtime._state.dirty_count()
    assert marked >= 6
    # A slow disk: the writer holds what it took until the gate opens.
    gate = threading.Event()
    write = file._write

    def slow(*args: Any) -> None:
        gate.wait(10)
        write(*args)

    monkeypatch.setattr(file, "_write", slow)
    flush = asyncio.create_task(runtime.flush_in_slices(slice_size=1))
    for _ in range(50):
        await asyncio.sleep(0.001)
    assert not flush.done()
    assert file.backlog == 3, "handed over up to the limit, then waited"
    assert 0 < runtime._state.dirty_count() < marked, "the rest are still marked"
    gate.set()
    written = await asyncio.wait_for(flush, 10)
    assert written == len(slots)
    assert file.wait(10) and file.stored() == len(slots)
    assert runtime._state.dirty_count() == 0
    file.close()
    store.close()


async def test_a_device_forgotten_and_taken_back_during_the_flush_has_its_new_state_written(
    parts: tuple[Store, RuleStateStore, RuleRuntime],
) -> None:
    # Its community lost and regained within one round (a lease that moved and came back): what
    # changed for it after that is this node's again and must reach the store.
    store, state_store, runtime = parts
    key = _stored_and_marked_again(runtime)[-1]
    slot = runtime._state.get(key)
    assert slot is not None
    flush = asyncio.create_task(runtime.flush_in_slices(slice_size=1))
    await asyncio.sleep(0)
    runtime.forget([key[1]])
    runtime._state.put(key, replace(slot, raised=True, since=T0 + 5.0), durable=True)  # ours again
    await flush
    stored = {(r, s): doc for r, s, doc in state_store.load_subjects([key[1]])}
    assert stored[key] == runtime._state.snapshot([key])["slots"][0]["state"]
    store.close()
