"""State at scale: many registered devices with their absence timers; RSS, start-up, kill -9 → ready.

Why: every registered device carries at least one absence deadline (offline after two
heartbeats; living-alone inactivity for door sensors), and those deadlines must survive a
crash. The questions are how much memory that costs, how long a start takes, and how long
after a ``kill -9`` the hub is taking messages again and has worked off what the broker
queued meanwhile.

Steps (one real Mosquitto, a temp data dir, the hub in a process of its own that imports what
``linli run`` does and none of the bench, :mod:`bench.scale_hub`):

1. **cold start**: a fresh data dir and the generated community file; times from process
   start to ``Hub(...)`` built (registry import, rule state, absence timers seeded), to
   ``start()`` returned (HTTP up, MQTT subscribed) and to ``caught_up``; VmRSS then.
2. ``kill -9`` (SIGKILL, no clean shutdown); while it is down, ``backlog`` QoS 1 messages
   are published, which the broker queues for the hub's persistent session.
3. **restart** on the same data dir and config: the same times, plus how many queued messages
   it had handled when ``caught_up`` was set (the hub waits for 1 s without messages, or 15 s
   at most, before its timers run: that quiet second is part of "caught up").
4. **every device reports once** (``every_device_reported``): one Zigbee2MQTT report per
   registered device, QoS 1, into the restarted hub; the time until it has handled them all,
   and VmRSS then, and again once the hub has handed back what the burst freed
   (``settled_rss_mb``, :func:`_settled`). Right after a start only the backlog's devices have
   been heard from, so the start's RSS leaves out what a device costs once it reports (its
   rule slots, plans, series and device state); this is the hub's memory in service, and the
   RSS target is judged on the larger of the two (``rss_mb``, not the settled figure).
5. **restart in service** (``restart_in_service``): the hub writes every rule slot, is killed
   with ``kill -9`` and starts again, now with every device's slots on disk (three or four a
   device, against the one or two of step 3). The ``kill -9`` → ready target is judged on the
   slower of the two restarts.

Bounded: each start must be ready within ``timeout`` seconds, or the section says so.

**The hub's clock** is the wall clock moved to :data:`CLOCK_START` (the ingest stream's Monday
10:00 Asia/Shanghai) when the section begins, the same shift for every start: time runs on
across the restarts as it would, and the rules' windows, shifts and care plans meet the same
hour whatever the date and time of day of the run (the latency section met the night-activity
rule's window at night: docs/benchmarks.md, "Forty-third pass").
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import socket
import subprocess
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

import gmqtt
import orjson
from gmqtt.mqtt.constants import MQTTv311

from bench.run import BASE, STREAM_START
from hub.config import Settings
from hub.ingest.heap import TRIM_INTERVAL_S
from simulators import zigbee2mqtt as z2m
from simulators.community import SimCommunity, SimDevice, generate


def community_for(devices: int, *, seed: int) -> SimCommunity:
    """A generated community of about ``devices`` devices (≈ 2 per elder, shared doors and parking included)."""
    grids = max(1, min(50, devices // 2000 or 1))
    buildings = 10
    elders = max(1, round(devices / (grids * buildings * 2.0)))
    return generate(
        seed=seed, grids=grids, buildings_per_grid=buildings, elders_per_building=elders, parking_per_grid=5
    )


def rss_mb(pid: int) -> float:
    """Resident set size of a process, from /proc (Linux)."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024.0
    except OSError:
        pass
    return 0.0


#: The checkout the bench runs from (the hub process starts there).
_CHECKOUT = Path(__file__).resolve().parents[1]


#: Where the hub's clock stands when the section begins (then running with the wall clock).
CLOCK_START = STREAM_START


