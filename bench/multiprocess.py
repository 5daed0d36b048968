"""Issue 14, item 5: the machine with 2 hub processes against 1, on one district and one stream.

The processes are ``linli run`` cluster nodes (:mod:`bench.cluster_nodes`) sharing the bench's
PostgreSQL: a district of communities, each with its own Zigbee2MQTT root, is split between
the nodes by leases, one MQTT session per owned community (issue 13, docs/scale.md). Each
node does full work: the shipped rules with persisted state, alerts, casework and
notifications in PostgreSQL, time series to the bench's InfluxDB when there is one.

**The stream and the clock.** The stream is the ingest section's (``bench.run.build_messages``:
door contacts, parking, battery reports, one SOS press per 1 000), for the district's
Zigbee2MQTT devices under their communities' roots, deterministic for a seed. The ingest
section moves a pinned clock message by message (``bench.run.StreamPace``, inside the hub
process); a ``linli run`` node cannot be paced from outside, and with two nodes there is no
one stream order to pace by (each node's sessions interleave as the broker delivers). So
here the stream's device times are squeezed into the :data:`SPAN_S` seconds after
``STREAM_START`` (a Monday 10:00 Asia/Shanghai) and each node's clock is pinned with
``test_clock_start`` at the end of that span, where it **stands still**. Then:

* every rule timer falls due at least a minute after its event (the shortest ``for`` of the
  shipped rules is 1 min, absence deadlines are hours), so after a moment the clock never
  reaches: none fires, in either size, whatever the interleaving;
* a case is filed at its alert's device time, so its immediate steps (the assignee, the duty
  officer, guardians: ``after 0s``) are due and sent exactly once, and its later ones (60 s,
  3 min) never are;
* no device time is ahead of the clock, so none is replaced by the receive time.

The outcome (signals, alerts, cases, notifications) comes from the presses and the threshold
rules, in each device's own order, and is the same for 1 and 2 nodes and on any date. What the
ingest section does and this one does not: duration timers and escalation steps firing in
stream order (its door-held-open alerts and escalation notifications).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psycopg

from bench.cluster_nodes import BrokerAccess, postmaster_pid, run_size
from bench.publisher import encode_stream
from bench.run import DEVICE_STEP_S, STREAM_START, StreamMix, build_messages
from simulators.district import generate_district
from simulators.types import Family
from tests.support.servers import Postgres

#: Device seconds the whole stream spans, and where the nodes' clocks stand (``STREAM_START``
#: + this): under the shortest rule duration (1 min), so no rule timer ever falls due.
SPAN_S = 50.0
CLOCK_AT = STREAM_START + SPAN_S


@dataclass(frozen=True, slots=True)
class DistrictStream:
    """The district file, its communities' Zigbee2MQTT roots and the encoded stream."""

    district_file: Path
    roots: tuple[str, ...]
    devices: int
    streamed_devices: int
    messages: int
    mix: StreamMix
    step: float
    payload: bytes


def district_stream(
    work: Path,
    *,
    communities: int,
    messages: int,
    seed: int,
    grids: int,
    buildings_per_grid: int,
    elders_per_building: int,
    parking_per_grid: int,
) -> DistrictStream:
    district = generate_district(
        communities=communities,
        seed=seed,
        grids=grids,
        buildings_per_grid=buildings_per_grid,
        elders_per_building=elders_per_building,
        parking_per_grid=parking_per_grid,
    )
    district_file = work / "district.yaml"
    district.write(district_file)
    # The district mixes in Tasmota devices; the stream is Zigbee2MQTT, as in the ingest section.
    z2m = [d for d in district.devices if d.family is Family.ZIGBEE2MQTT]
    step = min(DEVICE_STEP_S, SPAN_S / max(1, messages))
    built, mix = build_messages(z2m, messages, seed=seed, step=step)
    roots = tuple(sorted({d.base_topic for d in z2m}))
    if len(roots) != communities or "" in roots:
        raise RuntimeError(f"expected one Zigbee2MQTT root per community, got {roots}")
    return DistrictStream(
        district_file=district_file,
        roots=roots,
        devices=len(district.devices),
        streamed_devices=len(z2m),
        messages=len(built),
        mix=mix,
        step=step,
        payload=encode_stream(built),
    )


