"""SOS latency under load: press published → the worker's notification received by a subscriber.

What the issue calls the one number that matters to a resident: how long after the red key
is pressed does the grid worker's phone get the message, while the hub is busy with the
rest of the community? The hub runs (a running clock, real casework and dispatcher,
notifications on their own MQTT connection) in a spawned process; the bench process

1. starts a paced background publisher (:func:`bench.publisher.paced`, another process) at
   the requested rate — the ingest stream without SOS presses and without ``last_seen``, so
   device time is the hub's receive time;
2. publishes, every ``probe_interval`` seconds, an SOS press of a different registered
   button (Zigbee2MQTT ``{"action": "emergency"}``) from its own gmqtt connection and notes
   ``time.monotonic()``;
3. subscribes to every worker and command-centre notification topic and takes, per probe,
   the first notification whose alert names that button; a second, bare client subscribed to
   the pressed buttons' topics times the broker's own delivery to an idle subscriber.

Latency = receive time − publish time, both in the bench process. A probe with no
notification after ``settle`` seconds counts as lost. Loops end by themselves.

The split (``split`` in the JSON): the hub stamps the press's arrival on the priority lane,
the committed alert, the filed case and the notification's publish (``Hub.sos_trace``,
:mod:`hub.health.sos_trace`) on ``CLOCK_MONOTONIC``, the clock of ``time.monotonic()`` here,
so each segment is a difference of two stamps of one clock (:data:`SEGMENTS`).

**The hub's clock** runs at the wall clock's pace from :data:`CLOCK_START`, the ingest stream's
Monday 10:00 Asia/Shanghai, whatever the date and hour of the run. On the wall clock itself the
work depended on the hour: from 00:00 to 05:00 in Shanghai the night-activity rule counted every
door opening of the background, 52 710 alert updates in a 30 s run, and the hub was 93 % busy at
10 k msg/s (docs/benchmarks.md, "Forty-third pass").
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import multiprocessing
import os
import sys
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from multiprocessing.connection import Connection
from typing import Any

import gmqtt
import orjson
from gmqtt.mqtt.constants import MQTTv311

from bench.publisher import PublishResult, paced_main
from bench.run import STREAM_START
from bench.stalls import StallWatch, blocked
from bench.stalls import stop as stop_watch
from hub.app import Hub
from hub.clock import ScaledClock
from hub.config import Settings
from simulators import zigbee2mqtt as z2m
from simulators.mqtt_wire import encode_publish

BASE = "zigbee2mqtt"
#: Where the hub's clock starts (then running at the wall clock's pace): a weekday's daytime,
#: the same for every run.
CLOCK_START = STREAM_START


@dataclass(slots=True)
class LatencyResult:
    background_msg_s: float
    probes: int
    received: int = 0
    p50_ms: float = 0.0
    p99_ms: float = 0.0
    max_ms: float = 0.0
    background_sent_msg_s: float = 0.0
    #: The background publisher's nice increment (0: equal priority with the hub).
    background_nice: int = 0
    hub_messages: int = 0
    hub_cpu_busy: float = 0.0
    #: The hub's clock as the run began (Unix seconds): :data:`CLOCK_START` and the seconds since.
    hub_clock_at_start: float = 0.0
    error: str = ""
    samples_ms: list[float] = field(default_factory=list)
    #: Where the time went, per segment (see :data:`SEGMENTS`): ``{"n", "p50_ms", "p99_ms", "max_ms"}``.
    split: dict[str, dict[str, float]] = field(default_factory=dict)
    #: The hub's event loop during the run (:mod:`bench.stalls`): lag percentiles, stall stacks.
    stalls: dict[str, Any] = field(default_factory=dict)


def percentile(values: Sequence[float], q: float) -> float:
    """Nearest-rank percentile (q in 0..100); with few samples p99 is the maximum, said as such."""
    if not values:
        return 0.0
    ordered = sorted(values)
    rank = max(1, min(len(ordered), round(q / 100.0 * len(ordered) + 0.5)))
    return ordered[rank - 1]


def background_packets(messages: Sequence[tuple[str, bytes]], limit: int) -> list[bytes]:
    """Pre-encoded PUBLISH packets of the stream without SOS presses and without device times."""
    out: list[bytes] = []
    for topic, payload in messages:
        doc = orjson.loads(payload)
        if "action" in doc:
            continue
        doc.pop("last_seen", None)
        out.append(encode_publish(topic, orjson.dumps(doc)))
        if len(out) >= limit:
            break
    return out


# -- the hub process ---------------------------------------------------------------------------


async def _serve(conn: Connection, settings: Settings) -> None:
    """Run the hub; answer ``"mark"`` with its counters, leave on ``"stop"``."""
    hub = Hub(settings=settings, clock=ScaledClock(start=CLOCK_START, speed=1.0))
    watch = StallWatch()
    async with hub:
        await asyncio.wait_for(hub.caught_up.wait(), 30)
        watching = asyncio.create_task(watch.run(), name="bench-stall-watch")
        conn.send("ready")
        while True:
            if not await asyncio.to_thread(conn.poll, 0.2):
                continue
            command = conn.recv()
            if command == "trace":
                conn.send({**hub.sos_trace.snapshot(), "stalls": watch.report()})
                continue
            if command != "mark":
                await stop_watch(watching)
                break
            conn.send(
                {
                    "messages": hub.pipeline.stats.messages,
                    "cpu": time.process_time(),
                    "wall": time.perf_counter(),
                    "notifications_delivered": hub.dispatcher.delivered,
                    "clock": hub.clock.now(),
                }
            )


def hub_main(conn: Connection, settings: Settings) -> None:
    logging.basicConfig(
        level=logging.ERROR, stream=sys.stderr, format="  hub %(levelname)s %(name)s: %(message)s"
    )
    try:
        asyncio.run(_serve(conn, settings))
    finally:
        conn.close()


# -- the bench side ----------------------------------------------------------------------------


@dataclass(slots=True)
class ProbeTimes:
    """Per button, ``time.monotonic()`` in the bench process: the same clock as the hub's trace."""

    sent: dict[str, float] = field(default_factory=dict)
    #: The first worker/command-centre notification naming the button.
    got: dict[str, float] = field(default_factory=dict)
    #: The press itself, on a bare subscriber of the lane's topics (an idle client: the broker's own time).
    bare: dict[str, float] = field(default_factory=dict)


