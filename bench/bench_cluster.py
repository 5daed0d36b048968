"""Throughput of 1 hub process against 2, side by side in one run (issue 13).

A hub process is one Python event loop: on a machine with several cores, more of them is how
one site goes past one process. This bench starts a PostgreSQL and a Mosquitto, writes a
district of ``--communities`` communities (each with its own Zigbee2MQTT root), and for each
cluster size in ``--nodes`` (default ``1 2``): starts that many ``linli run`` nodes on a fresh
database, waits until the communities are balanced, publishes the same ``--messages`` door
and battery reports as fast as the broker takes them (raw-socket QoS 0, ``bench.publisher``),
and times until the nodes together have taken every one (their ``linli_messages_total``).

    .venv/bin/python -m bench.bench_cluster --communities 4 --messages 100000

stdout: one JSON line; stderr: a table. On a machine shared with other work the figures move
from run to run; compare the two sizes within one run.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path
from typing import Any

import psycopg
import yaml

from bench.publisher import blast, encode_stream
from hub.web.api import token_hash
from simulators.district import generate_district
from simulators.formats import build, supports
from simulators.types import Act, Reading
from tests.support.servers import mosquitto, postgres

LINLI = str(Path(sys.executable).with_name("linli"))
TOKEN = "bench-cluster-token"
#: The default: a node whose event loop is blocked longer than this (a burst of alerts) fences
#: itself out of its own communities until it re-claims them (see docs/scale.md).
LEASE_S = 10.0
METRIC = re.compile(rb"^linli_messages_total (\S+)$", re.MULTILINE)


def stream(district_file: Path, messages: int) -> list[tuple[str, bytes]]:
    """Battery reports from the district's Zigbee2MQTT devices, stamped now: readings only.

    Readings are what a hub spends its time on (an alert is one in a thousand messages and
    costs a PostgreSQL transaction and a case, which would measure the store instead); now,
    because a device time far from the hub's clock makes absence rules fire.
    """
    from simulators.community import load  # noqa: PLC0415 - only for the bench

    devices = [
        d for d in load(district_file).devices if d.family.value == "zigbee2mqtt" and supports(d, Act.BATTERY)
    ]
    now = time.time()
    out: list[tuple[str, bytes]] = []
    while len(out) < messages:
        for device in devices:
            for message in build(device, Act.BATTERY, Reading(battery_pct=90.0 - len(out) % 7), now):
                out.append((message.topic, message.payload))
        now += 1.0
    return out[:messages]


def taken(ports: list[int]) -> int:
    total = 0
    for port in ports:
        request = urllib.request.Request(
            f"http://127.0.0.1:{port}/metrics", headers={"Authorization": f"Bearer {TOKEN}"}
        )
        # A node busy with the stream answers late: its event loop is what is being measured.
        with urllib.request.urlopen(request, timeout=60) as response:
            found = METRIC.search(response.read())
            total += int(float(found.group(1))) if found else 0
    return total


def owners(url: str) -> dict[str, str]:
    with psycopg.connect(url, autocommit=True) as conn:
        rows = conn.execute(
            "SELECT community, owner FROM community_leases WHERE owner IS NOT NULL AND community <> 'hub'"
            " AND expires_at > extract(epoch FROM clock_timestamp())"
        ).fetchall()
    return {str(c): str(o) for c, o in rows}


def run_size(
    nodes: int,
    *,
    work: Path,
    broker_url: str,
    store_url: str,
    district: Path,
    communities: int,
    payload: bytes,
    count: int,
    host: str,
    port: int,
    user: str,
    password: str,
) -> dict[str, Any]:
    procs: list[subprocess.Popen[bytes]] = []
    logs: list[Path] = []
    try:
        work.mkdir(parents=True, exist_ok=True)
        for n in range(nodes):
            node = f"bench-{nodes}-{n}"
            config = work / f"{node}.yaml"
            config.write_text(
                yaml.safe_dump(
                    {
                        "data_dir": str(work / node),
                        "community_file": str(district),
                        "store": {"url": store_url},
                        "cluster": {"node_id": node, "lease_s": LEASE_S},
                        "http": {"port": 0},
                        "mqtt": {"url": broker_url, "client_id": f"linli-{node}"},
                        "api_tokens": [{"name": "bench", "sha256": token_hash(TOKEN)}],
                    }
                )
            )
            log = work / f"{node}.log"
            logs.append(log)
            with log.open("wb") as handle:
                procs.append(
                    subprocess.Popen(
                        [LINLI, "run", "--config", str(config)],
                        stdout=handle,
                        stderr=subprocess.STDOUT,
                        env=dict(os.environ),
                    )
                )
        ports: list[int] = []
        deadline = time.monotonic() + 120
        for log in logs:
            while (found := re.search(rb"console http://[^:]+:(\d+)/", log.read_bytes())) is None:
                if time.monotonic() > deadline:
                    raise RuntimeError(f"hub not ready:\n{log.read_text(errors='replace')[-2000:]}")
                time.sleep(0.1)
            ports.append(int(found.group(1)))
        share = -(-communities // nodes)
        while True:
            held = owners(store_url)
            per_node = [list(held.values()).count(o) for o in set(held.values())]
            if len(held) == communities and len(per_node) == nodes and max(per_node) <= share:
                break
            if time.monotonic() > deadline:
                raise RuntimeError(f"not balanced: {held}")
            time.sleep(0.2)
        time.sleep(1.0)  # every session subscribed (SUBACK) before the stream starts
        before = taken(ports)
        published = blast(
            host=host, port=port, username=user, password=password, stream=payload, messages=count
        )
        last, last_change, seen = before, time.monotonic(), before
        while seen - before < count and time.monotonic() - last_change < 15:
            time.sleep(0.25)  # not more often: every poll costs the nodes' event loops a request
            seen = taken(ports)
            if seen != last:
                last, last_change = seen, time.monotonic()
        finished = time.perf_counter()
        handled = seen - before
        seconds = finished - published.started
        return {
            "nodes": nodes,
            "messages": count,
            "handled": handled,
            "seconds": round(seconds, 3),
            "msg_s": round(handled / seconds) if seconds > 0 else 0,
            "publish_msg_s": round(published.msg_s),
        }
    finally:
        for proc in procs:
            proc.terminate()
        for proc in procs:
            try:
                proc.wait(30)
            except subprocess.TimeoutExpired:
                proc.kill()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--communities", type=int, default=4)
    parser.add_argument("--messages", type=int, default=100_000)
    parser.add_argument("--nodes", type=int, nargs="+", default=[1, 2])
    parser.add_argument(
        "--keep", action="store_true", help="Keep the work directory (hub logs) and print it."
    )
    args = parser.parse_args(argv)
    results: list[dict[str, Any]] = []
    work = Path(tempfile.mkdtemp(prefix="linli-bench-cluster-"))
    if args.keep:
        print(f"work directory: {work}", file=sys.stderr)
    try:
        district = work / "district.yaml"
        generate_district(communities=args.communities, grids=3).write(district)
        messages = stream(district, args.messages)
        payload = encode_stream(messages)
        with postgres(fsync=True) as pg, mosquitto(work / "mosquitto") as broker:
            for nodes in args.nodes:
                database = f"bench_{nodes}_{len(results)}"
                with psycopg.connect(pg.url(), autocommit=True) as admin:
                    admin.execute(f"CREATE DATABASE {database}")
                result = run_size(
                    nodes,
                    work=work / f"n{nodes}-{len(results)}",
                    broker_url=broker.url,
                    store_url=pg.url(database),
                    district=district,
                    communities=args.communities,
                    payload=payload,
                    count=len(messages),
                    host=broker.host,
                    port=broker.port,
                    user=broker.username,
                    password=broker.password,
                )
                results.append(result)
                print(
                    f"{nodes} hub process(es): {result['handled']}/{result['messages']} messages in"
                    f" {result['seconds']:.2f} s = {result['msg_s']} msg/s (published at {result['publish_msg_s']} msg/s)",
                    file=sys.stderr,
                )
    finally:
        if not args.keep:
            shutil.rmtree(work, ignore_errors=True)
    print(
        json.dumps(
            {"bench": "cluster", "communities": args.communities, "cores": os.cpu_count(), "runs": results}
        )
    )
    return 0 if all(r["handled"] == r["messages"] for r in results) else 1


if __name__ == "__main__":
    sys.exit(main())
