"""``linli run`` cluster nodes for the benches: start k of them, balance, time one stream, count.

Shared by ``bench.bench_cluster`` (its own command line) and the suite's ``multiprocess``
section (:mod:`bench.multiprocess`). Each node is a real ``linli run`` process with
``cluster.node_id`` and the bench's PostgreSQL store, so it leases communities and opens one
MQTT session per owned community, exactly as deployed (docs/scale.md).

What a size measures: the same pre-encoded stream is published as fast as the broker takes it
(``bench.publisher.blast``, raw-socket QoS 0) once every community's session is known to be
subscribed, and the run lasts until the nodes' ``linli_messages_total`` add up to it (polled
every 0.25 s: the rate's resolution). Around that window the CPU time (utime + stime from
``/proc``) of every node, of Mosquitto, of PostgreSQL (postmaster and its backends) and of the
bench process (publisher and polls) is read, with the whole machine's busy time from
``/proc/stat``: on a shared 2-core machine that says who had the cores.
"""

from __future__ import annotations

import os
import re
import resource
import subprocess
import sys
import time
import urllib.request
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psycopg
import yaml

from bench.publisher import blast, encode_stream
from hub.web.api import token_hash

LINLI = str(Path(sys.executable).with_name("linli"))
TOKEN = "bench-cluster-token"
#: The default: a node whose event loop is blocked longer than this (a burst of alerts) fences
#: itself out of its own communities until it re-claims them (see docs/scale.md).
LEASE_S = 10.0
#: How often the nodes' counters are read while the stream runs: every read costs each node's
#: event loop a request. The measured time ends at the read that finds every message taken, so
#: the last stretch is read finely (:data:`FINE_POLL_S`), from :data:`FINE_FROM` of the stream on.
POLL_S = 0.25
#: The resolution of the measured time. At 0.25 s alone a run of 3.5–4 s was read up to 0.25 s
#: long (0.125 s on average): the rate 3 % low on average, up to 6 %, never high.
FINE_POLL_S = 0.02
#: The share of the stream after which the counters are read every FINE_POLL_S (at ≈ 50 000
#: msg/s the last quarter of 200 000 messages is a second: four coarse reads, ≈ 50 fine ones).
FINE_FROM = 0.75
MARKER = b'{"bench":"marker"}'
_TICK = os.sysconf("SC_CLK_TCK")
_COUNTERS = {
    "messages": "linli_messages_total",
    "signals": "linli_signals_total",
    "alerts_raised": "linli_alerts_raised_total",
    "handler_errors": "linli_handler_errors_total",
}


@dataclass(frozen=True, slots=True)
class BrokerAccess:
    """Where the nodes and the publisher find Mosquitto, and its process (for its CPU time)."""

    url: str
    host: str
    port: int
    username: str
    password: str = field(repr=False)
    pid: int | None = None


@dataclass(frozen=True, slots=True)
class Node:
    name: str
    proc: subprocess.Popen[bytes]
    log: Path
    port: int = 0


def node_config(
    *,
    name: str,
    work: Path,
    district: Path,
    store_url: str,
    broker_url: str,
    clock_start: float | None,
    timeseries: Mapping[str, Any] | None,
) -> Path:
    """A node's YAML configuration. ``clock_start`` pins its clock there (``test_clock_start``)."""
    doc: dict[str, Any] = {
        "data_dir": str(work / name),
        "community_file": str(district),
        "store": {"url": store_url},
        "cluster": {"node_id": name, "lease_s": LEASE_S},
        "http": {"port": 0},
        "mqtt": {"url": broker_url, "client_id": f"linli-{name}"},
        "api_tokens": [{"name": "bench", "sha256": token_hash(TOKEN)}],
    }
    if clock_start is not None:
        doc["test_clock_start"] = clock_start
    if timeseries is not None:
        doc["timeseries"] = dict(timeseries)
    config = work / f"{name}.yaml"
    config.write_text(yaml.safe_dump(doc))
    return config


