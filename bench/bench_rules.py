"""Rule-engine benchmark: in-process ``Evaluator.on_event`` throughput and timer restore time.

500 rules (the shipped packs plus clones with varied grid/community/attribute scopes),
100 000 registered devices, one core, :class:`rules.MemoryState`. Prints one JSON line::

    .venv/bin/python -m bench.bench_rules [--events 500000] [--rules 500] [--devices 100000]

``events_per_s`` is the steady state (every device already has its rule state, as in a
running hub, with ``gc.freeze()`` after start-up and dirty keys drained every 10 000 events); ``cold_events_per_s`` covers the first event of each device (state created).
Targets: ≥ 100 000 events/s; restoring 100 000 persisted timers (JSON text → heap) ≤ 2 s.
"""

from __future__ import annotations

import argparse
import gc
import json
import random
import sys
import time
from typing import Any

from adapters.events import DeviceKind, Event, EventKind
from rules import Evaluator, MemoryState, Rule, Subject, load_packs

TARGET_EVENTS_PER_S = 100_000
TARGET_RESTORE_S = 2.0
COMMUNITIES = 100
GRIDS_PER_COMMUNITY = 10
T0 = 1_800_000_000.0

_PLACE_BY_KIND: dict[DeviceKind, list[str | None]] = {
    DeviceKind.DOOR_SENSOR: ["entrance", "fire_exit", None, None],
    DeviceKind.PARKING_SENSOR: ["fire_lane", "parking_space", "parking_space"],
}


def community_code(c: int) -> str:
    return f"110105{c:06d}"


def grid_code(c: int, g: int) -> str:
    return f"{community_code(c)}{g:03d}"


def synthesise_rules(total: int, rng: random.Random) -> list[Rule]:
    base = load_packs()
    rules = list(base)
    i = 0
    while len(rules) < total:
        template = base[i % len(base)]
        i += 1
        c = rng.randrange(COMMUNITIES)
        choice = rng.random()
        scope = template.scope.model_dump(by_alias=True)
        if choice < 0.5:
            scope["grids"] = [grid_code(c, rng.randrange(GRIDS_PER_COMMUNITY))]
        elif choice < 0.9:
            scope["communities"] = [community_code(c)]
        else:
            scope["attributes"] = {**scope["attributes"], "resident.aged_80_plus": True}
        doc = template.model_dump(by_alias=True, exclude_none=True)
        doc["id"] = f"{template.id}.clone{i}"
        doc["scope"] = scope
        rules.append(Rule.model_validate(doc))
    return rules


def synthesise_subjects(count: int, rng: random.Random) -> list[Subject]:
    kinds = [DeviceKind.DOOR_SENSOR] * 5 + [DeviceKind.PARKING_SENSOR] * 3 + [DeviceKind.SOS_BUTTON] * 2
    subjects: list[Subject] = []
    for n in range(count):
        kind = kinds[n % len(kinds)]
        c = rng.randrange(COMMUNITIES)
        attrs: dict[str, str | bool | int | float] = {"device.heartbeat_s": rng.choice([300, 3600, 43200])}
        place: str | None = rng.choice(_PLACE_BY_KIND.get(kind, [None]))
        if place is not None:
            attrs["place.kind"] = place
        if kind is not DeviceKind.PARKING_SENSOR and place is None:
            attrs["resident.id"] = f"r{n}"
            attrs["resident.living_alone"] = rng.random() < 0.3
            attrs["resident.aged_80_plus"] = rng.random() < 0.2
        subjects.append(
            Subject(
                f"dev-{n}", kind, grid_code(c, rng.randrange(GRIDS_PER_COMMUNITY)), community_code(c), attrs
            )
        )
    return subjects


def synthesise_events(subjects: list[Subject], count: int, rng: random.Random) -> list[tuple[Event, Subject]]:
    out: list[tuple[Event, Subject]] = []
    door_open: dict[str, bool] = {}
    for n in range(count):
        subject = subjects[rng.randrange(len(subjects))]
        ts = T0 + n * 0.01
        roll = rng.random()
        device = subject.device_id
        if roll < 0.15:
            event = Event(device, EventKind.HEARTBEAT, ts, "bench")
        elif roll < 0.3:
            event = Event(
                device, EventKind.BATTERY, ts, "bench", rng.uniform(5, 100), {"volts": rng.uniform(2.2, 3.2)}
            )
        elif subject.kind is DeviceKind.DOOR_SENSOR:
            opened = not door_open.get(device, False)
            door_open[device] = opened
            event = Event(
                device, EventKind.DOOR_OPEN if opened else EventKind.DOOR_CLOSED, ts, "bench", opened
            )
        elif subject.kind is DeviceKind.PARKING_SENSOR:
            event = Event(device, EventKind.OCCUPANCY, ts, "bench", rng.random() < 0.5)
        else:
            kind = EventKind.SOS_PRESS if roll < 0.35 else EventKind.SIGNAL
            event = Event(
                device, kind, ts, "bench", rng.uniform(-120, -40) if kind is EventKind.SIGNAL else "single"
            )
        out.append((event, subject))
    return out


