"""Measure the load generator against a local Mosquitto: the sustained msg/s it really achieves.

A raw-socket subscriber (another process) drains the broker on ``#`` and counts what arrives, so
the broker is not throttled by a slow consumer and the sent count is checked against the
received one. Run: ``.venv/bin/python -m bench.bench_load --rate 60000 --duration 10``.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import sys
import tempfile
from pathlib import Path

from simulators.load import LoadConfig, run_load, subscriber_main
from tests.support.servers import mosquitto


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rate", type=float, default=60_000.0)
    parser.add_argument("--duration", type=float, default=10.0)
    parser.add_argument("--devices", type=int, default=10_000)
    parser.add_argument("--format", dest="mix", default=LoadConfig().mix)
    parser.add_argument("--processes", type=int, default=None)
    parser.add_argument("--no-subscriber", action="store_true")
    args = parser.parse_args(argv)
    ctx = multiprocessing.get_context("spawn")
    with tempfile.TemporaryDirectory(prefix="linli-bench-load-") as tmp, mosquitto(Path(tmp)) as broker:
        sub = None
        counts = ctx.Queue()
        if not args.no_subscriber:
            ready = ctx.Event()
            sub = ctx.Process(
                target=subscriber_main,
                args=(broker.host, broker.port, broker.username, broker.password, "#", ready, counts),
                name="linli-bench-sub",
            )
            sub.start()
            if not ready.wait(10):
                raise SystemExit("subscriber did not come up")
        report = run_load(
            LoadConfig(
                host=broker.host,
                port=broker.port,
                username=broker.username,
                password=broker.password,
                rate=args.rate,
                duration=args.duration,
                devices=args.devices,
                mix=args.mix,
                processes=args.processes,
            )
        )
        result = json.loads(report.json())
        if sub is not None:
            received = counts.get(timeout=60)
            sub.join(timeout=10)
            result["received_by_subscriber"] = received
            result["lost"] = report.sent - received
        print(json.dumps(result, indent=2, ensure_ascii=False))
    ok = report.ok and result.get("lost", 0) == 0
    if not ok:
        print(report.verdict if not report.ok else f"lost {result['lost']} messages", file=sys.stderr)
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
