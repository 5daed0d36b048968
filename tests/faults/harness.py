"""The fault suite's rig: the real hub as a subprocess, a real Mosquitto, a gateway, a command centre.

Why a subprocess: ``kill -9``, a clock moved under the process, a full disk and a locked database
must hit the hub as an operator would meet them, with nothing of the test in the same process.

Parts (each owns its process or connection and is stopped by the rig):

* :class:`MosquittoServer` — restartable on the same port and persistence directory; stop
  (SIGTERM, saves its sessions), start, ``kill -9``;
* :class:`HubProcess` — ``linli run --config FILE``, optionally under ``faketime``, its output in a
  log file (a pipe nobody reads would block the hub's logging);
* :class:`Gateway` — publishes QoS 1 presses of distinct SOS buttons mixed with door readings and
  battery reports, and records for every press when the broker acknowledged it;
* :class:`Centre` — subscribes to every worker's and the command centre's notifications;
* :func:`store_counts` — reads the hub's SQLite store read-only.

Counting: each button is pressed once per scenario, so a press is identified by its button.
*lost* = a counted press with no case; *duplicates* = presses with more than one case, plus
dispatches sent twice (two notification ids for the same case step and recipient); a copy of
the same notification id arriving twice is MQTT's at-least-once and is counted apart
(``resent``). What counts as a press "in" is the scenario's to say (see docs/reliability.md).
"""

from __future__ import annotations

import asyncio
import contextlib
import getpass
import json
import os
import signal
import socket
import sqlite3
import subprocess
import sys
import time
from collections import Counter, defaultdict
from collections.abc import AsyncIterator, Iterable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import orjson
import yaml

from hub.mqtt.client import HubMqttClient
from hub.mqtt.url import MqttUrl
from hub.web.api import token_hash
from tests.helpers import COMMUNITY, GRID, TOKEN
from tests.support.servers import MOSQUITTO_CANDIDATES, find_binary, free_port, wait_for_port

LINLI = str(Path(sys.executable).with_name("linli"))
#: Long variants (``make faults``): more presses, longer outages.
LONG = os.environ.get("FAULTS_LONG", "") not in ("", "0")
#: Where each scenario appends its row (JSON lines) for ``make faults``' table.
REPORT = os.environ.get("FAULTS_REPORT", "")
USER, PASSWORD = "linli", "fault-secret"
SOS = orjson.dumps({"action": "emergency", "battery": None, "linkquality": 90})
#: A worker, leader and supervisor on duty around the clock: no scenario depends on the hour.
ROSTER = [
    {"id": "w-all", "name": "网格员", "role": "grid_worker", "grids": [GRID], "shifts": [{"start": "00:00", "end": "00:00"}]},
    {"id": "g-leader", "name": "网格长", "role": "grid_leader", "grids": [GRID], "shifts": [{"start": "00:00", "end": "00:00"}]},
    {"id": "boss", "name": "指挥长", "role": "command_supervisor", "grids": [GRID], "shifts": [{"start": "00:00", "end": "00:00"}]},
]  # fmt: skip


def buttons(count: int, prefix: str = "sos") -> list[str]:
    return [f"{prefix}-{n:04d}" for n in range(count)]


def registry(sos_buttons: Sequence[str], doors: Sequence[str]) -> dict[str, Any]:
    devices = [{"id": b, "kind": "sos_button", "model": "TS0215A", "grid": GRID} for b in sos_buttons]
    devices += [
        {"id": d, "kind": "door_sensor", "model": "MCCGQ11LM", "grid": GRID, "heartbeat_s": 3600}
        for d in doors
    ]
    return {
        "version": 1,
        "communities": [
            {
                "code": COMMUNITY,
                "name": "幸福里社区",
                "street": {"code": "110105001", "name": "幸福街道"},
                "grids": [{"code": GRID, "name": "第一网格"}],
                "people": ROSTER,
                "devices": devices,
            }
        ],
    }


# -- Mosquitto -----------------------------------------------------------------------------------


