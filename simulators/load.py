"""The load generator: a steady rate of real-format device messages, honestly measured.

Every message is pre-encoded as a raw MQTT 3.1.1 QoS 0 PUBLISH packet into one pool buffer (a
few thousand distinct messages in the chosen format mix, from a few thousand simulated
devices). Each publisher process holds one TCP connection and, every tick, writes the packets
that are due by then in one ``sendall`` (a slice of the pool), so pacing costs a clock read and
a syscall per tick, not per message. When one process cannot keep the rate, the rate is split
across processes (``processes``, or one per :data:`PER_PROCESS_RATE` msg/s by default).

Honesty: at the end each publisher sends PINGREQ and waits for PINGRESP (the broker answers
only after reading everything before it), so the achieved rate is to the broker, not to the
kernel's socket buffer. Back-pressure is reported as the share of time spent blocked in
``sendall`` and the largest unsent socket queue (``SIOCOUTQ``). If the achieved rate is below
95 % of the asked rate, the report says so and :func:`main` exits non-zero.
"""

from __future__ import annotations

import argparse
import fcntl
import importlib
import json
import math
import multiprocessing
import os
import random
import socket
import struct
import sys
import termios
import time
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from multiprocessing.queues import Queue
from typing import Any

from simulators import formats
from simulators.community import (
    FAMILY_KINDS,
    LORA_MODELS,
    NATIVE_MODELS,
    TASMOTA_DOOR_MODEL,
    SimDevice,
    parse_mix,
)
from simulators.mqtt_wire import encode_connect, encode_publish, encode_subscribe, read_packet
from simulators.types import Act, Family, Reading

#: Rate one publisher process is asked to carry before the load is split (measured ceiling of
#: one process on a 2-core machine is well above this; see docs/simulators.md).
PER_PROCESS_RATE = 150_000.0
HONEST_SHARE = 0.95
POOL_MESSAGES = 20_000
MAX_BATCH = 20_000
COMMUNITY = "110105001001"
_ACTS: dict[str, tuple[tuple[Act, float], ...]] = {
    "sos_button": ((Act.HEARTBEAT, 0.9), (Act.BATTERY, 0.099), (Act.SOS_PRESS, 0.001)),
    "door_sensor": ((Act.DOOR_OPEN, 0.4), (Act.DOOR_CLOSE, 0.4), (Act.HEARTBEAT, 0.2)),
    "parking_sensor": ((Act.OCCUPIED, 0.35), (Act.FREE, 0.35), (Act.HEARTBEAT, 0.3)),
}


# -- MQTT packets: simulators.mqtt_wire ----------------------------------------------------------


def connect(
    host: str, port: int, username: str | None, password: str | None, client_id: str
) -> socket.socket:
    sock = socket.create_connection((host, port), timeout=30)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    sock.sendall(encode_connect(client_id, username, password))
    kind, body = read_packet(sock)
    if kind != 0x20 or len(body) != 2 or body[1] != 0:
        sock.close()
        raise ConnectionError(f"CONNECT refused: packet 0x{kind:02x} {body!r}")
    return sock


# -- the message pool ----------------------------------------------------------------------------


def load_devices(n: int, mix: Mapping[Family, float], *, seed: int = 1) -> list[SimDevice]:
    """``n`` synthetic devices whose families follow ``mix`` (kinds: 40 % doors, 40 % SOS, 20 % parking)."""
    rng = random.Random(seed)  # noqa: S311 - simulation
    families = list(mix)
    weights = [mix[f] for f in families]
    grid = COMMUNITY + "001"
    devices: list[SimDevice] = []
    for i in range(n):
        family = rng.choices(families, weights)[0]
        kind = rng.choices(("door_sensor", "sos_button", "parking_sensor"), (0.4, 0.4, 0.2))[0]
        if kind not in FAMILY_KINDS[family]:
            kind = "door_sensor"
        hexid = f"{seed:04x}{i:012x}"
        if family is Family.ZIGBEE2MQTT:
            model = {"sos_button": "TS0215A", "door_sensor": "MCCGQ11LM", "parking_sensor": "PARKING-ZB"}[
                kind
            ]
            dev_id = "0x" + hexid
        elif family in (Family.TTN_V3, Family.CHIRPSTACK_V4):
            model = LORA_MODELS[kind]
            dev_id = ("eui-" if family is Family.TTN_V3 else "") + hexid
        elif family is Family.TASMOTA:
            model, dev_id = TASMOTA_DOOR_MODEL, f"tasmota_{i:06X}/switch1"
        else:
            model, dev_id = NATIVE_MODELS[kind], f"lnl-load-{i:06d}"
        devices.append(
            SimDevice(dev_id, kind, model, grid, "emergency", family=family, gateway=f"gw-{i % 16}")
        )
    return devices


