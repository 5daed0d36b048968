"""Freed heap memory goes back to the system: glibc's ``malloc_trim`` for real, and the hub's loop."""

from __future__ import annotations

import asyncio
import ctypes
import logging
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from hub import app
from hub.app import Hub
from hub.clock import ManualClock
from hub.ingest import heap
from hub.ingest.heap import FreeMemory, _resident_bytes
from tests.helpers import api_stats, eventually, hub_settings
from tests.support.servers import Broker

MB = 1 << 20


def test_memory_freed_below_live_blocks_goes_back_to_the_system() -> None:
    free = FreeMemory()
    assert free.available  # Debian's glibc, the platform the hub ships for: not a skip
    # Hand back what earlier tests of this process left free first, so the blocks below are
    # made resident by this test (a page handed back is faulted in again when written).
    free.release()
    start = _resident_bytes()
    # 64 MB in 4 KB blocks: over pymalloc's 512 bytes, so from glibc's heap. Every 32nd is kept,
    # so the rest is freed *below* blocks still in use, where free() cannot give it back.
    blocks = [bytearray(4000) for _ in range(16_000)]
    kept = blocks[::32]
    del blocks
    freed_but_resident = _resident_bytes()
    assert freed_but_resident - start > 40 * MB  # the precondition: free() kept it
    released = free.release()
    assert released > 32 * MB, released / MB
    assert _resident_bytes() < freed_but_resident - 32 * MB
    assert free.runs == 2 and free.released_bytes >= released
    assert free.longest_s > 0
    assert all(len(block) == 4000 and not any(block[:64]) for block in kept)  # live blocks untouched


def test_without_malloc_trim_it_does_nothing_and_says_so(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    def no_dlopen(name: object) -> object:
        raise OSError("no C library here")

    monkeypatch.setattr(ctypes, "CDLL", no_dlopen)
    free = FreeMemory()
    assert not free.available
    assert free.release() == 0 and free.runs == 0
    never = asyncio.Event()  # the loop must not wait for it: there is nothing to do
    with caplog.at_level(logging.INFO, logger=heap.__name__):
        asyncio.run(asyncio.wait_for(free.run(settled=never), 1))
    assert "no malloc_trim" in caplog.text


async def test_the_loop_waits_for_settled_then_hands_back_every_interval() -> None:
    calls: list[int] = []

    def trim(pad: int) -> int:
        calls.append(pad)
        return 1

    free = FreeMemory(trim=trim, interval_s=0.0)
    settled = asyncio.Event()
    task = asyncio.create_task(free.run(settled=settled), name="test-heap-trim")
    for _ in range(20):
        await asyncio.sleep(0)
    assert calls == []  # start-up's temporaries and the backlog first
    settled.set()
    await eventually(lambda: len(calls) >= 3, what="three hand-backs")
    assert set(calls) == {0}  # pad 0: keep nothing spare at the top (man 3 malloc_trim)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    # A cancelled to_thread does not stop its thread: a hand-back in flight finishes after the
    # cancel (its trim called, its run not yet counted); every trim is then counted as a run.
    await eventually(lambda: free.runs == len(calls), what="the last hand-back counted")


async def test_the_hub_hands_back_once_caught_up_and_reports_it(
    tmp_path: Path, mosquitto_broker: Broker
) -> None:
    settings = hub_settings(tmp_path, mosquitto_broker)
    async with Hub(settings=settings, clock=ManualClock(start=1_795_371_180.0)) as hub:
        assert hub.http_port is not None
        port = hub.http_port
        names = {task.get_name() for task in asyncio.all_tasks()}
        assert "linli-heap-trim" in names
        assert hub.free_memory.runs == 1  # what building it freed, before connecting to the broker
        await asyncio.wait_for(hub.caught_up.wait(), 30)
        stats = await eventually(
            lambda: asyncio.to_thread(lambda: (s := api_stats(port))["heap_trim"]["runs"] >= 2 and s),
            within=20,
            what="a hand-back after caught up",
        )
        assert stats["heap_trim"]["available"] is True
        assert stats["heap_trim"]["released_mb"] >= 0 and stats["heap_trim"]["longest_ms"] > 0
    assert "linli-heap-trim" not in {task.get_name() for task in asyncio.all_tasks()}


_PROBE = """
import ctypes, sys
from hub.ingest.heap import fix_mmap_threshold

class MallInfo2(ctypes.Structure):
    _fields_ = [(name, ctypes.c_size_t) for name in (
        "arena", "ordblks", "smblks", "hblks", "hblkhd", "usmblks", "fsmblks", "uordblks",
        "fordblks", "keepcost")]

libc = ctypes.CDLL(None)
libc.mallinfo2.restype = MallInfo2
fixed = fix_mmap_threshold() if sys.argv[1] == "fix" else None
big = bytearray(8 << 20)  # a large block, mapped, then freed: glibc raises its threshold to it
del big
before = libc.mallinfo2().hblks
blocks = [bytearray(256 << 10) for _ in range(4)]
print(fixed, libc.mallinfo2().hblks - before)
"""


@pytest.mark.parametrize(("how", "expected"), [("leave", "None 0"), ("fix", "True 4")])
def test_large_blocks_keep_their_own_pages_after_a_larger_one_was_freed(how: str, expected: str) -> None:
    # glibc's dynamic threshold (man 3 mallopt) put 256 KiB blocks in the main heap once an
    # 8 MiB one had been freed; with the threshold fixed they are mapped, and handed back whole.
    env = {k: v for k, v in os.environ.items() if not k.startswith("MALLOC_")}
    out = subprocess.run(
        [sys.executable, "-c", _PROBE, how], env=env, capture_output=True, text=True, check=True
    )
    assert out.stdout.strip() == expected


@pytest.mark.parametrize(
    ("name", "value"),
    [("MALLOC_MMAP_THRESHOLD_", "65536"), ("GLIBC_TUNABLES", "glibc.malloc.mmap_threshold=65536")],
)
def test_an_operator_s_mmap_threshold_wins(monkeypatch: pytest.MonkeyPatch, name: str, value: str) -> None:
    monkeypatch.delenv("MALLOC_MMAP_THRESHOLD_", raising=False)
    monkeypatch.setenv(name, value)
    assert heap.fix_mmap_threshold() is False


def test_building_the_hub_fixes_the_threshold_before_its_registry_is_read(
    tmp_path: Path, mosquitto_broker: Broker, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls: list[str] = []
    read = app.registry_from_store

    def reading(*args: Any, **kwargs: Any) -> Any:
        calls.append("registry")
        return read(*args, **kwargs)

    def fixing() -> bool:
        calls.append("threshold")
        return True

    monkeypatch.setattr(app, "fix_mmap_threshold", fixing)
    monkeypatch.setattr(app, "registry_from_store", reading)
    hub = Hub(settings=hub_settings(tmp_path, mosquitto_broker), clock=ManualClock(start=1_795_371_180.0))
    hub.close()
    assert calls == ["threshold", "registry"]
