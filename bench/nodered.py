"""Node-RED side by side: the same stream, the same Mosquitto, the same InfluxDB, the same run.

Node-RED is what a community would pick instead of Linli, so the suite measures it on the
bytes the hub gets. It is *not* a dependency of Linli: :func:`install` puts ``node-red@4``
(Node-RED 5 needs Node 22; these machines have Node 20) and ``node-red-contrib-influxdb`` into
a cache directory with ``npm`` the first time, and reuses it after.

Two flows, each in a fresh Node-RED process with its own user directory:

* **minimal**: MQTT in (parsed JSON) → one function that spots SOS presses and door-open
  starts → MQTT out. The floor of what a Node-RED flow costs per message.
* **equal work**: MQTT in → a function implementing the shipped rules with their timers
  (SOS with its 60 s merge window, entrance/fire-exit door held open, living-alone
  inactivity, fire lane and parking overstay, the four battery thresholds with hysteresis,
  offline after 2 heartbeats) on device time, its state in the persistent (file) context
  store flushed every 5 s like the hub's routine rule state → MQTT out (QoS 1) for alerts; the
  state changes and, at most every 5 minutes per device, battery and link-quality points →
  a batching function (5 000 points or 1 s) → ``influxdb batch`` into the bench's InfluxDB.
  It does not do casework (cases, escalation, notification routing by roster): the hub does.

How a run is timed: the function counts stream messages; at the first and the Nth it notes
``Date.now()`` and after the Nth publishes ``{"n", "first_ms", "last_ms"}`` to
``bench/nodered/done``. Readiness is a marker message the flow echoes to ``bench/nodered/ready``.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import shutil
import subprocess
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import gmqtt
from gmqtt.mqtt.constants import MQTTv311

from simulators.community import SimDevice
from tests.support.servers import free_port, stop_process

CACHE_DIR = Path(os.environ.get("LINLI_BENCH_CACHE", Path.home() / ".cache" / "linli-bench")) / "node-red"
PACKAGES = ("node-red@4", "node-red-contrib-influxdb@0.7")
READY_TOPIC = "bench/nodered/ready"
DONE_TOPIC = "bench/nodered/done"
PROGRESS_TOPIC = "bench/nodered/progress"
#: The flows report their count every this many messages, so a slow but working flow is not
#: mistaken for a stuck one (the wait gives up only after ``idle_timeout`` without progress).
PROGRESS_EVERY = 10_000
MARKER_TOPIC = "zigbee2mqtt/bridge/linli-bench-marker"
#: Points per InfluxDB write in the equal-work flow (the hub's ``timeseries.batch_size``).
BATCH_POINTS = 5000


class NodeRedUnavailableError(RuntimeError):
    """Node.js/npm missing or the npm install failed: the section reports it instead of numbers."""


def install(cache_dir: Path = CACHE_DIR, *, timeout: float = 600.0) -> Path:
    """``red.js`` of node-red@4 with node-red-contrib-influxdb, installed once into ``cache_dir``."""
    red = cache_dir / "node_modules" / "node-red" / "red.js"
    influx = cache_dir / "node_modules" / "node-red-contrib-influxdb" / "influxdb.js"
    if red.exists() and influx.exists():
        return red
    npm = shutil.which("npm")
    if npm is None or shutil.which("node") is None:
        raise NodeRedUnavailableError("node and npm are needed to install Node-RED for the comparison")
    cache_dir.mkdir(parents=True, exist_ok=True)
    package = cache_dir / "package.json"
    if not package.exists():
        package.write_text('{"name": "linli-bench-node-red", "private": true}\n')
    proc = subprocess.run(
        [npm, "install", "--no-audit", "--no-fund", "--silent", *PACKAGES],
        cwd=cache_dir,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
    if proc.returncode != 0 or not red.exists():
        raise NodeRedUnavailableError(f"npm install failed ({proc.returncode}): {proc.stderr[-500:]}")
    return red


def node_red_version(red: Path) -> str:
    doc = json.loads((red.parent / "package.json").read_text())
    return str(doc.get("version", "?"))


# -- flows ---------------------------------------------------------------------------------------

_MINIMAL_JS = """
const s = context.get('s');
const t = msg.topic;
if (t.startsWith('zigbee2mqtt/bridge/')) {
    return t === MARKER ? [null, {topic: READY, payload: 'ready'}] : null;
}
const p = msg.payload;
if (p === null || typeof p !== 'object') return null;
const id = t.slice(12);
let out = null;
const a = p.action;
if (a === 'emergency' || a === 'sos' || a === 'panic' || (typeof a === 'string' && a !== '' && s.sos[id])) {
    out = {topic: 'nodered/alerts/sos/' + id, payload: {device: id, ts: p.last_seen}};
} else if (p.contact === false) {
    if (s.open[id] !== true) out = {topic: 'nodered/alerts/door/' + id, payload: {device: id, ts: p.last_seen}};
    s.open[id] = true;
} else if (p.contact === true) {
    s.open[id] = false;
}
s.n += 1;
let done = null;
if (s.n === 1) s.first = Date.now();
if (s.n === N) done = {topic: DONE, payload: {n: s.n, first_ms: s.first, last_ms: Date.now()}};
else if (s.n % PROGRESS_EVERY === 0) done = {topic: PROGRESS, payload: s.n};
return [out, done];
"""

_MINIMAL_INIT = """
const reg = global.get('linliRegistry');
const sos = {};
for (const id in reg) if (reg[id].kind === 'sos_button') sos[id] = true;
context.set('s', {n: 0, first: 0, open: {}, sos: sos});
"""

_EQUAL_INIT = """
const reg = global.get('linliRegistry');
let s = context.get('s', 'file');
if (!s) {
    s = {n: 0, first: 0, clock: START, nextDue: Infinity, due: {}, open: {}, sosAt: {}, bat: {}, health: {}, fired: 0};
    for (const id in reg) {
        const d = reg[id];
        if (d.hb) s.due['off|' + id] = START + 2 * d.hb;
        if (d.kind === 'door_sensor' && d.alone) s.due['alone|' + id] = START + 86400;
    }
    for (const k in s.due) if (s.due[k] < s.nextDue) s.nextDue = s.due[k];
    context.set('s', s, 'file');
}
"""

_EQUAL_JS = """
const reg = global.get('linliRegistry');
const s = context.get('s', 'file');
const t = msg.topic;
if (t.startsWith('zigbee2mqtt/bridge/')) {
    return t === MARKER ? [null, null, {topic: READY, payload: 'ready'}] : null;
}
const p = msg.payload;
if (p === null || typeof p !== 'object') return null;
const id = t.slice(12);
const d = reg[id] || {};
const ts = typeof p.last_seen === 'string' ? Date.parse(p.last_seen) / 1000 : Date.now() / 1000;
if (ts > s.clock) s.clock = ts;
const alerts = [];
const points = [];
const tags = {device: id, kind: d.kind || 'unknown', grid: d.grid || ''};
const ms = Math.round(ts * 1000);
function setDue(k, at) { s.due[k] = at; if (at < s.nextDue) s.nextDue = at; }
function alert(rule, state, at) {
    alerts.push({topic: 'nodered/alerts/' + rule + '/' + id, payload: {rule: rule, device: id, state: state, ts: at}});
}
if (d.hb) setDue('off|' + id, ts + 2 * d.hb);
const a = p.action;
if (typeof a === 'string' && a !== '' && a !== 'release' && a !== 'hold_release') {
    if (a === 'emergency' || a === 'sos' || a === 'panic' || d.kind === 'sos_button') {
        const last = s.sosAt[id];
        if (last === undefined || ts - last > 60) { alert('elderly.sos', 'raised', ts); s.sosAt[id] = ts; }
        points.push({measurement: 'device_event', tags: tags, fields: {sos: 1}, timestamp: ms});
    }
}
if ('contact' in p) {
    const open = p.contact === false;
    points.push({measurement: 'device_event', tags: tags, fields: {door_open: open}, timestamp: ms});
    if (d.kind === 'door_sensor') {
        const lim = d.place === 'entrance' ? 300 : d.place === 'fire_exit' ? 120 : 0;
        const k = 'held|' + id;
        if (lim) {
            if (open) { if (!(k in s.due)) setDue(k, ts + lim); }
            else { if (s.open[id] === 'alert') alert('doors.held_open', 'cleared', ts); delete s.due[k]; }
        }
        s.open[id] = open ? (s.open[id] === 'alert' ? 'alert' : true) : false;
        if (open && d.alone) setDue('alone|' + id, ts + 86400);
    }
}
if ('occupancy' in p && d.kind === 'parking_sensor') {
    const occ = p.occupancy === true;
    points.push({measurement: 'device_event', tags: tags, fields: {occupied: occ}, timestamp: ms});
    const lim = d.place === 'fire_lane' ? 60 : d.place === 'parking_space' ? 43200 : 0;
    const k = 'occ|' + id;
    if (lim) { if (occ) { if (!(k in s.due)) setDue(k, ts + lim); } else delete s.due[k]; }
}
const pct = typeof p.battery === 'number' ? p.battery : null;
const volts = typeof p.voltage === 'number' ? p.voltage / 1000 : null;
if (pct !== null || volts !== null) {
    const b = s.bat[id] || (s.bat[id] = {});
    for (const th of THRESHOLDS) {
        const v = th[1] === 'v' ? volts : pct;
        if (v === null) continue;
        if (!b[th[0]] && v < th[2]) { b[th[0]] = true; alert(th[0], 'raised', ts); }
        else if (b[th[0]] && v > th[3]) { b[th[0]] = false; alert(th[0], 'cleared', ts); }
    }
    const hk = 'b|' + id;
    if (!(s.health[hk] > ts)) {
        s.health[hk] = ts + 300;
        const f = {};
        if (pct !== null) f.battery = pct;
        if (volts !== null) f.volts = volts;
        points.push({measurement: 'device_health', tags: tags, fields: f, timestamp: ms});
    }
}
if (typeof p.linkquality === 'number') {
    const hk = 'l|' + id;
    if (!(s.health[hk] > ts)) {
        s.health[hk] = ts + 300;
        points.push({measurement: 'device_health', tags: tags, fields: {lqi: p.linkquality}, timestamp: ms});
    }
}
if (s.clock >= s.nextDue) {
    let next = Infinity;
    for (const k in s.due) {
        let at = s.due[k];
        if (at <= s.clock) {
            const bar = k.indexOf('|');
            const kind = k.slice(0, bar);
            const dev = k.slice(bar + 1);
            const dd = reg[dev] || {};
            s.fired += 1;
            if (kind === 'held') {
                alerts.push({topic: 'nodered/alerts/doors.held_open/' + dev, payload: {device: dev, ts: at}});
                s.open[dev] = 'alert';
                at = s.due[k] = at + (dd.place === 'fire_exit' ? 900 : 1800);
            } else if (kind === 'occ') {
                alerts.push({topic: 'nodered/alerts/parking/' + dev, payload: {device: dev, ts: at}});
                if (dd.place === 'fire_lane') at = s.due[k] = at + 300; else { delete s.due[k]; continue; }
            } else {
                alerts.push({topic: 'nodered/alerts/' + kind + '/' + dev, payload: {device: dev, ts: at}});
                delete s.due[k];
                continue;
            }
        }
        if (at < next) next = at;
    }
    s.nextDue = next;
}
s.n += 1;
let done = null;
if (s.n === 1) s.first = Date.now();
if (s.n === N) done = {topic: DONE, payload: {n: s.n, first_ms: s.first, last_ms: Date.now(), timers_fired: s.fired}};
else if (s.n % PROGRESS_EVERY === 0) done = {topic: PROGRESS, payload: s.n};
return [alerts.length ? alerts : null, points.length ? {payload: points} : null, done];
"""

_BATCH_JS = """
let buf = context.get('buf') || [];
if (msg.topic === 'tick') {
    if (buf.length) { node.send({payload: buf}); buf = []; }
} else {
    for (const pt of msg.payload) buf.push(pt);
    if (buf.length >= BATCH) { node.send({payload: buf}); buf = []; }
}
context.set('buf', buf);
return null;
"""

_THRESHOLDS = [
    ["device.battery_low_volts", "v", 2.6, 2.8],
    ["device.battery_critical_volts", "v", 2.4, 2.8],
    ["device.battery_low_percent", "p", 20, 30],
    ["device.battery_critical_percent", "p", 10, 30],
]


def _js(code: str, **consts: object) -> str:
    """Prefix the function body with its constants (JSON literals)."""
    head = "".join(f"const {k} = {json.dumps(v)};\n" for k, v in consts.items())
    return head + code


def _placed(flow: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Give flow nodes editor coordinates: Node-RED treats a node with ``z`` but no ``x``/``y`` as
    a config node (and a ``name`` equal to an id as a reference to it)."""
    for i, node in enumerate(flow):
        if "z" in node:
            node.setdefault("x", 150 + 200 * i)
            node.setdefault("y", 100)
    return flow


