"""The heap's policy for a long-running hub: what start-up built is frozen, young sweeps rarer,
and freed memory handed back to the system.

Why the collector settings: ``Pipeline.handle`` allocates a few short-lived objects per event
(events, points, contexts) and keeps some (the recent-events ring, rule slots of new devices).
With CPython's default gen-0 threshold (700 allocations) that is a young collection every few
messages, and each one also walks whatever survived since. Frozen, the registry, rules and
restored state (10⁵ objects at scale) are never traversed again; a gen-0 threshold of 10 000
made ``Pipeline.handle`` ≈ 10–15 % cheaper in ``bench.stages`` (docs/benchmarks.md) at the
cost of at most that many unreachable young objects waiting a little longer.

Why :class:`FreeMemory`: see its docstring. Must not import anything of Linli's.
"""

from __future__ import annotations

import asyncio
import ctypes
import gc
import logging
import os
import time
from collections.abc import Callable

log = logging.getLogger(__name__)

#: Allocations (minus frees) between young collections (CPython's default: 700).
GEN0_THRESHOLD = 10_000

#: Seconds between hand-backs of free heap memory. The longest took 6–18 ms of a worker thread
#: at 100 000 devices (docs/benchmarks.md, "Sixteenth pass"), so this is ≪ 0.1 % of a core.
TRIM_INTERVAL_S = 30.0


#: Blocks of at least this many bytes get pages of their own (glibc's ``M_MMAP_THRESHOLD``,
#: whose own starting value this is).
MMAP_THRESHOLD = 128 * 1024
_M_MMAP_THRESHOLD = -3  # <malloc.h>


def fix_mmap_threshold(threshold: int = MMAP_THRESHOLD) -> bool:
    """Keep glibc from raising its mmap threshold as large blocks are freed; call before the
    registry is read. Returns whether it was set (not on another libc, nor when the operator set
    ``MALLOC_MMAP_THRESHOLD_`` or ``glibc.malloc.mmap_threshold`` in ``GLIBC_TUNABLES``:
    theirs wins).

    glibc raises the threshold to the size of each mapped block that is freed, up to 32 MiB on
    64 bits ("dynamic mmap threshold", man 3 mallopt). After the start's large transient blocks
    (the registry's start-up copy, 14 MB at 100 000 devices; the stored rule state's rows) every
    large block came from the main heap instead: the device tables' dicts as they grow, the
    writers' batches. Freed, those left holes between live blocks that ``malloc_trim`` cannot
    hand back whole. Setting the threshold turns the adjustment off: with every device reported
    once, 367–373 MB against 393–404 MB at 101 300 devices, ingest within its noise
    (docs/benchmarks.md, "Thirty-fifth pass").
    """
    if "MALLOC_MMAP_THRESHOLD_" in os.environ or "glibc.malloc.mmap_threshold" in os.environ.get(
        "GLIBC_TUNABLES", ""
    ):
        return False
    try:
        mallopt = ctypes.CDLL(None).mallopt
    except (OSError, TypeError, AttributeError):  # no dlopen (Windows), no mallopt (macOS)
        return False
    mallopt.argtypes = [ctypes.c_int, ctypes.c_int]
    mallopt.restype = ctypes.c_int
    return bool(mallopt(_M_MMAP_THRESHOLD, threshold))


def settle_heap() -> None:
    """Call once start-up has built its long-lived objects (registry, rules, restored state)."""
    _, gen1, gen2 = gc.get_threshold()
    gc.set_threshold(GEN0_THRESHOLD, gen1, gen2)
    gc.freeze()


def _glibc_malloc_trim() -> Callable[[int], int] | None:
    """glibc's ``malloc_trim`` from the running process's own symbols; ``None`` elsewhere."""
    try:
        trim = ctypes.CDLL(None).malloc_trim  # dlopen(NULL): libc is already loaded
    except (OSError, TypeError, AttributeError):  # no dlopen (Windows), no malloc_trim (musl, macOS)
        return None
    trim.argtypes = [ctypes.c_size_t]
    trim.restype = ctypes.c_int
    return trim


def _resident_bytes() -> int:
    """This process's resident set (``/proc/self/statm``, field 2, in pages); 0 without /proc."""
    try:
        with open("/proc/self/statm", "rb") as statm:
            return int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError, IndexError):
        return 0


class FreeMemory:
    """Memory the hub has freed, handed back to the system (glibc's ``malloc_trim(0)``).

    Why: CPython takes every object over 512 bytes (dict tables, lists, long strings, receive
    buffers) from the C allocator. glibc gives freed memory back on ``free`` only from the top
    of its heap (``M_TRIM_THRESHOLD``); what is freed below a block still in use stays resident
    for the life of the process. A start-up's temporaries (the community file parsed, the
    registry's rows, the rule state read) and a burst of reports (a broker's backlog after an
    outage, every device reporting after a power cut) leave tens of MB so, counted in RSS as if
    used: at 100 000 devices, 468–470 → 424–426 MB at a cold start (docs/benchmarks.md,
    "Sixteenth pass"). ``malloc_trim(0)`` also releases the whole free pages inside the heap
    (``madvise(MADV_DONTNEED)``, since glibc 2.8: man 3 malloc_trim); blocks in use are not
    moved, so nothing a caller holds changes.

    Where there is no ``malloc_trim`` (musl, macOS) this does nothing and says so once.
    ``trim`` is for tests: the call to make instead of glibc's.
    """

    def __init__(
        self, *, trim: Callable[[int], int] | None = None, interval_s: float = TRIM_INTERVAL_S
    ) -> None:
        self._trim = trim if trim is not None else _glibc_malloc_trim()
        self._interval_s = interval_s
        #: Hand-backs made, and the resident bytes they gave back (RSS before minus after, so
        #: approximate: other threads allocate meanwhile), for ``/api/stats``.
        self.runs = 0
        self.released_bytes = 0
        #: The longest hand-back so far, in seconds: while glibc trims the main heap it holds
        #: that heap's lock, so the event loop's larger allocations wait for it.
        self.longest_s = 0.0

    @property
    def available(self) -> bool:
        return self._trim is not None

    def release(self) -> int:
        """Hand back what is free now; the resident bytes that gave back (0 if none or unavailable)."""
        if self._trim is None:
            return 0
        before = _resident_bytes()
        began = time.perf_counter()  # a duration for /api/stats, not a time of day
        self._trim(0)
        self.longest_s = max(self.longest_s, time.perf_counter() - began)
        released = max(0, before - _resident_bytes())
        self.runs += 1
        self.released_bytes += released
        return released

    async def run(self, *, settled: asyncio.Event) -> None:
        """Once ``settled`` is set (the backlog worked off after a start), then every interval.

        In a worker thread: ``malloc_trim`` walks the heap's free blocks with the GIL released
        (ctypes does), so the event loop goes on handling messages meanwhile, but for its
        allocations from the main heap, which wait while glibc trims it (:attr:`longest_s`).
        The largest hand-back of a run, what building the hub freed, is made by the hub before
        it connects to the broker (:meth:`release` from ``Hub.start``), where nothing waits.
        """
        if self._trim is None:
            log.info("no malloc_trim in this C library: freed heap memory stays with the process")
            return
        await settled.wait()
        while True:
            released = await asyncio.to_thread(self.release)
            if released >= 1 << 20:
                log.debug("handed %.1f MB of freed heap memory back to the system", released / (1 << 20))
            await asyncio.sleep(self._interval_s)
