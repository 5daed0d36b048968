"""Where the hub's memory goes at scale, part by part, as resident memory (issue 14's 300 MB target).

The scale section (:mod:`bench.scale`) measures the whole hub's VmRSS in service. This asks what
each part adds, each in a fresh process on the same data dir, so nothing one phase left in the
heap counts against the next:

1. ``imports``: the hub's modules imported, the web stack included (and this bench's own few:
   the community generator);
2. ``registry``: + the registry built from the store's start-up copy (``registry_from_store``, as
   a restart does), then freed heap handed back (``malloc_trim``);
3. ``hub``: in another process, ``Hub(settings)`` built from the same store (registry, rule state
   restored lazily, every absence deadline queued), handed back;
4. ``reported``: + one Zigbee2MQTT report per registered device through ``Pipeline.handle`` in
   process (the time-series sink running, so its buffer is flushed; the rule state's changes
   handed to its writer, as the running hub does every few seconds), handed back;
5. ``slots_dropped``, ``states_dropped``: + every rule slot, then every device state, taken out
   of the hub and collected, handed back. Not something the hub does: it measures what a bounded
   cache or an eviction of quiet devices' state could give back, against what those objects
   occupy (``tracemalloc`` is not running, so the figures are the process's own).

RSS, not traced bytes: what the target is judged on includes the allocator's overhead and the
pages that freed objects leave partly used. Run::

    .venv/bin/python -m bench.memory_split --devices 100000 [--build compiled]

``--build compiled`` measures the phases on the mypyc build (:mod:`bench.compiled`), what deploy
ships. Without it they run on the interpreted sources, whatever ``PYTHONPATH`` says: run from a
checkout, the checkout is first on the path (the twenty-ninth pass measured the wrong build
that way). Each phase reports how many hot-path modules it ran compiled (``compiled_modules``).

Prints one JSON object on stdout and a table on stderr. No server is needed (the hub is built,
not started; its broker URL points nowhere).
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import marshal
import multiprocessing
import os
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

from bench import compiled
from bench.run import STREAM_START, hub_settings, say
from bench.scale import community_for, every_device_once, rss_mb
from hub.app import Hub, registry_from_store
from hub.clock import ManualClock
from hub.ingest.heap import FreeMemory, settle_heap
from hub.ingest.hot_path import compiled_loaded
from hub.storage.community_copies import make_copies
from hub.storage.store import Store
from rules.state import MemoryState

#: The phases, in the order printed.
PHASES = ("imports", "registry", "hub", "reported", "slots_dropped", "states_dropped")


def _settings(data: Path) -> Any:
    return hub_settings(
        broker_url="mqtt://127.0.0.1:1",
        data_dir=data / "d",
        community_file=data / "community.yaml",
        client_id="linli-bench-memory",
    )


def _rss() -> float:
    """VmRSS once the collector has run and glibc has handed back its freed heap."""
    gc.collect()
    FreeMemory().release()  # the hub's own hand-back (glibc's malloc_trim; nothing elsewhere)
    return rss_mb(os.getpid())


def _prepare(data: Path, devices: int, seed: int) -> dict[str, Any]:
    """The community file, a cold start's store (rule state written) and the registry's start-up copy."""
    community = community_for(devices, seed=seed)
    community.write(data / "community.yaml")
    (data / "reports.bin").write_bytes(marshal.dumps(every_device_once(community.devices)))

    async def cold() -> int:
        hub = Hub(settings=_settings(data), clock=ManualClock(start=STREAM_START))
        try:
            hub.flush_rule_state(include_routine=True)
            made = make_copies(hub.store)
        finally:
            hub.close()
        return made

    copies = asyncio.run(cold())
    return {"devices": len(community.devices), "copies": copies}


def _registry_phase(conn: Connection, data: str) -> None:
    settings = _settings(Path(data))
    out: dict[str, Any] = {"imports": _rss()}
    store = Store(url=settings.store.resolved_url(Path(settings.data_dir)))
    registry, _ = registry_from_store(store, settings, at=STREAM_START)
    out["registry"] = _rss()
    out["residents"] = sum(len(c.residents) for c in registry.communities)
    out["compiled_modules_registry"] = len(compiled_loaded())
    store.close()
    conn.send(out)


def _hub_phase(conn: Connection, data: str) -> None:
    reports: list[tuple[str, bytes]] = marshal.loads(Path(data, "reports.bin").read_bytes())

    async def go() -> dict[str, Any]:
        out: dict[str, Any] = {}
        began = time.perf_counter()
        hub = Hub(settings=_settings(Path(data)), clock=ManualClock(start=STREAM_START + 60))
        out["built_s"] = round(time.perf_counter() - began, 2)
        try:
            await hub.timeseries.start()
            settle_heap()  # what Hub.start does once built
            out["hub"] = _rss()
            out["slots_at_start"] = len(hub.evaluator.state.slot_keys())
            handle = hub.pipeline.handle
            for i, (topic, payload) in enumerate(reports):
                handle(topic, payload, 0, False)
                if i % 2_000 == 1_999:
                    await hub.timeseries.flush()  # as the sink's task does every second
            await hub.timeseries.flush()
            # What the running hub does every few seconds (``ROUTINE_STATE_FLUSH_S``): the
            # changed slots handed to the state file's writer, the dirty marks let go.
            out["slots_flushed"] = hub.flush_rule_state(include_routine=True)
            writer = hub.rule_runtime.state_store.file
            if writer is not None and not writer.wait(300):  # the rows handed over, written
                raise RuntimeError("the rule-state writer did not write the flushed slots in 300 s")
            out["reported"] = _rss()
            state = hub.evaluator.state
            assert isinstance(state, MemoryState)  # the single-hub state port
            out["slots_in_service"] = len(state)
            out["compiled_modules"] = len(compiled_loaded())
            # What eviction could give back: the slots gone (bookkeeping included), collected.
            state.__init__()  # type: ignore[misc]  # emptied in place: the evaluator holds it
            out["slots_dropped"] = _rss()
            hub.states.__init__(subjects=hub.registry.registered)  # type: ignore[misc]
            for subject in hub.registry.subjects():  # a registered device's is held on its subject
                object.__setattr__(subject, "state", None)
            out["states_dropped"] = _rss()
        finally:
            await hub.timeseries.stop()
            hub.close()
        return out

    conn.send(asyncio.run(go()))


def _in_child(target: Callable[[Connection, str], None], data: Path) -> dict[str, Any]:
    ctx = multiprocessing.get_context("spawn")
    parent, child = ctx.Pipe()
    proc = ctx.Process(target=target, args=(child, str(data)))
    proc.start()
    # Only the phase holds its end now: if it dies before answering, recv() ends with EOFError
    # instead of waiting for ever (it did, for a phase that died on the way).
    child.close()
    try:
        out: dict[str, Any] = parent.recv()
    except EOFError:
        proc.join(60)
        raise RuntimeError(
            f"the {target.__name__} phase died without a result (exit code {proc.exitcode})"
        ) from None
    finally:
        proc.join(60)
    return out


def measure(
    devices: int, *, seed: int = 1, data: Path | None = None, tree: Path | None = None
) -> dict[str, Any]:
    """The split for a generated community of about ``devices`` devices (see the module docstring).

    ``tree``: a compiled build's directory (:func:`bench.compiled.build`), first on the phases'
    path; the community and store are prepared in this process either way.
    """
    with tempfile.TemporaryDirectory(prefix="linli-memory-") as tmp:
        where = data or Path(tmp)
        where.mkdir(parents=True, exist_ok=True)
        out: dict[str, Any] = {"bench": "memory_split", "seed": seed, "build": "compiled" if tree else "pure"}
        out.update(_prepare(where, devices, seed))
        with compiled.first_on_path(tree):
            out.update(_in_child(_registry_phase, where))
            out.update(_in_child(_hub_phase, where))
    rss = {phase: round(out.pop(phase), 1) for phase in PHASES}
    out["rss_mb"] = rss
    added = {}
    before = 0.0
    for phase in PHASES:
        # "hub" is measured in its own process: it adds to the imports, not to the registry phase.
        base = rss["imports"] if phase == "hub" else before
        added[phase] = round(rss[phase] - base, 1) if phase != "imports" else rss[phase]
        before = rss[phase]
    out["added_mb"] = added
    out["per_device_bytes"] = {
        phase: round(added[phase] * 1e6 / out["devices"]) for phase in ("registry", "hub", "reported")
    }
    return out


def table(result: dict[str, Any]) -> str:
    lines = [
        f"memory split, {result['devices']} devices, {result['build']} build"
        f" ({result['compiled_modules']} hot-path modules compiled; RSS after collection and malloc_trim)"
    ]
    for phase in PHASES:
        lines.append(
            f"  {phase:15} {result['rss_mb'][phase]:8.1f} MB  ({result['added_mb'][phase]:+8.1f} MB)"
        )
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.memory_split", description=__doc__.split("\n\n")[0])
    p.add_argument("--devices", type=int, default=100_000)
    p.add_argument("--seed", type=int, default=1)
    p.add_argument(
        "--build",
        choices=("pure", "compiled"),
        default="pure",
        help="the phases on the interpreted sources (default) or on the mypyc build (bench/compiled.py)",
    )
    args = p.parse_args(argv)
    tree = None
    if args.build == "compiled":
        try:
            tree = compiled.build(compiled.CACHE)
        except compiled.BuildError as exc:
            say(f"memory_split: the compiled build failed: {exc}")
            return 2
    result = measure(args.devices, seed=args.seed, tree=tree)
    say(table(result))
    print(json.dumps(result), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
