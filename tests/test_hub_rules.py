"""The rule engine inside the hub: timers through the store and cases, and state that survives kill -9."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import orjson
import pytest
import yaml
from click.testing import CliRunner

from hub.app import Hub
from hub.cli import main
from hub.clock import ManualClock
from hub.ingest import rule_runtime
from rules.loader import BUILTIN_PACKS
from tests.helpers import REGISTRY, TOKEN, eventually, hub_settings, publisher
from tests.support.servers import Broker

T0 = 1_795_371_180.0  # 2026-11-23 02:13 Asia/Shanghai
LANE = "zigbee2mqtt/lane-b-1"  # a parking sensor in fire lane B
LINLI = str(Path(sys.executable).with_name("linli"))


async def test_fire_lane_alert_after_one_minute_then_reminders_then_clear(
    tmp_path: Path, mosquitto_broker: Broker
) -> None:
    clock = ManualClock(start=T0)
    async with Hub(settings=hub_settings(tmp_path, mosquitto_broker), clock=clock) as hub:
        gateway = await publisher(mosquitto_broker)
        gateway.publish(LANE, b'{"occupancy": true}', qos=1)
        await eventually(lambda: hub.pipeline.stats.events == 1)
        clock.advance(59)
        assert hub.run_due_rules() == 0
        clock.advance(2)  # +61 s
        assert hub.run_due_rules() == 1
        (alert,) = hub.store.alerts()
        assert (alert.rule, alert.category, alert.status, alert.device_id) == (
            "parking.fire_lane_occupied",
            "fire_lane",
            "active",
            "lane-b-1",
        )
        assert alert.trace["occurrences"][0]["trigger"] == "duration"
        assert hub.cases.case_ids(), "a fire-lane alert opens a case for the grid"
        clock.advance(5 * 60)  # +6 min 1 s: the 5-minute reminder
        assert hub.run_due_rules() == 1
        (alert,) = hub.store.alerts()
        assert alert.count == 2
        gateway.publish(LANE, b'{"occupancy": false}', qos=1)
        await eventually(lambda: hub.store.alerts()[0].status == "resolved", what="the clear")
        await gateway.disconnect()


async def test_living_alone_door_never_opening_is_caught_even_if_it_never_reported(
    tmp_path: Path, mosquitto_broker: Broker
) -> None:
    clock = ManualClock(start=T0)
    async with Hub(settings=hub_settings(tmp_path, mosquitto_broker), clock=clock) as hub:
        clock.advance(24 * 3600 + 1)
        hub.run_due_rules()
        rules = {a.rule for a in hub.store.alerts() if a.device_id == "door-1"}
        assert "elderly.living_alone_inactive" in rules
        # …and the devices that never reported in two heartbeats are offline.
        assert any(a.rule == "device.offline" for a in hub.store.alerts())


async def test_a_door_left_ajar_reporting_every_hour_is_no_activity(
    tmp_path: Path, mosquitto_broker: Broker
) -> None:
    """Found in review: Zigbee2MQTT repeats ``contact`` with every report, and each ``contact:
    false`` was an "opening": an elder living alone who fell behind her ajar door kept the 24 h
    inactivity alert away for ever. A repeated state is the device living, not the elder; the
    next real opening (after a closing) is activity again."""
    clock = ManualClock(start=T0)
    async with Hub(settings=hub_settings(tmp_path, mosquitto_broker), clock=clock) as hub:
        gateway = await publisher(mosquitto_broker)
        ajar = b'{"contact": false, "battery": 90, "voltage": 3000}'
        for hour in range(25):
            gateway.publish("zigbee2mqtt/door-1", ajar, qos=1)
            await eventually(lambda h=hour: hub.pipeline.stats.messages >= h + 1, what="the report")
            clock.advance(3600)
            hub.run_due_rules()
        rules = {a.rule for a in hub.store.alerts() if a.device_id == "door-1"}
        assert "elderly.living_alone_inactive" in rules
        assert not any(a.rule == "device.offline" and a.device_id == "door-1" for a in hub.store.alerts())
        await gateway.disconnect()


def test_an_edge_reporting_door_opened_again_after_an_unheard_close_is_activity(tmp_path: Path) -> None:
    """Review of the door-repeat fix: a native door sends one event per open and per close (not
    its state with every report); a second opening after a lost close is an opening."""
    clock = ManualClock(start=T0)
    hub = Hub(settings=hub_settings(tmp_path, Broker("127.0.0.1", 1, "u", "p")), clock=clock)
    topic = "linli/110105001001/devices/door-1/events"

    def opened(count: int) -> None:
        body = {"v": 1, "kind": "door_open", "ts": clock.now(), "value": True, "attrs": {"open_count": count}}
        hub.pipeline.handle(topic, orjson.dumps(body), 1)

    try:
        opened(41)
        clock.advance(20 * 3600)
        opened(42)  # the close between was lost
        clock.advance(4 * 3600 + 1)  # 24 h after the first opening, 4 h after the second
        hub.run_due_rules()
        assert "elderly.living_alone_inactive" not in {a.rule for a in hub.store.alerts()}
    finally:
        hub.close()


def ttn_door(clock: ManualClock, magnet: str) -> bytes:
    """A Milesight WS301 uplink through The Things Stack v3: every uplink's decoded object
    carries the door's state, the periodic one as much as the one a movement sent."""
    uplink = {
        "f_port": 85,
        "decoded_payload": {"battery": 90, "magnet_status": magnet},
        "version_ids": {"brand_id": "milesight-iot", "model_id": "ws301"},
        "received_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(clock.now())),
    }
    return orjson.dumps({"end_device_ids": {"device_id": "door-1"}, "uplink_message": uplink})


