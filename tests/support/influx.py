"""Start real time-series servers for tests and benchmarks: InfluxDB 1.x and VictoriaMetrics.

Both come from Debian (``apt-get install influxdb victoria-metrics``) and run as the current
user on random loopback ports with every file in a temporary directory. ``InfluxServer`` can
be stopped and started again on the same port and directories, which is how the outage
tests cut the server away mid-stream and bring it back.
"""

from __future__ import annotations

import json
import subprocess
import time
import urllib.parse
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from tests.support.servers import find_binary, free_port, stop_process, wait_for_port

INFLUXD_CANDIDATES = ("/usr/bin/influxd",)
VICTORIA_CANDIDATES = ("/usr/bin/victoria-metrics", "/usr/bin/victoria-metrics-prod")


_stop = stop_process


def _wait_http(url: str, proc: subprocess.Popen[bytes], *, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            err = proc.stderr.read().decode(errors="replace")[-2000:] if proc.stderr else ""
            raise RuntimeError(f"server exited with {proc.returncode}: {err}")
        try:
            with urllib.request.urlopen(url, timeout=1) as resp:
                if resp.status < 300:
                    return
        except OSError:
            time.sleep(0.05)
    raise TimeoutError(f"{url} not ready after {timeout}s")


class InfluxServer:
    """An ``influxd`` (1.x) process; restartable on the same port and directories."""

    def __init__(self, workdir: Path) -> None:
        self.binary = find_binary(INFLUXD_CANDIDATES, "influxd")
        self.workdir = workdir
        workdir.mkdir(parents=True, exist_ok=True)
        self.port = free_port()
        self.rpc_port = free_port()
        self.config = workdir / "influxdb.conf"
        self.config.write_text(
            "\n".join(
                [
                    "reporting-disabled = true",
                    f'bind-address = "127.0.0.1:{self.rpc_port}"',
                    "[meta]",
                    f'  dir = "{workdir / "meta"}"',
                    "[data]",
                    f'  dir = "{workdir / "data"}"',
                    f'  wal-dir = "{workdir / "wal"}"',
                    '  index-version = "inmem"',
                    "  query-log-enabled = false",
                    "[http]",
                    f'  bind-address = "127.0.0.1:{self.port}"',
                    "  log-enabled = false",
                    "  auth-enabled = false",
                    "[monitor]",
                    "  store-enabled = false",
                    "[continuous_queries]",
                    "  enabled = false",
                    "",
                ]
            )
        )
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> None:
        self.proc = subprocess.Popen(
            [self.binary, "run", "-config", str(self.config)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )
        _wait_http(f"{self.url}/ping", self.proc)

    def stop(self) -> None:
        _stop(self.proc)
        self.proc = None

    def query(self, q: str, *, db: str = "", epoch: str = "ns") -> dict[str, Any]:
        params = {"q": q, "epoch": epoch}
        if db:
            params["db"] = db
        data = urllib.parse.urlencode(params).encode()
        with urllib.request.urlopen(f"{self.url}/query", data=data, timeout=30) as resp:
            result: dict[str, Any] = json.loads(resp.read())
        return result

    def create_db(self, name: str) -> None:
        self.query(f'CREATE DATABASE "{name}"')

    def count(self, db: str, measurement: str, field: str) -> int:
        result = self.query(f'SELECT count("{field}") FROM "{measurement}"', db=db)
        series = result["results"][0].get("series")
        return int(series[0]["values"][0][1]) if series else 0


@contextmanager
def influxdb(workdir: Path) -> Iterator[InfluxServer]:
    server = InfluxServer(workdir)
    try:
        server.start()
        yield server
    finally:
        server.stop()


class VictoriaServer:
    def __init__(self, workdir: Path) -> None:
        self.binary = find_binary(VICTORIA_CANDIDATES, "victoria-metrics")
        self.workdir = workdir
        workdir.mkdir(parents=True, exist_ok=True)
        self.port = free_port()
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> None:
        self.proc = subprocess.Popen(
            [
                self.binary,
                f"-httpListenAddr=127.0.0.1:{self.port}",
                f"-storageDataPath={self.workdir / 'data'}",
                "-retentionPeriod=100y",
                "-search.latencyOffset=0s",
                "-loggerLevel=ERROR",
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )
        wait_for_port(self.port, proc=self.proc, timeout=20)
        _wait_http(f"{self.url}/health", self.proc)

    def stop(self) -> None:
        _stop(self.proc)
        self.proc = None

    def export(self, match: str) -> list[dict[str, Any]]:
        """Every sample of the series matching ``match`` (JSON lines from /api/v1/export)."""
        urllib.request.urlopen(f"{self.url}/internal/force_flush", timeout=10).close()
        query = urllib.parse.urlencode({"match[]": match})
        with urllib.request.urlopen(f"{self.url}/api/v1/export?{query}", timeout=30) as resp:
            return [json.loads(line) for line in resp.read().splitlines() if line.strip()]


@contextmanager
def victoria_metrics(workdir: Path) -> Iterator[VictoriaServer]:
    server = VictoriaServer(workdir)
    try:
        server.start()
        yield server
    finally:
        server.stop()