def _broker_node(host: str, port: int) -> dict[str, Any]:
    return {
        "id": "broker",
        "type": "mqtt-broker",
        "name": "mosquitto",
        "broker": host,
        "port": str(port),
        "clientid": "",
        "autoConnect": True,
        "usetls": False,
        "protocolVersion": "4",
        "keepalive": "60",
        "cleansession": True,
    }


def _mqtt_in(wire: str) -> dict[str, Any]:
    return {
        "id": "in",
        "type": "mqtt in",
        "z": "tab",
        "name": "zigbee2mqtt",
        "topic": "zigbee2mqtt/#",
        "qos": "1",
        "datatype": "json",
        "broker": "broker",
        "nl": False,
        "rap": True,
        "rh": 0,
        "inputs": 0,
        "wires": [[wire]],
    }


def _mqtt_out(node_id: str, qos: str = "1") -> dict[str, Any]:
    return {
        "id": node_id,
        "type": "mqtt out",
        "z": "tab",
        "name": f"mqtt out {node_id}",
        "topic": "",
        "qos": qos,
        "retain": "false",
        "broker": "broker",
        "wires": [],
    }


def _function(
    node_id: str, code: str, outputs: int, wires: list[list[str]], init: str = ""
) -> dict[str, Any]:
    return {
        "id": node_id,
        "type": "function",
        "z": "tab",
        "name": f"function {node_id}",
        "func": code,
        "outputs": outputs,
        "initialize": init,
        "finalize": "",
        "libs": [],
        "wires": wires,
    }


