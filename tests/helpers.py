"""Small helpers shared by the end-to-end tests."""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import inspect
import json
import secrets
import time
import urllib.request
from collections.abc import Callable, Generator, Iterable
from pathlib import Path
from typing import Any, TypeVar

import gmqtt
import orjson
from gmqtt.mqtt.constants import MQTTv311

from adapters.events import DeviceKind
from hub.casework.reply_keys import ReplyKeys
from hub.community.files import parse_yaml
from hub.community.model import Device
from hub.community.registry import Registry
from hub.config import ApiToken, Settings, load_settings
from hub.web.api import token_hash
from tests.support.servers import Broker

TOKEN = "test-token-not-a-secret"
VIEWER_TOKEN = "viewer-token-not-a-secret"
WORKER_TOKEN = "night-worker-token-not-a-secret"
GRID = "110105001001001"
COMMUNITY = "110105001001"
SOS_BUTTON = "0x847127fffe0542eb"  # the Tuya TS0215A of the samples
#: The topic :func:`publish_queued` marks the end of its messages with (no hub subscribes to it).
QUEUED_MARKER = "linli-test/queued"
REGISTRY = f"""
version: 1
communities:
  - code: "{COMMUNITY}"
    name: 幸福里社区
    street: {{code: "110105001", name: 幸福街道}}
    grids:
      - code: "{GRID}"
        name: 第一网格
        buildings:
          - id: b3
            name: 3号楼
            units:
              - {{id: b3-u2, name: 2单元, households: [{{id: b3-u2-401, room: "401"}}]}}
        places:
          - {{id: fire-lane-b, kind: fire_lane, name: 消防通道B}}
      - {{code: "110105001001002", name: 第二网格}}
    people:
      - {{id: w-day, name: 日班网格员, role: grid_worker, grids: ["{GRID}"], shifts: [{{start: "08:00", end: "20:00"}}]}}
      - {{id: w-night, name: 夜班网格员, role: grid_worker, grids: ["{GRID}"], shifts: [{{start: "20:00", end: "08:00"}}]}}
      - {{id: duty, name: 值班员, role: duty_officer, grids: ["{GRID}"], shifts: [{{start: "00:00", end: "00:00"}}]}}
      - {{id: g-leader, name: 网格长, role: grid_leader, grids: ["{GRID}"], shifts: [{{start: "00:00", end: "00:00"}}]}}
      - {{id: boss, name: 指挥长, role: command_supervisor, grids: ["{GRID}"], shifts: [{{start: "00:00", end: "00:00"}}]}}
    residents:
      - id: r1
        name: 王秀英
        household: b3-u2-401
        address: 3号楼2单元401
        phone: "13812345678"
        living_alone: true
        age: 83
        emergency_contacts: [{{name: 李明, relation: 儿子, phone: "13987654321"}}]
    devices:
      - {{id: "{SOS_BUTTON}", kind: sos_button, model: TS0215A, grid: "{GRID}", resident: r1, location: 3号楼2单元401}}
      - {{id: heiman-1, kind: sos_button, model: HS1EB, grid: "{GRID}"}}
      - {{id: door-1, kind: door_sensor, model: MCCGQ11LM, grid: "{GRID}", household: b3-u2-401, heartbeat_s: 3600}}
      - {{id: lane-b-1, kind: parking_sensor, model: PARKING-ZB, grid: "{GRID}", place: fire-lane-b}}
      - {{id: dev1, kind: parking_sensor, model: TPS110, profile: bosch-tps110, grid: "{GRID}", place: fire-lane-b}}
"""


def hub_settings(tmp_path: Path, broker: Broker, **overrides: Any) -> Settings:
    registry = tmp_path / "community.yaml"
    registry.write_text(REGISTRY, encoding="utf-8")
    values: dict[str, Any] = {
        "data_dir": str(tmp_path / "data"),
        "community_file": str(registry),
        "mqtt": {"url": broker.url, "client_id": "linli-hub-test"},
        "http": {"host": "127.0.0.1", "port": 0},
        "api_tokens": [
            ApiToken(name="t", sha256=token_hash(TOKEN)),
            ApiToken(name="wall", role="viewer", sha256=token_hash(VIEWER_TOKEN)),
            ApiToken(name="phone", role="grid_worker", person="w-night", sha256=token_hash(WORKER_TOKEN)),
        ],
    }
    values.update(overrides)
    return load_settings(None, environ={}, overrides=values)


async def eventually(check: Callable[[], Any], *, within: float = 10.0, what: str = "condition") -> Any:
    """Poll ``check`` until it returns something truthy. A check may return an awaitable (say
    ``asyncio.to_thread`` of a blocking HTTP call), so that an embedded broker sharing this
    event loop keeps serving while the check waits."""
    deadline = time.monotonic() + within
    while True:
        result = check()
        if inspect.isawaitable(result):
            result = await result
        if result:
            return result
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {within}s waiting for {what}")
        await asyncio.sleep(0.02)


