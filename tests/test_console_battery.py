"""The devices page's "low battery" filter agrees with the battery rules it shows alerts from."""

from __future__ import annotations

import shutil
from pathlib import Path

import aiohttp
import orjson

from hub.app import Hub
from hub.clock import ManualClock
from rules.battery import FALLBACK_LOW_PCT, low_battery_pct
from rules.loader import BUILTIN_PACKS, load_packs
from tests.helpers import GRID, SOS_BUTTON, TOKEN, eventually, hub_settings, publisher
from tests.support.servers import Broker
from tests.test_console import NIGHT


def test_low_is_the_highest_level_an_enabled_battery_percent_rule_raises_at() -> None:
    shipped = load_packs()
    assert low_battery_pct(shipped) == 20.0, "device.battery_low_percent: below 20"
    without = [r for r in shipped if r.id != "device.battery_low_percent"]
    assert low_battery_pct(without) == 10.0, "then the critical rule's level"
    disabled = [r.model_copy(update={"enabled": False}) if "battery" in r.id else r for r in shipped]
    assert low_battery_pct(disabled) == FALLBACK_LOW_PCT


async def test_the_filter_follows_the_rule_pack_in_force(tmp_path: Path, mosquitto_broker: Broker) -> None:
    # A site's packs with the warning at 25 %: a device at 22 % alerts, so the page calls it low.
    packs = tmp_path / "packs"
    shutil.copytree(BUILTIN_PACKS, packs)
    health = packs / "device_health.yaml"
    text = health.read_text(encoding="utf-8")
    assert "      below: 20\n" in text
    health.write_text(text.replace("      below: 20\n", "      below: 25\n"), encoding="utf-8")
    settings = hub_settings(tmp_path, mosquitto_broker, rule_paths=[str(packs)])
    async with Hub(settings=settings, clock=ManualClock(start=NIGHT)) as hub:
        gateway = await publisher(mosquitto_broker)
        gateway.publish(f"zigbee2mqtt/{SOS_BUTTON}", orjson.dumps({"battery": 22, "linkquality": 90}), qos=1)
        gateway.publish("zigbee2mqtt/door-1", orjson.dumps({"battery": 28, "contact": True}), qos=1)
        await eventually(
            lambda: all((s := hub.states.get(d)) and s.battery is not None for d in (SOS_BUTTON, "door-1")),
            what="both batteries recorded",
        )
        alerts = await eventually(
            lambda: [a for a in hub.store.alerts(status="active") if a.rule == "device.battery_low_percent"],
            what="the 25 % rule's alert",
        )
        assert [a.device_id for a in alerts] == [SOS_BUTTON], "22 % alerts, 28 % does not"
        async with aiohttp.ClientSession(headers={"Authorization": f"Bearer {TOKEN}"}) as http:
            url = f"http://127.0.0.1:{hub.http_port}/devices?grid={GRID}&show=low_battery"
            async with http.get(url) as response:
                assert response.status == 200
                page = await response.text()
        assert f'data-device-id="{SOS_BUTTON}"' in page, "the device the rule alerts on is listed"
        assert 'data-device-id="door-1"' not in page
        assert "(&lt; 25%)" in page, "the filter says which level it uses"
        await gateway.disconnect()
