"""Throughput of the embedded MQTT broker vs Mosquitto, one publisher → one subscriber.

Run from the repo root::

    .venv/bin/python -m bench.bench_broker --messages 100000

Each broker runs in its own process (the embedded one via ``--serve``), so both get a core of
their own. Publisher and subscriber are raw-socket MQTT 3.1.1 clients in threads of this process:
they pre-encode packets and parse with a tight loop so that the broker, not a client library, is
what gets measured. The publisher keeps at most ``--window`` QoS 1 messages unacknowledged.
Prints one JSON line: delivered msgs/s per broker and QoS (best of ``--repeat`` runs), and
embedded/mosquitto ratios.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import asdict, dataclass
from pathlib import Path

from hub.broker import EmbeddedBroker
from hub.broker.codec import encode_connect, encode_publish, encode_subscribe

HOST = "127.0.0.1"
TOPIC = "bench/site-1/door/0042/state"
MOSQUITTO = "/usr/sbin/mosquitto"


@dataclass(frozen=True, slots=True, kw_only=True)
class RunResult:
    qos: int
    sent: int
    received: int
    seconds: float
    msgs_per_s: float


def make_payload(seq: int, size: int) -> bytes:
    """A ~``size``-byte JSON document like the demo's sensor events."""
    doc = {
        "site": "linli-demo",
        "device": "door-0042",
        "kind": "door.state",
        "seq": seq,
        "ts": 1_720_000_000.123 + seq,
        "state": "closed",
        "battery": 87,
        "rssi": -61,
        "pad": "",
    }
    raw = json.dumps(doc, separators=(",", ":"))
    doc["pad"] = "x" * max(0, size - len(raw))
    return json.dumps(doc, separators=(",", ":")).encode()


def _read_connack(sock: socket.socket) -> None:
    data = b""
    while len(data) < 4:
        chunk = sock.recv(4 - len(data))
        if not chunk:
            raise ConnectionError("closed before CONNACK")
        data += chunk
    if data[0] != 0x20 or data[3] != 0:
        raise ConnectionError(f"CONNECT refused: {data!r}")


def _open(port: int, client_id: str) -> socket.socket:
    sock = socket.create_connection((HOST, port))
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    sock.sendall(encode_connect(client_id, keepalive=0))
    _read_connack(sock)
    return sock


class Subscriber(threading.Thread):
    """Counts PUBLISH packets; acknowledges QoS 1 with one sendall per received chunk."""

    def __init__(self, *, port: int, qos: int, expected: int) -> None:
        super().__init__(name="bench-subscriber", daemon=True)
        self.sock = _open(port, f"bench-sub-{qos}")
        self.qos = qos
        self.expected = expected
        self.received = 0
        self.finished_at = 0.0
        self.ready = threading.Event()
        self.done = threading.Event()
        self.sock.sendall(encode_subscribe(1, [(TOPIC, qos)]))

    def run(self) -> None:
        sock = self.sock
        sock.settimeout(10.0)
        buf = b""
        received = 0
        try:
            while received < self.expected:
                chunk = sock.recv(1 << 20)
                if not chunk:
                    break
                buf = buf + chunk if buf else chunk
                pos, end = 0, len(buf)
                acks: list[bytes] = []
                while end - pos >= 2:
                    first = buf[pos]
                    length, shift, i = 0, 0, pos + 1
                    while i < end:
                        byte = buf[i]
                        length |= (byte & 0x7F) << shift
                        shift += 7
                        i += 1
                        if byte < 0x80:
                            break
                    else:
                        break
                    if i + length > end:
                        break
                    if first >> 4 == 3:
                        received += 1
                        if first & 0x06:
                            topic_len = (buf[i] << 8) | buf[i + 1]
                            acks.append(b"\x40\x02" + buf[i + 2 + topic_len : i + 4 + topic_len])
                    elif first == 0x90:
                        self.ready.set()
                    pos = i + length
                buf = buf[pos:]
                if acks:
                    sock.sendall(b"".join(acks))
        except TimeoutError:
            pass
        finally:
            self.received = received
            self.finished_at = time.perf_counter()
            self.done.set()


class Publisher(threading.Thread):
    """Sends pre-encoded packets in batches; for QoS 1 keeps at most ``window`` unacknowledged."""

    def __init__(self, *, port: int, qos: int, packets: list[bytes], window: int) -> None:
        super().__init__(name="bench-publisher", daemon=True)
        self.sock = _open(port, f"bench-pub-{qos}")
        self.qos = qos
        self.packets = packets
        self.window = window
        self.acked = 0
        self.started_at = 0.0
        self._ack_bytes = 0
        self._cond = threading.Condition()

    def _read_acks(self) -> None:
        with contextlib.suppress(OSError):
            while True:
                chunk = self.sock.recv(1 << 16)
                if not chunk:
                    return
                with self._cond:
                    self._ack_bytes += len(chunk)  # PUBACK is exactly 4 bytes
                    self.acked = self._ack_bytes // 4
                    self._cond.notify()

    def run(self) -> None:
        if self.qos:
            threading.Thread(target=self._read_acks, name="bench-puback-reader", daemon=True).start()
        batch = 100
        self.started_at = time.perf_counter()
        for start in range(0, len(self.packets), batch):
            if self.qos:
                with self._cond:
                    while start - self.acked > self.window:
                        self._cond.wait(1.0)
            self.sock.sendall(b"".join(self.packets[start : start + batch]))