def measure(
    *,
    work: Path,
    stream: DistrictStream,
    broker: BrokerAccess,
    pg: Postgres,
    sizes: Sequence[int] = (1, 2),
    timeseries_for: Callable[[int], Mapping[str, Any] | None] | None = None,
) -> dict[str, Any]:
    """Each cluster size in turn on a fresh database, the same stream; the section's JSON."""
    section: dict[str, Any] = {
        "communities": len(stream.roots),
        "devices": stream.devices,
        "streamed_devices": stream.streamed_devices,
        "messages": stream.messages,
        "sos_presses": stream.mix.sos,
        "device_span_s": round(stream.step * stream.messages, 1),
        "clock": "pinned (test_clock_start) at stream_start + span, standing still: no rule timer due",
        "clock_at": CLOCK_AT,
        "sizes": [],
    }
    pg_pid = postmaster_pid(pg.socket_dir)
    for index, nodes in enumerate(sizes):
        database = f"bench_mp_{nodes}_{index}"
        with psycopg.connect(pg.url(), autocommit=True) as admin:
            admin.execute(f"CREATE DATABASE {database}")
        result = run_size(
            nodes,
            work=work / f"n{nodes}-{index}",
            broker=broker,
            store_url=pg.url(database),
            pg_pid=pg_pid,
            district=stream.district_file,
            roots=list(stream.roots),
            payload=stream.payload,
            count=stream.messages,
            clock_start=CLOCK_AT,
            timeseries=timeseries_for(nodes) if timeseries_for else None,
        )
        section["sizes"].append(result)
    summarise(section)
    return section


def summarise(section: dict[str, Any]) -> None:
    """The figures the suite's table and targets read, from the sizes measured."""
    by_size = {r["nodes"]: r for r in section["sizes"]}
    for nodes, r in by_size.items():
        suffix = "1_node" if nodes == 1 else f"{nodes}_nodes"
        section[f"msg_s_{suffix}"] = r["msg_s"]
        section[f"cpu_us_per_msg_{suffix}"] = r["cpu_us_per_msg"]
    if 1 in by_size and 2 in by_size and by_size[1]["msg_s"]:
        section["ratio_2_vs_1"] = round(by_size[2]["msg_s"] / by_size[1]["msg_s"], 3)
    section["lost"] = sum(r["lost"] for r in section["sizes"])
    outcomes = [r["outcome"] for r in section["sizes"]]
    section["same_outcome"] = all(o == outcomes[0] for o in outcomes)
    section["outcome"] = outcomes[0] if outcomes else {}


def failed(section: Mapping[str, Any]) -> bool:
    """A lost message, an outcome that differs between sizes, or no result at all."""
    return bool(
        section.get("error")
        or section.get("lost")
        or not section.get("same_outcome")
        or not all(r.get("msg_s") for r in section.get("sizes", []))
        or not section.get("sizes")
    )


def table_line(section: Mapping[str, Any]) -> str:
    if section.get("error"):
        return f"error: {str(section['error'])[:120]}"
    parts = []
    for r in section.get("sizes", []):
        per_node = ", ".join(f"{n['cpu_us_per_msg']}" for n in r["per_node"])
        parts.append(
            f"{r['nodes']} node(s) {r['msg_s']:,} msg/s (CPU µs/msg per node {per_node}; "
            f"nodes had {r['nodes_cpu_share']:.2f} cores, Mosquitto {r['cpu']['broker_cpu_s']} s; "
            f"whole stream {r['stream_cpu_us_per_msg']} µs/msg → ≤ {r['msg_s_if_cores_free']:,} msg/s "
            "on free cores)"
        )
    return (
        "; ".join(parts)
        + f"; 2/1 = {section.get('ratio_2_vs_1', 0)}, lost {section.get('lost')}, "
        + ("same outcome" if section.get("same_outcome") else "OUTCOME DIFFERS")
    )