class HubProcess:
    """The hub's process (:mod:`bench.scale_hub`) and the parent's end of its connection.

    ``shift``: seconds added to the wall clock for the hub's clock (:data:`CLOCK_START`).
    """

    def __init__(self, *, settings: Settings, spawned: float, shift: float) -> None:
        parent, child = socket.socketpair()
        try:
            with child:
                # From the checkout's root, whatever the caller's directory: ``-m`` finds
                # ``bench`` there before the parent's path has arrived.
                self.popen = subprocess.Popen(
                    [sys.executable, "-m", "bench.scale_hub", str(child.fileno())],
                    pass_fds=(child.fileno(),),
                    cwd=_CHECKOUT,
                )
        except BaseException:
            parent.close()
            raise
        self.conn = Connection(parent.detach())
        try:
            # What a spawned child would get (the compiled tree first,
            # bench.compiled.first_on_path), read before the process imports anything of
            # Linli's; then the settings.
            self.conn.send(list(sys.path))
            self.conn.send((settings, spawned, shift))
        except BaseException:
            self.kill()
            self.join(10)
            self.conn.close()
            raise

    @property
    def pid(self) -> int:
        return self.popen.pid

    def kill(self) -> None:
        """SIGKILL: no clean shutdown, no final flush."""
        self.popen.kill()

    def join(self, timeout: float) -> None:
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.popen.wait(timeout)

    def is_alive(self) -> bool:
        return self.popen.poll() is None


@dataclass(slots=True)
class StartResult:
    ok: bool = False
    seconds_to_ready: float = 0.0
    seconds_to_caught_up: float = 0.0
    rss_mb: float = 0.0
    detail: dict[str, Any] = field(default_factory=dict)
    error: str = ""


def _start(settings: Settings, timeout: float, shift: float) -> tuple[HubProcess, Connection, StartResult]:
    proc = HubProcess(settings=settings, spawned=time.perf_counter(), shift=shift)
    parent = proc.conn
    result = StartResult()
    if not parent.poll(timeout):
        result.error = f"not ready within {timeout:.0f} s (RSS {rss_mb(proc.pid):.0f} MB then)"
        return proc, parent, result
    try:
        detail = parent.recv()
    except EOFError:
        proc.join(5)
        result.error = f"hub process died (exit {proc.popen.poll()})"
        return proc, parent, result
    result.ok = True
    result.detail = detail
    result.seconds_to_ready = detail["ready_s"]
    result.seconds_to_caught_up = detail["caught_up_s"]
    result.rss_mb = round(rss_mb(proc.pid), 1)
    return proc, parent, result


#: Reports published per connection (QoS 1 packet ids are 16 bits).
_REPORT_CHUNK = 20_000


def every_device_once(devices: Sequence[SimDevice]) -> list[tuple[str, bytes]]:
    """One Zigbee2MQTT report per device, as its kind sends it (the publisher drops ``last_seen``:
    the hub stamps its own time)."""
    out: list[tuple[str, bytes]] = []
    for d in devices:
        if d.kind == "door_sensor":
            payload = z2m.contact(is_open=False, battery=80.0, voltage_mv=3100, linkquality=100, ts=0.0)
        elif d.kind == "parking_sensor":
            payload = z2m.occupancy(occupied=False, battery=80.0, linkquality=100, ts=0.0)
        else:
            payload = z2m.report(battery=80.0, voltage_mv=3100, linkquality=100, ts=0.0)
        out.append((z2m.state_topic(d.id, base=d.base_topic or BASE), payload))
    return out


def _every_device_reported(
    proc: HubProcess,
    conn: Connection,
    broker: Any,
    reports: Sequence[tuple[str, bytes]],
    *,
    before: int,
    timeout: float,
) -> dict[str, Any]:
    started = time.perf_counter()
    # In chunks, each on its own connection: one session has 65 535 packet ids for QoS 1.
    for first in range(0, len(reports), _REPORT_CHUNK):
        asyncio.run(_publish_backlog(broker, reports[first : first + _REPORT_CHUNK]))
    want = before + len(reports)
    handled = before
    while time.perf_counter() - started < timeout:
        conn.send("count")
        handled = int(conn.recv())
        if handled >= want:
            out: dict[str, Any] = {
                "messages": len(reports),
                "seconds": round(time.perf_counter() - started, 2),
                "rss_mb": round(rss_mb(proc.pid), 1),
            }
            out.update(_settled(proc, conn))
            return out
        time.sleep(0.2)
    return {
        "messages": len(reports),
        "error": f"handled {handled - before} of {len(reports)} in {timeout:.0f} s",
    }


