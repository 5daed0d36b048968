"""Devices, events and the community tree over HTTP, fed by real messages through Mosquitto."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from click.testing import CliRunner

from hub.app import Hub
from hub.cli import main
from hub.clock import ManualClock
from tests.helpers import (
    GRID,
    SOS_BUTTON,
    TOKEN,
    VIEWER_TOKEN,
    WORKER_TOKEN,
    eventually,
    hub_settings,
    publisher,
)
from tests.support.samples import SAMPLES
from tests.support.servers import Broker

NOW = 1_795_371_180.0  # 2026-11-23 02:13 Asia/Shanghai


def z2m(name: str) -> bytes:
    return (SAMPLES / "zigbee2mqtt" / f"{name}.json").read_bytes()


@pytest.fixture
async def hub(tmp_path: Path, mosquitto_broker: Broker) -> AsyncIterator[Hub]:
    async with Hub(
        settings=hub_settings(tmp_path, mosquitto_broker), clock=ManualClock(start=NOW)
    ) as running:
        yield running


async def get(hub: Hub, path: str, token: str = TOKEN) -> tuple[int, Any]:
    async with (
        aiohttp.ClientSession(headers={"Authorization": f"Bearer {token}"}) as session,
        session.get(f"http://127.0.0.1:{hub.http_port}{path}") as response,
    ):
        return response.status, await response.json()


async def test_messages_through_mosquitto_reach_device_views(hub: Hub, mosquitto_broker: Broker) -> None:
    gateway = await publisher(mosquitto_broker)
    gateway.publish("zigbee2mqtt/door-1", z2m("aqara_mccgq11lm_open"), qos=1)  # contact: false = open
    gateway.publish("zigbee2mqtt/door-1/availability", z2m("device_availability_json_online"), qos=1)
    gateway.publish("zigbee2mqtt/0xunknown01", z2m("aqara_wxkg11lm_report_without_action"), qos=1)
    await eventually(lambda: hub.pipeline.stats.messages == 3, what="three messages")

    status, door = await get(hub, "/api/devices/door-1")
    assert status == 200
    assert door["assigned"] is True and door["grid"] == GRID and door["online"] is True
    assert door["battery"] == 100.0 and door["signal"] == 153.0
    assert door["state"]["door_open"]["value"] is True
    assert door["where"]["building"] == "3号楼" and door["where"]["room"] == "401"
    assert door["last_seen"] == "2026-11-22T18:13:00.000Z"

    status, stranger = await get(hub, "/api/devices/0xunknown01")
    assert (
        status == 200
        and stranger["assigned"] is False
        and stranger["grid"] is None
        and stranger["battery"] == 100.0
    )

    status, devices = await get(hub, "/api/devices")
    ids = {d["id"] for d in devices}
    assert {SOS_BUTTON, "door-1", "lane-b-1", "0xunknown01"} <= ids
    never_reported = next(d for d in devices if d["id"] == SOS_BUTTON)
    assert never_reported["last_seen"] is None and never_reported["online"] is None

    status, events = await get(hub, "/api/events?device_id=door-1")
    assert [e["kind"] for e in events] == ["online", "signal", "battery", "door_open"]  # most recent first
    assert (await get(hub, "/api/devices/nope"))[0] == 404
    await gateway.disconnect()


async def test_device_goes_offline_after_two_missed_heartbeats(
    tmp_path: Path, mosquitto_broker: Broker
) -> None:
    clock = ManualClock(start=NOW)
    async with Hub(settings=hub_settings(tmp_path, mosquitto_broker), clock=clock) as hub:
        gateway = await publisher(mosquitto_broker)
        gateway.publish("zigbee2mqtt/door-1", b'{"contact": true}', qos=1)
        await eventually(lambda: hub.pipeline.stats.messages == 1)
        clock.advance(2 * 3600 - 1)
        assert (await get(hub, "/api/devices/door-1"))[1]["online"] is True
        clock.advance(2)
        assert (await get(hub, "/api/devices/door-1"))[1]["online"] is False
        await gateway.disconnect()


async def test_community_tree_masks_personal_data_for_roles_that_do_not_need_it(hub: Hub) -> None:
    _, full = await get(hub, "/api/community")
    (community,) = full["communities"]
    (resident,) = community["grids"][0]["buildings"][0]["units"][0]["households"][0]["residents"]
    assert resident["name"] == "王秀英" and resident["phone"] == "13812345678"
    assert resident["emergency_contacts"][0]["phone"] == "13987654321"

    # The grid's worker has the grid's locations but personal data only on cases in hand: masked.
    _, masked = await get(hub, "/api/community", token=WORKER_TOKEN)
    (resident,) = masked["communities"][0]["grids"][0]["buildings"][0]["units"][0]["households"][0][
        "residents"
    ]
    assert resident["name"] == "王**" and resident["phone"] == "138****5678"
    assert "emergency_contacts" not in resident and "address" not in resident
    # Issue 11 #2: per room, "living alone, 80+" tells a stranger which door to knock on.
    assert not {"living_alone", "aged_80_plus", "disabled", "cognitive_impairment"} & set(resident)

    # A wall display has no ``locations``: no buildings, rooms or who lives in them, only shared places.
    _, wall = await get(hub, "/api/community", token=VIEWER_TOKEN)
    assert wall["communities"][0]["grids"][0]["buildings"] == []
    assert wall["communities"][0]["grids"][0]["places"][0]["kind"] == "fire_lane"


async def test_cli_quarantine_list_and_community_export(tmp_path: Path, mosquitto_broker: Broker) -> None:
    settings = hub_settings(tmp_path, mosquitto_broker)
    async with Hub(settings=settings, clock=ManualClock(start=NOW)) as hub:
        gateway = await publisher(mosquitto_broker)
        gateway.publish("zigbee2mqtt/door-1", b"{oops", qos=1)
        gateway.publish("elsewhere/thing", b"{}", qos=1)  # not subscribed: never reaches the hub
        await eventually(lambda: hub.pipeline.stats.quarantined == 1)
        await gateway.disconnect()
    runner = CliRunner()
    output = runner.invoke(main, ["quarantine", "list", "--data-dir", str(settings.data_dir)]).output
    assert "malformed_json" in output and "zigbee2mqtt/door-1" in output and "1×" in output

    exported = runner.invoke(
        main, ["community", "export", "--data-dir", str(settings.data_dir), "--format", "csv"]
    )
    assert exported.exit_code == 0 and exported.output.startswith("community,id,kind")
    assert "door-1" in exported.output
    # To a file: owner-only, as everything holding residents' data (found in review: 0644); a
    # symlink planted at the name is replaced, not followed.
    victim = tmp_path / "victim.txt"
    victim.write_text("keep", encoding="utf-8")
    target = tmp_path / "out" / "residents.csv"
    target.parent.mkdir()
    target.symlink_to(victim)
    written = runner.invoke(
        main,
        ["community", "export", "--data-dir", str(settings.data_dir), "--format", "csv", "--kind", "residents",
         "-o", str(target)],
    )  # fmt: skip
    assert written.exit_code == 0, written.output
    assert not target.is_symlink() and target.stat().st_mode & 0o777 == 0o600
    assert victim.read_text(encoding="utf-8") == "keep"


def test_cli_community_import_reports_errors_and_is_idempotent(
    tmp_path: Path, mosquitto_broker: Broker
) -> None:
    settings = hub_settings(tmp_path, mosquitto_broker)
    runner = CliRunner()
    data = ["--data-dir", str(settings.data_dir)]
    first = runner.invoke(main, ["community", "import", str(settings.community_file), *data])
    assert first.exit_code == 0 and "1 changed" in first.output
    again = runner.invoke(main, ["community", "import", str(settings.community_file), *data])
    assert "0 changed" in again.output
    bad = tmp_path / "bad.csv"
    bad.write_text("community,id,kind,grid\n110105001001,x,lamp,110105001001001\n", encoding="utf-8")
    result = runner.invoke(main, ["community", "import", str(bad), *data])
    assert result.exit_code == 1 and str(bad) in result.output and "row 2: kind" in result.output


@pytest.mark.parametrize(
    ("sample", "device_id", "expected"),
    [
        # Registered with the Bosch profile: the decoded fields mean a parking state.
        (
            "ttn_v3/tts_simulated_bosch_parking_free",
            "dev1",
            {"state": "occupancy", "value": False, "assigned": True},
        ),
        ("chirpstack_v4/docs_status_event", "0101010101010101", {"battery": 88.3, "signal": 10.0}),
        ("tasmota/sensor_switch1_on", "tasmota/switch1", {"state": "door_closed", "value": False}),
        ("tasmota/lwt_offline", "tasmota_XXXXXX", {"online": False}),
    ],
)
async def test_every_family_through_mosquitto_reaches_the_device_view(
    hub: Hub, mosquitto_broker: Broker, sample: str, device_id: str, expected: dict[str, Any]
) -> None:
    family, name = sample.split("/")
    folder = SAMPLES / family
    topic = (folder / f"{name}.topic").read_text().strip()
    payload = next(p for p in (folder / f"{name}.json", folder / f"{name}.txt") if p.exists()).read_bytes()
    gateway = await publisher(mosquitto_broker)
    gateway.publish(topic, payload, qos=1)
    await eventually(lambda: hub.pipeline.stats.messages == 1, what="the message")
    assert hub.pipeline.stats.quarantined == 0
    status, view = await get(hub, f"/api/devices/{device_id}")
    assert status == 200 and view["assigned"] is expected.get("assigned", False)
    if "state" in expected:
        assert view["state"][expected["state"]]["value"] == expected["value"]
    for key in ("battery", "signal", "online"):
        if key in expected:
            assert view[key] == expected[key]
    await gateway.disconnect()
