"""Throughput of 1 hub process against 2, side by side in one run (issues 13 and 14).

A hub process is one Python event loop: on a machine with several cores, more of them is how
one site goes past one process. This bench starts a PostgreSQL and a Mosquitto, writes a
district of ``--communities`` communities (each with its own Zigbee2MQTT root), and for each
cluster size in ``--nodes`` (default ``1 2``) starts that many ``linli run`` nodes on a fresh
database, waits until the communities are balanced and every community's session is
subscribed, publishes the same ``--messages`` messages as fast as the broker takes them
(raw-socket QoS 0, ``bench.publisher``), and times until the nodes together have taken every
one (their ``linli_messages_total``). The machinery and the stream are the suite's
``multiprocess`` section's (:mod:`bench.cluster_nodes`, :mod:`bench.multiprocess`): the
ingest stream's mix on a clock pinned at its start, so the counts are the same for every size
and on any date.

    .venv/bin/python -m bench.bench_cluster --communities 4 --messages 100000

stdout: one JSON line; stderr: a line per size. On a machine shared with other work the
figures move from run to run; compare the sizes within one run (CPU µs per message is steadier
than msg/s).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
from pathlib import Path

from bench import multiprocess
from bench.cluster_nodes import BrokerAccess
from tests.support.servers import mosquitto, postgres


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--communities", type=int, default=4)
    parser.add_argument("--messages", type=int, default=100_000)
    parser.add_argument("--nodes", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--grids", type=int, default=3, help="grids per community")
    parser.add_argument("--buildings-per-grid", type=int, default=10)
    parser.add_argument("--elders-per-building", type=int, default=10)
    parser.add_argument("--parking-per-grid", type=int, default=5)
    parser.add_argument(
        "--keep", action="store_true", help="Keep the work directory (hub logs) and print it."
    )
    args = parser.parse_args(argv)
    work = Path(tempfile.mkdtemp(prefix="linli-bench-cluster-"))
    if args.keep:
        print(f"work directory: {work}", file=sys.stderr)
    try:
        stream = multiprocess.district_stream(
            work,
            communities=args.communities,
            messages=args.messages,
            seed=args.seed,
            grids=args.grids,
            buildings_per_grid=args.buildings_per_grid,
            elders_per_building=args.elders_per_building,
            parking_per_grid=args.parking_per_grid,
        )
        with postgres(fsync=True) as pg, mosquitto(work / "mosquitto") as server:
            broker = BrokerAccess(
                server.url,
                server.host,
                server.port,
                server.username,
                server.password,
                server.proc.pid if server.proc else None,
            )
            section = multiprocess.measure(work=work, stream=stream, broker=broker, pg=pg, sizes=args.nodes)
    finally:
        if not args.keep:
            shutil.rmtree(work, ignore_errors=True)
    for r in section["sizes"]:
        print(
            f"{r['nodes']} hub process(es): {r['handled']}/{r['messages']} messages in {r['seconds']:.2f} s"
            f" = {r['msg_s']} msg/s (published at {r['publish_msg_s']} msg/s), nodes' CPU"
            f" {r['cpu_us_per_msg']} µs/msg, Mosquitto {r['cpu']['broker_cpu_s']} s CPU,"
            f" outcome {r['outcome']}",
            file=sys.stderr,
        )
    print(json.dumps({"bench": "cluster", "cores": os.cpu_count(), **section}))
    return 1 if multiprocess.failed(section) else 0


if __name__ == "__main__":
    sys.exit(main())