def run_once(port: int, *, qos: int, messages: int, payload_size: int, window: int) -> RunResult:
    packets = [
        encode_publish(
            TOPIC, make_payload(i, payload_size), qos=qos, packet_id=(i % 65_535) + 1 if qos else None
        )
        for i in range(messages)
    ]
    subscriber = Subscriber(port=port, qos=qos, expected=messages)
    subscriber.start()
    if not subscriber.ready.wait(5):
        raise RuntimeError("no SUBACK")
    publisher = Publisher(port=port, qos=qos, packets=packets, window=window)
    publisher.start()
    subscriber.done.wait()
    publisher.join(5)
    seconds = subscriber.finished_at - publisher.started_at
    for sock in (subscriber.sock, publisher.sock):
        with contextlib.suppress(OSError):
            sock.sendall(b"\xe0\x00")
            sock.close()
    return RunResult(
        qos=qos,
        sent=messages,
        received=subscriber.received,
        seconds=round(seconds, 4),
        msgs_per_s=round(subscriber.received / seconds) if seconds > 0 else 0.0,
    )


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind((HOST, 0))
        return int(sock.getsockname()[1])


def _wait_listening(port: int, process: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"broker exited with {process.returncode}")
        with socket.socket() as probe:
            if probe.connect_ex((HOST, port)) == 0:
                return
        time.sleep(0.05)
    raise RuntimeError("broker did not start listening")


def bench_broker(port: int, process: subprocess.Popen[bytes], args: argparse.Namespace) -> dict[str, object]:
    _wait_listening(port, process)
    results: dict[str, object] = {}
    for qos in (0, 1):
        runs = [
            run_once(port, qos=qos, messages=args.messages, payload_size=args.payload, window=args.window)
            for _ in range(args.repeat)
        ]
        best = max(runs, key=lambda run: run.msgs_per_s)  # best of N: the machine may be shared
        results[f"qos{qos}"] = asdict(best)
    return results


def bench_embedded(args: argparse.Namespace) -> dict[str, object]:
    port = _free_port()
    cmd = [sys.executable, "-m", "bench.bench_broker", "--serve", str(port)]
    process = subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE)
    try:
        results = bench_broker(port, process, args)
    finally:
        stdout, _ = process.communicate(b"", timeout=10)
    results["broker_stats"] = json.loads(stdout.decode().strip().splitlines()[-1])
    return results


def bench_mosquitto(args: argparse.Namespace) -> dict[str, object] | None:
    binary = shutil.which("mosquitto") or (MOSQUITTO if os.path.exists(MOSQUITTO) else None)
    if binary is None:
        return None
    port = _free_port()
    with tempfile.TemporaryDirectory(prefix="bench-mosq-") as tmp:
        conf = Path(tmp) / "mosquitto.conf"
        conf.write_text(
            f"listener {port} {HOST}\n"
            "allow_anonymous true\n"
            "persistence false\n"
            "max_queued_messages 0\n"  # 0 = no limit (mosquitto.conf(5))
            f"max_inflight_messages {args.window}\n"
            "set_tcp_nodelay true\n"  # like the embedded broker; without it QoS 1 stalls on Nagle
            "log_dest none\n"
        )
        process = subprocess.Popen([binary, "-c", str(conf)], stdout=subprocess.DEVNULL)
        try:
            return bench_broker(port, process, args)
        finally:
            process.terminate()
            process.wait(10)


async def serve(port: int) -> None:
    """``--serve PORT``: run the embedded broker until stdin closes, then print its stats as JSON."""
    async with EmbeddedBroker(port=port, allow_anonymous=True, max_inflight=100) as broker:
        await asyncio.to_thread(sys.stdin.buffer.read)
        print(json.dumps(asdict(broker.stats())), flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--messages", type=int, default=100_000)
    parser.add_argument("--payload", type=int, default=200, help="payload bytes (JSON)")
    parser.add_argument("--window", type=int, default=100, help="QoS 1 publisher window / broker inflight")
    parser.add_argument("--repeat", type=int, default=3, help="runs per case; the best is reported")
    parser.add_argument("--serve", type=int, metavar="PORT", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve is not None:
        asyncio.run(serve(args.serve))
        return
    embedded = bench_embedded(args)
    mosquitto = bench_mosquitto(args)
    ratio: dict[str, float | None] = {}
    for key in ("qos0", "qos1"):
        emb = embedded[key]
        mos = mosquitto[key] if mosquitto else None
        assert isinstance(emb, dict)
        ratio[key] = (
            round(emb["msgs_per_s"] / mos["msgs_per_s"], 3)
            if isinstance(mos, dict) and mos["msgs_per_s"]
            else None
        )
    print(
        json.dumps(
            {
                "messages": args.messages,
                "payload_bytes": len(make_payload(0, args.payload)),
                "embedded": embedded,
                "mosquitto": mosquitto,
                "ratio_embedded_over_mosquitto": ratio,
            }
        )
    )


if __name__ == "__main__":
    main()
