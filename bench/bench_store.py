"""Store benchmark: the cost of one alert transaction on each engine, as the hub pays it.

The hub writes an alert from inside the MQTT callback, synchronously: one transaction with
the alert (insert, or update of the active one) and its outbox rows. This measures exactly
that call (:func:`hub.ingest.alerts.record_signal`, one recipient) on SQLite (WAL,
``synchronous=NORMAL``, as the hub opens it) and on PostgreSQL 15 over loopback TCP with the
server's durable defaults (``fsync=on``, ``synchronous_commit=on``). Prints one JSON line::

    .venv/bin/python -m bench.bench_store [--alerts 2000] [--engines sqlite,postgresql]

``new`` = a new alert per call (distinct subjects); ``repeat`` = the same (rule, subject)
again (the update path, a row lock on PostgreSQL). Times are per transaction, in µs.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from hub.ingest.alerts import record_signal
from hub.records import Recipient
from hub.storage.store import Store
from rules.model import Severity
from rules.signals import Signal, SignalAction
from rules.subject import Subject
from tests.support.servers import postgres

T0 = 1_800_000_000.0
SUBJECT = Subject("btn-1", None, "110105001001001", "110105001001")
WORKER = Recipient("g1-day", "mqtt", "linli/110105001001/workers/g1-day/notifications")


def _signal(subject: str, ts: float, n: int) -> Signal:
    return Signal(
        action=SignalAction.RAISE,
        rule_id="elderly.sos",
        category="sos",
        severity=Severity.CRITICAL,
        subject=subject,
        ts=ts,
        title_zh="一键呼救",
        title_en="SOS",
        trace={"event": {"kind": "sos_press", "ts": ts, "n": n}},
    )


def _timed(calls: int, one: Callable[[int], object]) -> dict[str, float]:
    samples = []
    for n in range(calls):
        started = time.perf_counter()
        one(n)
        samples.append((time.perf_counter() - started) * 1e6)
    samples.sort()
    return {
        "median_us": round(statistics.median(samples), 1),
        "p90_us": round(samples[int(0.9 * len(samples))], 1),
        "p99_us": round(samples[int(0.99 * len(samples))], 1),
        "mean_us": round(statistics.fmean(samples), 1),
    }


def measure(store: Store, alerts: int) -> dict[str, dict[str, float]]:
    for n in range(50):  # warm-up: prepared statements, caches
        record_signal(store, _signal(f"warm-{n}", T0, n), SUBJECT, [WORKER])
    new = _timed(alerts, lambda n: record_signal(store, _signal(f"btn-{n}", T0 + n, n), SUBJECT, [WORKER]))
    # Past the merge window each time, so every repeat writes an update and a notification.
    repeat = _timed(
        alerts,
        lambda n: record_signal(store, _signal("btn-0", T0 + 1000 * (n + 1), n), SUBJECT, [WORKER]),
    )
    return {"new": new, "repeat": repeat}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--alerts", type=int, default=2000)
    parser.add_argument("--engines", default="sqlite,postgresql")
    parser.add_argument(
        "--pg-no-fsync",
        action="store_true",
        help="PostgreSQL with fsync and synchronous_commit off: how much of the cost is the WAL flush"
        " (never run a hub so: an acknowledged SOS could be lost in a crash)",
    )
    args = parser.parse_args(argv)
    engines = args.engines.split(",")
    result: dict[str, object] = {"alerts": args.alerts, "pg_fsync": not args.pg_no_fsync}
    if "sqlite" in engines:
        with tempfile.TemporaryDirectory() as tmp:
            store = Store(path=Path(tmp) / "bench.sqlite3")
            result["sqlite"] = measure(store, args.alerts)
            store.close()
    if "postgresql" in engines:
        with postgres(fsync=not args.pg_no_fsync) as server:
            store = Store(url=server.url())
            result["postgresql"] = measure(store, args.alerts)
            store.close()
    for engine in engines:
        print(f"{engine}: {result.get(engine)}", file=sys.stderr)
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