TTN_DOOR = "v3/linli@ttn/devices/door-1/up"


#: The test community with door-1 a Milesight WS301 behind The Things Stack.
LORAWAN_DOOR = REGISTRY.replace("model: MCCGQ11LM", "model: WS301, profile: milesight-ws301")


def lorawan_door_hub(tmp_path: Path, clock: ManualClock) -> Hub:
    assert REGISTRY.count("model: MCCGQ11LM") == 1
    registry = tmp_path / "lorawan.yaml"
    registry.write_text(LORAWAN_DOOR, encoding="utf-8")
    settings = hub_settings(tmp_path, Broker("127.0.0.1", 1, "u", "p"), community_file=str(registry))
    return Hub(settings=settings, clock=clock)


def test_a_lorawan_door_left_ajar_repeating_its_state_in_each_uplink_is_no_activity(tmp_path: Path) -> None:
    """Found in review: LoRaWAN door sensors repeat their state in the periodic uplink
    (Browan TBDW100, Milesight WS301, Dragino LDS02 decode the same fields from it), and each
    ``open`` there was taken as an opening: a door left ajar at the home of an elder living
    alone reported an "opening" every uplink and kept the 24 h inactivity alert away."""
    clock = ManualClock(start=T0)
    hub = lorawan_door_hub(tmp_path, clock)
    try:
        for _ in range(25):
            hub.pipeline.handle(TTN_DOOR, ttn_door(clock, "open"), 1)
            clock.advance(3600)
            hub.run_due_rules()
        assert hub.pipeline.stats.events >= 25
        assert "elderly.living_alone_inactive" in {
            a.rule for a in hub.store.alerts() if a.device_id == "door-1"
        }
    finally:
        hub.close()


def test_a_lorawan_door_opened_again_after_a_heard_close_is_activity(tmp_path: Path) -> None:
    """The repeat rule takes only a state said twice in a row: open, closed, open is two openings."""
    clock = ManualClock(start=T0)
    hub = lorawan_door_hub(tmp_path, clock)
    try:
        hub.pipeline.handle(TTN_DOOR, ttn_door(clock, "open"), 1)
        clock.advance(60)
        hub.pipeline.handle(TTN_DOOR, ttn_door(clock, "close"), 1)
        clock.advance(20 * 3600)
        hub.pipeline.handle(TTN_DOOR, ttn_door(clock, "open"), 1)
        clock.advance(4 * 3600)  # 24 h and a minute after the first opening, 4 h after the second
        hub.run_due_rules()
        assert "elderly.living_alone_inactive" not in {a.rule for a in hub.store.alerts()}
    finally:
        hub.close()


def write_config(tmp_path: Path, broker: Broker, *, name: str) -> Path:
    settings = hub_settings(tmp_path, broker)
    config = tmp_path / f"{name}.yaml"
    config.write_text(
        yaml.safe_dump(
            {
                "data_dir": str(settings.data_dir),
                "community_file": str(settings.community_file),
                "http": {"port": 0},
                "mqtt": {"url": broker.url, "client_id": f"linli-{name}"},
                "api_tokens": [t.model_dump(mode="json") for t in settings.api_tokens],
                # Three seconds instead of a minute, so the test is quick; same code path.
                "rule_overrides": {
                    "parking.fire_lane_occupied": {"grid:110105001001001": {"for": 3, "renotify": 3600}}
                },
            }
        )
    )
    return config


