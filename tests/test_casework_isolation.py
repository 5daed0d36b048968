"""One poisoned case fails alone: it is reported and backed off, every other case keeps its deadlines."""

from __future__ import annotations

import logging
from pathlib import Path

import aiohttp
import orjson
import pytest

from hub.app import Hub
from hub.cases.model import OPEN
from hub.cases.workflow import open_case
from hub.clock import ManualClock
from hub.errors import RequirementNotMet
from tests.helpers import SOS_BUTTON, TOKEN, Phone, eventually, hub_settings, publisher
from tests.support.samples import SAMPLES
from tests.support.servers import Broker

PRESS = 1_795_371_180.0  # 2026-11-23 02:13:00 Asia/Shanghai: the night shift
SOS = (SAMPLES / "zigbee2mqtt" / "tuya_ts0215a_sos_emergency.json").read_bytes()
HEIMAN = (SAMPLES / "zigbee2mqtt" / "heiman_hs1eb_single_state.json").read_bytes()


async def test_a_poisoned_case_does_not_stop_the_others(
    tmp_path: Path, mosquitto_broker: Broker, caplog: pytest.LogCaptureFixture
) -> None:
    clock = ManualClock(start=PRESS)
    phone = Phone(mosquitto_broker)
    await phone.start("linli/+/workers/+/notifications")
    gateway = await publisher(mosquitto_broker)
    async with Hub(settings=hub_settings(tmp_path, mosquitto_broker), clock=clock) as hub:
        gateway.publish(f"zigbee2mqtt/{SOS_BUTTON}", SOS, qos=1)
        gateway.publish("zigbee2mqtt/heiman-1", HEIMAN, qos=1)
        await eventually(lambda: len(hub.cases.case_ids()) == 2, what="two SOS cases")
        poisoned, healthy = sorted(
            hub.cases.case_ids(), key=lambda c: hub.cases.load(c).subject != SOS_BUTTON
        )  # type: ignore[union-attr]
        # The attack of the security issue left an entry no replay can read (extend with 1e400 → null).
        entry = orjson.loads(
            hub.store.db.execute(
                "SELECT entry FROM case_timeline WHERE case_id = ? ORDER BY seq DESC LIMIT 1", (poisoned,)
            ).fetchone()[0]
        )
        entry["action"] = "extend"
        entry["data"] = {"approver": "a", "seconds": None}
        entry["seq"] += 1
        hub.store.db.execute(
            "INSERT INTO case_timeline (case_id, seq, ts, entry) VALUES (?, ?, ?, ?)",
            (poisoned, entry["seq"], entry["ts"], orjson.dumps(entry)),
        )
        with pytest.raises(RequirementNotMet):
            hub.cases.load(poisoned)
        caplog.clear()
        # Nobody accepts: the healthy case escalates at its 60 s step, the poisoned one fails alone.
        await hub.advance_clock(PRESS + 61)
        await eventually(
            lambda: any(
                b["type"] == "case.escalate" and b["case"]["id"] == healthy for _, b, _ in phone.messages
            ),
            what="the healthy case escalated on time",
        )
        assert set(hub.casework.failing) == {poisoned}
        assert hub.quarantine.counts["case_failed"] >= 1
        # The list still answers, without the unreadable case.
        async with (
            aiohttp.ClientSession(headers={"Authorization": f"Bearer {TOKEN}"}) as http,
            http.get(f"http://127.0.0.1:{hub.http_port}/api/cases") as response,
        ):
            assert response.status == 200
            assert [c["id"] for c in await response.json()] == [healthy]
        # And the casework loop backs off instead of spinning on it.
        failures_logged = sum(f"case {poisoned} failed" in r.getMessage() for r in caplog.records)
        await eventually(lambda: hub.casework_beat is not None, what="a casework round")
        assert failures_logged <= 3, failures_logged
        assert not [r for r in caplog.records if r.levelno >= logging.ERROR and healthy in r.getMessage()]
    await gateway.disconnect()
    await phone.stop()


async def test_a_list_read_in_one_query_still_lists_around_an_unreadable_entry(
    tmp_path: Path, embedded_broker: Broker
) -> None:
    """Case lists read each step's timelines in one query; an entry that does not even decode
    fails that query, and the step falls back to one case at a time: the bad case is reported
    and left out, the rest of the page is listed."""
    async with Hub(settings=hub_settings(tmp_path, embedded_broker), clock=ManualClock(start=PRESS)) as hub:
        with hub.store.transaction() as db:
            for i in range(5):
                case, entry = open_case(
                    case_id=f"k{i}", category="door", severity="minor", subject=f"d{i}", at=PRESS - 60 + i
                )
                hub.casework.cases.add(db, case, entry)
        hub.store.db.execute(
            "INSERT INTO case_timeline (case_id, seq, ts, entry) VALUES (?, ?, ?, ?)",
            ("k2", 1, PRESS, b"{not json"),
        )
        views = hub.casework.case_views(assignee=None, grid=None, states=OPEN, limit=100)
        assert sorted(v["id"] for v in views) == ["k0", "k1", "k3", "k4"]
        assert set(hub.casework.failing) == {"k2"} and hub.quarantine.counts["case_failed"] >= 1