class MosquittoServer:
    """One broker on a fixed port; restartable with the same persistence directory."""

    def __init__(self, workdir: Path, *, persistence: bool) -> None:
        self.binary = find_binary(MOSQUITTO_CANDIDATES, "mosquitto")
        passwd = find_binary(("/usr/bin/mosquitto_passwd",), "mosquitto_passwd")
        workdir.mkdir(parents=True, exist_ok=True)
        self.workdir = workdir
        self.persistence = persistence
        self.port = free_port()
        password_file = workdir / "passwd"
        subprocess.run(
            [passwd, "-b", "-c", str(password_file), USER, PASSWORD], check=True, capture_output=True
        )
        password_file.chmod(0o600)
        store = workdir / "persist"
        store.mkdir(exist_ok=True)
        lines = [
            f"listener {self.port} 127.0.0.1",
            f"user {getpass.getuser()}",  # as root: stay root, so the persistence dir is writable
            "allow_anonymous false",
            f"password_file {password_file}",
            "max_queued_messages 0",
            "max_inflight_messages 0",
            "set_tcp_nodelay true",
            "log_type error",
            "log_type warning",
            f"log_dest file {workdir / 'mosquitto.log'}",
        ]
        if persistence:
            # Saved on a clean stop. While running, Mosquitto saves every `autosave_interval`
            # seconds by default, so kill -9 loses what it acknowledged since (a burst of presses
            # under load: 7 of 45 in one run). With autosave_on_changes the interval counts
            # changes: a save after every one, the durability an SOS needs (mosquitto.conf(5)).
            lines += [
                "persistence true",
                f"persistence_location {store}/",
                "autosave_on_changes true",
                "autosave_interval 1",
            ]
        else:
            lines += ["persistence false"]
        self.config = workdir / "mosquitto.conf"
        self.config.write_text("\n".join(line for line in lines if line) + "\n")
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"mqtt://{USER}:{PASSWORD}@127.0.0.1:{self.port}"

    def start(self) -> None:
        self.proc = subprocess.Popen(
            [self.binary, "-c", str(self.config)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )
        wait_for_port(self.port, proc=self.proc, timeout=20)

    def stop(self) -> None:
        """SIGTERM: Mosquitto saves its sessions (with persistence) and exits."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(timeout=20)
        self.proc = None

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(timeout=20)
        self.proc = None


# -- the hub -------------------------------------------------------------------------------------


class HubProcess:
    """``linli run`` in a subprocess; output appended to ``log``."""

    def __init__(
        self, config: Path, log: Path, *, faketime: str | None = None, env: dict[str, str] | None = None
    ) -> None:
        self.config = config
        self.log = log
        self.faketime = faketime
        # The hub reads LINLI_* variables as settings: only the config file speaks here.
        self.env = {k: v for k, v in os.environ.items() if not k.startswith("LINLI_")} | (env or {})
        self.proc: asyncio.subprocess.Process | None = None
        self.http_port: int | None = None
        self.starts = 0

    async def start(self, *, within: float = 90.0) -> float:
        """Start and wait until it serves; returns how long that took (s)."""
        offset = self.log.stat().st_size if self.log.exists() else 0
        prefix = ["faketime", "-f", self.faketime] if self.faketime else []
        began = time.monotonic()
        with self.log.open("ab") as out:
            self.proc = await asyncio.create_subprocess_exec(
                *prefix,
                LINLI,
                "run",
                "--config",
                str(self.config),
                stdout=out,
                stderr=subprocess.STDOUT,
                env=self.env,
            )
        self.starts += 1
        deadline = began + within
        while time.monotonic() < deadline:
            text = self.log.read_bytes()[offset:].decode(errors="replace")
            if "console http://" in text:
                self.http_port = int(text.split("console http://", 1)[1].split(":", 1)[1].split("/", 1)[0])
                return time.monotonic() - began
            if self.proc.returncode is not None:
                raise RuntimeError(f"hub exited with {self.proc.returncode}:\n{text[-3000:]}")
            await asyncio.sleep(0.05)
        raise TimeoutError(
            f"hub not serving after {within} s:\n{self.log.read_text(errors='replace')[-3000:]}"
        )

    def kill9(self) -> None:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGKILL)

    async def wait(self) -> int:
        assert self.proc is not None
        return await self.proc.wait()

    async def stop(self) -> None:
        if self.proc is not None and self.proc.returncode is None:
            self.proc.terminate()
            try:
                await asyncio.wait_for(self.proc.wait(), 30)
            except TimeoutError:
                self.proc.kill()
                await self.proc.wait()

    async def stats(self) -> dict[str, Any]:
        """``/api/stats``: pipeline counters, MQTT state and the retry queue (``held_messages``)."""
        async with (
            aiohttp.ClientSession(headers={"Authorization": f"Bearer {TOKEN}"}) as http,
            http.get(
                f"http://127.0.0.1:{self.http_port}/api/stats", timeout=aiohttp.ClientTimeout(total=10)
            ) as r,
        ):
            result: dict[str, Any] = await r.json()
            return result

    def log_text(self) -> str:
        return self.log.read_text(errors="replace") if self.log.exists() else ""


def hub_config(
    path: Path,
    *,
    data_dir: Path,
    community_file: Path,
    mqtt_url: str,
    policies_file: Path | None = None,
    timeseries: dict[str, Any] | None = None,
    extra: dict[str, Any] | None = None,
) -> Path:
    doc: dict[str, Any] = {
        "data_dir": str(data_dir),
        "community_file": str(community_file),
        "http": {"host": "127.0.0.1", "port": 0},
        "mqtt": {"url": mqtt_url, "client_id": "linli-faults"},
        "api_tokens": [{"name": "faults", "sha256": token_hash(TOKEN)}],
    }
    if policies_file is not None:
        doc["policies_file"] = str(policies_file)
    if timeseries is not None:
        doc["timeseries"] = timeseries
    doc.update(extra or {})
    path.write_text(yaml.safe_dump(doc, allow_unicode=True), encoding="utf-8")
    return path


# -- MQTT sides ----------------------------------------------------------------------------------


def _ignore(topic: str, payload: bytes, qos: int, retain: bool, dup: bool) -> None:
    """The gateway subscribes to nothing."""


@dataclass(slots=True)
class Press:
    button: str
    sent_at: float
    acked_at: float | None = None
    error: str = ""


class Gateway:
    """A gateway: QoS 1 presses of distinct buttons amid door readings and battery reports.

    ``hold_while_down``: a press made while the broker is unreachable waits for the connection
    (a gateway's own queue) instead of being refused (not acknowledged, so not counted).
    """

    def __init__(self, url: str, *, hold_while_down: bool = True, client_id: str = "fault-gateway") -> None:
        self.client = HubMqttClient(
            url=MqttUrl.parse(url), client_id=client_id, on_message=_ignore, subscriptions=[]
        )
        self.hold_while_down = hold_while_down
        self.presses: dict[str, Press] = {}
        self.readings_sent = 0
        self.readings_acked = 0
        self.door_messages: Counter[str] = Counter()
        self._pending: set[asyncio.Future[None]] = set()

    async def start(self) -> None:
        await self.client.connect()

    async def stop(self) -> None:
        with contextlib.suppress(Exception):
            await self.client.disconnect()

    async def _publish(self, topic: str, payload: bytes) -> asyncio.Future[None]:
        if self.hold_while_down and not self.client.connected.is_set():
            await self.client.connected.wait()
        return self.client.publish(topic, payload, qos=1)

    async def press(self, button: str) -> Press:
        press = Press(button, time.time())
        self.presses[button] = press
        sent = await self._publish(f"zigbee2mqtt/{button}", SOS)

        def acked(future: asyncio.Future[None]) -> None:
            self._pending.discard(future)
            if future.cancelled():
                press.error = "cancelled"
            elif future.exception() is not None:
                press.error = str(future.exception())
            else:
                press.acked_at = time.time()

        self._pending.add(sent)
        sent.add_done_callback(acked)
        return press

    async def reading(self, device: str, n: int) -> None:
        body = {"contact": n % 2 == 0, "battery": 90 - n % 5, "voltage": 3000, "linkquality": 80}
        self.readings_sent += 1
        sent = await self._publish(f"zigbee2mqtt/{device}", orjson.dumps(body))

        def acked(future: asyncio.Future[None]) -> None:
            self._pending.discard(future)
            if not future.cancelled() and future.exception() is None:
                self.readings_acked += 1
                self.door_messages[device] += 1

        self._pending.add(sent)
        sent.add_done_callback(acked)

    async def burst(
        self, sos_buttons: Sequence[str], doors: Sequence[str], *, rate: float, readings_per_press: int = 4
    ) -> None:
        """Presses of ``sos_buttons`` in order, each followed by door/battery readings, at ``rate`` msg/s."""
        loop = asyncio.get_running_loop()
        start, sent = loop.time(), 0
        for index, button in enumerate(sos_buttons):
            for message in range(1 + readings_per_press):
                if message == 0:
                    await self.press(button)
                else:
                    await self.reading(
                        doors[(index + message) % len(doors)], index * readings_per_press + message
                    )
                sent += 1
                delay = start + sent / rate - loop.time()
                if delay > 0:
                    await asyncio.sleep(delay)

    def acked(self) -> list[Press]:
        return [p for p in self.presses.values() if p.acked_at is not None]

    async def settle(self, *, within: float) -> None:
        """Wait until every publish was acknowledged or refused."""
        if self._pending:
            await asyncio.wait(set(self._pending), timeout=within)


@dataclass(slots=True)
class Received:
    at: float
    topic: str
    body: dict[str, Any]


class Centre:
    """The command centre and every worker's phone: records each notification."""

    def __init__(self, url: str) -> None:
        self.messages: list[Received] = []
        self.client = HubMqttClient(
            url=MqttUrl.parse(url),
            client_id="fault-centre",
            on_message=self._on_message,
            subscriptions=[
                f"linli/{COMMUNITY}/workers/+/notifications",
                "linli/command-centre/notifications",
            ],
        )

    def _on_message(self, topic: str, payload: bytes, qos: int, retain: bool, dup: bool) -> None:
        self.messages.append(Received(time.time(), topic, orjson.loads(payload)))

    async def start(self) -> None:
        await self.client.connect()
        await asyncio.wait_for(self.client.subscribed.wait(), 20)

    async def stop(self) -> None:
        with contextlib.suppress(Exception):
            await self.client.disconnect()

    def of_type(self, kind: str) -> list[Received]:
        return [m for m in self.messages if m.body.get("type") == kind]

    def case_messages(self) -> list[Received]:
        return [m for m in self.messages if str(m.body.get("type", "")).startswith("case.")]

    def dispatched(self) -> dict[str, float]:
        """Case id → when its first dispatch (escalation step 0) arrived."""
        first: dict[str, float] = {}
        for m in self.case_messages():
            step = str(m.body.get("step", ""))
            case_id = str(m.body.get("case", {}).get("id", ""))
            if step.endswith("/0") and "/dispatched/" in step:
                first.setdefault(case_id, m.at)
        return first

    def duplicate_dispatches(self) -> int:
        """Steps sent twice: more than one notification id for one (step, recipient)."""
        ids: defaultdict[tuple[str, str], set[str]] = defaultdict(set)
        for m in self.case_messages():
            ids[(str(m.body.get("step")), str(m.body.get("recipient")))].add(str(m.body.get("id")))
        return sum(len(v) - 1 for v in ids.values())

    def resent(self) -> int:
        """The same notification id received again (MQTT at-least-once; receivers drop it by id)."""
        counts = Counter(str(m.body.get("id")) for m in self.case_messages())
        return sum(n - 1 for n in counts.values())


# -- stalled event-stream clients ---------------------------------------------------------------


def rss_kib(pid: int) -> int:
    """Resident set size of a process (``VmRSS`` in /proc), KiB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise RuntimeError(f"no VmRSS for {pid}")


class StalledStreams:
    """``count`` authenticated ``GET /api/stream`` connections that never read a byte.

    Plain sockets with the kernel's default buffers, as a browser tab frozen in the background
    would hold them. :meth:`closed_by_hub` counts those the hub has closed or reset (it drops a
    client that falls behind).
    """

    def __init__(self, port: int, count: int) -> None:
        self.port = port
        self.count = count
        self.sockets: list[socket.socket] = []

    def open(self) -> None:
        request = (
            f"GET /api/stream HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer {TOKEN}\r\n\r\n"
        ).encode()
        for _ in range(self.count):
            sock = socket.create_connection(("127.0.0.1", self.port), timeout=10)
            sock.sendall(request)
            self.sockets.append(sock)

    def closed_by_hub(self) -> int:
        """Peek without reading: a socket the hub closed shows EOF or a reset after its buffered bytes."""
        closed = 0
        for sock in self.sockets:
            try:
                # MSG_PEEK of the whole receive queue would read nothing: ask for the socket error.
                err = sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
                tcp_state = sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_INFO, 1)[0]
            except OSError:
                closed += 1
                continue
            # TCP_INFO's first byte is the state: 1 ESTABLISHED; 7 CLOSE, 8 CLOSE_WAIT (peer closed).
            if err or tcp_state in (7, 8):
                closed += 1
        return closed

    def close(self) -> None:
        for sock in self.sockets:
            with contextlib.suppress(OSError):
                sock.close()
        self.sockets.clear()


# -- the store, read-only ------------------------------------------------------------------------


@dataclass(slots=True)
class StoreCounts:
    #: button → (SOS alerts, sum of their occurrence counts)
    alerts: dict[str, tuple[int, int]] = field(default_factory=dict)
    #: button → case ids
    cases: dict[str, list[str]] = field(default_factory=dict)
    quarantine: dict[str, int] = field(default_factory=dict)


def store_counts(db_path: Path) -> StoreCounts:
    """Alerts, cases and quarantine of the hub's store, read through a read-only connection."""
    counts = StoreCounts()
    if not db_path.exists():
        return counts
    db = sqlite3.connect(f"file:{db_path}?mode=ro", uri=True, timeout=5)
    try:
        for device, alerts, occurrences in db.execute(
            "SELECT device_id, count(*), sum(count) FROM alerts WHERE rule = 'elderly.sos' GROUP BY device_id"
        ):
            counts.alerts[device] = (alerts, occurrences)
        for device, case_id in db.execute(
            "SELECT a.device_id, c.id FROM cases c JOIN alerts a ON a.id = c.alert_id WHERE a.rule = 'elderly.sos'"
        ):
            counts.cases.setdefault(device, []).append(case_id)
        for reason, total in db.execute("SELECT reason, sum(count) FROM quarantine GROUP BY reason"):
            counts.quarantine[reason] = total
    except sqlite3.OperationalError as exc:
        if "no such table" not in str(exc):
            raise
    finally:
        db.close()
    return counts


# -- the row -------------------------------------------------------------------------------------


@dataclass(slots=True)
class Row:
    """One scenario's counts, as in docs/reliability.md."""

    scenario: str
    presses: int
    alerts: int
    cases: int
    duplicates: int
    lost: int
    notifications: int
    recover_s: float
    counted_twice: int = 0
    resent: int = 0
    note: str = ""
    #: What /readyz said: false while the fault lasted and true after, or true throughout.
    ready: str = ""

    def line(self) -> str:
        return (
            f"| {self.scenario} | {self.presses} | {self.alerts} | {self.cases} | {self.duplicates} | {self.lost} |"
            f" {self.notifications} | {self.recover_s:.1f} | {self.ready} | {self.note} |"
        )


def tally(
    scenario: str,
    counted: Iterable[str],
    store: StoreCounts,
    centre: Centre,
    *,
    recover_s: float,
    note: str = "",
    ready: Verdict | None = None,
) -> Row:
    """The row for the presses ``counted`` (buttons)."""
    counted = list(counted)
    dispatched = centre.dispatched()
    cases = [c for b in counted for c in store.cases.get(b, [])]
    row = Row(
        scenario=scenario,
        presses=len(counted),
        alerts=sum(store.alerts.get(b, (0, 0))[0] for b in counted),
        cases=len(cases),
        duplicates=sum(len(store.cases.get(b, [])) > 1 for b in counted) + centre.duplicate_dispatches(),
        lost=sum(not store.cases.get(b) for b in counted),
        notifications=sum(c in dispatched for c in cases),
        recover_s=recover_s,
        counted_twice=sum(store.alerts.get(b, (0, 0))[1] > 1 for b in counted),
        resent=centre.resent(),
        note=note,
        ready=ready.text if ready is not None else "",
    )
    print(row.line())
    if REPORT:
        with open(REPORT, "a", encoding="utf-8") as out:
            out.write(json.dumps(asdict(row), ensure_ascii=False) + "\n")
    return row


async def until(check: Any, *, within: float, every: float = 0.2) -> float | None:
    """Poll ``check()`` until true; returns when (``time.time()``), ``None`` on timeout."""
    deadline = time.monotonic() + within
    while True:
        if check():
            return time.time()
        if time.monotonic() > deadline:
            return None
        await asyncio.sleep(every)


# -- readiness, probed all along ----------------------------------------------------------------

#: How often the watch asks /readyz, and how long a fault may take to show (one probe period:
#: every check is computed when asked, so a fault shows at the next probe).
READY_EVERY_S = 0.2
READY_PERIOD_S = 1.0


@dataclass(frozen=True, slots=True)
class Verdict:
    ok: bool
    text: str


class ReadyWatch:
    """Asks the hub's ``/readyz`` every :data:`READY_EVERY_S` for the whole scenario.

    A sample is ``True`` (200), ``False`` (503) or ``None`` (no answer: the hub is down, which
    is not ready either). :meth:`during` judges a fault window: ready just before it, never
    ready from one probe period after it began until it ended, ready again after.
    """

    def __init__(self, hub: HubProcess) -> None:
        self.hub = hub
        self.samples: list[tuple[float, bool | None]] = []
        #: Why a probe was not ready (the failing checks, or no answer), with how often.
        self.reasons: Counter[str] = Counter()
        self.why: list[tuple[float, str]] = []
        self._task: asyncio.Task[None] | None = None

    async def _probe(self, http: aiohttp.ClientSession) -> tuple[bool | None, str]:
        """One ``/readyz``: (ready, why not). A connection the hub refused or reset is asked once
        more on a fresh connection (a kept-alive one can race the server's close); no answer
        within 2 s is recorded as such: the hub is dead or its loop is stalled."""
        why = "no answer"
        for attempt in (1, 2):
            try:
                async with http.get(
                    f"http://127.0.0.1:{self.hub.http_port}/readyz",
                    timeout=aiohttp.ClientTimeout(total=2),
                    # With the token: an anonymous probe gets the failing checks' names only.
                    headers={"Authorization": f"Bearer {TOKEN}"}
                    | ({"Connection": "close"} if attempt == 2 else {}),
                ) as r:
                    body = await r.json()
                    failing = ", ".join(
                        f"{k}: {body['checks'][k]['detail']}" for k in body.get("failing", [])
                    )
                    return r.status == 200, failing
            except TimeoutError:
                return None, "no answer within 2 s"
            except (aiohttp.ClientError, OSError, ValueError, KeyError) as exc:
                why = f"no answer ({type(exc).__name__})"
        return None, why

    async def _run(self) -> None:
        async with aiohttp.ClientSession() as http:
            while True:
                at = time.time()
                ok, why = await self._probe(http)
                self.samples.append((at, ok))
                if not ok:
                    self.reasons[why] += 1
                    self.why.append((at, why))
                await asyncio.sleep(READY_EVERY_S)

    def reasons_between(self, start: float, end: float) -> dict[str, int]:
        return dict(Counter(why for t, why in self.why if start <= t <= end))

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="ready-watch")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    async def ready_again(self, *, after: float, within: float = 60.0) -> float | None:
        """When the first ready sample after ``after`` came (``time.time()``), waiting for it."""
        deadline = time.monotonic() + within
        while time.monotonic() < deadline:
            seen = next((t for t, ok in self.samples if t > after and ok), None)
            if seen is not None:
                return seen
            await asyncio.sleep(READY_EVERY_S)
        return None

    async def during(self, start: float, end: float, *, ready_before: bool = True) -> Verdict:
        """Readiness was false exactly while the fault lasted (``start``..``end``, ``time.time()``)."""
        before = [ok for t, ok in self.samples if t < start]
        # A fault may take one probe period to show; a window too short to hold a probe after
        # that (a kill -9 the hub restarts from in under a second) is judged from its start,
        # where a dead or starting hub cannot answer ready either.
        grace = READY_PERIOD_S if end - start >= READY_PERIOD_S + 2 * READY_EVERY_S else 0.0
        inside = [ok for t, ok in self.samples if start + grace <= t <= end]
        false_inside = sum(ok is not True for ok in inside)
        back = await self.ready_again(after=end)
        ok = (
            (not ready_before or (bool(before) and before[-1] is True))
            and bool(inside)
            and false_inside == len(inside)
            and back is not None
        )
        text = f"false {false_inside}/{len(inside)} probes during; " + (
            f"true {back - end:.1f} s after" if back is not None else "not ready again"
        )
        if ready_before and not (before and before[-1] is True):
            text += f"; not ready just before: {self.reasons_between(start - 2, start)}"
        return Verdict(ok, text)

    def throughout(self, start: float, end: float, *, why: str = "nothing an SOS needs was down") -> Verdict:
        """No fault on the SOS path: ready at every probe of ``start``..``end``."""
        inside = [ok for t, ok in self.samples if start <= t <= end]
        good = sum(ok is True for ok in inside)
        text = f"true {good}/{len(inside)} probes ({why})"
        if good < len(inside):
            text += f"; not ready: {self.reasons_between(start, end)}"
        return Verdict(bool(inside) and good == len(inside), text)


# -- the rig -------------------------------------------------------------------------------------


@dataclass
class Rig:
    """Everything one scenario needs, started in order and stopped in reverse."""

    workdir: Path
    broker: MosquittoServer
    hub: HubProcess
    gateway: Gateway
    centre: Centre
    data_dir: Path
    sos: list[str]
    doors: list[str]
    ready: ReadyWatch

    @property
    def db_path(self) -> Path:
        return self.data_dir / "linli.sqlite3"

    def counts(self) -> StoreCounts:
        return store_counts(self.db_path)

    def all_cased(self, counted: Iterable[str]) -> bool:
        store = self.counts()
        dispatched = self.centre.dispatched()
        return all(any(c in dispatched for c in store.cases.get(b, [])) for b in counted)

    async def until_all_cased(self, counted: Iterable[str], *, within: float) -> float | None:
        counted = list(counted)
        return await until(lambda: self.all_cased(counted), within=within, every=0.25)


@contextlib.asynccontextmanager
async def rig(
    workdir: Path,
    *,
    sos: int,
    doors: int = 10,
    persistence: bool = True,
    data_dir: Path | None = None,
    policies: dict[str, Any] | None = None,
    timeseries: dict[str, Any] | None = None,
    faketime: str | None = None,
    hub_env: dict[str, str] | None = None,
    hold_while_down: bool = True,
    start_hub: bool = True,
    settings: dict[str, Any] | None = None,
) -> AsyncIterator[Rig]:
    sos_buttons, door_ids = buttons(sos), [f"door-{n:02d}" for n in range(doors)]
    community = workdir / "community.yaml"
    community.write_text(
        yaml.safe_dump(registry(sos_buttons, door_ids), allow_unicode=True), encoding="utf-8"
    )
    policies_file = None
    if policies is not None:
        policies_file = workdir / "policies.yaml"
        policies_file.write_text(yaml.safe_dump(policies), encoding="utf-8")
    broker = MosquittoServer(workdir / "mosquitto", persistence=persistence)
    broker.start()
    data = data_dir or workdir / "data"
    config = hub_config(
        workdir / "linli.yaml",
        data_dir=data,
        community_file=community,
        mqtt_url=broker.url,
        policies_file=policies_file,
        timeseries=timeseries,
        extra=settings,
    )
    hub = HubProcess(config, workdir / "hub.log", faketime=faketime, env=hub_env)
    centre = Centre(broker.url)
    gateway = Gateway(broker.url, hold_while_down=hold_while_down)
    ready = ReadyWatch(hub)
    try:
        await centre.start()
        if start_hub:
            await hub.start()
        await gateway.start()
        ready.start()
        if start_hub:
            # Every scenario starts from a ready hub (its rule timers run once it has caught up).
            began = time.time()
            assert await ready.ready_again(after=began - 1, within=30), dict(ready.reasons)
        yield Rig(workdir, broker, hub, gateway, centre, data, sos_buttons, door_ids, ready)
    except BaseException:
        print(hub.log_text()[-4000:])
        raise
    finally:
        await ready.stop()
        await gateway.stop()
        await hub.stop()
        await centre.stop()
        broker.stop()