@dataclass(frozen=True, slots=True)
class Pool:
    """Pre-encoded PUBLISH packets back to back; ``offsets[i]`` is where packet ``i`` starts."""

    data: bytes
    offsets: tuple[int, ...]
    families: dict[str, int]

    @property
    def count(self) -> int:
        return len(self.offsets) - 1


def build_pool(
    *,
    devices: int,
    mix: Mapping[Family, float],
    seed: int = 1,
    size: int = POOL_MESSAGES,
    start: float | None = None,
) -> Pool:
    rng = random.Random(seed + 1)  # noqa: S311 - simulation
    sims = load_devices(devices, mix, seed=seed)
    base = time.time() if start is None else start
    chunks: list[bytes] = []
    offsets = [0]
    families: dict[str, int] = {}
    for i in range(size):
        device = sims[rng.randrange(len(sims))]
        table = _ACTS[device.kind]
        act: Act = rng.choices([a for a, _ in table], [w for _, w in table])[0]
        if not formats.supports(device, act):
            act = Act.HEARTBEAT
        reading = Reading(
            battery_pct=float(rng.randrange(20, 101)),
            is_open=act is Act.DOOR_OPEN,
            occupied=act is Act.OCCUPIED,
            linkquality=rng.randrange(40, 200),
            rssi=-rng.uniform(70, 115),
            counter=i,
            nonce=rng.getrandbits(31),
        )
        for message in formats.build(device, act, reading, base + i * 0.001):
            packet = encode_publish(message.topic, message.payload)
            chunks.append(packet)
            offsets.append(offsets[-1] + len(packet))
            families[device.family.value] = families.get(device.family.value, 0) + 1
    return Pool(b"".join(chunks), tuple(offsets), families)


# -- publishing ------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True, kw_only=True)
class LoadConfig:
    host: str = "127.0.0.1"
    port: int = 1883
    username: str | None = None
    password: str | None = field(default=None, repr=False)
    rate: float = 10_000.0
    devices: int = 5_000
    duration: float = 10.0
    mix: str = "z2m=0.6,ttn=0.2,chirpstack=0.1,tasmota=0.05,native=0.05"
    processes: int | None = None
    tick_s: float = 0.005
    seed: int = 1
    progress: bool = True


@dataclass(slots=True)
class WorkerReport:
    index: int
    sent: int = 0
    bytes: int = 0
    errors: int = 0
    error: str = ""
    blocked_s: float = 0.0
    max_queued_bytes: int = 0
    late_ticks: int = 0
    started: float = 0.0
    finished: float = 0.0
    last: bool = False


def _outq(sock: socket.socket) -> int:
    try:
        raw = fcntl.ioctl(sock.fileno(), termios.TIOCOUTQ, b"\x00\x00\x00\x00")
        return int(struct.unpack("i", raw)[0])
    except OSError:
        return 0


def _send_range(sock: socket.socket, view: memoryview, offsets: Sequence[int], first: int, n: int) -> int:
    """Send packets ``first … first+n-1`` of the pool (wrapping); returns the bytes sent."""
    count = len(offsets) - 1
    sent = 0
    while n > 0:
        i = first % count
        take = min(n, count - i)
        chunk = view[offsets[i] : offsets[i + take]]
        sock.sendall(chunk)
        sent += len(chunk)
        first += take
        n -= take
    return sent


def publish_worker(
    config: LoadConfig, index: int, rate: float, pool: Pool, reports: Queue[WorkerReport]
) -> None:
    """One publisher process: paced QoS 0 PUBLISH writes at ``rate`` for ``config.duration`` seconds."""
    report = WorkerReport(index)
    view = memoryview(pool.data)
    offsets = pool.offsets
    total = max(1, round(rate * config.duration))
    first = (index * 7919) % pool.count
    try:
        sock = connect(
            config.host, config.port, config.username, config.password, f"linli-load-{os.getpid()}-{index}"
        )
    except OSError as exc:
        report.errors, report.error, report.last = 1, f"{type(exc).__name__}: {exc}", True
        reports.put(report)
        return
    report.started = start = time.perf_counter()
    next_report = start + 0.5
    try:
        while report.sent < total:
            now = time.perf_counter()
            due = min(total, math.floor((now - start) * rate) + 1) - report.sent
            if due <= 0:
                time.sleep(min(config.tick_s, (report.sent + 1) / rate - (now - start)))
                continue
            if due > rate * config.tick_s * 2:
                report.late_ticks += 1
            n = min(due, MAX_BATCH)
            t0 = time.perf_counter()
            report.bytes += _send_range(sock, view, offsets, first + report.sent, n)
            report.blocked_s += time.perf_counter() - t0
            report.sent += n
            if t0 >= next_report:
                report.max_queued_bytes = max(report.max_queued_bytes, _outq(sock))
                report.finished = t0
                reports.put(WorkerReport(**asdict(report)))
                next_report = t0 + 0.5
        sock.sendall(b"\xc0\x00")  # PINGREQ: answered once the broker has read everything before it
        sock.settimeout(max(30.0, config.duration))
        kind, _ = read_packet(sock)
        if kind != 0xD0:
            raise ConnectionError(f"expected PINGRESP, got 0x{kind:02x}")
        report.finished = time.perf_counter()
        sock.sendall(b"\xe0\x00")
    except OSError as exc:
        report.errors += 1
        report.error = f"{type(exc).__name__}: {exc}"
        report.finished = time.perf_counter()
    finally:
        sock.close()
    report.last = True
    reports.put(report)


