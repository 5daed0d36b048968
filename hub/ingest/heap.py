"""The collector's policy for a long-running hub: what start-up built is frozen, young sweeps rarer.

Why: ``Pipeline.handle`` allocates a few short-lived objects per event (events, points,
contexts) and keeps some (the recent-events ring, rule slots of new devices). With CPython's
default gen-0 threshold (700 allocations) that is a young collection every few messages,
and each one also walks whatever survived since. Frozen, the registry, rules and restored
state (10⁵ objects at scale) are never traversed again; a gen-0 threshold of 10 000 made
``Pipeline.handle`` ≈ 10–15 % cheaper in ``bench.stages`` (docs/benchmarks.md) at the cost of
at most that many unreachable young objects waiting a little longer.
"""

from __future__ import annotations

import gc

#: Allocations (minus frees) between young collections (CPython's default: 700).
GEN0_THRESHOLD = 10_000


def settle_heap() -> None:
    """Call once start-up has built its long-lived objects (registry, rules, restored state)."""
    _, gen1, gen2 = gc.get_threshold()
    gc.set_threshold(GEN0_THRESHOLD, gen1, gen2)
    gc.freeze()