def minimal_flow(*, n: int, host: str, port: int) -> list[dict[str, Any]]:
    consts = {
        "N": n,
        "MARKER": MARKER_TOPIC,
        "READY": READY_TOPIC,
        "DONE": DONE_TOPIC,
        "PROGRESS": PROGRESS_TOPIC,
        "PROGRESS_EVERY": PROGRESS_EVERY,
    }
    return _placed(
        [
            {"id": "tab", "type": "tab", "label": "linli bench minimal"},
            _broker_node(host, port),
            _mqtt_in("detect"),
            _function("detect", _js(_MINIMAL_JS, **consts), 2, [["alerts"], ["alerts"]], _MINIMAL_INIT),
            _mqtt_out("alerts"),
        ]
    )


def equal_work_flow(
    *, n: int, host: str, port: int, influx_host: str, influx_port: int, database: str, start: float
) -> list[dict[str, Any]]:
    consts = {
        "N": n,
        "MARKER": MARKER_TOPIC,
        "READY": READY_TOPIC,
        "DONE": DONE_TOPIC,
        "PROGRESS": PROGRESS_TOPIC,
        "PROGRESS_EVERY": PROGRESS_EVERY,
        "THRESHOLDS": _THRESHOLDS,
    }
    return _placed(
        [
            {"id": "tab", "type": "tab", "label": "linli bench equal work"},
            _broker_node(host, port),
            {
                "id": "influx",
                "type": "influxdb",
                "hostname": influx_host,
                "port": str(influx_port),
                "protocol": "http",
                "database": database,
                "name": "bench influxdb",
                "usetls": False,
                "tls": "",
                "influxdbVersion": "1.x",
            },
            _mqtt_in("rules"),
            _function(
                "rules",
                _js(_EQUAL_JS, **consts),
                3,
                [["alerts"], ["batch"], ["alerts"]],
                _js(_EQUAL_INIT, START=start),
            ),
            {
                "id": "tick",
                "type": "inject",
                "z": "tab",
                "name": "flush",
                "props": [{"p": "topic", "vt": "str"}],
                "repeat": "1",
                "crontab": "",
                "once": True,
                "onceDelay": "1",
                "topic": "tick",
                "wires": [["batch"]],
            },
            _function("batch", _js(_BATCH_JS, BATCH=BATCH_POINTS), 1, [["write"]]),
            {
                "id": "write",
                "type": "influxdb batch",
                "z": "tab",
                "influxdb": "influx",
                "precision": "ms",
                "retentionPolicy": "",
                "name": "write points",
                "database": database,
                "wires": [],
            },
            _mqtt_out("alerts"),
        ]
    )


