"""Finding 6: unknown devices are bounded, grouped — and an unknown SOS is still heard.

Issue 11 measured 50 000 unknown ids → 259 MB RSS and 50 000 rows, and 500 "emergency"
presses from unknown ids → 500 cases and 500 notifications to the command centre; and
``linli/999999999999/devices/<real id>/events`` raised a real alert for the real device.
These tests drive ``Pipeline.handle`` in-process through the hub's MQTT callback.
"""

from __future__ import annotations

import gc
import logging
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import orjson
import pytest

from hub.app import Hub
from hub.clock import ManualClock
from tests.helpers import COMMUNITY, SOS_BUTTON, hub_settings
from tests.support.samples import SAMPLES
from tests.support.servers import Broker

PRESS = 1_795_371_180.0  # 2026-11-23 02:13:00 Asia/Shanghai
SOS = (SAMPLES / "zigbee2mqtt" / "tuya_ts0215a_sos_emergency.json").read_bytes()
NATIVE_SOS = orjson.dumps({"v": 1, "kind": "sos_press", "value": "single"})
DOOR_AND_BATTERY = b'{"contact": true, "battery": 90}'


def rss_mb() -> float:
    with open("/proc/self/status", encoding="ascii") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    raise AssertionError("no VmRSS")


async def make_hub(tmp_path: Path, **overrides: Any) -> Hub:
    settings = hub_settings(tmp_path, Broker("127.0.0.1", 1, "u", "p"), **overrides)
    hub = Hub(settings=settings, clock=ManualClock(start=PRESS))
    await hub.timeseries.start()  # the running hub's sink: points leave memory when flushed
    return hub


@pytest.fixture
async def hub(tmp_path: Path) -> AsyncIterator[Hub]:
    hub = await make_hub(tmp_path)
    try:
        yield hub
    finally:
        await hub.timeseries.stop()
        hub.quarantine.flush()
        hub.store.close()


def count(hub: Hub, table: str) -> int:
    return int(hub.store.db.execute(f"SELECT count(*) FROM {table}").fetchone()[0])


def command_centre_notifications(hub: Hub) -> int:
    return sum(1 for n in hub.store.notification_log(limit=100_000) if n["recipient"] == "command-centre")


async def test_50000_unknown_ids_do_not_grow_memory_or_the_store(
    hub: Hub, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.ERROR)

    async def flood(first: int, last: int) -> None:
        for i in range(first, last):
            hub._on_message(f"zigbee2mqtt/0xdead{i:08x}", DOOR_AND_BATTERY, 1, False)
            if i % 5_000 == 0:
                await hub.timeseries.flush()  # the running hub flushes every second
                hub.quarantine.flush()
        await hub.timeseries.flush()
        hub.quarantine.flush()

    gc.collect()
    before = rss_mb()
    await flood(0, 25_000)  # fills the bounded recent-events ring (50 000 events)
    gc.collect()
    middle = rss_mb()
    await flood(25_000, 50_000)
    gc.collect()
    after = rss_mb()
    print(f"\nRSS: {before:.1f} MB → {middle:.1f} MB after 25 000 ids → {after:.1f} MB after 50 000 ids")
    assert len(hub.registry.unassigned) == 1_000 and count(hub, "unassigned_devices") == 1_000
    assert count(hub, "quarantine") <= 1_001, "1 000 listed ids and one aggregate for the gateway"
    assert hub.pipeline._strangers.aggregated == {"zigbee2mqtt": 49_000 * 2}
    assert after - middle < 15, f"the second 25 000 unknown ids grew RSS by {after - middle:.1f} MB"


async def test_500_unknown_sos_presses_are_one_case_for_the_command_centre(hub: Hub) -> None:
    for i in range(500):
        hub._on_message(f"zigbee2mqtt/0xbeef{i:08x}", SOS, 1, False)
    (alert,) = hub.store.alerts(limit=10)
    assert alert.count == 500 and alert.subject == "unassigned:zigbee2mqtt"
    assert "via zigbee2mqtt" in alert.title_en
    assert len(hub.cases.case_ids()) == 1
    assert command_centre_notifications(hub) == 1


async def test_a_single_unknown_sos_press_reaches_the_command_centre(hub: Hub) -> None:
    hub._on_message("zigbee2mqtt/0xdeadbeef00000001", SOS, 1, False)
    (alert,) = hub.store.alerts(limit=10)
    assert alert.device_id == "0xdeadbeef00000001" and alert.grid is None and alert.severity == "critical"
    assert len(hub.cases.case_ids()) == 1 and command_centre_notifications(hub) == 1


async def test_beyond_the_cap_an_unknown_sos_is_still_heard(tmp_path: Path) -> None:
    hub = await make_hub(tmp_path, unknown_devices={"max_listed": 3, "max_prefixes": 2})
    try:
        for i in range(10):  # fill the list, and more
            hub._on_message(f"zigbee2mqtt/0xd00r{i:08x}", DOOR_AND_BATTERY, 1, False)
        for base in ("application/app-1/device", "v3/x@y/devices"):  # more gateways than counted
            hub._on_message(f"{base}/stranger/x", b"{}", 1, False)
        hub._on_message(f"linli/{COMMUNITY}/devices/late-button/events", NATIVE_SOS, 1, False)
        assert len(hub.registry.unassigned) == 3
        (alert,) = [a for a in hub.store.alerts(limit=10) if a.category == "sos"]
        assert alert.subject == f"unassigned:linli/{COMMUNITY}/devices"
        assert len(hub.cases.case_ids()) == 1 and command_centre_notifications(hub) == 1
        assert len(hub.pipeline._strangers.aggregated) <= 3
    finally:
        await hub.timeseries.stop()
        hub.store.close()


async def test_a_later_burst_reminds_the_open_case(hub: Hub) -> None:
    hub._on_message("zigbee2mqtt/0xbeef00000001", SOS, 1, False)
    assert isinstance(hub.clock, ManualClock)
    hub.clock.advance(3_600)  # an hour later, another unknown button: the open case is reminded
    hub._on_message("zigbee2mqtt/0xbeef00000002", SOS, 1, False)
    (alert,) = hub.store.alerts(limit=10)
    assert alert.count == 2 and len(hub.cases.case_ids()) == 1
    assert hub.pipeline.stats.unknown_presses_grouped == 0


async def test_a_native_topic_naming_another_community_is_quarantined(hub: Hub) -> None:
    """The attack: linli/999999999999/devices/<real id>/events raised a real alert for the real device."""
    hub._on_message(f"linli/999999999999/devices/{SOS_BUTTON}/events", NATIVE_SOS, 1, False)
    assert hub.store.alerts(limit=10) == [] and hub.cases.case_ids() == []
    assert hub.quarantine.counts == {"community_mismatch": 1}
    hub.quarantine.flush()
    (record,) = hub.store.quarantine()
    assert record.reason == "community_mismatch" and COMMUNITY in record.detail
    # The device's own community is accepted.
    hub._on_message(f"linli/{COMMUNITY}/devices/{SOS_BUTTON}/events", NATIVE_SOS, 1, False)
    (alert,) = hub.store.alerts(limit=10)
    assert alert.device_id == SOS_BUTTON and alert.grid is not None
