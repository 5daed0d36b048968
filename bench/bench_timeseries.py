"""Time-series writer benchmark against a real InfluxDB 1.x: throughput and CPU cost per point.

    .venv/bin/python -m bench.bench_timeseries [--points 200000]

Prints one JSON line: points/s end to end (first ``write`` → everything acknowledged by the
server), the writer's CPU time per point in this process (``write`` + encode + gzip + HTTP;
influxd's own CPU is not counted), the cost of ``write`` alone, and the event loop's longest
stall while flushing.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import random
import tempfile
import time
from pathlib import Path

from adapters.events import Event, EventKind
from hub.timeseries import InfluxWriter, Point, SubjectInfo, TimeseriesKind, TimeseriesSettings, event_points
from tests.support.influx import influxdb


def make_points(n: int) -> list[Point]:
    rng = random.Random(1)
    now = time.time() - 3600
    infos = [
        SubjectInfo(
            community="370105005001",
            grid=f"g{i % 4}",
            building=f"{i % 20}号楼",
            device_kind="door_sensor",
            model="SNZB-04",
        )
        for i in range(200)
    ]
    points: list[Point] = []
    for i in range(n):
        kind = (EventKind.DOOR_OPEN, EventKind.BATTERY, EventKind.SIGNAL)[i % 3]
        event = Event(f"dev-{i % 200}", kind, now + i * 0.001, "z2m", rng.uniform(0, 100), {"volts": 3.0})
        points += event_points(event, infos[i % 200])
    return points


async def run(url: str, points: list[Point], spool: Path) -> dict[str, float]:
    writer = InfluxWriter(
        settings=TimeseriesSettings(kind=TimeseriesKind.INFLUX_V1, url=url, db="bench"), spool_dir=spool
    )
    await writer.start()
    stalls: list[float] = []

    async def watch() -> None:
        while True:
            t = time.perf_counter()
            await asyncio.sleep(0.001)
            stalls.append(time.perf_counter() - t - 0.001)

    watcher = asyncio.create_task(watch(), name="bench-loop-watch")
    cpu0, wall0 = time.process_time(), time.perf_counter()
    chunk = 2000  # feed like a hub at a high ingest rate: a burst, then yield to the loop
    for i in range(0, len(points), chunk):
        for p in points[i : i + chunk]:
            writer.write(p)
        await asyncio.sleep(0)
    await writer.stop()
    cpu, wall = time.process_time() - cpu0, time.perf_counter() - wall0
    watcher.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await watcher
    assert writer.stats.points_delivered == len(points), writer.stats
    return {"wall_s": wall, "cpu_s": cpu, "max_loop_stall_ms": max(stalls, default=0) * 1000}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--points", type=int, default=200_000)
    args = parser.parse_args()
    points = make_points(args.points)
    n = len(points)
    # cost of write() alone (the hot path)
    probe = InfluxWriter(
        settings=TimeseriesSettings(kind=TimeseriesKind.INFLUX_V1), spool_dir=Path(tempfile.gettempdir())
    )
    t = time.perf_counter()
    for p in points:
        probe.write(p)
    write_us = (time.perf_counter() - t) / n * 1e6
    with tempfile.TemporaryDirectory() as tmp, influxdb(Path(tmp) / "influx") as server:
        server.create_db("bench")
        result = asyncio.run(run(server.url, points, Path(tmp) / "spool"))
        stored = (
            server.count("bench", "door", "open")
            + server.count("bench", "device_health", "battery_pct")
            + server.count("bench", "device_health", "rssi")
        )
    print(
        json.dumps(
            {
                "bench": "timeseries_writer",
                "server": "influxdb 1.6 (loopback)",
                "points": n,
                "stored": stored,
                "points_per_s": round(n / result["wall_s"]),
                "cpu_us_per_point": round(result["cpu_s"] / n * 1e6, 2),
                "write_call_us": round(write_us, 3),
                "max_loop_stall_ms": round(result["max_loop_stall_ms"], 1),
                "batch_size": 5000,
            }
        )
    )


if __name__ == "__main__":
    main()