async def _connect(client: gmqtt.Client, *, host: str, port: int, user: str, password: str) -> None:
    client.set_auth_credentials(user, password)
    await client.connect(host, port, version=MQTTv311, keepalive=60)


async def _probe(
    *,
    host: str,
    port: int,
    user: str,
    password: str,
    prefix: str,
    buttons: Sequence[tuple[str, str]],
    probes: int,
    interval: float,
    settle: float,
) -> ProbeTimes:
    times = ProbeTimes()
    sent, got = times.sent, times.got
    all_in = asyncio.Event()
    topics = {z2m.state_topic(device, base=BASE): device for device, _ in buttons[:probes]}

    def on_message(client: gmqtt.Client, topic: str, payload: bytes, qos: int, properties: Any) -> int:
        at = time.monotonic()
        with contextlib.suppress(ValueError, KeyError, TypeError):
            device = orjson.loads(payload)["alert"]["device_id"]
            if device in sent and device not in got:
                got[device] = at
                if len(got) >= probes:
                    all_in.set()
        return 0

    def on_bare(client: gmqtt.Client, topic: str, payload: bytes, qos: int, properties: Any) -> int:
        device = topics.get(topic)
        if device is not None and device in sent:
            times.bare.setdefault(device, time.monotonic())
        return 0

    subscribed = asyncio.Event()
    bare_subscribed = asyncio.Event()
    client = gmqtt.Client(f"linli-bench-probe-{os.getpid()}", clean_session=True)
    client.on_message = on_message
    client.on_subscribe = lambda *_: subscribed.set()
    bare = gmqtt.Client(f"linli-bench-bare-{os.getpid()}", clean_session=True)
    bare.on_message = on_bare
    bare.on_subscribe = lambda *_: bare_subscribed.set()
    await _connect(client, host=host, port=port, user=user, password=password)
    await _connect(bare, host=host, port=port, user=user, password=password)
    client.subscribe(
        [
            gmqtt.Subscription(f"{prefix}/+/workers/+/notifications", qos=1),
            gmqtt.Subscription(f"{prefix}/command-centre/notifications", qos=1),
        ]
    )
    # QoS 1 like the hub's lane: the same broker path (in-flight window, PUBACK) to an idle client.
    bare.subscribe([gmqtt.Subscription(topic, qos=1) for topic in topics])
    await asyncio.wait_for(asyncio.gather(subscribed.wait(), bare_subscribed.wait()), 10)
    try:
        for i in range(probes):
            device, action = buttons[i % len(buttons)]
            payload = z2m.sos_press(action=action, battery=90.0, linkquality=120, ts=time.time())
            doc = orjson.loads(payload)
            doc.pop("last_seen", None)
            body = orjson.dumps(doc)
            sent[device] = time.monotonic()
            client.publish(z2m.state_topic(device, base=BASE), body, qos=1)
            await asyncio.sleep(interval)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(all_in.wait(), settle)
    finally:
        await client.disconnect()
        await bare.disconnect()
    return times


