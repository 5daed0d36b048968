"""Console pages at scale: how long each server-rendered page takes with 100 000 devices registered.

The hub runs in this process on the embedded broker (anonymous, loopback), with the test
community of ``tests/helpers.py``'s shape plus ``--devices`` door sensors in one grid; one SOS
case is open. Each page is fetched ``--rounds`` times with a command-centre token over HTTP
(aiohttp) and the time to the last byte is recorded. Prints one JSON line::

    .venv/bin/python -m bench.bench_pages [--devices 100000] [--rounds 20]

Target (issue 15): every page under 1 s with 100 000 devices; the devices page is one bounded
page (100 rows) whatever the registry's size.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import tempfile
import time

import aiohttp
import gmqtt
from gmqtt.mqtt.constants import MQTTv311

from adapters.events import DeviceKind
from hub.app import Hub
from hub.broker import EmbeddedBroker
from hub.clock import ManualClock
from hub.community.model import Building, Community, Device, Grid, Household, Resident, Unit
from hub.community.registry import Registry
from hub.community.roster import Person, Shift
from hub.config import ApiToken, load_settings
from hub.records import Role
from hub.web.api import token_hash

TOKEN = "bench-pages-token"
GRID = "110105001001001"
START = 1_795_371_180.0  # 2026-11-23 02:13 Asia/Shanghai
TARGET_S = 1.0


def community(devices: int) -> Community:
    household = Household(id="b1-u1-101", room="101")
    grid = Grid(
        code=GRID,
        name="第一网格",
        buildings=(
            Building(id="b1", name="1号楼", units=(Unit(id="b1-u1", name="1单元", households=(household,)),)),
        ),
    )
    people = (
        Person(
            id="w1",
            name="网格员",
            role=Role.GRID_WORKER,
            grids=(GRID,),
            shifts=(Shift(start="00:00", end="00:00"),),
        ),
    )
    elder = Resident(id="r1", name="王秀英", household=household.id, living_alone=True, age=83)
    button = Device(id="sos-1", kind=DeviceKind.SOS_BUTTON, grid=GRID, resident="r1", model="TS0215A")
    doors = tuple(
        Device(id=f"door-{i:06d}", kind=DeviceKind.DOOR_SENSOR, grid=GRID, household=household.id)
        for i in range(devices)
    )
    return Community(
        code=GRID[:12], name="幸福里社区", grids=(grid,), people=people, residents=(elder,), devices=(button,)
    ).model_copy(update={"devices": (button, *doors)})


async def measure(devices: int, rounds: int) -> dict[str, object]:
    registry = Registry(communities=[community(devices)])
    async with EmbeddedBroker(allow_anonymous=True) as broker:
        with tempfile.TemporaryDirectory(prefix="linli-bench-pages-") as work:
            settings = load_settings(
                None,
                environ={},
                overrides={
                    "data_dir": work,
                    "mqtt": {"url": f"mqtt://127.0.0.1:{broker.port}", "client_id": "bench-pages"},
                    "http": {"host": "127.0.0.1", "port": 0},
                    "api_tokens": [
                        ApiToken(name="bench", role=Role.COMMAND_CENTRE, sha256=token_hash(TOKEN))
                    ],
                },
            )
            async with Hub(settings=settings, clock=ManualClock(start=START), registry=registry) as hub:
                gateway = gmqtt.Client("bench-pages-gateway")
                await gateway.connect("127.0.0.1", broker.port, version=MQTTv311)
                gateway.publish("zigbee2mqtt/sos-1", b'{"action": "emergency"}', qos=1)
                base = f"http://127.0.0.1:{hub.http_port}"
                async with aiohttp.ClientSession(headers={"Authorization": f"Bearer {TOKEN}"}) as http:
                    case_id = ""
                    for _ in range(500):
                        async with http.get(f"{base}/api/cases") as response:
                            found = await response.json()
                        if found:
                            case_id = found[0]["id"]
                            break
                        await asyncio.sleep(0.02)
                    pages = [
                        "/",
                        f"/cases/{case_id}",
                        "/map",
                        f"/map/{GRID}",
                        "/devices",
                        "/devices?offset=99900",
                    ]
                    pages += ["/devices?show=low_battery", "/roster", "/kpis"]
                    times: dict[str, list[float]] = {p: [] for p in pages}
                    sizes: dict[str, int] = {}
                    for _ in range(rounds):
                        for path in pages:
                            started = time.perf_counter()
                            async with http.get(base + path) as response:
                                body = await response.read()
                                assert response.status == 200, (path, response.status)
                            times[path].append(time.perf_counter() - started)
                            sizes[path] = len(body)
                await gateway.disconnect()
    summary = {
        path: {
            "median_ms": round(statistics.median(ts) * 1000, 1),
            "max_ms": round(max(ts) * 1000, 1),
            "bytes": sizes[path],
        }
        for path, ts in times.items()
    }
    worst = max(max(ts) for ts in times.values())
    return {
        "bench": "pages",
        "devices": devices + 1,
        "rounds": rounds,
        "pages": summary,
        "target_s": TARGET_S,
        "met": worst < TARGET_S,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--devices", type=int, default=100_000)
    parser.add_argument("--rounds", type=int, default=20)
    args = parser.parse_args()
    print(json.dumps(asyncio.run(measure(args.devices, args.rounds)), ensure_ascii=False))


if __name__ == "__main__":
    main()
