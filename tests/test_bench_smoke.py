"""Smoke run of the benchmark suite (``bench.suite``) with tiny N: the harness works, not speed.

Benchmarks never become timed tests: nothing here compares a rate with a target. What is
checked is that every section of ``make bench`` runs against real servers and reports what
it should, and that the workload is deterministic — the hub's clock is pinned to the stream,
so a seed gives the same signals, alerts, cases and notifications in every run (here: the hub
over MQTT, and two in-process runs, must agree).

The ``multiprocess`` section starts ``linli run`` cluster nodes on a PostgreSQL of its own:
without PostgreSQL the run fails (never skips), as the cluster tests do. Its 1-node and 2-node
runs must take every message and agree on the outcome (the nodes' clocks are pinned).

The Node-RED section is left to ``make bench``: it needs an npm install from the network
(cached in ~/.cache/linli-bench afterwards), which a test run must not depend on.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
from pathlib import Path

import pytest

from bench import suite
from bench.latency import CLOCK_START as LATENCY_CLOCK_START
from bench.latency import SEGMENTS
from bench.run import build_messages, hub_settings, measure_pipeline
from bench.scale import CLOCK_START as SCALE_CLOCK_START
from simulators.community import generate
from tests.conftest import server_missing
from tests.support.servers import MOSQUITTO_CANDIDATES, POSTGRES_BIN, ServerMissingError, find_binary

SECTIONS = ("ingest", "sos_latency", "scale", "multiprocess", "targets")


@pytest.fixture(scope="module")
def report(tmp_path_factory: pytest.TempPathFactory) -> dict[str, object]:
    try:
        find_binary(MOSQUITTO_CANDIDATES, "mosquitto")
    except ServerMissingError as exc:
        server_missing(str(exc))
    if not os.access(POSTGRES_BIN / "initdb", os.X_OK):
        # The multiprocess section needs it: fail, never skip (it is what the section measures on).
        pytest.fail(f"PostgreSQL 15 is not installed ({POSTGRES_BIN}): the multiprocess section needs it")
    out = tmp_path_factory.mktemp("suite") / "out.json"
    buffer = io.StringIO()
    with contextlib.redirect_stdout(buffer):
        status = suite.main(
            [
                "--messages",
                "3000",
                "--grids",
                "2",
                "--buildings-per-grid",
                "3",
                "--elders-per-building",
                "4",
                "--skip",
                "nodered",
                "--no-with-influx",
                "--latency-seconds",
                "1.5",
                "--latency-background",
                "300",
                "--latency-background-nice",
                "1",
                "--scale-devices",
                "300",
                "--scale-backlog",
                "50",
                "--scale-timeout",
                "60",
                "--mp-communities",
                "2",
                "--mp-grids",
                "1",
            ]
        )
    out.write_text(buffer.getvalue())
    lines = [line for line in buffer.getvalue().splitlines() if line.strip()]
    assert len(lines) == 1, "stdout must hold exactly one JSON line"
    doc: dict[str, object] = json.loads(lines[0])
    doc["_status"] = status
    return doc


def test_every_section_is_reported(report: dict[str, object]) -> None:
    for section in SECTIONS:
        assert section in report, section
    assert report["failed_sections"] == [], report["failed_sections"]
    assert report["_status"] == 0


def test_ingest_section(report: dict[str, object]) -> None:
    ingest = report["ingest"]
    assert isinstance(ingest, dict)
    assert ingest["lost_hub"] == 0 and ingest["lost_client"] == 0
    assert ingest["hub_msg_s"] > 0 and ingest["client_ceiling_msg_s"] > 0
    # Over MQTT and in process, the same stream gives the same outcome: the clock is the stream's.
    assert ingest["outcome"] == ingest["outcome_in_process"]
    assert ingest["outcome"]["signals"] >= 3  # one SOS per 1 000 messages


def test_latency_and_scale_sections(report: dict[str, object]) -> None:
    latency = report["sos_latency"]
    assert isinstance(latency, dict)
    for key in ("background_10k", "at_80pct_saturation"):
        run = latency[key]
        assert run["received"] >= 1, run
        assert 0 < run["p50_ms"] <= run["p99_ms"] <= run["max_ms"]
        # The background publisher ran (at the nice increment asked for) and sent its load.
        assert run["background_nice"] == 1 and run["background_sent_msg_s"] > 0, run
        # The hub's clock is the section's weekday morning, not the run's hour (the night-activity
        # rule's window made the hub 93 % busy at 10 k msg/s at night).
        assert LATENCY_CLOCK_START <= run["hub_clock_at_start"] < LATENCY_CLOCK_START + 600, run
    scale = report["scale"]
    assert isinstance(scale, dict)
    # The scale hub's clock: the section's hour, running on across the restarts.
    clocks = [scale[s]["clock_at"] for s in ("cold_start", "restart_after_kill9", "restart_in_service")]
    assert SCALE_CLOCK_START <= clocks[0] < clocks[1] < clocks[2] < SCALE_CLOCK_START + 600, clocks
    assert scale["cold_start"]["ok"] and scale["restart_after_kill9"]["ok"], scale
    assert scale["backlog_handled_at_caught_up"] == scale["backlog"]
    assert scale["cold_start"]["timer_slots"] >= scale["devices"]  # an offline deadline per device
    # The hub whose memory is judged ran what `linli run` imports, none of the bench's sections
    # (spawned from the suite, it imported the suite and psycopg with it: bench.scale_hub).
    for start in ("cold_start", "restart_after_kill9"):
        assert scale[start]["bench_modules"] == ["bench"], scale[start]  # its own package: run as __main__
        assert "hub.cli.service" in scale[start]["loaded"] and "hub.app" in scale[start]["loaded"]
    # Every device reported once into the restarted hub, and its RSS then is the one judged.
    reported = scale["every_device_reported"]
    assert reported["messages"] == scale["devices"] and reported["rss_mb"] > 0, reported
    # … and again once the hub handed back what the burst freed (hub.ingest.heap.FreeMemory).
    assert reported["settled_rss_mb"] > 0, reported
    assert report["targets"]["scale_rss<=300MB"] is (  # type: ignore[index]
        max(scale["cold_start"]["rss_mb"], reported["rss_mb"]) <= 300
    )
    # Killed in service, the hub starts again from every device's slots, not only the deadlines.
    again = scale["restart_in_service"]
    assert again["ok"] and again["rss_mb"] > 0, again
    assert again["timer_slots"] == again["slots_written"] > scale["restart_after_kill9"]["timer_slots"]
    assert report["targets"]["kill9_ready<=5s"] is (  # type: ignore[index]
        max(scale["restart_after_kill9"]["seconds_to_ready"], again["seconds_to_ready"]) <= 5
    )


def test_multiprocess_section(report: dict[str, object]) -> None:
    """1 node and 2 nodes took the whole stream, split it by community, and did the same work."""
    mp = report["multiprocess"]
    assert isinstance(mp, dict)
    assert "error" not in mp, mp.get("error")
    sizes = {r["nodes"]: r for r in mp["sizes"]}
    assert sorted(sizes) == [1, 2]
    assert mp["lost"] == 0
    for r in sizes.values():
        assert r["handled"] == r["messages"] == mp["messages"] == 3000
        assert r["msg_s"] > 0 and r["cpu_us_per_msg"] > 0
        # The whole stream's cost includes the nodes', and bounds what free cores would allow.
        assert r["stream_cpu_us_per_msg"] >= r["cpu_us_per_msg"] and r["msg_s_if_cores_free"] > 0
        assert r["handler_errors"] == 0 and r["outcome"]["quarantined"] == 0
        # Each node reports its own share; together they took every message.
        assert sum(n["messages"] for n in r["per_node"]) == r["handled"]
        assert all(n["cpu_s"] > 0 for n in r["per_node"])
    two = sizes[2]["per_node"]
    assert len(two) == 2 and all(n["messages"] > 0 for n in two)
    assert sorted(c for n in two for c in n["communities"]) == sorted(sizes[1]["per_node"][0]["communities"])
    # The same stream does the same work on 1 and 2 nodes: presses became alerts, cases and
    # notifications (the clock stands still, so no timer fires to make a difference).
    assert mp["same_outcome"] is True
    assert sizes[1]["outcome"] == sizes[2]["outcome"]
    assert mp["outcome"]["signals"] >= 3 and mp["outcome"]["cases"] >= 1
    assert mp["outcome"]["notifications"] >= mp["outcome"]["cases"]
    assert "ratio_2_vs_1" in mp
    assert "machine_2_processes_msg_s>=50000" in report["targets"]  # type: ignore[operator]


def test_latency_is_split_by_the_hubs_trace(report: dict[str, object]) -> None:
    """Every press has the bench's stamps and the hub's (alert, published); the split adds up."""
    latency = report["sos_latency"]
    assert isinstance(latency, dict)
    for key in ("background_10k", "at_80pct_saturation"):
        run = latency[key]
        split = run["split"]
        assert set(split) >= {name for name, _, _ in SEGMENTS}, split
        assert split["total"]["n"] == run["received"]
        assert split["total"]["p50_ms"] == run["p50_ms"]  # the same samples, one clock
        assert split["alert_to_published"]["n"] == run["received"], split  # the hub stamped each press
        assert split["broker_to_bare_subscriber"]["n"] >= 1
        assert {"lag_p50_ms", "lag_p99_ms", "lag_max_ms", "stall_stacks"} <= set(run["stalls"])


def test_same_seed_same_outcome_on_any_day(tmp_path: Path) -> None:
    """Two in-process runs of one seed agree on every count (the stream's clock, not today's)."""
    community = generate(seed=3, grids=2, buildings_per_grid=3, elders_per_building=4, parking_per_grid=2)
    community_file = tmp_path / "community.yaml"
    community.write(community_file)
    messages, _ = build_messages(community.devices, 4000, seed=3)
    counts = []
    for run in range(2):
        settings = hub_settings(
            broker_url="mqtt://127.0.0.1:1",
            data_dir=tmp_path / f"run{run}",
            community_file=community_file,
            client_id=f"smoke-{run}",
        )
        _, stats = measure_pipeline(messages, settings)
        counts.append({k: stats[k] for k in ("signals", "alerts_raised", "alerts", "cases", "notifications")})
    assert counts[0] == counts[1]
    assert counts[0]["signals"] > 0
