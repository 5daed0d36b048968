"""``linli simulate community --communities N`` and ``linli simulate device``: a district whose
communities have their own gateway roots, and one message from one device in its own format —
published to a real Mosquitto and, for a single hub (no cluster), decoded into an SOS alert."""

from __future__ import annotations

import asyncio
import uuid
from pathlib import Path

import yaml
from click.testing import CliRunner

from hub.app import Hub
from hub.cli import main
from hub.community.model import CommunityFile
from tests.helpers import Phone, eventually, hub_settings
from tests.support.servers import Broker


def district(tmp_path: Path, n: int = 3) -> tuple[Path, CommunityFile]:
    out = tmp_path / "district.yaml"
    result = CliRunner().invoke(
        main, ["simulate", "community", "--communities", str(n), "--grids", "1", "-o", str(out)]
    )
    assert result.exit_code == 0, result.output
    assert f"{n} communities" in result.output
    return out, CommunityFile.model_validate(yaml.safe_load(out.read_text(encoding="utf-8")))


def test_a_district_gives_every_community_its_own_roots_and_unique_ids(tmp_path: Path) -> None:
    _, parsed = district(tmp_path)
    codes = [c.code for c in parsed.communities]
    assert codes == ["110105001001", "110105001002", "110105001003"]
    for community in parsed.communities:
        assert {(s.family.value, s.base_topic, s.application) for s in community.sources} == {
            ("zigbee2mqtt", f"zigbee2mqtt-{community.code}", ""),
            ("tasmota", f"site-{community.code}", ""),
            ("ttn_v3", "", f"linli-{community.code}@ttn"),
            ("chirpstack_v4", "", str(uuid.uuid5(uuid.NAMESPACE_URL, f"linli:chirpstack:{community.code}"))),
            ("native", "", community.code),
        }
    people = [p.id for c in parsed.communities for p in c.people]
    devices = [d.id for c in parsed.communities for d in c.devices]
    assert len(people) == len(set(people)) and len(devices) == len(set(devices))


async def test_simulate_device_publishes_in_the_devices_format_under_its_communitys_root(
    tmp_path: Path, mosquitto_broker: Broker
) -> None:
    path, parsed = district(tmp_path, 2)
    second = parsed.communities[1]
    sos = next(d for d in second.devices if d.kind == "sos_button" and d.model == "TS0215A")
    door = next(d for d in second.devices if d.kind == "door_sensor" and "/switch" in d.id)
    listener = Phone(mosquitto_broker, client_id="district-listener")
    listener.client.on_message = lambda client, topic, payload, qos, props: (
        listener.messages.append(  # type: ignore[assignment]
            (topic, {"raw": payload.decode()}, qos)
        )
        or 0
    )
    await listener.start(f"zigbee2mqtt-{second.code}/#", f"site-{second.code}/#")
    try:
        for device_id, action in ((sos.id, "press_sos"), (door.id, "door_open")):
            result = await asyncio.to_thread(
                CliRunner().invoke,
                main,
                [
                    "simulate",
                    "device",
                    device_id,
                    action,
                    "--community-file",
                    str(path),
                    "--mqtt",
                    mosquitto_broker.url,
                ],
            )
            assert result.exit_code == 0, result.output
        await eventually(lambda: len(listener.messages) >= 2, within=5, what="both messages")
    finally:
        await listener.stop()
    topics = [t for t, _, _ in listener.messages]
    assert f"zigbee2mqtt-{second.code}/{sos.id}" in topics
    assert any(t.startswith(f"site-{second.code}/stat/") for t in topics)
    press = next(body["raw"] for t, body, _ in listener.messages if t.endswith(sos.id))
    assert '"emergency"' in press
    unknown = CliRunner().invoke(
        main,
        [
            "simulate",
            "device",
            "nope",
            "press_sos",
            "--community-file",
            str(path),
            "--mqtt",
            mosquitto_broker.url,
        ],
    )
    assert unknown.exit_code != 0 and "no device 'nope'" in unknown.output


async def test_a_single_hub_subscribes_to_every_communitys_own_roots(
    tmp_path: Path, mosquitto_broker: Broker
) -> None:
    path, parsed = district(tmp_path, 2)
    second = parsed.communities[1]
    sos = next(d for d in second.devices if d.kind == "sos_button" and d.model == "TS0215A")
    settings = hub_settings(tmp_path, mosquitto_broker, community_file=str(path), api_tokens=[])
    async with Hub(settings=settings) as hub:
        result = await asyncio.to_thread(
            CliRunner().invoke,
            main,
            [
                "simulate",
                "device",
                sos.id,
                "press_sos",
                "--community-file",
                str(path),
                "--mqtt",
                mosquitto_broker.url,
            ],
        )
        assert result.exit_code == 0, result.output
        alert = await eventually(
            lambda: [a for a in hub.store.alerts(limit=10) if a.device_id == sos.id],
            within=10,
            what="the SOS alert",
        )
    assert alert[0].community == second.code and alert[0].severity == "critical"