def start_nodes(configs: list[tuple[str, Path]], work: Path, *, timeout: float = 120.0) -> list[Node]:
    """Start ``linli run`` for each config, one after the other: each once the last is ready.

    One at a time so that each start is timed on its own. (Hubs started together used to race
    to import the community file and the second died of the 200 ms lock timeout; the import is
    serialised now, ``Engine.serialized``.)
    """
    ready: list[Node] = []
    try:
        for name, config in configs:
            log = work / f"{name}.log"
            with log.open("wb") as handle:
                proc = subprocess.Popen(
                    [LINLI, "run", "--config", str(config)],
                    stdout=handle,
                    stderr=subprocess.STDOUT,
                    env=dict(os.environ),
                )
            node = Node(name, proc, log)
            ready.append(node)
            deadline = time.monotonic() + timeout
            while (found := re.search(rb"console http://[^:]+:(\d+)/", log.read_bytes())) is None:
                if proc.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(f"{name} not ready:\n{tail(log)}")
                time.sleep(0.1)
            ready[-1] = Node(name, proc, log, int(found.group(1)))
        return ready
    except BaseException:
        stop_nodes(ready)
        raise


def stop_nodes(nodes: list[Node]) -> None:
    for node in nodes:
        if node.proc.poll() is None:
            node.proc.terminate()
    for node in nodes:
        try:
            node.proc.wait(30)
        except subprocess.TimeoutExpired:
            node.proc.kill()
            node.proc.wait(10)


def tail(log: Path, chars: int = 2000) -> str:
    return log.read_text(errors="replace")[-chars:]


def counters(node: Node) -> dict[str, int]:
    """The node's counters from ``/metrics`` (late when its loop is busy: that is what is measured)."""
    request = urllib.request.Request(
        f"http://127.0.0.1:{node.port}/metrics", headers={"Authorization": f"Bearer {TOKEN}"}
    )
    with urllib.request.urlopen(request, timeout=60) as response:
        text = response.read()
    out: dict[str, int] = {}
    for key, metric in _COUNTERS.items():
        found = re.search(rb"^" + metric.encode() + rb" (\S+)$", text, re.MULTILINE)
        out[key] = int(float(found.group(1))) if found else 0
    quarantined = re.findall(rb"^linli_quarantined_total\{[^}]*\} (\S+)$", text, re.MULTILINE)
    out["quarantined"] = sum(int(float(v)) for v in quarantined)
    return out


def taken(nodes: list[Node]) -> int:
    return sum(counters(node)["messages"] for node in nodes)


def owners(store_url: str) -> dict[str, str]:
    """Community → owning node, for live leases (the hub-wide partition left out)."""
    with psycopg.connect(store_url, autocommit=True) as conn:
        rows = conn.execute(
            "SELECT community, owner FROM community_leases WHERE owner IS NOT NULL AND community <> 'hub'"
            " AND expires_at > extract(epoch FROM clock_timestamp())"
        ).fetchall()
    return {str(c): str(o) for c, o in rows}