class Phone:
    """A grid worker's app: subscribes to notification topics and records what arrives."""

    def __init__(self, broker: Broker, client_id: str = "phone") -> None:
        self.broker = broker
        self.messages: list[tuple[str, dict[str, Any], int]] = []
        self.client = gmqtt.Client(client_id, clean_session=True)
        self.client.set_auth_credentials(broker.username, broker.password)
        self.client.on_message = self._on_message

    def _on_message(self, client: Any, topic: str, payload: bytes, qos: int, properties: Any) -> int:
        self.messages.append((topic, orjson.loads(payload), qos))
        return 0

    async def start(self, *topics: str) -> None:
        subscribed = asyncio.Event()
        self.client.on_subscribe = lambda *args: subscribed.set()
        await self.client.connect(self.broker.host, self.broker.port, version=MQTTv311)
        self.client.subscribe([gmqtt.Subscription(t, qos=1) for t in topics])
        await asyncio.wait_for(subscribed.wait(), 5)

    async def stop(self) -> None:
        await self.client.disconnect()

    def on(self, topic: str) -> list[dict[str, Any]]:
        return [body for t, body, _ in self.messages if t == topic]


async def publisher(broker: Broker, client_id: str = "gateway") -> gmqtt.Client:
    client = gmqtt.Client(client_id, clean_session=True)
    client.set_auth_credentials(broker.username, broker.password)
    await client.connect(broker.host, broker.port, version=MQTTv311)
    return client


async def publish_queued(broker: Broker, messages: Iterable[tuple[str, bytes]]) -> None:
    """Publish ``messages`` at QoS 1 on one connection; return once the broker has taken them
    all (queued for sessions that are away). A broker handles one connection's packets in
    order, so a marker published after them and received back proves it."""
    marker = Phone(broker, client_id="queued-marker")
    await marker.start(QUEUED_MARKER)
    gateway = await publisher(broker)
    try:
        for i, (topic, payload) in enumerate(messages):
            gateway.publish(topic, payload, qos=1)
            if i % 1000 == 0:
                await asyncio.sleep(0)  # an embedded broker shares this loop: let it read
        gateway.publish(QUEUED_MARKER, b"1", qos=1)
        await eventually(lambda: marker.messages, within=60, what="the messages queued at the broker")
    finally:
        await gateway.disconnect()
        await marker.stop()


def issue_reply_key(settings: Settings, person: str) -> bytes:
    """Issue ``person``'s reply key in the hub's keys file (as ``linli reply-key issue`` does)."""
    return ReplyKeys(path=settings.reply_keys_file).issue(person).encode("ascii")


def signed_reply(
    key: bytes,
    *,
    person: str,
    case_id: str,
    action: str,
    ts: float,
    note: str = "",
    data: dict[str, Any] | None = None,
    nonce: str | None = None,
) -> bytes:
    """A reply signed as docs/topics.md says, written from the document rather than the hub's code,
    so a test that uses it checks the hub against the published rule."""
    stamp = int(ts)
    nonce = nonce or secrets.token_urlsafe(16)
    digest = hashlib.sha256(
        note.encode() + b"\n" + orjson.dumps(data or {}, option=orjson.OPT_SORT_KEYS)
    ).hexdigest()
    text = "\n".join(["linli-reply-v1", case_id, action, str(stamp), nonce, person, digest])
    sig = hmac.new(key, text.encode(), hashlib.sha256).hexdigest()
    body: dict[str, Any] = {"case_id": case_id, "action": action, "note": note, "ts": stamp, "nonce": nonce}
    if data:
        body["data"] = data
    return orjson.dumps({**body, "sig": sig})


def api_stats(port: int) -> dict[str, Any]:
    """``/api/stats`` of a hub on ``port`` with the test token (blocking: from a thread or a
    synchronous test)."""
    request = urllib.request.Request(
        f"http://127.0.0.1:{port}/api/stats", headers={"Authorization": f"Bearer {TOKEN}"}
    )
    with urllib.request.urlopen(request, timeout=5) as response:
        result: dict[str, Any] = json.loads(response.read())
    return result


def with_doors(count: int, *, resident: str | None = None) -> Registry:
    """The test community plus ``count`` door sensors ``door-000000`` … in its first grid: in the
    resident's household when given (the grid page then looks the household up through them),
    else in r1's household by id."""
    (community,) = parse_yaml(REGISTRY, file="test")
    extra = tuple(
        Device(
            id=f"door-{i:06d}",
            kind=DeviceKind.DOOR_SENSOR,
            grid=GRID,
            model="MCCGQ11LM",
            household=None if resident is not None else "b3-u2-401",
            resident=resident,
            heartbeat_s=3600.0,
        )
        for i in range(count)
    )
    return Registry(communities=[community.model_copy(update={"devices": community.devices + extra})])


T = TypeVar("T")


def drained(steps: Generator[None, None, T]) -> tuple[int, T]:
    """A job in steps (:data:`hub.steps.Steps`) run to its end: how often it yielded, and its result."""
    pauses = 0
    while True:
        try:
            next(steps)
        except StopIteration as done:
            return pauses, done.value  # type: ignore[no-any-return]
        pauses += 1


class LoopTurns:
    """Counts the event loop's turns while it runs (``async with LoopTurns() as turns``): a task
    that only yields, so each count is one turn other work had."""

    def __init__(self) -> None:
        self.count = 0
        self._stop = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    async def _tick(self) -> None:
        while not self._stop.is_set():
            self.count += 1
            await asyncio.sleep(0)

    async def __aenter__(self) -> LoopTurns:
        self._task = asyncio.create_task(self._tick())
        return self

    async def __aexit__(self, *exc: object) -> None:
        self._stop.set()
        if self._task is not None:
            await self._task