def registry_json(devices: Sequence[SimDevice]) -> dict[str, dict[str, Any]]:
    """What the equal-work flow knows about each device (the hub reads the same from its registry)."""
    return {
        d.id: {
            "kind": d.kind,
            "place": d.place_kind or "",
            "alone": d.living_alone,
            "hb": d.heartbeat_s,
            "grid": d.grid,
        }
        for d in devices
    }


_SETTINGS_JS = """module.exports = {{
    uiHost: "127.0.0.1",
    uiPort: {ui_port},
    credentialSecret: false,
    flowFile: "flows.json",
    httpAdminRoot: "/admin",
    logging: {{ console: {{ level: "warn", metrics: false, audit: false }} }},
    contextStorage: {{
        default: {{ module: "memory" }},
        file: {{ module: "localfilesystem", config: {{ flushInterval: 5 }} }}
    }},
    functionGlobalContext: {{ linliRegistry: require({registry}) }},
    editorTheme: {{ tours: false }},
    telemetry: {{ enabled: false }},
    diagnostics: {{ enabled: false }},
}};
"""


@dataclass(slots=True)
class FlowResult:
    flow: str
    expected: int
    received: int = 0
    msg_s: float = 0.0
    seconds: float = 0.0
    cpu_busy: float = 0.0
    #: CPU time of the Node-RED process per message: what a message costs, whatever share of
    #: the (shared, loaded) machine the process got.
    cpu_us_per_msg: float = 0.0
    alerts_published: int = 0
    extra: dict[str, Any] = field(default_factory=dict)
    error: str = ""


