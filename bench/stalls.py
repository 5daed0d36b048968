"""Where the hub's event loop stalls: a heartbeat task plus a sampling thread (bench only).

Why: an SOS press waits whenever the one event loop is busy with something else. A task
stamps a heartbeat every ``beat_s``; a thread looks every ``sample_s`` and, when the
heartbeat is older than ``stall_s``, takes the loop thread's Python stack (innermost hub,
rules, adapters or gmqtt frames) and counts it. The result: the loop's lag percentiles and
the stacks the loop was stuck in most often — a poor man's py-spy that needs nothing
installed. Bench-only: the hub itself never runs it.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import sys
import threading
import time
import traceback
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

#: Frames from these packages name a stall; the innermost few are kept.
OURS = ("/hub/", "/rules/", "/adapters/", "/gmqtt/", "/asyncio/", "sqlite3", "/bench/")


@dataclass(slots=True)
class StallWatch:
    beat_s: float = 0.002
    sample_s: float = 0.01
    stall_s: float = 0.02
    lags: list[float] = field(default_factory=list)
    #: (start, end) monotonic of each gap between heartbeats longer than ``stall_s``.
    gaps: list[tuple[float, float]] = field(default_factory=list)
    stacks: Counter[str] = field(default_factory=Counter)
    samples: int = 0
    _last: float = 0.0
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None
    _loop_thread: int = 0
    #: (start, end, generation) of each cyclic-collector pass in the hub's process.
    collections: list[tuple[float, float, int]] = field(default_factory=list)
    _gc_start: float = 0.0
    _started: float = 0.0

    async def run(self) -> None:
        """The heartbeat (run as a named task in the hub's loop); starts the sampling thread."""
        self._loop_thread = threading.get_ident()
        self._last = self._started = time.monotonic()
        self._thread = threading.Thread(target=self._sample, name="bench-stall-sampler", daemon=True)
        self._thread.start()
        gc.callbacks.append(self._on_gc)
        try:
            while True:
                before = time.monotonic()
                await asyncio.sleep(self.beat_s)
                now = time.monotonic()
                self.lags.append(now - before - self.beat_s)
                if now - before > self.stall_s and len(self.gaps) < 100_000:
                    self.gaps.append((before, now))
                self._last = now
        finally:
            gc.callbacks.remove(self._on_gc)
            self._stop.set()
            if self._thread is not None:
                self._thread.join(1)

    def _sample(self) -> None:
        while not self._stop.wait(self.sample_s):
            if time.monotonic() - self._last < self.stall_s:
                continue
            frame = sys._current_frames().get(self._loop_thread)
            if frame is None:
                continue
            picked = [
                f"{f.filename.rsplit('/', 2)[-2]}/{f.filename.rsplit('/', 1)[-1]}:{f.name}"
                for f in traceback.extract_stack(frame)
                if any(mark in f.filename for mark in OURS)
            ]
            self.samples += 1
            # Innermost frames say what; the outermost ones say which task or callback it is.
            # after asyncio's ``Handle._run``: the callback or task step the loop is in.
            runs = [i for i, name in enumerate(picked) if name.endswith("events.py:_run")]
            outer = picked[runs[0] + 1 : runs[0] + 4] if runs else picked[:3]
            self.stacks[" < ".join(reversed(picked[-4:])) + " ... in " + " > ".join(outer)] += 1

    def _on_gc(self, phase: str, info: dict[str, int]) -> None:
        # A collection pauses every thread (it holds the GIL throughout), so its length is a
        # loop stall the sampler cannot attribute: the stack it sees is wherever the
        # allocation that crossed the threshold happened.
        now = time.monotonic()
        if phase == "start":
            self._gc_start = now
        elif len(self.collections) < 100_000:
            self.collections.append((self._gc_start, now, info["generation"]))

    def report(self, *, top: int = 8) -> dict[str, Any]:
        """Lag percentiles (ms) since the last report, the stall stacks seen most often, and the
        cyclic collector's passes (count, longest, total ms per generation; stalls they overlap)."""
        lags = sorted(self.lags)
        self.lags = []
        gaps, self.gaps = self.gaps, []
        collections, self.collections = self.collections, []
        #: Per generation (``gen0``…): passes, longest and total ms; ``longest``: the five longest.
        by_gen: dict[str, Any] = {}
        for gen in (0, 1, 2):
            ms = [1000.0 * (b - a) for a, b, g in collections if g == gen]
            if ms:
                by_gen[f"gen{gen}"] = {
                    "n": len(ms),
                    "max_ms": round(max(ms), 2),
                    "total_ms": round(sum(ms), 1),
                }
        longest = sorted(collections, key=lambda c: c[0] - c[1])[:5]
        if longest:
            by_gen["longest"] = [
                {"gen": g, "ms": round(1000.0 * (b - a), 2), "at_s": round(a - self._started, 2)}
                for a, b, g in longest
            ]
        in_gc = sum(1 for a, b in gaps if any(s < b and e > a for s, e, _ in collections))

        def pct(q: float) -> float:
            if not lags:
                return 0.0
            return round(1000.0 * lags[min(len(lags) - 1, int(q / 100.0 * len(lags)))], 2)

        doc = {
            "lag_p50_ms": pct(50),
            "lag_p99_ms": pct(99),
            "lag_max_ms": round(1000.0 * lags[-1], 2) if lags else 0.0,
            "stalled_samples": self.samples,
            "stall_stacks": dict(self.stacks.most_common(top)),
            "collector": by_gen,
            "stalls_overlapping_a_collection": f"{in_gc}/{len(gaps)}",
            "gaps": gaps,
        }
        self.stacks.clear()
        self.samples = 0
        return doc


def blocked(gaps: list[tuple[float, float]], start: float, end: float) -> float:
    """Seconds of ``[start, end]`` during which the loop was in a gap (stalled)."""
    return sum(max(0.0, min(end, b) - max(start, a)) for a, b in gaps)


async def stop(task: asyncio.Task[None]) -> None:
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task