class RunningHub:
    def __init__(self, config: Path) -> None:
        self.config = config
        self.proc: asyncio.subprocess.Process | None = None
        self.port = 0

    async def start(self) -> None:
        self.proc = await asyncio.create_subprocess_exec(
            LINLI,
            "run",
            "--config",
            str(self.config),
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            env=dict(os.environ),
        )
        assert self.proc.stdout is not None
        while True:
            line = (await asyncio.wait_for(self.proc.stdout.readline(), 30)).decode()
            assert line, "hub exited before it was ready"
            if "console http://" in line:
                self.port = int(line.split("console http://127.0.0.1:")[1].split("/")[0])
                break
        self._drain = asyncio.create_task(self._read())

    async def _read(self) -> None:
        assert self.proc is not None and self.proc.stdout is not None
        while await self.proc.stdout.readline():
            pass

    def kill9(self) -> None:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGKILL)

    async def wait(self) -> None:
        assert self.proc is not None
        await self.proc.wait()
        await self._drain

    async def alerts(self) -> list[dict[str, Any]]:
        async with (
            aiohttp.ClientSession(headers={"Authorization": f"Bearer {TOKEN}"}) as session,
            session.get(f"http://127.0.0.1:{self.port}/api/alerts") as response,
        ):
            result: list[dict[str, Any]] = await response.json()
            return [a for a in result if a["rule"] == "parking.fire_lane_occupied"]


@pytest.fixture
async def hub_process(tmp_path: Path, mosquitto_broker: Broker) -> AsyncIterator[RunningHub]:
    running = RunningHub(write_config(tmp_path, mosquitto_broker, name="kill9"))
    yield running
    if running.proc is not None and running.proc.returncode is None:
        running.proc.terminate()
        await running.wait()


async def test_alarm_due_while_killed_fires_once_at_start_and_never_again(
    hub_process: RunningHub, mosquitto_broker: Broker
) -> None:
    await hub_process.start()
    gateway = await publisher(mosquitto_broker)
    gateway.publish(LANE, b'{"occupancy": true}', qos=1)
    await asyncio.sleep(0.7)  # handled, and its duration start written at the end of that loop turn
    hub_process.kill9()
    await hub_process.wait()
    await asyncio.sleep(3.5)  # the 3 s alarm falls due while the hub is dead
    await hub_process.start()
    for _ in range(100):
        if await hub_process.alerts():
            break
        await asyncio.sleep(0.1)
    (alert,) = await hub_process.alerts()
    assert alert["status"] == "active"
    hub_process.kill9()
    await hub_process.wait()
    await hub_process.start()
    await asyncio.sleep(2.5)  # past the catch-up: nothing already raised is raised again
    (again,) = await hub_process.alerts()
    assert again["id"] == alert["id"] and again["count"] == 1
    await gateway.disconnect()


async def test_condition_cleared_while_killed_does_not_fire(
    hub_process: RunningHub, mosquitto_broker: Broker
) -> None:
    await hub_process.start()
    gateway = await publisher(mosquitto_broker)
    gateway.publish(LANE, b'{"occupancy": true}', qos=1)
    await asyncio.sleep(0.7)
    hub_process.kill9()
    await hub_process.wait()
    gateway.publish(LANE, b'{"occupancy": false}', qos=1)  # the car leaves while the hub is dead
    await asyncio.sleep(3.5)
    await hub_process.start()
    await asyncio.sleep(2.5)  # catch-up (the queued "free") and then the timers
    assert await hub_process.alerts() == []
    await gateway.disconnect()