def wait_balanced(store_url: str, communities: int, nodes: int, *, timeout: float = 120.0) -> dict[str, str]:
    """Until every community is leased and each node holds its fair share (⌈c / n⌉ at most)."""
    share = -(-communities // nodes)
    deadline = time.monotonic() + timeout
    while True:
        held = owners(store_url)
        per_node = [list(held.values()).count(o) for o in set(held.values())]
        if len(held) == communities and len(per_node) == nodes and max(per_node) <= share:
            return held
        if time.monotonic() > deadline:
            raise RuntimeError(f"not balanced after {timeout:.0f} s: {held}")
        time.sleep(0.2)


def wait_subscribed(
    nodes: list[Node], roots: list[str], broker: BrokerAccess, *, timeout: float = 30.0
) -> None:
    """Until a marker on every community's root is taken in one round: every session subscribed.

    A lease is taken before its session's SUBACK, and a QoS 0 message for a root nobody has
    subscribed to yet is dropped by the broker: the stream must not start before. Rounds are
    sequential and a round ends after 0.5 s without a change, so a round's increase is the
    number of roots whose marker someone took.
    """
    deadline = time.monotonic() + timeout
    markers = [(f"{root}/bridge/linli-bench-marker", MARKER) for root in roots]
    packets = encode_stream(markers)
    while time.monotonic() < deadline:
        before = taken(nodes)
        blast(
            host=broker.host,
            port=broker.port,
            username=broker.username,
            password=broker.password,
            stream=packets,
            messages=len(markers),
        )
        seen, quiet_since = before, time.monotonic()
        while time.monotonic() - quiet_since < 0.5:
            time.sleep(0.1)
            now = taken(nodes)
            if now != seen:
                seen, quiet_since = now, time.monotonic()
        if seen - before == len(roots):
            return
    raise RuntimeError(f"not every community's session took its marker within {timeout:.0f} s")


# -- CPU time from /proc ------------------------------------------------------------------------


def proc_cpu(pid: int) -> float:
    """utime + stime of one process in seconds (0 if it is gone)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    # After the command: state is field 3, utime and stime fields 14 and 15 (proc(5)).
    return (int(fields[11]) + int(fields[12])) / _TICK


def tree_cpu(root: int) -> dict[int, float]:
    """CPU seconds of ``root`` and of its direct children (PostgreSQL's backends), by pid."""
    out = {root: proc_cpu(root)}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            after = (entry / "stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(after[1]) == root:
            out[int(entry.name)] = (int(after[11]) + int(after[12])) / _TICK
    return out


def machine_busy() -> tuple[float, float]:
    """(busy, total) CPU seconds of the whole machine since boot, all cores (``/proc/stat``)."""
    values = [int(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    idle = values[3] + (values[4] if len(values) > 4 else 0)  # idle + iowait
    total = sum(values[:8])  # guest time is already counted in user
    return (total - idle) / _TICK, total / _TICK


def postmaster_pid(socket_dir: Path) -> int | None:
    try:
        return int((socket_dir / "data" / "postmaster.pid").read_text().split("\n", 1)[0])
    except (OSError, ValueError):
        return None


@dataclass(slots=True)
class CpuSnapshot:
    nodes: list[float]
    broker: float
    postgres: dict[int, float]
    bench: float
    machine: tuple[float, float]

    @classmethod
    def take(cls, nodes: list[Node], broker_pid: int | None, pg_pid: int | None) -> CpuSnapshot:
        usage = resource.getrusage(resource.RUSAGE_SELF)
        return cls(
            nodes=[proc_cpu(n.proc.pid) for n in nodes],
            broker=proc_cpu(broker_pid) if broker_pid else 0.0,
            postgres=tree_cpu(pg_pid) if pg_pid else {},
            bench=usage.ru_utime + usage.ru_stime,
            machine=machine_busy(),
        )


def cpu_between(a: CpuSnapshot, b: CpuSnapshot, seconds: float) -> dict[str, Any]:
    """CPU seconds each party used between two snapshots, and the machine's busy share."""
    postgres = sum(cpu - a.postgres.get(pid, 0.0) for pid, cpu in b.postgres.items())
    nodes = [round(y - x, 2) for x, y in zip(a.nodes, b.nodes, strict=True)]
    busy = b.machine[0] - a.machine[0]
    total = b.machine[1] - a.machine[1]
    ours = sum(nodes) + (b.broker - a.broker) + postgres + (b.bench - a.bench)
    return {
        "nodes_cpu_s": nodes,
        "broker_cpu_s": round(b.broker - a.broker, 2),
        "postgres_cpu_s": round(postgres, 2),
        "bench_process_cpu_s": round(b.bench - a.bench, 2),
        "machine_busy_cpu_s": round(busy, 2),
        #: Busy CPU of the machine that none of the above used: other people's work.
        "other_cpu_s": round(max(0.0, busy - ours), 2),
        "machine_busy_share": round(busy / total, 3) if total > 0 else 0.0,
        "cores_seconds": round(total, 2),
        "wall_seconds": round(seconds, 3),
    }


# -- one cluster size ---------------------------------------------------------------------------


def outcome(store_url: str) -> dict[str, int]:
    """What the stream made the cluster store: alerts, cases, notifications (from PostgreSQL)."""
    with psycopg.connect(store_url, autocommit=True) as conn:
        return {
            table: int(conn.execute(f"SELECT count(*) FROM {table}").fetchone()[0])  # type: ignore[index]
            for table in ("alerts", "cases", "notifications")
        }


def settled_outcome(store_url: str, *, quiet_s: float = 1.5, timeout: float = 60.0) -> dict[str, int]:
    """The store's counts once they have not changed for ``quiet_s`` (cases are filed after alerts)."""
    deadline = time.monotonic() + timeout
    last, since = outcome(store_url), time.monotonic()
    while time.monotonic() - since < quiet_s and time.monotonic() < deadline:
        time.sleep(0.25)
        now = outcome(store_url)
        if now != last:
            last, since = now, time.monotonic()
    return last


def run_size(
    nodes: int,
    *,
    work: Path,
    broker: BrokerAccess,
    store_url: str,
    pg_pid: int | None,
    district: Path,
    roots: list[str],
    payload: bytes,
    count: int,
    clock_start: float | None,
    timeseries: Mapping[str, Any] | None = None,
    idle_timeout: float = 15.0,
) -> dict[str, Any]:
    """Start ``nodes`` nodes on a fresh database, publish the stream once, report what they did."""
    work.mkdir(parents=True, exist_ok=True)
    configs = [
        (
            name,
            node_config(
                name=name,
                work=work,
                district=district,
                store_url=store_url,
                broker_url=broker.url,
                clock_start=clock_start,
                timeseries=timeseries,
            ),
        )
        for name in (f"bench-{nodes}-{n}" for n in range(nodes))
    ]
    running = start_nodes(configs, work)
    try:
        held = wait_balanced(store_url, len(roots), nodes)
        wait_subscribed(running, roots, broker)
        start_counts = [counters(node) for node in running]
        before = sum(c["messages"] for c in start_counts)
        cpu_start = CpuSnapshot.take(running, broker.pid, pg_pid)
        published = blast(
            host=broker.host,
            port=broker.port,
            username=broker.username,
            password=broker.password,
            stream=payload,
            messages=count,
        )
        # A read now, not ``before``: nodes that kept pace have taken nearly all of it already,
        # and a coarse first wait would end the measured time up to POLL_S late (found in review).
        seen = taken(running)
        last, last_change = seen, time.monotonic()
        while seen - before < count and time.monotonic() - last_change < idle_timeout:
            time.sleep(POLL_S if seen - before < FINE_FROM * count else FINE_POLL_S)
            seen = taken(running)
            if seen != last:
                last, last_change = seen, time.monotonic()
        finished = time.perf_counter()
        cpu_end = CpuSnapshot.take(running, broker.pid, pg_pid)
        seconds = finished - published.started
        end_counts = [counters(node) for node in running]
        handled = seen - before
        cpu = cpu_between(cpu_start, cpu_end, seconds)
        per_node = []
        for node, a, b, node_cpu in zip(running, start_counts, end_counts, cpu["nodes_cpu_s"], strict=True):
            taken_here = b["messages"] - a["messages"]
            per_node.append(
                {
                    "node": node.name,
                    "communities": sorted(c for c, o in held.items() if o == node.name),
                    "messages": taken_here,
                    "cpu_s": node_cpu,
                    "cpu_us_per_msg": round(node_cpu / taken_here * 1e6, 1) if taken_here else 0.0,
                    "cpu_busy": round(node_cpu / seconds, 3) if seconds > 0 else 0.0,
                }
            )
        totals = {
            k: sum(b[k] - a[k] for a, b in zip(start_counts, end_counts, strict=True)) for k in end_counts[0]
        }
        counts = settled_outcome(store_url)
        nodes_cpu = sum(cpu["nodes_cpu_s"])
        # Everything the stream cost: nodes, broker, store, publisher. On a shared machine the
        # rate is the share of the cores these got; the cost per message is what they would need.
        stream_cpu = nodes_cpu + cpu["broker_cpu_s"] + cpu["postgres_cpu_s"] + cpu["bench_process_cpu_s"]
        cores = len(os.sched_getaffinity(0))
        return {
            "nodes": nodes,
            "messages": count,
            "handled": handled,
            "lost": count - handled,
            "seconds": round(seconds, 3),
            "msg_s": round(handled / seconds) if seconds > 0 else 0,
            "publish_msg_s": round(published.msg_s),
            #: All nodes' CPU per message of the stream: the cluster's cost, not the machine's.
            "cpu_us_per_msg": round(nodes_cpu / handled * 1e6, 1) if handled else 0.0,
            "per_node": per_node,
            "stream_cpu_us_per_msg": round(stream_cpu / handled * 1e6, 1) if handled else 0.0,
            #: What that cost allows on this machine's cores if nothing else ran: the whole stream's
            #: CPU over every core, and the nodes' over at most one core per node (one event loop).
            "msg_s_if_cores_free": round(
                min(cores * handled / stream_cpu, min(nodes, cores) * handled / nodes_cpu)
            )
            if stream_cpu > 0 and nodes_cpu > 0
            else 0,
            "nodes_cpu_share": round(nodes_cpu / seconds, 3) if seconds > 0 else 0.0,
            "cpu": cpu,
            "outcome": {
                "signals": totals["signals"],
                "alerts_raised": totals["alerts_raised"],
                **counts,
                "quarantined": totals["quarantined"],
            },
            "handler_errors": totals["handler_errors"],
        }
    except Exception as exc:
        logs = "\n".join(f"--- {n.name}\n{tail(n.log, 800)}" for n in running)
        raise RuntimeError(f"{nodes} node(s): {exc}\n{logs}") from exc
    finally:
        stop_nodes(running)
