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

    async def run(self) -> None:
        """The heartbeat (run as a named task in the hub's loop); starts the sampling thread."""
        self._loop_thread = threading.get_ident()
        self._last = time.monotonic()
        self._thread = threading.Thread(target=self._sample, name="bench-stall-sampler", daemon=True)
        self._thread.start()
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

    def report(self, *, top: int = 8) -> dict[str, Any]:
        """Lag percentiles (ms) since the last report, and the stall stacks seen most often."""
        lags = sorted(self.lags)
        self.lags = []
        gaps, self.gaps = self.gaps, []

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
