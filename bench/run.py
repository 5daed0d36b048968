"""Ingest benchmark: the MQTT client's ceiling vs the hub end to end, on the same N messages.

Run from the repo root (``make bench`` does this)::

    .venv/bin/python -m bench.run [--messages 200000] [--profile]

With ``--profile``, ``LINLI_BENCH_PROFILE_OUT=FILE`` also writes the hub phase's whole profile
there (``pstats``), for callers and callees beyond the printed top entries.

One real Mosquitto (``tests.support.servers.mosquitto``, auth on, unlimited queues) serves
both phases. Each consumer runs in a fresh ``spawn`` process with its own event loop, and the
publisher (:mod:`bench.publisher`) in another, so the consumer is what gets measured:

1. **client ceiling**: a bare gmqtt 0.8.0 client (MQTT 3.1.1, subscription QoS 0) whose
   ``on_message`` only does ``orjson.loads(payload)`` and counts;
2. **hub**: a real :class:`hub.app.Hub` (temp data dir, generated community, HTTP port 0)
   subscribed to ``zigbee2mqtt/#``; a message counts once ``pipeline.stats.messages`` says
   it was handled.

Rate = N / (time of the Nth message handled − time of the 1st). In-process, without MQTT,
it also times ``AdapterRouter.decode`` and ``Pipeline.handle`` over the same payloads.
Human-readable lines go to stderr; stdout gets exactly one JSON line.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import cProfile
import io
import json
import logging
import multiprocessing
import os
import platform
import pstats
import random
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

import gmqtt
import orjson
from gmqtt.mqtt.constants import MQTTv311

from adapters.router import AdapterRouter, Family, FamilySource
from bench.compiled import first_on_path
from bench.publisher import PublishResult, encode_stream, publisher_main
from hub.app import Hub
from hub.cases.model import Case
from hub.clock import ManualClock
from hub.community.registry import Registry
from hub.config import Settings, load_settings
from hub.ingest import hot_path
from hub.ingest.heap import settle_heap
from simulators import zigbee2mqtt as z2m
from simulators.community import SimCommunity, SimDevice, generate
from tests.support.servers import mosquitto

BASE = "zigbee2mqtt"
SUBSCRIPTION = f"{BASE}/#"
MARKER_TOPIC = f"{BASE}/bridge/linli-bench-marker"
#: Share of each message kind in the stream (the rest are battery reports).
SOS_EVERY = 1000  # 0.1 %
DOOR_SHARE = 0.60
PARKING_SHARE = 0.10
#: Below this CPU-busy share the consumer was waiting for input, so it was not what got measured.
BUSY_WARNING = 0.9
#: Device seconds between two messages of the stream (200 000 messages span 50 minutes).
#: Fixed per message, not per run, so the work per message (how many doors stay open long
#: enough to alert, how many timers fire) is the same for every N, the smoke test's tiny one too.
DEVICE_STEP_S = 0.015
#: Device time of the first message: a fixed Monday 10:00 Asia/Shanghai (02:00 UTC), so the
#: stream (and every rule window, shift and SLA it meets) is the same whatever today's date and
#: time of day are. The hub under test runs on a clock pinned to the stream (:class:`StreamPace`).
STREAM_START = datetime(2026, 3, 2, 2, 0, tzinfo=UTC).timestamp()


def say(text: str) -> None:
    print(text, file=sys.stderr, flush=True)


# -- the message stream ------------------------------------------------------------------------


def _battery_report(*, battery: float, voltage_mv: int, linkquality: int, ts: float) -> bytes:
    """A periodic report with no state change (e.g. a TS0215A button checking in).

    ``simulators.zigbee2mqtt`` has no builder for this shape, so it is written here.
    """
    return orjson.dumps(
        {
            "battery": battery,
            "voltage": voltage_mv,
            "linkquality": linkquality,
            "last_seen": datetime.fromtimestamp(ts, UTC).isoformat(timespec="seconds"),
        }
    )


@dataclass(slots=True)
class StreamMix:
    door: int = 0
    parking: int = 0
    battery: int = 0
    sos: int = 0
    sos_devices: set[str] = field(default_factory=set)


def build_messages(
    devices: Sequence[SimDevice], n: int, *, seed: int, step: float | None = None
) -> tuple[list[tuple[str, bytes]], StreamMix]:
    """N Zigbee2MQTT state messages for the registered devices, deterministic for a seed.

    Each device publishes under its community's root (``base_topic``, else ``zigbee2mqtt``).
    ``step`` overrides the device seconds between messages (:data:`DEVICE_STEP_S`): the
    multiprocess section squeezes a stream into 50 device seconds (``bench.multiprocess``).
    """
    rng = random.Random(seed)
    doors = [d for d in devices if d.kind == "door_sensor"]
    parking = [d for d in devices if d.kind == "parking_sensor"]
    buttons = [d for d in devices if d.kind == "sos_button"]
    if not (doors and parking and buttons):
        raise SystemExit("the generated community needs door, parking and SOS devices")
    battery = {d.id: float(rng.randrange(40, 101)) for d in devices}
    closed = {d.id: True for d in doors}
    occupied = {d.id: False for d in parking}
    start, default_step = stream_times(n)
    step = default_step if step is None else step
    mix = StreamMix()
    out: list[tuple[str, bytes]] = []
    for i in range(n):
        ts = start + i * step
        lq = rng.randrange(40, 200)
        if i % SOS_EVERY == SOS_EVERY // 2:
            d = rng.choice(buttons)
            out.append(
                (
                    z2m.state_topic(d.id, base=d.base_topic or BASE),
                    _trim(z2m.sos_press(action=d.sos_action, battery=battery[d.id], linkquality=lq, ts=ts)),
                )
            )
            mix.sos += 1
            mix.sos_devices.add(d.id)
            continue
        r = rng.random()
        if r < DOOR_SHARE:
            d = rng.choice(doors)
            closed[d.id] = not closed[d.id]
            payload = z2m.contact(
                is_open=not closed[d.id],
                battery=battery[d.id],
                voltage_mv=2800 + int(battery[d.id] * 4),
                linkquality=lq,
                ts=ts,
            )
            mix.door += 1
        elif r < DOOR_SHARE + PARKING_SHARE:
            d = rng.choice(parking)
            occupied[d.id] = not occupied[d.id]
            payload = z2m.occupancy(occupied=occupied[d.id], battery=battery[d.id], linkquality=lq, ts=ts)
            mix.parking += 1
        else:
            d = rng.choice(buttons)
            battery[d.id] = max(1.0, battery[d.id] - 0.5)
            payload = _battery_report(
                battery=battery[d.id], voltage_mv=2800 + int(battery[d.id] * 4), linkquality=lq, ts=ts
            )
            mix.battery += 1
        out.append((z2m.state_topic(d.id, base=d.base_topic or BASE), _trim(payload)))
    return out, mix


def stream_times(n: int) -> tuple[float, float]:
    """(device time of message 0, seconds between messages): message i is at ``start + i * step``."""
    return STREAM_START, DEVICE_STEP_S


class StreamPace:
    """Pins a hub's :class:`~hub.clock.ManualClock` to the device time of the stream.

    Why: with the real clock the rules compare device times with "now", so which duration
    timers fire (and how many alerts, cases and notifications follow) depended on the date,
    the time of day and when the hub's 1 s timer loop happened to run. Here the clock reads
    the device time of the message being handled, and right after each message every rule
    timer and casework deadline due by then runs, synchronously, in stream order. The hub's own
    background loops then find nothing due at the same clock reading, so a seed gives the same
    signals, alerts, cases and notifications on every run.

    Cost per message: one ``clock.set``, one heap peek (``Evaluator.next_due``) and a float
    compare; ``Casework.next_deadline`` (a query) is re-read only after a signal or a case change.
    """

    def __init__(self, hub: Hub, n: int) -> None:
        clock = hub.clock
        if not isinstance(clock, ManualClock):
            raise TypeError("StreamPace needs a hub built with a ManualClock")
        self.hub = hub
        self.clock = clock
        self.start, self.step = stream_times(n)
        self.handled = 0
        self._signals = -1
        self._case_due: float | None = None
        self.case_dirty = True
        self.timer_runs = 0
        self.casework_ticks = 0

    def before(self) -> None:
        """Set the clock to the device time of the next stream message."""
        self.clock.set(self.start + self.handled * self.step)

    def after(self) -> None:
        """Run the rule timers and casework deadlines due at the current stream time."""
        self.handled += 1
        hub = self.hub
        now = self.clock.now()
        due = hub.evaluator.next_due()
        if due is not None and due <= now:
            hub.run_due_rules()
            self.timer_runs += 1
        signals = hub.pipeline.stats.signals
        if signals != self._signals or self.case_dirty:
            self._signals, self.case_dirty = signals, False
            self._case_due = hub.casework.next_deadline()
        if self._case_due is not None and self._case_due <= now:
            hub.casework.tick()
            self.casework_ticks += 1
            self._case_due = hub.casework.next_deadline()


def outcome_counts(hub: Hub) -> dict[str, int]:
    """What the stream made the hub do, read from its store: equal for equal seeds (the smoke test checks)."""
    store = hub.store  # either engine: Store.execute, not the SQLite connection
    counts = {
        "alerts": int(store.execute("SELECT count(*) FROM alerts").fetchone()[0]),
        "notifications": int(store.execute("SELECT count(*) FROM notifications").fetchone()[0]),
        "cases": int(store.execute("SELECT count(*) FROM cases").fetchone()[0]),
    }
    return counts


def _trim(payload: bytes) -> bytes:
    """A right-sized copy: orjson ≥ 3.12 returns bytes with a ≥ 4 KiB allocation behind them."""
    return bytes(memoryview(payload))


def hub_settings(
    *,
    broker_url: str,
    data_dir: Path,
    community_file: Path,
    client_id: str,
    priority_lane: bool = False,
    **extra: Any,
) -> Settings:
    """The hub's settings for a bench run; ``extra`` are further overrides (e.g. ``timeseries``).

    The SOS priority lane is off unless asked for: the ingest and scale runs replay a stream on
    a clock pinned to it, and a press the lane takes ahead of the bulk backlog would move that
    clock past the backlog's device times (absence timers firing by the thousand). The SOS
    latency runs (real clock) turn it on.
    """
    data_dir.mkdir(parents=True, exist_ok=True)
    return load_settings(
        None,
        environ={},
        overrides={
            "data_dir": str(data_dir),
            "community_file": str(community_file),
            "mqtt": {"url": broker_url, "client_id": client_id, "priority_lane": priority_lane},
            "http": {"port": 0},
            **extra,
        },
    )


# -- consumers (each runs in its own spawned process) -------------------------------------------


@dataclass(frozen=True, slots=True)
class Endpoint:
    """Where the broker listens (``tests.support.servers.Broker`` minus its process handle)."""

    host: str
    port: int
    username: str
    password: str = field(repr=False)


@dataclass(slots=True)
class ConsumerResult:
    phase: str
    expected: int
    received: int
    seconds: float
    msg_s: float
    #: ``perf_counter()`` when the 1st and the Nth message were handled.
    first: float = 0.0
    last: float = 0.0
    #: CPU time the consumer process used between them: ≈ ``seconds`` means it was saturated.
    cpu_seconds: float = 0.0
    extra: dict[str, Any] = field(default_factory=dict)
    profile: str = ""


async def _wait_until_done(
    done: asyncio.Event, count: Callable[[], int], *, first_timeout: float, idle_timeout: float
) -> None:
    """Return when ``done`` is set, or when no message has arrived for too long (loss)."""
    last_count, last_change = 0, time.monotonic()
    while not done.is_set():
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(done.wait(), 0.5)
        now, current = time.monotonic(), count()
        if current != last_count:
            last_count, last_change = current, now
        elif now - last_change > (first_timeout if current == 0 else idle_timeout):
            return


def _rate(n: int, first: float, last: float) -> tuple[float, float]:
    seconds = last - first
    return seconds, (n / seconds if seconds > 0 else 0.0)


async def _ceiling(
    conn: Connection, broker: Endpoint, n: int, timeouts: tuple[float, float]
) -> ConsumerResult:
    loads = orjson.loads
    perf = time.perf_counter
    cpu = time.process_time
    state = {"count": 0, "first": 0.0, "last": 0.0, "cpu_first": 0.0, "cpu_last": 0.0}
    done = asyncio.Event()
    subscribed = asyncio.Event()

    def on_message(client: gmqtt.Client, topic: str, payload: bytes, qos: int, properties: Any) -> int:
        loads(payload)
        count = state["count"] = state["count"] + 1
        if count == 1:
            state["first"], state["cpu_first"] = perf(), cpu()
        if count == n:
            state["last"], state["cpu_last"] = perf(), cpu()
            done.set()
        return 0

    client = gmqtt.Client(f"linli-bench-ceiling-{os.getpid()}", clean_session=True)
    client.set_auth_credentials(broker.username, broker.password)
    client.on_message = on_message
    client.on_subscribe = lambda *_: subscribed.set()
    await client.connect(broker.host, broker.port, version=MQTTv311, keepalive=60)
    client.subscribe(SUBSCRIPTION, qos=0)
    await asyncio.wait_for(subscribed.wait(), 10)
    conn.send("ready")
    await _wait_until_done(
        done, lambda: int(state["count"]), first_timeout=timeouts[0], idle_timeout=timeouts[1]
    )
    await client.disconnect()
    received = int(state["count"])
    seconds, msg_s = _rate(n, state["first"], state["last"]) if received >= n else (0.0, 0.0)
    return ConsumerResult(
        "client_ceiling",
        n,
        received,
        seconds,
        msg_s,
        first=state["first"],
        last=state["last"],
        cpu_seconds=state["cpu_last"] - state["cpu_first"],
    )


def ceiling_main(conn: Connection, broker: Endpoint, n: int, timeouts: tuple[float, float]) -> None:
    result = asyncio.run(_ceiling(conn, broker, n, timeouts))
    conn.send(result)
    conn.close()


class TimedHub(Hub):
    """The real hub on a stream-pinned clock; notes when the 1st and the Nth message were handled.

    Only ``_on_message`` (the real one, wrapped by :class:`StreamPace`) and ``_case_changed``
    (to tell the pace a casework deadline may have moved) are overridden.
    """

    _baseline: int
    _expect: int
    first: float
    last: float
    cpu_first: float
    cpu_last: float
    done: asyncio.Event
    pace: StreamPace | None = None

    def arm(self, expect: int) -> None:
        self._baseline = self.pipeline.stats.messages
        self._expect = expect
        self.first = self.last = self.cpu_first = self.cpu_last = 0.0
        self.done = asyncio.Event()

    def _on_message(self, topic: str, payload: bytes, qos: int, retain: bool, dup: bool = False) -> None:
        pace = self.pace
        if pace is not None:
            pace.before()
            super()._on_message(topic, payload, qos, retain, dup)
            pace.after()
        else:
            super()._on_message(topic, payload, qos, retain, dup)
        n = self.pipeline.stats.messages - self._baseline
        if n == 1:
            self.first, self.cpu_first = time.perf_counter(), time.process_time()
        if n == self._expect:
            self.last, self.cpu_last = time.perf_counter(), time.process_time()
            self.done.set()

    def _case_changed(self, case: Case) -> None:
        super()._case_changed(case)
        if self.pace is not None:
            self.pace.case_dirty = True


async def _hub(
    conn: Connection, settings: Settings, n: int, timeouts: tuple[float, float], profile: bool
) -> ConsumerResult:
    hub = TimedHub(settings=settings, clock=ManualClock(start=STREAM_START))
    hub.arm(1 << 62)  # nothing counts until the marker is through
    profiler = cProfile.Profile() if profile else None
    async with hub:
        # The hub subscribes in on_connect without exposing SUBACK: publish a marker on our own
        # connection (the broker handles SUBSCRIBE before it) and wait until the hub handles it.
        await hub.mqtt.publish(MARKER_TOPIC, b'{"bench":"marker"}', qos=0)
        deadline = time.monotonic() + 10
        while hub.pipeline.stats.messages == 0:
            if time.monotonic() > deadline:
                raise TimeoutError("the hub never received its own marker message")
            await asyncio.sleep(0.01)
        before = asdict(hub.pipeline.stats)
        hub.pace = StreamPace(hub, n)
        hub.arm(n)
        if profiler is not None:
            profiler.enable()
        conn.send("ready")
        await _wait_until_done(
            hub.done,
            lambda: hub.pipeline.stats.messages - before["messages"],
            first_timeout=timeouts[0],
            idle_timeout=timeouts[1],
        )
        if profiler is not None:
            profiler.disable()
        stats = {k: v - before[k] for k, v in asdict(hub.pipeline.stats).items()}
        await asyncio.sleep(1.0)  # let the dispatcher deliver the alerts' notifications
        extra: dict[str, Any] = {
            **stats,
            **outcome_counts(hub),
            "timer_runs": hub.pace.timer_runs,
            "casework_ticks": hub.pace.casework_ticks,
            "notifications_delivered": hub.dispatcher.delivered,
            "notification_failures": hub.dispatcher.failed_attempts,
            "handler_errors": hub.mqtt.handler_errors,
            "devices_seen": len(hub.states),
            "unassigned_devices": len(hub.registry.unassigned),
            # How many of the hot path's modules (hub/ingest/hot_path.py) this process runs compiled.
            "compiled_modules": len(hot_path.compiled_loaded()),
        }
    received = int(stats["messages"])
    seconds, msg_s = _rate(n, hub.first, hub.last) if received >= n else (0.0, 0.0)
    text = ""
    if profiler is not None:
        if dump := os.environ.get("LINLI_BENCH_PROFILE_OUT"):
            profiler.dump_stats(dump)  # for pstats / snakeviz: callers and callees, not only the top 25
        buffer = io.StringIO()
        ps = pstats.Stats(profiler, stream=buffer)
        ps.sort_stats(pstats.SortKey.CUMULATIVE).print_stats(25)
        ps.sort_stats(pstats.SortKey.TIME).print_stats(15)
        text = buffer.getvalue()
    return ConsumerResult(
        "hub",
        n,
        received,
        seconds,
        msg_s,
        first=hub.first,
        last=hub.last,
        cpu_seconds=hub.cpu_last - hub.cpu_first,
        extra=extra,
        profile=text,
    )


def hub_main(
    conn: Connection, settings: Settings, n: int, timeouts: tuple[float, float], profile: bool
) -> None:
    logging.basicConfig(
        level=logging.WARNING, stream=sys.stderr, format="  hub %(levelname)s %(name)s: %(message)s"
    )
    # Expected in a benchmark: no console tokens configured.
    logging.getLogger("hub.app").setLevel(logging.ERROR)
    result = asyncio.run(_hub(conn, settings, n, timeouts, profile))
    conn.send(result)
    conn.close()


# -- orchestration --------------------------------------------------------------------------------


@dataclass(slots=True)
class PhaseResult:
    consumer: ConsumerResult
    publisher: PublishResult | None
    publisher_error: str = ""


def run_phase(
    ctx: multiprocessing.context.SpawnContext,
    name: str,
    target: Callable[..., None],
    args: tuple[Any, ...],
    *,
    broker: Endpoint,
    stream_file: Path,
    n: int,
    timeout: float,
    tree: Path | None = None,
) -> PhaseResult:
    """One consumer (``target``) takes the stream; ``tree``: it runs the compiled build there."""
    parent, child = ctx.Pipe()
    consumer = ctx.Process(target=target, args=(child, *args), name=f"bench-{name}")
    with first_on_path(tree):
        consumer.start()
    child.close()
    try:
        if not parent.poll(60):
            raise RuntimeError(f"{name}: consumer did not get ready")
        try:
            if parent.recv() != "ready":
                raise RuntimeError(f"{name}: unexpected message from the consumer")
        except EOFError:
            consumer.join(5)
            raise RuntimeError(
                f"{name}: consumer died before it was ready (exit {consumer.exitcode})"
            ) from None
        pub_parent, pub_child = ctx.Pipe(duplex=False)
        publisher = ctx.Process(
            target=publisher_main,
            args=(broker.host, broker.port, broker.username, broker.password, str(stream_file), n, pub_child),
            name=f"bench-{name}-publisher",
        )
        publisher.start()
        pub_child.close()
        pub_result: PublishResult | str = (
            pub_parent.recv() if pub_parent.poll(timeout) else "publisher timed out"
        )
        publisher.join(10)
        if not parent.poll(timeout):
            raise RuntimeError(f"{name}: no result from the consumer within {timeout:.0f}s")
        try:
            result = parent.recv()
        except EOFError:
            consumer.join(5)
            raise RuntimeError(f"{name}: consumer died (exit {consumer.exitcode})") from None
        consumer.join(10)
    finally:
        for proc in (consumer,):
            if proc.is_alive():
                proc.terminate()
                proc.join(5)
    if isinstance(pub_result, str):
        return PhaseResult(result, None, pub_result)
    return PhaseResult(result, pub_result)


def measure_decode(messages: Sequence[tuple[str, bytes]], registry: Registry, repeats: int) -> float:
    """Best-of-``repeats`` seconds for ``AdapterRouter.decode`` over all messages."""
    router = AdapterRouter(sources=[FamilySource(Family.ZIGBEE2MQTT, BASE)])
    decode = router.decode
    received = time.time()
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        for topic, payload in messages:
            decode(topic, payload, received, registry)
        best = min(best, time.perf_counter() - start)
    return best


def measure_pipeline(
    messages: Sequence[tuple[str, bytes]], settings: Settings
) -> tuple[float, dict[str, int]]:
    """Seconds for ``Pipeline.handle`` of a real (not started) hub over all messages: no MQTT.

    Same stream-pinned clock and timer runs as the hub phase (:class:`StreamPace`), so the
    work, and the counts returned, are the same.
    """

    async def run() -> tuple[float, dict[str, int]]:
        hub = Hub(settings=settings, clock=ManualClock(start=STREAM_START))
        settle_heap()  # the collector policy Hub.start applies (the hub is not started here)
        pace = StreamPace(hub, len(messages))
        handle = hub.pipeline.handle
        before, after = pace.before, pace.after
        try:
            start = time.perf_counter()
            for topic, payload in messages:
                before()
                handle(topic, payload, 0, False)
                after()
            seconds = time.perf_counter() - start
            # The rule-state flush the pipeline scheduled with call_soon runs before the close.
            await asyncio.sleep(0)
            counts = {**asdict(hub.pipeline.stats), **outcome_counts(hub)}
        finally:
            hub.close()  # the last flushes, then the store: a flush scheduled later does nothing
        return seconds, counts

    return asyncio.run(run())


def pipeline_main(conn: Connection, messages: Sequence[tuple[str, bytes]], settings: Settings) -> None:
    """:func:`measure_pipeline` in a process of its own (started on a compiled tree, it measures that)."""
    seconds, counts = measure_pipeline(messages, settings)
    conn.send((seconds, counts, len(hot_path.compiled_loaded())))
    conn.close()


def measure_pipeline_in(
    ctx: multiprocessing.context.SpawnContext,
    tree: Path | None,
    messages: Sequence[tuple[str, bytes]],
    settings: Settings,
    timeout: float,
) -> tuple[float, dict[str, int], int]:
    """Seconds and counts of :func:`measure_pipeline`, and how many listed modules ran compiled."""
    parent, child = ctx.Pipe(duplex=False)
    proc = ctx.Process(target=pipeline_main, args=(child, messages, settings), name="bench-pipeline")
    with first_on_path(tree):
        proc.start()
    child.close()
    try:
        if not parent.poll(timeout):
            raise RuntimeError(f"in-process pipeline: no result within {timeout:.0f}s")
        try:
            result: tuple[float, dict[str, int], int] = parent.recv()
        except EOFError:
            proc.join(5)
            raise RuntimeError(f"in-process pipeline: process died (exit {proc.exitcode})") from None
        proc.join(10)
    finally:
        if proc.is_alive():
            proc.terminate()
            proc.join(5)
    return result


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.run", description=__doc__.split("\n\n")[0])
    parser.add_argument("--messages", type=int, default=200_000, help="messages per phase (default 200000)")
    parser.add_argument("--profile", action="store_true", help="run the hub phase under cProfile")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--grids", type=int, default=10)
    parser.add_argument("--buildings-per-grid", type=int, default=10)
    parser.add_argument("--elders-per-building", type=int, default=10)
    parser.add_argument("--parking-per-grid", type=int, default=5)
    parser.add_argument("--decode-repeats", type=int, default=3, help="best of this many decode passes")
    parser.add_argument("--idle-timeout", type=float, default=5.0, help="seconds without a message = loss")
    args = parser.parse_args(argv)
    n: int = args.messages
    if n < 2:
        parser.error("--messages must be at least 2")
    timeouts = (60.0, float(args.idle_timeout))
    phase_timeout = 60.0 + n / 1000.0  # generous: ≥ 1 k msg/s even under cProfile
    ctx = multiprocessing.get_context("spawn")
    cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)

    with tempfile.TemporaryDirectory(prefix="linli-bench-") as tmp_name:
        tmp = Path(tmp_name)
        community: SimCommunity = generate(
            seed=args.seed,
            grids=args.grids,
            buildings_per_grid=args.buildings_per_grid,
            elders_per_building=args.elders_per_building,
            parking_per_grid=args.parking_per_grid,
        )
        community_file = tmp / "community.yaml"
        community.write(community_file)
        messages, mix = build_messages(community.devices, n, seed=args.seed)
        stream_file = tmp / "stream.bin"
        stream_file.write_bytes(encode_stream(messages))
        payload_bytes = sum(len(p) for _, p in messages)
        say(
            f"bench: {n} messages ({mix.door} door, {mix.parking} parking, {mix.battery} battery, "
            f"{mix.sos} SOS on {len(mix.sos_devices)} buttons), {len(community.devices)} devices, "
            f"mean payload {payload_bytes / n:.0f} B, stream {stream_file.stat().st_size / 1e6:.1f} MB"
        )
        load_before = os.getloadavg()[0]
        say(
            f"bench: python {platform.python_version()}, {cpus} CPUs, gmqtt {gmqtt.__version__}, "
            f"load average {load_before:.2f} (other load skews the figures)"
        )

        registry = Registry.load(community_file)
        decode_s = measure_decode(messages, registry, args.decode_repeats)
        decode_us = decode_s / n * 1e6
        say(f"decode:   AdapterRouter.decode {decode_us:.2f} µs/msg ({n / decode_s:,.0f} msg/s), in process")
        pipeline_s, pipeline_stats = measure_pipeline(
            messages,
            hub_settings(
                broker_url="mqtt://127.0.0.1:1",
                data_dir=tmp / "pipeline-data",
                community_file=community_file,
                client_id="linli-bench-pipeline",
            ),
        )
        pipeline_us = pipeline_s / n * 1e6
        say(
            f"pipeline: Pipeline.handle {pipeline_us:.2f} µs/msg ({n / pipeline_s:,.0f} msg/s), in process, "
            f"{pipeline_stats['events']} events, {pipeline_stats['alerts_raised']} alerts"
        )

        with mosquitto(tmp / "broker") as server:
            broker = Endpoint(server.host, server.port, server.username, server.password)
            say(f"broker:   mosquitto on {broker.host}:{broker.port}")
            ceiling = run_phase(
                ctx,
                "client_ceiling",
                ceiling_main,
                (broker, n, timeouts),
                broker=broker,
                stream_file=stream_file,
                n=n,
                timeout=phase_timeout,
            )
            _report_phase(ceiling)
            settings = hub_settings(
                broker_url=server.url,
                data_dir=tmp / "hub-data",
                community_file=community_file,
                client_id="linli-bench-hub",
            )
            hub_phase = run_phase(
                ctx,
                "hub",
                hub_main,
                (settings, n, timeouts, args.profile),
                broker=broker,
                stream_file=stream_file,
                n=n,
                timeout=phase_timeout * (20 if args.profile else 1),
            )
            _report_phase(hub_phase)
            if hub_phase.consumer.profile:
                say("profile of the hub phase (cProfile; rates above are slowed by it):")
                say(hub_phase.consumer.profile)

    c, h = ceiling.consumer, hub_phase.consumer
    ratio = h.msg_s / c.msg_s if c.msg_s > 0 else 0.0
    hub_us = 1e6 / h.msg_s if h.msg_s > 0 else 0.0
    decode_share = decode_us / hub_us if hub_us > 0 else 0.0
    publisher_rates = [p.publisher.msg_s for p in (ceiling, hub_phase) if p.publisher is not None]
    say(
        f"summary:  hub {h.msg_s:,.0f} msg/s = {ratio:.1%} of the client ceiling {c.msg_s:,.0f} msg/s; "
        f"hub {hub_us:.1f} µs/msg, of which decode {decode_us:.1f} µs ({decode_share:.0%})"
    )
    result = {
        "bench": "ingest",
        "messages": n,
        "client_ceiling_msg_s": round(c.msg_s),
        "hub_msg_s": round(h.msg_s),
        "ratio": round(ratio, 4),
        "publisher_msg_s": round(min(publisher_rates)) if publisher_rates else 0,
        "lost_client": n - c.received,
        "lost_hub": n - h.received,
        "hub_events": h.extra.get("events", 0),
        "hub_alerts": h.extra.get("alerts_raised", 0),
        "hub_signals": h.extra.get("signals", 0),
        "hub_quarantined": h.extra.get("quarantined", 0),
        "hub_us_per_msg": round(hub_us, 2),
        "decode_us_per_msg": round(decode_us, 2),
        "decode_share": round(decode_share, 4),
        "pipeline_us_per_msg": round(pipeline_us, 2),
        "client_cpu_busy": round(_busy(c), 3),
        "hub_cpu_busy": round(_busy(h), 3),
        "loadavg_1m_before": round(load_before, 2),
        "sos_messages": mix.sos,
        "devices": len(community.devices),
        "profiled": bool(args.profile),
        "python": platform.python_version(),
        "cpus": cpus,
    }
    print(json.dumps(result), flush=True)
    lost = result["lost_client"] or result["lost_hub"]
    failed = any(p.publisher is None for p in (ceiling, hub_phase))
    return 1 if lost or failed else 0


def _busy(c: ConsumerResult) -> float:
    return c.cpu_seconds / c.seconds if c.seconds > 0 else 0.0


def _report_phase(phase: PhaseResult) -> None:
    c = phase.consumer
    line = f"{c.phase + ':':15} received {c.received}/{c.expected}"
    if c.received >= c.expected:
        line += f", {c.msg_s:,.0f} msg/s ({c.seconds:.2f} s 1st→Nth, consumer CPU {_busy(c):.0%} busy)"
    else:
        line += f" — LOST {c.expected - c.received} messages (no message for the idle timeout)"
    say(line)
    if c.extra:
        say("               " + ", ".join(f"{k} {v}" for k, v in c.extra.items()))
    if phase.publisher is None:
        say(f"               publisher FAILED: {phase.publisher_error}")
        return
    p = phase.publisher
    say(
        f"               publisher {p.msg_s:,.0f} msg/s ({p.seconds:.2f} s, {p.bytes_sent / 1e6:.1f} MB); "
        f"the consumer finished {c.last - p.finished:+.2f} s after the broker had every message"
    )
    if c.seconds > 0 and c.cpu_seconds < BUSY_WARNING * c.seconds:
        say(
            f"               WARNING: the consumer was busy only {c.cpu_seconds / c.seconds:.0%} of the time: "
            "it waited for input (publisher/broker too slow, or other load on the machine)"
        )


if __name__ == "__main__":
    sys.exit(main())