def _settled(proc: HubProcess, conn: Connection) -> dict[str, Any]:
    """RSS once the hub has handed back what the burst freed: after its next ``malloc_trim``.

    The burst's own buffers (reports queued in the client, rule-state rows and points on their
    way to disk) are freed when it ends; the hub hands that memory back on its next round
    (``hub.ingest.heap.TRIM_INTERVAL_S``). Reported beside ``rss_mb``, which the target is
    still judged on.
    """
    conn.send("trims")
    before, _ = conn.recv()
    deadline = time.perf_counter() + TRIM_INTERVAL_S + 15
    while time.perf_counter() < deadline:
        time.sleep(0.5)
        conn.send("trims")
        runs, longest_s = conn.recv()
        if runs > before:
            return {
                "settled_rss_mb": round(rss_mb(proc.pid), 1),
                "trims": runs,
                "trim_longest_ms": round(longest_s * 1000, 1),
            }
    return {"settled_error": f"no hand-back of freed memory within {TRIM_INTERVAL_S + 15:.0f} s"}


async def _publish_backlog(broker: Any, messages: Sequence[tuple[str, bytes]]) -> None:
    client = gmqtt.Client(f"linli-bench-backlog-{os.getpid()}", clean_session=True)
    client.set_auth_credentials(broker.username, broker.password)
    await client.connect(broker.host, broker.port, version=MQTTv311, keepalive=60)
    for topic, payload in messages:
        doc = orjson.loads(payload)
        doc.pop("last_seen", None)
        client.publish(topic, orjson.dumps(doc), qos=1)
    await asyncio.sleep(1.0)  # PUBACKs in
    await client.disconnect()


def measure(
    *,
    settings: Settings,
    broker: Any,
    backlog: Sequence[tuple[str, bytes]],
    reports: Sequence[tuple[str, bytes]] = (),
    timeout: float,
) -> dict[str, Any]:
    """Cold start, kill -9 with a backlog queued, restart, every device reporting: the section's JSON."""
    out: dict[str, Any] = {}
    shift = CLOCK_START - time.time()
    proc, conn, cold = _start(settings, timeout, shift)
    out["cold_start"] = _json(cold)
    try:
        if not cold.ok:
            out["error"] = cold.error
            return out
        proc.kill()  # SIGKILL: no clean shutdown, no final flush
        proc.join(10)
        asyncio.run(_publish_backlog(broker, backlog))
        proc, conn, warm = _start(settings, timeout, shift)
        out["restart_after_kill9"] = _json(warm)
        out["backlog"] = len(backlog)
        if warm.ok:
            handled = int(warm.detail.get("messages_at_caught_up", 0))
            out["backlog_handled_at_caught_up"] = handled
            if handled < len(backlog):
                out["error"] = f"only {handled} of {len(backlog)} queued messages handled at caught-up"
            elif reports:
                reported = _every_device_reported(
                    proc, conn, broker, reports, before=handled, timeout=timeout
                )
                out["every_device_reported"] = reported
                if "error" in reported:
                    out["error"] = f"every device reporting: {reported['error']}"
                else:
                    proc, conn = _restart_in_service(out, proc, conn, settings, timeout, shift)
        else:
            out["error"] = warm.error
        return out
    finally:
        if proc.is_alive():
            with contextlib.suppress(OSError, BrokenPipeError):
                conn.send("stop")
            proc.join(10)
            if proc.is_alive():
                proc.kill()
                proc.join(5)


def _restart_in_service(
    out: dict[str, Any],
    proc: HubProcess,
    conn: Connection,
    settings: Settings,
    timeout: float,
    shift: float,
) -> tuple[HubProcess, Connection]:
    """Step 5: ``kill -9`` once every device has reported and its slots are on disk, then start.

    The restart of step 3 reads a hub that had only armed its absence deadlines (≈ 1.3 slots
    a device); a hub in service has three or four a device (battery thresholds, living-alone
    inactivity), and that is the restart an operator sees after a crash.
    """
    conn.send("write")
    slots = int(conn.recv())
    proc.kill()
    proc.join(10)
    proc, conn, again = _start(settings, timeout, shift)
    out["restart_in_service"] = {**_json(again), "slots_written": slots}
    if not again.ok:
        out["error"] = f"restart in service: {again.error}"
    return proc, conn


def _json(result: StartResult) -> dict[str, Any]:
    return {
        "ok": result.ok,
        "seconds_to_ready": result.seconds_to_ready,
        "seconds_to_caught_up": result.seconds_to_caught_up,
        "rss_mb": result.rss_mb,
        **result.detail,
        **({"error": result.error} if result.error else {}),
    }
