"""Playing a shipped scenario against the running demo, as its banner prints (issue 15).

The demo's hub runs on the wall clock; a scenario moves it *forward* (never back) through the
command-centre token, and the scenario itself is moved on by whole weeks to the hub's present.
"""

from __future__ import annotations

import asyncio
import re
import subprocess
from datetime import datetime
from pathlib import Path
from zoneinfo import ZoneInfo

import aiohttp
import pytest

from hub.app import Hub
from hub.clock import DemoClock, ManualClock
from hub.demo import ENDPOINTS_FILE
from simulators.rebase import MARGIN_S, rebased
from simulators.scenario import load_scenario, shipped_scenarios
from tests.helpers import TOKEN, hub_settings
from tests.support.servers import Broker
from tests.test_cli import LINLI, stop, wait_for_line

ZONE = ZoneInfo("Asia/Shanghai")
SCENARIO = next(p for p in shipped_scenarios() if p.name == "sos_false_press.yaml")


def test_the_demo_clock_follows_the_wall_and_only_moves_forward() -> None:
    wall = ManualClock(start=1_000.0)
    clock = DemoClock(wall=wall)
    assert clock.now() == 1_000.0
    clock.set(1_600.0)
    assert (clock.now(), clock.offset) == (1_600.0, 600.0)
    wall.advance(5)
    assert clock.now() == 1_605.0, "it keeps running from where a scenario left it"
    clock.set(1_200.0)
    assert clock.now() == 1_605.0, "a moment already passed leaves it where it is"


@pytest.mark.parametrize("days_later", [0.5, 3.0, 200.0])
def test_a_scenario_moves_on_by_whole_weeks_to_the_hubs_present(days_later: float) -> None:
    scenario = load_scenario(SCENARIO)
    now = scenario.start.timestamp() + days_later * 86_400
    moved = rebased(scenario, now=now)
    start = moved.start.astimezone(ZONE)
    original = scenario.start.astimezone(ZONE)
    assert now + MARGIN_S <= start.timestamp() < now + MARGIN_S + 7 * 86_400
    assert (start.weekday(), start.time()) == (original.weekday(), original.time())
    assert moved.steps == scenario.steps and moved.expect == scenario.expect
    ahead = rebased(scenario, now=scenario.start.timestamp() - 3_600)
    assert ahead.start == scenario.start, "a scenario still ahead of the hub is played as written"


async def test_a_production_hub_has_no_clock_to_move(tmp_path: Path, mosquitto_broker: Broker) -> None:
    async with (
        Hub(settings=hub_settings(tmp_path, mosquitto_broker)) as hub,
        aiohttp.ClientSession(headers={"Authorization": f"Bearer {TOKEN}"}) as http,
    ):
        base = f"http://127.0.0.1:{hub.http_port}/api/test/clock"
        async with http.post(base, json={"to": hub.clock.now() + 60}) as response:
            assert response.status in (404, 405)
        async with http.get(base) as response:
            assert response.status in (404, 405)


async def test_the_banners_command_plays_a_shipped_scenario_against_the_running_demo(tmp_path: Path) -> None:
    data = tmp_path / "demo"
    proc = await asyncio.create_subprocess_exec(
        # The demo's random SOS presses (not its opening) are turned down: one landing on the
        # scenario's elder before it plays would merge with the scenario's press (one active
        # alert per rule and subject) and make this test a lottery.
        LINLI, "demo", "--data-dir", str(data), "--mqtt-port", "0", "--http-port", "0", "--sos-every", "1e6",
        stdout=subprocess.PIPE, stderr=subprocess.PIPE,
    )  # fmt: skip
    seen: list[str] = []
    try:
        console = await wait_for_line(proc, r"http://127\.0\.0\.1:(\d+)/login", seen)
        token = (await wait_for_line(proc, r"Token / 令牌:\s+(\S+)", seen)).group(1)
        printed = (
            await wait_for_line(proc, r"against this one: (linli simulate scenario FILE .*)$", seen)
        ).group(1)
        assert token not in printed and "password" not in printed, "no secret on a command line"
        args = printed.split()[1:]
        args[args.index("FILE")] = str(SCENARIO)
        base = f"http://127.0.0.1:{console.group(1)}"
        async with aiohttp.ClientSession(headers={"Authorization": f"Bearer {token}"}) as http:

            async def hub_now() -> float:
                async with http.get(base + "/api/test/clock") as response:
                    assert response.status == 200
                    return float((await response.json())["now"])

            before = await hub_now()
            play = await asyncio.create_subprocess_exec(
                LINLI, *args, stdout=subprocess.PIPE, stderr=subprocess.PIPE
            )
            out, err = await asyncio.wait_for(play.communicate(), 120)
            report = out.decode() + err.decode()
            assert play.returncode == 0, report
            assert re.search(r"^ok\s+sos_false_press\.yaml$", out.decode(), re.M), report
            assert "1 passed, 0 failed" in report

            # The demo's clock moved forward to the scenario's weekday and time of day, and runs on.
            after = await hub_now()
            played = load_scenario(SCENARIO).start.astimezone(ZONE)
            moment = datetime.fromtimestamp(after, ZONE)
            assert after > before + MARGIN_S
            assert moment.weekday() == played.weekday() and moment.hour == 10, moment
            await asyncio.sleep(1.5)
            assert await hub_now() > after, "the demo's clock keeps following real time"
            # The false press became a case the day worker closed as a false alarm, on the hub's time.
            async with http.get(base + "/api/cases?state=closed&limit=1000") as response:
                closed = await response.json()
            (false_alarm,) = [c for c in closed if c["resolution"] == "false_alarm"]
            filed = datetime.fromisoformat(false_alarm["filed_at"].replace("Z", "+00:00")).astimezone(ZONE)
            assert (filed.weekday(), filed.hour, filed.minute) == (played.weekday(), 10, 0)
            # The community goes on, stamped with the demo's (moved) present, not days behind.
            async with http.get(base + "/api/events?limit=50") as response:
                newest = max(
                    datetime.fromisoformat(e["ts"].replace("Z", "+00:00")).timestamp()
                    for e in await response.json()
                )
            await asyncio.sleep(3)
            async with http.get(base + "/api/events?limit=50") as response:
                events = await response.json()
            fresh = [
                e
                for e in events
                if datetime.fromisoformat(e["ts"].replace("Z", "+00:00")).timestamp() > newest
            ]
            assert fresh and all(
                abs(datetime.fromisoformat(e["ts"].replace("Z", "+00:00")).timestamp() - after) < 120
                for e in fresh
            )
    finally:
        code, _, stderr = await stop(proc)
    assert code == 0, stderr
    assert "Traceback" not in stderr
    assert not (data / ENDPOINTS_FILE).exists(), "a stopped demo leaves no endpoints behind"