async def test_reload_keeps_state_and_refuses_broken_packs(tmp_path: Path, mosquitto_broker: Broker) -> None:
    packs = tmp_path / "packs"
    packs.mkdir()
    for name in ("elderly.yaml", "parking.yaml"):
        (packs / name).write_text((BUILTIN_PACKS / name).read_text(encoding="utf-8"), encoding="utf-8")
    clock = ManualClock(start=T0)
    settings = hub_settings(tmp_path, mosquitto_broker, rule_paths=[str(packs)])
    async with Hub(settings=settings, clock=clock) as hub:
        gateway = await publisher(mosquitto_broker)
        gateway.publish(LANE, b'{"occupancy": true}', qos=1)
        await eventually(lambda: hub.pipeline.stats.events == 1)
        clock.advance(30)
        # An unrelated change to another pack: the running fire-lane duration keeps its start.
        (packs / "elderly.yaml").write_text(
            (packs / "elderly.yaml").read_text(encoding="utf-8") + "\n# edited\n"
        )
        runner = CliRunner()
        result = await asyncio.to_thread(
            runner.invoke,
            main,
            ["rules", "reload", "--url", f"http://127.0.0.1:{hub.http_port}", "--token", TOKEN],
        )
        assert result.exit_code == 0, result.output
        assert '"rules":' in result.output
        clock.advance(31)  # 61 s after the car arrived
        assert hub.run_due_rules() == 1
        (packs / "parking.yaml").write_text("pack: parking\nrules: [{id: broken}]\n")
        result = await asyncio.to_thread(
            runner.invoke,
            main,
            ["rules", "reload", "--url", f"http://127.0.0.1:{hub.http_port}", "--token", TOKEN],
        )
        assert result.exit_code == 1 and "parking.yaml" in result.output
        assert any(r.id == "parking.fire_lane_occupied" for r in hub.rules), "the old rules stay"
        await gateway.disconnect()


def test_rules_check_and_test_commands(tmp_path: Path) -> None:
    runner = CliRunner()
    checked = runner.invoke(main, ["rules", "check"])
    assert checked.exit_code == 0 and "rules in" in checked.output
    tested = runner.invoke(main, ["rules", "test"])
    assert tested.exit_code == 0 and " 0 failed" in tested.output
    bad = tmp_path / "bad.yaml"
    bad.write_text(
        "pack: x\nrules:\n  - {id: x.a, title: {zh: x}, category: sos, severity: loud, trigger: {type: event, kinds: [sos_press]}}\n"
    )
    refused = runner.invoke(main, ["rules", "check", str(bad)])
    assert refused.exit_code == 1 and "x.a" in refused.output and "severity" in refused.output


async def test_the_rule_watch_outlives_a_pack_it_cannot_load(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Found in review: an error that was no RuleError (the loader's OverflowError on a 400-digit
    number) ended the watch task, and no later change to the packs was ever picked up."""
    monkeypatch.setattr(rule_runtime, "RULE_WATCH_S", 0.01)
    packs = tmp_path / "packs"
    packs.mkdir()
    (packs / "sos.yaml").write_text(
        (BUILTIN_PACKS / "elderly.yaml").read_text(encoding="utf-8"), encoding="utf-8"
    )
    hub = Hub(settings=hub_settings(tmp_path, Broker("127.0.0.1", 1, "u", "p"), rule_paths=[str(packs)]))
    try:
        rules = hub.rule_runtime
        rules.remember_files()
        failing = True
        real = rules.reload

        def reload() -> int:
            if failing:
                raise RuntimeError("a loader bug")
            return real()

        monkeypatch.setattr(rules, "reload", reload)
        watch = asyncio.create_task(rules.watch())
        (packs / "sos.yaml").write_text(
            (packs / "sos.yaml").read_text(encoding="utf-8") + "\n", encoding="utf-8"
        )
        os.utime(packs / "sos.yaml", (1, 1))
        await asyncio.sleep(0.2)
        assert not watch.done()
        failing = False
        os.utime(packs / "sos.yaml", (2, 2))
        await eventually(lambda: rules._stamp == rules._files_stamp(), within=5, what="the next change taken")
        watch.cancel()
        await asyncio.gather(watch, return_exceptions=True)
    finally:
        hub.store.close()


def test_an_override_for_a_place_the_registry_lacks_is_said_at_start(tmp_path: Path) -> None:
    """Review: ``resident:r-1`` (a typo of r1) started without a word; her override applied to nobody."""
    overrides = {
        "elderly.living_alone_inactive": {"resident:r-1": {"for": "12h"}, "resident:r1": {"for": "12h"}},
        "parking.fire_lane_occupied": {"grid:110105001001009": {"for": 30}},
    }
    settings = hub_settings(tmp_path, Broker("127.0.0.1", 1, "u", "p"), rule_overrides=overrides)
    hub = Hub(settings=settings)
    try:
        said = [w for w in hub.start_warnings if w.startswith("rule_overrides")]
        assert len(said) == 2 and "resident:r-1" in said[0] and "grid:110105001001009" in said[1], said
    finally:
        hub.close()