def bench_events(
    rules: list[Rule], subjects: list[Subject], events: list[tuple[Event, Subject]]
) -> dict[str, Any]:
    """Cold: the first events of every device (slots created); steady: devices already known."""
    state = MemoryState()
    evaluator = Evaluator(rules=rules, state=state)
    started = time.perf_counter()
    evaluator.start(subjects, T0)
    start_s = time.perf_counter() - started
    first_seen: set[str] = set()
    cold: list[tuple[Event, Subject]] = []
    steady: list[tuple[Event, Subject]] = []
    for item in events:
        (steady if item[1].device_id in first_seen else cold).append(item)
        first_seen.add(item[1].device_id)
    signals = 0
    started = time.perf_counter()
    for event, subject in cold:
        signals += len(evaluator.on_event(event, subject))
    cold_s = time.perf_counter() - started
    state.drain_dirty()
    # As the hub should after loading registry and state: long-lived objects leave the GC's care.
    gc.collect()
    gc.freeze()
    started = time.perf_counter()
    for n, (event, subject) in enumerate(steady):
        signals += len(evaluator.on_event(event, subject))
        if n % 10_000 == 0:
            state.drain_dirty()  # the hub persists changed keys in batches
    steady_s = time.perf_counter() - started
    gc.unfreeze()
    due_started = time.perf_counter()
    fired = len(evaluator.due(T0 + 3 * 86400))
    due_s = time.perf_counter() - due_started
    return {
        "events": len(steady),
        "events_per_s": round(len(steady) / steady_s),
        "cold_events": len(cold),
        "cold_events_per_s": round(len(cold) / cold_s),
        "signals": signals,
        "state_slots": len(state),
        "start_seed_s": round(start_s, 3),
        "due_fired": fired,
        "due_s": round(due_s, 3),
    }


def bench_restore(timers: int, rng: random.Random) -> dict[str, Any]:
    snapshot = {
        "version": 1,
        "slots": [
            {
                "rule": "device.offline",
                "subject": f"dev-{n}",
                "state": {
                    "trigger": "absence",
                    "last_ts": T0,
                    "seen": ["heartbeat|None"],
                    "since": T0,
                    "due": T0 + rng.uniform(0, 86400),
                    "params": {"for": 7200.0},
                },
            }
            for n in range(timers)
        ],
    }
    text = json.dumps(snapshot)
    started = time.perf_counter()
    state = MemoryState.restore(json.loads(text))
    first = state.next_due()
    elapsed = time.perf_counter() - started
    assert first is not None and len(state) == timers
    started = time.perf_counter()
    fired = len(state.pop_due(T0 + 86400))
    pop_s = time.perf_counter() - started
    return {"timers": timers, "restore_s": round(elapsed, 3), "pop_all_s": round(pop_s, 3), "popped": fired}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rules", type=int, default=500)
    parser.add_argument("--devices", type=int, default=100_000)
    parser.add_argument("--events", type=int, default=500_000)
    parser.add_argument("--timers", type=int, default=100_000)
    parser.add_argument("--seed", type=int, default=7)
    args = parser.parse_args(argv)
    rng = random.Random(args.seed)
    rules = synthesise_rules(args.rules, rng)
    subjects = synthesise_subjects(args.devices, rng)
    events = synthesise_events(subjects, args.events, rng)
    result = {
        "bench": "rules",
        "python": sys.version.split()[0],
        "rules": len(rules),
        "devices": len(subjects),
        **bench_events(rules, subjects, events),
        "restore": bench_restore(args.timers, rng),
        "targets": {"events_per_s": TARGET_EVENTS_PER_S, "restore_s": TARGET_RESTORE_S},
    }
    result["ok"] = (
        result["events_per_s"] >= TARGET_EVENTS_PER_S and result["restore"]["restore_s"] <= TARGET_RESTORE_S
    )
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