@dataclass(frozen=True, slots=True)
class LoadReport:
    asked_rate: float
    achieved_rate: float
    sent: int
    bytes: int
    errors: int
    duration_s: float
    processes: int
    devices: int
    mix: dict[str, float]
    pool_messages: int
    mean_message_bytes: float
    back_pressure: dict[str, float]
    ok: bool
    verdict: str
    worker_errors: tuple[str, ...] = ()

    def json(self) -> str:
        return json.dumps(asdict(self), indent=2, ensure_ascii=False)


class _Progress:
    """A live line: rich when it is installed, plain text on stderr otherwise."""

    def __init__(self, enabled: bool, asked: float) -> None:
        self.enabled = enabled
        self.asked = asked
        self._live: Any = None
        if enabled:
            try:
                live = importlib.import_module("rich.live")
                self._live = live.Live("", refresh_per_second=4, transient=False)
                self._live.start()
            except ImportError:
                self._live = None

    def show(self, *, elapsed: float, sent: int, errors: int, blocked: float, queued: int) -> None:
        if not self.enabled:
            return
        rate = sent / elapsed if elapsed > 0 else 0.0
        text = (
            f"load {elapsed:5.1f}s  rate {rate:9,.0f}/{self.asked:,.0f} msg/s  sent {sent:,}  errors {errors}  "
            f"blocked {100 * blocked / max(elapsed, 1e-9):4.1f}%  queued {queued / 1024:,.0f} KiB"
        )
        if self._live is not None:
            self._live.update(text)
        else:
            print("\r" + text, end="", file=sys.stderr, flush=True)

    def close(self) -> None:
        if self._live is not None:
            self._live.stop()
        elif self.enabled:
            print(file=sys.stderr, flush=True)


def run_load(config: LoadConfig) -> LoadReport:
    """Publish at ``config.rate`` for ``config.duration`` seconds; the report says what really happened."""
    if config.rate <= 0 or config.duration <= 0 or config.devices <= 0:
        raise ValueError("rate, duration and devices must be positive")
    mix = parse_mix(config.mix)
    cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    processes = config.processes or max(1, min(cpus, math.ceil(config.rate / PER_PROCESS_RATE)))
    pool = build_pool(devices=config.devices, mix=mix, seed=config.seed)
    ctx: Any = multiprocessing.get_context("fork" if sys.platform == "linux" else "spawn")
    reports: Queue[WorkerReport] = ctx.Queue()
    share = config.rate / processes
    workers = [
        ctx.Process(
            target=publish_worker, args=(config, i, share, pool, reports), name=f"linli-load-{i}", daemon=True
        )
        for i in range(processes)
    ]
    progress = _Progress(config.progress, config.rate)
    latest: dict[int, WorkerReport] = {}
    began = time.perf_counter()
    for w in workers:
        w.start()
    try:
        deadline = began + config.duration + 60.0
        while sum(1 for r in latest.values() if r.last) < processes and time.perf_counter() < deadline:
            try:
                report = reports.get(timeout=0.25)
            except Exception:  # queue.Empty
                if not any(w.is_alive() for w in workers) and reports.empty():
                    break
                continue
            latest[report.index] = report
            progress.show(
                elapsed=time.perf_counter() - began,
                sent=sum(r.sent for r in latest.values()),
                errors=sum(r.errors for r in latest.values()),
                blocked=sum(r.blocked_s for r in latest.values()) / processes,
                queued=max((r.max_queued_bytes for r in latest.values()), default=0),
            )
    finally:
        progress.close()
        for w in workers:
            w.join(timeout=5)
            if w.is_alive():
                w.terminate()
                w.join()
    finals = list(latest.values())
    sent = sum(r.sent for r in finals)
    started = min((r.started for r in finals if r.started), default=0.0)
    finished = max((r.finished for r in finals), default=0.0)
    elapsed = max(finished - started, 1e-9) if started else 0.0
    achieved = sent / elapsed if elapsed else 0.0
    errors = sum(r.errors for r in finals) + (processes - sum(1 for r in finals if r.last))
    blocked = sum(r.blocked_s for r in finals)
    ok = achieved >= HONEST_SHARE * config.rate and errors == 0
    if ok:
        verdict = f"sustained {achieved:,.0f} msg/s of the {config.rate:,.0f} asked"
    elif errors:
        verdict = f"FAILED: {errors} error(s); {achieved:,.0f} msg/s of the {config.rate:,.0f} asked"
    else:
        verdict = (
            f"COULD NOT KEEP THE RATE: {achieved:,.0f} msg/s is {100 * achieved / config.rate:.0f} % of the "
            f"{config.rate:,.0f} asked (below {100 * HONEST_SHARE:.0f} %)"
        )
    total_bytes = sum(r.bytes for r in finals)
    return LoadReport(
        asked_rate=config.rate,
        achieved_rate=round(achieved, 1),
        sent=sent,
        bytes=total_bytes,
        errors=errors,
        duration_s=round(elapsed, 3),
        processes=processes,
        devices=config.devices,
        mix={f.value: round(w, 4) for f, w in mix.items()},
        pool_messages=pool.count,
        mean_message_bytes=round(len(pool.data) / max(pool.count, 1), 1),
        back_pressure={
            "send_blocked_s": round(blocked, 3),
            "send_blocked_share": round(blocked / max(elapsed * processes, 1e-9), 4),
            "max_socket_queue_bytes": float(max((r.max_queued_bytes for r in finals), default=0)),
            "late_ticks": float(sum(r.late_ticks for r in finals)),
        },
        ok=ok,
        verdict=verdict,
        worker_errors=tuple(r.error for r in finals if r.error),
    )


