"""The demo shows life at once (issue 15): an SOS in the first seconds, then doors, parking, a low
battery and a false press, with the community running faster than the hub's (honest) clock."""

from __future__ import annotations

import asyncio
import subprocess
import time
from datetime import datetime
from pathlib import Path
from zoneinfo import ZoneInfo

import aiohttp
import orjson

from simulators.community import Family, generate
from simulators.opening import LOW_BATTERY_PCT, opening
from simulators.runner import BrokerAddress, CommunitySimulator
from simulators.types import Act
from tests.test_cli import LINLI, stop, wait_for_line

ZONE = ZoneInfo("Asia/Shanghai")
MORNING = datetime(2026, 11, 23, 9, 0, tzinfo=ZONE).timestamp()  # a Monday: people go out


def test_the_opening_puts_an_sos_first_and_the_rest_within_half_a_minute() -> None:
    cues = opening(generate(seed=1).devices)
    acts = [c.act for c in cues]
    assert acts[0] is Act.SOS_PRESS and cues[0].after_s <= 5
    assert {Act.DOOR_OPEN, Act.DOOR_CLOSE, Act.OCCUPIED, Act.BATTERY, Act.FALSE_PRESS} <= set(acts)
    assert all(c.after_s <= 30 for c in cues)
    (battery,) = [c for c in cues if c.act is Act.BATTERY]
    assert battery.battery == LOW_BATTERY_PCT
    sos = [c.device for c in cues if c.act in (Act.SOS_PRESS, Act.FALSE_PRESS)]
    assert len(set(sos)) == 2, "the false press is on another elder's button"


def test_pace_runs_the_community_fast_and_stamps_messages_with_the_real_time() -> None:
    community = generate(seed=1)
    sim = CommunitySimulator(
        broker=BrokerAddress("127.0.0.1", 1),
        devices=community.devices,
        start=MORNING,
        pace=60,
        sos_every_s=None,
    )
    assert sim.sim_time(60.0) == MORNING + 3600, "one real minute is a community hour"
    assert sim.stamp(sim.sim_time(60.0)) == MORNING + 60
    native = next(d for d in community.devices if d.family is Family.NATIVE and d.kind == "door_sensor")
    (message, *_) = sim.behaviour.act(native.id, Act.DOOR_OPEN, sim.sim_time(10.0)).messages
    stamped = datetime.fromisoformat(orjson.loads(message.payload)["ts"]).timestamp()
    assert abs(stamped - (MORNING + 10)) < 1, "the hub sees the real moment, not the community's"
    # A first real minute of a morning at pace 60 is an hour of doors and parking.
    emitted = [e.act for e in sim.behaviour.emissions(sim.sim_time(60.0))]
    assert emitted.count(Act.DOOR_OPEN) >= 5 and (Act.OCCUPIED in emitted or Act.FREE in emitted)


async def test_linli_demo_dispatches_a_first_sos_within_30_s_and_keeps_a_visible_pace(tmp_path: Path) -> None:
    proc = await asyncio.create_subprocess_exec(
        LINLI, "demo", "--data-dir", str(tmp_path / "demo"), "--mqtt-port", "0", "--http-port", "0",
        stdout=subprocess.PIPE, stderr=subprocess.PIPE,
    )  # fmt: skip
    seen: list[str] = []
    try:
        console = await wait_for_line(proc, r"http://127\.0\.0\.1:(\d+)/login", seen)
        started = time.monotonic()
        token = (await wait_for_line(proc, r"Token / 令牌:\s+(\S+)", seen)).group(1)
        await wait_for_line(proc, r"linli simulate scenario FILE --expect --demo \S+", seen)
        base = f"http://127.0.0.1:{console.group(1)}"
        async with aiohttp.ClientSession(headers={"Authorization": f"Bearer {token}"}) as http:

            async def get(path: str) -> list[dict[str, object]]:
                async with http.get(base + path) as response:
                    assert response.status == 200, path
                    body: list[dict[str, object]] = await response.json()
                    return body

            sos: list[dict[str, object]] = []
            while time.monotonic() - started < 30 and not sos:
                sos = [c for c in await get("/api/cases") if c["category"] == "sos" and c["assignee"]]
                await asyncio.sleep(0.2)
            assert sos, "no SOS dispatched within 30 s of the banner"
            assert sos[0]["state"] == "dispatched" and sos[0]["grid"]

            # By half a minute the opening has played: doors, parking, a low battery, a false press.
            await asyncio.sleep(max(0.0, 32 - (time.monotonic() - started)))
            kinds = {e["kind"] for e in await get("/api/events?limit=1000")}
            assert {"door_open", "door_closed", "occupancy", "sos_press", "battery"} <= kinds
            devices = await get("/api/devices?limit=1000")
            assert any(d["battery"] is not None and float(str(d["battery"])) <= 10 for d in devices)
            presses = [c for c in await get("/api/cases") if c["category"] == "sos"]
            assert len(presses) >= 2, "the false press makes its own case (it still gets a call-back)"
    finally:
        code, _, stderr = await stop(proc)
    assert code == 0, stderr
    assert "Traceback" not in stderr