#: The split of one press's latency: (name, from stamp, to stamp), stamps as in :func:`_stamps`.
SEGMENTS: tuple[tuple[str, str, str], ...] = (
    ("broker_to_bare_subscriber", "sent", "bare"),
    # Only presses the priority lane brought (``n`` says how many; the rest came by the bulk lane).
    ("publish_to_hub_lane", "sent", "received"),
    ("hub_lane_to_alert", "received", "alert"),
    ("alert_to_case_filed", "alert", "filed"),
    # With the dispatcher's send-at-wake the publish happens inside casework (before "filed").
    ("alert_to_published", "alert", "published"),
    ("case_filed_to_published", "filed", "published"),
    ("published_to_subscriber", "published", "got"),
    ("total", "sent", "got"),
)


def _stamps(times: ProbeTimes, trace: dict[str, dict[str, float]]) -> dict[str, dict[str, float]]:
    """Per pressed button: every stamp found (bench and hub, one monotonic clock)."""
    out: dict[str, dict[str, float]] = {}
    for device, at in times.sent.items():
        row = {"sent": at}
        for name, table in (("got", times.got), ("bare", times.bare)):
            if device in table:
                row[name] = table[device]
        for name in ("received", "alert", "filed", "published"):
            if device in trace.get(name, {}):
                row[name] = trace[name][device]
        out[device] = row
    return out


def split(stamps: dict[str, dict[str, float]]) -> dict[str, dict[str, float]]:
    """p50/p99/max (ms) and count of each segment over the presses that have both its stamps."""
    result: dict[str, dict[str, float]] = {}
    for name, start, end in SEGMENTS:
        values = [(row[end] - row[start]) * 1000.0 for row in stamps.values() if start in row and end in row]
        result[name] = {
            "n": len(values),
            "p50_ms": round(percentile(values, 50), 3),
            "p99_ms": round(percentile(values, 99), 3),
            "max_ms": round(max(values), 3) if values else 0.0,
        }
    return result


def _drain(conn: Connection, *, quiet: float, bound: float) -> None:
    """Wait until the hub's message count stood still for ``quiet`` seconds (or ``bound`` passed)."""
    deadline = time.monotonic() + bound
    last = _mark(conn).get("messages", 0.0)
    while time.monotonic() < deadline:
        time.sleep(quiet)
        now = _mark(conn).get("messages", 0.0)
        if now == last:
            return
        last = now


def _mark(conn: Connection) -> dict[str, float]:
    conn.send("mark")
    if not conn.poll(30):
        return {}
    doc: dict[str, float] = conn.recv()
    return doc


def _trace(conn: Connection) -> dict[str, dict[str, float]]:
    conn.send("trace")
    if not conn.poll(30):
        return {}
    doc: dict[str, dict[str, float]] = conn.recv()
    return doc


def measure(
    ctx: multiprocessing.context.SpawnContext,
    *,
    settings: Settings,
    broker: Any,
    packets: list[bytes],
    buttons: Sequence[tuple[str, str]],
    rates: Sequence[tuple[str, float]],
    seconds: float,
    probe_interval: float = 0.1,
    settle: float = 30.0,
    drain: float = 120.0,
    background_nice: int = 0,
) -> dict[str, LatencyResult]:
    """Latency runs on one hub process, one per ``(name, msg/s of background)``, for ``seconds`` each.

    ``settle`` bounds the wait for the last notifications (a press stuck behind a backlog the
    hub cannot work off shows up as lost, i.e. latency > ``settle``); between runs the hub
    works off what is left (at most ``drain`` seconds). Each run presses buttons of its own (a share of ``buttons``): a press on a button pressed
    less than 60 s before would be merged into that alert, not notified again.

    ``background_nice``: the background publisher's ``nice`` increment. 0 (the default, what
    ``make bench`` reports) has it compete with the hub for the 2 cores at equal priority; in
    service the gateways publish from other machines, and 19 shows how much of the press's
    tail is that competition (docs/benchmarks.md, *Eleventh pass*).
    """
    results: dict[str, LatencyResult] = {}
    parent, child = ctx.Pipe()
    hub = ctx.Process(target=hub_main, args=(child, settings), name="bench-latency-hub")
    hub.start()
    child.close()
    try:
        if not parent.poll(120) or parent.recv() != "ready":
            for name, rate in rates:
                results[name] = LatencyResult(background_msg_s=rate, probes=0, error="hub did not get ready")
            return results
        # Lowest rate first: a run the hub cannot keep up with leaves a backlog behind it.
        ordered = sorted(rates, key=lambda item: item[1])
        for i, (name, rate) in enumerate(ordered):
            if i:
                _drain(parent, quiet=1.0, bound=drain)
            own = list(buttons[i :: len(rates)])
            results[name] = _run(
                ctx,
                parent,
                broker=broker,
                prefix=settings.mqtt.topic_prefix,
                packets=packets,
                buttons=own,
                rate=rate,
                seconds=seconds,
                probe_interval=probe_interval,
                settle=settle,
                background_nice=background_nice,
            )
        parent.send("stop")
        return results
    finally:
        hub.join(15)
        if hub.is_alive():
            hub.terminate()
            hub.join(5)


