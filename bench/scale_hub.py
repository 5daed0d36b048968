"""The scale section's hub process: what ``linli run`` loads, and nothing of the bench's.

Why a program of its own: the section judges the hub's resident memory (100 000 devices in
≤ 300 MB). Started with ``multiprocessing``'s spawn from ``python -m bench.suite``, the hub's
process imported the suite first (spawn runs the parent's main module again in the child, as
``__mp_main__``), and with it every section's clients: psycopg for the PostgreSQL section, the
test servers' helpers, the Node-RED harness. That was ≈ 10 MB of the measured RSS that a
deployed hub never loads (docs/benchmarks.md, "Thirty-seventh pass").

So :mod:`bench.scale` starts ``python -m bench.scale_hub FD`` with one end of a socket pair:
this module imports the standard library only until the parent has sent its ``sys.path``
(the compiled tree first, as a spawned child would have it) and the hub's settings; then it
imports :mod:`hub.cli.service`, the module ``linli run`` runs (deploy/systemd, deploy/Dockerfile),
and serves. ``loaded_modules`` in the report says how many modules the process held.
"""

from __future__ import annotations

import asyncio
import logging
import sys
import time
from multiprocessing.connection import Connection
from typing import Any


class ShiftedClock:
    """The wall clock moved by ``shift`` seconds: the section's hour, whatever the run's.

    Not one of the hub's own clocks: to the hub it is a wall clock like ``linli run``'s
    (its rules' clock floor is read and kept as in service), only at another hour."""

    def __init__(self, shift: float) -> None:
        self._shift = shift

    def now(self) -> float:
        return time.time() + self._shift


async def _serve(conn: Connection, settings: Any, spawned: float, shift: float) -> None:
    from hub.app import Hub  # noqa: PLC0415 (after sys.path is the parent's)
    from hub.ingest.hot_path import compiled_loaded  # noqa: PLC0415

    began = time.perf_counter()
    hub = Hub(settings=settings, clock=ShiftedClock(shift))
    built = time.perf_counter()
    slots = len(list(hub.evaluator.state.slot_keys()))
    async with hub:
        started = time.perf_counter()
        await asyncio.wait_for(hub.caught_up.wait(), 60)
        caught = time.perf_counter()
        # The kill -9 that follows is of a hub whose rule state is on disk, as it is a few
        # seconds into any run (the routine flush, then the file's writer). Killed sooner, the
        # restart re-arms the absence deadlines not yet written (from the restart: later, not
        # lost) and builds every slot again instead of reading them lazily.
        await _rule_state_written(hub)
        written = time.perf_counter()
        # … and after the task that writes the registry's start-up copies has finished, as it
        # has seconds into any run (hub.storage.community_copies): the restart reads them.
        for task in asyncio.all_tasks():
            if task.get_name() == "linli-community-copies":
                await asyncio.wait_for(task, 120)
        copied = time.perf_counter()
        conn.send(
            {
                "imports_s": round(began - spawned, 3),
                "built_s": round(built - spawned, 3),
                "ready_s": round(started - spawned, 3),
                "caught_up_s": round(caught - spawned, 3),
                "state_written_s": round(written - caught, 3),
                "copies_made_s": round(copied - caught, 3),
                "messages_at_caught_up": hub.pipeline.stats.messages,
                "clock_at": hub.clock.now(),
                "timer_slots": slots,
                "devices": sum(len(c.devices) for c in hub.registry.communities),
                "loaded_modules": len(sys.modules),
                "compiled_modules": len(compiled_loaded()),
                "bench_modules": sorted(m for m in sys.modules if m.split(".")[0] in _BENCH_ONLY),
                "loaded": sorted(m for m in _LOOKED_FOR if m in sys.modules),
            }
        )
        # Asked for the count of handled messages ("count") or of the hand-backs of freed heap
        # memory ("trims", hub.ingest.heap.FreeMemory) until told to stop.
        while True:
            while not await asyncio.to_thread(conn.poll, 0.2):
                pass
            asked = conn.recv()
            if asked == "count":
                conn.send(hub.pipeline.stats.messages)
            elif asked == "trims":
                conn.send((hub.free_memory.runs, hub.free_memory.longest_s))
            elif asked == "write":
                await _rule_state_written(hub)
                conn.send(len(hub.evaluator.state.slot_keys()))
            else:
                return


#: Top-level packages a deployed hub does not load: found here, they are the bench's weight.
_BENCH_ONLY = frozenset({"bench", "tests", "psycopg", "pytest"})
#: … and what it must have loaded to be the hub `linli run` runs.
_LOOKED_FOR = ("hub.app", "hub.cli.service", "hub.web.server")


async def _rule_state_written(hub: Any) -> None:
    """Every rule slot handed to the file's writer and written (routine changes included)."""
    hub.flush_rule_state(include_routine=True)
    file = hub.rule_runtime.state_store.file
    if file is not None:
        # Polled: a timed threading wait never returns under libfaketime (the smoke test's
        # year-ahead run; hub.storage.rule_state_file._rest).
        async with asyncio.timeout(120):
            while not file.wait(0):  # noqa: ASYNC110 (a thread's state, no event to await)
                await asyncio.sleep(0.05)


def main(argv: list[str] | None = None) -> None:
    args = sys.argv[1:] if argv is None else argv
    conn = Connection(int(args[0]))
    settings, spawned, shift = _receive(conn)
    logging.basicConfig(
        level=logging.ERROR, stream=sys.stderr, format="  hub %(levelname)s %(name)s: %(message)s"
    )
    # What `linli run` imports before it builds the hub (hub.cli → hub.cli.service).
    import hub.cli.service  # noqa: F401, PLC0415

    asyncio.run(_serve(conn, settings, spawned, shift))


def _receive(conn: Connection) -> tuple[Any, float, float]:
    """The parent's ``sys.path`` (applied before anything of Linli's is imported), then the
    settings, when the process was started and the clock's shift.

    Two messages: the settings are a pickle of :class:`hub.config.Settings`, which can only be
    read once the path finds the build the parent chose.
    """
    path: list[str] = conn.recv()
    sys.path[:] = path
    settings, spawned, shift = conn.recv()
    return settings, float(spawned), float(shift)


if __name__ == "__main__":
    main()
