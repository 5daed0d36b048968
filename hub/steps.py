"""Work in steps: a generator that yields between pieces, so a caller on the event loop lets other work in.

A periodic job that walks every open case or every device (the dashboards' gauges) costs time
that grows with the community; run in one go on the event loop, it is a stall that an SOS
press arriving then waits out (docs/benchmarks.md, "Twenty-second pass"). Written as
:data:`Steps`, the same code runs in one go where a caller needs the answer now
(:func:`run_through`, e.g. a ``/metrics`` scrape) and in turns on the loop (:func:`run_in_turns`).

Must not import: anything of the hub (it is a leaf every stage may use).
"""

from __future__ import annotations

import asyncio
from collections.abc import Generator
from typing import TypeVar

T = TypeVar("T")

#: A job that yields ``None`` between its pieces and returns its result.
Steps = Generator[None, None, T]


def run_through(steps: Steps[T]) -> T:
    """The job's result, computed in one go."""
    while True:
        try:
            next(steps)
        except StopIteration as done:
            return done.value  # type: ignore[no-any-return]


async def run_in_turns(steps: Steps[T]) -> T:
    """The job's result, handing the loop to whatever is ready between its pieces."""
    while True:
        try:
            next(steps)
        except StopIteration as done:
            return done.value  # type: ignore[no-any-return]
        await asyncio.sleep(0)