def _background_main(nice: int, *args: Any) -> None:
    """The background publisher's process, ``nice``-d first (the bench's own load, not the hub)."""
    if nice:
        os.nice(nice)
    paced_main(*args)


def _run(
    ctx: multiprocessing.context.SpawnContext,
    conn: Connection,
    *,
    broker: Any,
    prefix: str,
    packets: list[bytes],
    buttons: Sequence[tuple[str, str]],
    rate: float,
    seconds: float,
    probe_interval: float,
    settle: float,
    background_nice: int = 0,
) -> LatencyResult:
    probes = max(1, min(len(buttons), int(max(seconds - 1.0, 0.5) / probe_interval)))
    result = LatencyResult(background_msg_s=rate, probes=probes, background_nice=background_nice)
    before = _mark(conn)
    _trace(conn)  # the stall watch reports per run: start this one afresh
    pub_parent, pub_child = ctx.Pipe(duplex=False)
    publisher = ctx.Process(
        target=_background_main,
        args=(
            background_nice,
            broker.host,
            broker.port,
            broker.username,
            broker.password,
            packets,
            rate,
            seconds,
            pub_child,
        ),
        name="bench-latency-background",
    )
    publisher.start()
    pub_child.close()
    try:
        time.sleep(min(0.5, seconds / 4))  # background running before the first probe
        times = asyncio.run(
            _probe(
                host=broker.host,
                port=broker.port,
                user=broker.username,
                password=broker.password,
                prefix=prefix,
                buttons=buttons,
                probes=probes,
                interval=probe_interval,
                settle=settle,
            )
        )
        pub: PublishResult | str = pub_parent.recv() if pub_parent.poll(seconds + 30) else "timed out"
    finally:
        publisher.join(10)
        if publisher.is_alive():
            publisher.terminate()
            publisher.join(5)
    after = _mark(conn)
    trace = _trace(conn)
    stamps = _stamps(times, trace)
    result.split = split(stamps)
    stalls: dict[str, Any] = dict(trace.get("stalls", {}))
    gaps = [tuple(g) for g in stalls.pop("gaps", [])]
    result.stalls = stalls
    # How much of each press's wait for the lane was the hub's loop stalled (vs the broker/socket)?
    waits = [
        (row["received"] - row["sent"], blocked(gaps, row["sent"], row["received"]))  # type: ignore[arg-type]
        for row in stamps.values()
        if "received" in row
    ]
    result.split["publish_to_hub_lane_loop_stalled"] = {
        "n": len(waits),
        "p50_ms": round(percentile([b * 1000.0 for _, b in waits], 50), 3),
        "p99_ms": round(percentile([b * 1000.0 for _, b in waits], 99), 3),
        "max_ms": round(max((b * 1000.0 for _, b in waits), default=0.0), 3),
        "share_of_wait": round(sum(b for _, b in waits) / sum(w for w, _ in waits), 3)
        if waits and sum(w for w, _ in waits) > 0
        else 0.0,
    }
    samples = [(times.got[d] - times.sent[d]) * 1000.0 for d in times.got]
    result.received = len(samples)
    result.samples_ms = [round(s, 3) for s in sorted(samples)]
    result.p50_ms = round(percentile(samples, 50), 3)
    result.p99_ms = round(percentile(samples, 99), 3)
    result.max_ms = round(max(samples), 3) if samples else 0.0
    if before and after:
        result.hub_clock_at_start = float(before["clock"])
        result.hub_messages = int(after["messages"] - before["messages"])
        wall = after["wall"] - before["wall"]
        result.hub_cpu_busy = round((after["cpu"] - before["cpu"]) / wall, 3) if wall > 0 else 0.0
    if isinstance(pub, PublishResult):
        result.background_sent_msg_s = round(pub.msg_s)
    else:
        result.error = f"background publisher: {pub}"
    if result.received < probes and not result.error:
        result.error = (
            f"{probes - result.received} of {probes} presses got no notification within {settle:.0f} s"
        )
    return result


def as_json(result: LatencyResult) -> dict[str, Any]:
    doc = asdict(result)
    doc.pop("samples_ms")
    return doc
