"""The bench's mypyc build (bench/compiled.py): what a phase's process imports is the compiled module.

``make bench ARGS=--compiled`` compares the hub on the compiled hot path with the pure one; the
comparison only means something if the process it starts really runs the extension, computes
what the source computes, and the bench process itself is left on the source. One small module
keeps this to a few seconds of compiling.
"""

from __future__ import annotations

import multiprocessing
import os
import sys
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

import pytest

from bench import compiled
from hub.ingest import hot_path

#: The bench process itself must stay on the sources: a run on the compiled build is not one.
pytestmark = pytest.mark.pure_only("checks that the test process runs the sources")

#: Small modules; ``events`` and ``line_protocol`` build their frozen classes through the slots'
#: setters, which mypyc must compile too (``vars(cls)``, not ``cls.__dict__``).
FILES = ("adapters/_json.py", "adapters/events.py", "hub/timeseries/line_protocol.py")
TOPIC = "zigbee2mqtt/door"


def _values() -> list[Any]:
    from adapters import _json, events  # noqa: PLC0415 (imported where the probe runs: compiled there)
    from hub.timeseries import line_protocol  # noqa: PLC0415

    out: list[Any] = [_json.as_number(v, "battery", TOPIC) for v in (87, 3.05, "42", None)]
    out.append(_json.event_time("2026-11-23T02:13:00+08:00", 1.0, TOPIC))
    out.append(_json.parse_object(b'{"contact": false}', TOPIC))
    try:
        _json.parse_object(b"[1]", TOPIC)
    except Exception as exc:  # the same error, raised the same way
        out.append(type(exc).__name__)
    event = events.Event("d1", events.EventKind.DOOR_OPEN, 1.5, "zigbee2mqtt", True, {"lqi": 9.0})
    point = line_protocol.Point(measurement="door", tags=(("grid", "g1"),), fields=(("open", 1),), ts=1.5)
    out += [
        repr(event),
        event == events.Event("d1", events.EventKind.DOOR_OPEN, 1.5, "zigbee2mqtt", True, {"lqi": 9.0}),
    ]
    out += [repr(point), line_protocol.encode(point)]
    try:
        event.ts = 2.0  # type: ignore[misc]
    except Exception as exc:  # frozen, compiled or not
        out.append(type(exc).__name__)
    return out


def _probe(conn: Connection) -> None:
    values = _values()  # imports the modules (compiled_loaded looks only at what is loaded)
    conn.send({"compiled": hot_path.compiled_loaded(hot_path.module_names(FILES)), "values": values})
    conn.close()


def test_the_phase_process_runs_the_extension_and_agrees_with_the_source(tmp_path: Path) -> None:
    tree = compiled.build(tmp_path / "cache", files=FILES)
    assert list((tree / "adapters").glob("_json.*.so")) and list((tree / "adapters").glob("events.*.so"))
    assert compiled.build(tmp_path / "cache", files=FILES) == tree  # the cache: no second compile
    ctx = multiprocessing.get_context("spawn")
    parent, child = ctx.Pipe(duplex=False)
    proc = ctx.Process(target=_probe, args=(child,))
    with compiled.first_on_path(tree):
        proc.start()
    assert str(tree) not in sys.path  # the bench process stays on the source
    assert str(tree) not in os.environ.get("PYTHONPATH", "")
    child.close()
    assert parent.poll(60)
    result = parent.recv()
    proc.join(10)
    assert sorted(result["compiled"]) == ["adapters._json", "adapters.events", "hub.timeseries.line_protocol"]
    assert result["values"] == _values()
    assert hot_path.compiled_loaded(hot_path.module_names(FILES)) == []