class NodeRed:
    """One Node-RED process running one flow from a fresh user directory."""

    def __init__(
        self, red: Path, workdir: Path, flow: list[dict[str, Any]], *, user: str, password: str
    ) -> None:
        self.red = red
        self.workdir = workdir
        workdir.mkdir(parents=True, exist_ok=True)
        self.ui_port = free_port()
        (workdir / "flows.json").write_text(json.dumps(flow))
        (workdir / "flows_cred.json").write_text(json.dumps({"broker": {"user": user, "password": password}}))
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self, registry_file: Path) -> None:
        (self.workdir / "settings.js").write_text(
            _SETTINGS_JS.format(ui_port=self.ui_port, registry=json.dumps(str(registry_file)))
        )
        node = shutil.which("node") or "node"
        self.proc = subprocess.Popen(
            [
                node,
                str(self.red),
                "--userDir",
                str(self.workdir),
                "--settings",
                str(self.workdir / "settings.js"),
            ],
            cwd=self.workdir,
            stdout=(self.workdir / "node-red.log").open("wb"),
            stderr=subprocess.STDOUT,
        )

    def cpu_seconds(self) -> float:
        """utime + stime of the Node-RED process, from /proc (Linux)."""
        if self.proc is None:
            return 0.0
        try:
            fields = Path(f"/proc/{self.proc.pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            return 0.0
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    def stop(self) -> str:
        """Stop the process; returns the tail of its log (for the report when a flow failed)."""
        if self.proc is not None:
            stop_process(self.proc)
            self.proc = None
        with contextlib.suppress(OSError):
            return (self.workdir / "node-red.log").read_text(errors="replace")[-1500:]
        return ""


async def wait_ready_and_done(
    *,
    host: str,
    port: int,
    user: str,
    password: str,
    n: int,
    start_publisher: Any,
    ready_timeout: float,
    idle_timeout: float,
    node: NodeRed,
) -> FlowResult:
    """Marker until the flow echoes it, then the stream (``start_publisher()``), then wait for done.

    Bounded: gives up after ``ready_timeout`` without the echo, or when the flow's progress
    reports (every :data:`PROGRESS_EVERY` messages) stop for ``idle_timeout`` + 20 s.
    """
    ready = asyncio.Event()
    done: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()
    alerts = 0
    progress: list[float] = [0, time.monotonic()]

    def on_message(client: gmqtt.Client, topic: str, payload: bytes, qos: int, properties: Any) -> int:
        nonlocal alerts
        if topic == READY_TOPIC:
            ready.set()
        elif topic == PROGRESS_TOPIC:
            progress[:] = [int(payload), time.monotonic()]
        elif topic == DONE_TOPIC and not done.done():
            done.set_result(json.loads(payload))
        else:
            alerts += 1
        return 0

    client = gmqtt.Client(f"linli-bench-nr-watch-{os.getpid()}", clean_session=True)
    client.set_auth_credentials(user, password)
    client.on_message = on_message
    await client.connect(host, port, version=MQTTv311, keepalive=60)
    client.subscribe(
        [gmqtt.Subscription("bench/nodered/#", qos=1), gmqtt.Subscription("nodered/alerts/#", qos=0)]
    )
    result = FlowResult(flow="", expected=n)
    try:
        deadline = time.monotonic() + ready_timeout
        while not ready.is_set():
            if time.monotonic() > deadline or (node.proc is not None and node.proc.poll() is not None):
                result.error = "Node-RED never echoed the marker (did it start and connect?)"
                return result
            client.publish(MARKER_TOPIC, b'{"bench":"marker"}', qos=0)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(ready.wait(), 0.5)
        await asyncio.sleep(0.2)  # markers still in flight must not be counted by the flow
        cpu0 = node.cpu_seconds()
        t0 = time.monotonic()
        publisher = await asyncio.to_thread(start_publisher)
        progress[1] = time.monotonic()
        while not done.done():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(asyncio.shield(done), 1.0)
            if not done.done() and time.monotonic() - progress[1] > idle_timeout + PROGRESS_EVERY / 500.0:
                result.error = f"Node-RED stopped making progress after {int(progress[0])} messages (lost?)"
                result.received = int(progress[0])
                return result
        doc = done.result()
        wall = time.monotonic() - t0
        cpu = node.cpu_seconds() - cpu0
        await asyncio.sleep(0.5)
        result.received = int(doc["n"])
        result.seconds = (doc["last_ms"] - doc["first_ms"]) / 1000.0
        result.msg_s = result.received / result.seconds if result.seconds > 0 else 0.0
        result.cpu_busy = cpu / wall if wall > 0 else 0.0
        result.cpu_us_per_msg = round(cpu / result.received * 1e6, 2) if result.received else 0.0
        result.alerts_published = alerts
        result.extra = {k: v for k, v in doc.items() if k not in ("n", "first_ms", "last_ms")}
        result.extra["publisher"] = publisher
        return result
    finally:
        await client.disconnect()