# -- a counting subscriber (for honesty checks) ---------------------------------------------------


def count_publishes(buffer: bytearray) -> tuple[int, int]:
    """``(PUBLISH packets, bytes consumed)`` of the complete packets at the start of ``buffer``."""
    i, n, count = 0, len(buffer), 0
    while i + 2 <= n:
        first = buffer[i]
        length, mult, j = 0, 1, i + 1
        while j < n:
            byte = buffer[j]
            length += (byte & 0x7F) * mult
            j += 1
            if not byte & 0x80:
                break
            mult *= 128
        else:
            break
        end = j + length
        if end > n:
            break
        if first & 0xF0 == 0x30:
            count += 1
        i = end
    return count, i


def subscriber_main(  # noqa: PLR0917 - a process target takes positional arguments
    host: str,
    port: int,
    username: str | None,
    password: str | None,
    topic: str,
    ready: Any,
    counts: Any,
    idle_s: float = 2.0,
) -> None:
    """Process entry: subscribe, signal ``ready``, count PUBLISH packets until ``idle_s`` of silence."""
    sock = connect(host, port, username, password, f"linli-load-sub-{os.getpid()}")
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4 * 1024 * 1024)
    sock.sendall(encode_subscribe(topic))
    kind, _ = read_packet(sock)
    if kind != 0x90:
        raise ConnectionError(f"expected SUBACK, got 0x{kind:02x}")
    ready.set()
    sock.settimeout(idle_s)
    buffer = bytearray()
    total = 0
    seen_any = False
    while True:
        try:
            data = sock.recv(1 << 20)
        except TimeoutError:
            if seen_any:
                break
            continue
        if not data:
            break
        seen_any = True
        buffer += data
        got, used = count_publishes(buffer)
        total += got
        del buffer[:used]
    counts.put(total)
    sock.close()


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="linli simulate load", description=__doc__.split("\n\n")[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=1883)
    parser.add_argument("--username", default=os.environ.get("LINLI_DEV_MQTT_USER"))
    parser.add_argument("--password", default=os.environ.get("LINLI_DEV_MQTT_PASSWORD"))
    parser.add_argument("--rate", type=float, default=10_000.0, help="messages per second")
    parser.add_argument("--devices", type=int, default=5_000)
    parser.add_argument("--duration", type=float, default=10.0, help="seconds")
    parser.add_argument(
        "--format", dest="mix", default=LoadConfig().mix, help="family mix, e.g. z2m=0.6,ttn=0.4"
    )
    parser.add_argument("--processes", type=int, default=None)
    parser.add_argument("--json", dest="json_path", default=None, help="also write the report here")
    parser.add_argument("--quiet", action="store_true", help="no live progress line")
    args = parser.parse_args(argv)
    report = run_load(
        LoadConfig(
            host=args.host,
            port=args.port,
            username=args.username,
            password=args.password,
            rate=args.rate,
            devices=args.devices,
            duration=args.duration,
            mix=args.mix,
            processes=args.processes,
            progress=not args.quiet,
        )
    )
    text = report.json()
    print(text)
    if args.json_path:
        with open(args.json_path, "w", encoding="utf-8") as out:
            out.write(text + "\n")
    if not report.ok:
        print(report.verdict, file=sys.stderr)
    return 0 if report.ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
