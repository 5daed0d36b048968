"""Where a message's time goes in ``Pipeline.handle``: per-stage µs/msg by ablation, in process.

cProfile inflates small Python calls unevenly, so the per-stage split is measured by taking
stages away, one at a time, on a real (not started) hub over the deterministic stream
(:func:`bench.run.build_messages`, clock pinned by :class:`bench.run.StreamPace`):

* ``decode``: ``AdapterRouter.decode`` alone;
* ``rules``: full minus a run with ``Evaluator.on_event`` returning no signals;
* ``timeseries``: full minus a run with the sink's ``write_many`` a no-op;
* ``device_state``: full minus a run with ``DeviceStates.record`` a no-op;
* ``pace``: the bench's own clock pinning and due-timer checks (not hub work);
* ``rest``: what is left (pipeline glue, registry lookups, store commits of alerts).

Each variant runs ``--repeats`` times on a fresh hub with the collector policy ``Hub.start``
applies (:func:`hub.ingest.heap.settle_heap`); the best is kept. Run::

    .venv/bin/python -m bench.stages --messages 30000
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from adapters.events import Event
from bench.run import STREAM_START, StreamPace, build_messages, hub_settings, measure_decode, say
from hub.app import Hub
from hub.clock import ManualClock
from hub.community.registry import Registry
from hub.ingest.heap import settle_heap
from rules.signals import Signal
from rules.subject import Subject
from simulators.community import generate


def _no_signals(event: Event, subject: Subject, *_: Any) -> list[Signal]:
    return []


def _nothing(*args: Any, **kwargs: Any) -> None:
    return None


def _run(messages: Sequence[tuple[str, bytes]], settings_for: Callable[[], Any], variant: str) -> float:
    async def go() -> float:
        hub = Hub(settings=settings_for(), clock=ManualClock(start=STREAM_START))
        if variant == "no_rules":
            hub.evaluator.on_event = _no_signals  # type: ignore[method-assign]
        elif variant == "no_timeseries":
            hub.timeseries.write_many = _nothing  # type: ignore[method-assign]
        elif variant == "no_device_state":
            hub.states.record = _nothing  # type: ignore[method-assign]
        # What Hub.start does once start-up is done (the hub is built but not started here).
        settle_heap()
        pace = StreamPace(hub, len(messages))
        handle = hub.pipeline.handle
        before, after = pace.before, pace.after
        try:
            # CPU time, not wall time: other processes on a shared 2-core machine move wall
            # time by far more than the differences this ablation looks for.
            start = time.process_time()
            if variant == "pace_only":
                for _ in messages:
                    before()
                    after()
            else:
                for topic, payload in messages:
                    before()
                    handle(topic, payload, 0, False)
                    after()
            seconds = time.process_time() - start
            await asyncio.sleep(0)
        finally:
            hub.close()  # the last flushes, then the store
        return seconds

    return asyncio.run(go())


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.stages", description=__doc__.split("\n\n")[0])
    p.add_argument("--messages", type=int, default=30_000)
    p.add_argument("--repeats", type=int, default=2)
    p.add_argument("--seed", type=int, default=1)
    args = p.parse_args(argv)
    n: int = args.messages
    with tempfile.TemporaryDirectory(prefix="linli-stages-") as tmp_name:
        tmp = Path(tmp_name)
        community = generate(
            seed=args.seed, grids=10, buildings_per_grid=10, elders_per_building=10, parking_per_grid=5
        )
        community_file = tmp / "community.yaml"
        community.write(community_file)
        messages, _ = build_messages(community.devices, n, seed=args.seed)
        counter = iter(range(1_000_000))

        def settings_for() -> Any:
            return hub_settings(
                broker_url="mqtt://127.0.0.1:1",
                data_dir=tmp / f"d{next(counter)}",
                community_file=community_file,
                client_id="linli-bench-stages",
            )

        us: dict[str, float] = {}
        us["decode"] = measure_decode(messages, Registry.load(community_file), args.repeats) / n * 1e6
        for variant in ("full", "no_rules", "no_timeseries", "no_device_state", "pace_only"):
            best = min(_run(messages, settings_for, variant) for _ in range(args.repeats))
            us[variant] = best / n * 1e6
            say(f"stages: {variant:16} {us[variant]:8.2f} µs/msg")
    full = us["full"] - us["pace_only"]
    stages = {
        "pipeline_handle": round(full, 2),
        "decode": round(us["decode"], 2),
        "rules": round(us["full"] - us["no_rules"], 2),
        "timeseries": round(us["full"] - us["no_timeseries"], 2),
        "device_state": round(us["full"] - us["no_device_state"], 2),
        "bench_pace": round(us["pace_only"], 2),
    }
    stages["rest"] = round(
        full - stages["decode"] - stages["rules"] - stages["timeseries"] - stages["device_state"], 2
    )
    print(json.dumps({"bench": "stages", "messages": n, "us_per_msg": stages}), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
