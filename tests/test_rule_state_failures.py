"""Rule state written to PostgreSQL: a failed flush is retried and reported, and no unknown id
can make every flush fail.

Found in review: an unregistered device with a 6 000-character topic level was listed as
unassigned and kept rule state under that id; on PostgreSQL the row outgrew the primary key's
index (2 704 bytes), so every flush holding it failed as a whole. Its keys had been drained
first, so a registered elder's SOS slot of the same loop turn was never stored, and readiness
still said the rule state was fine.
"""

from __future__ import annotations

import asyncio
import random
import string
from pathlib import Path
from typing import Any

import pytest

from hub.app import Hub
from hub.clock import ManualClock
from hub.ingest.strangers import GROUP
from tests.helpers import SOS_BUTTON, hub_settings
from tests.support.servers import Broker

PRESS = 1_795_371_180.0  # 2026-11-23 02:13:00 Asia/Shanghai
EMERGENCY = b'{"action": "emergency"}'


def pg_hub(tmp_path: Path, postgres_url: str) -> Hub:
    settings = hub_settings(tmp_path, Broker("127.0.0.1", 1, "u", "p"), store={"url": postgres_url})
    return Hub(settings=settings, clock=ManualClock(start=PRESS))


def stored_subjects(hub: Hub) -> set[str]:
    return {str(row[0]) for row in hub.store.execute("SELECT subject FROM rule_state").fetchall()}


async def test_an_overlong_unknown_id_is_grouped_and_the_turns_flush_lands(
    tmp_path: Path, postgres_url: str
) -> None:
    hub = pg_hub(tmp_path, postgres_url)
    long_id = "".join(random.Random(1).choice(string.ascii_letters) for _ in range(6000))
    try:
        hub._on_message(f"zigbee2mqtt/{long_id}", b'{"linkquality": 90}', 1, False)
        # One loop turn: the stranger presses, and so does the registered elder.
        hub._on_message(f"zigbee2mqtt/{long_id}", EMERGENCY, 1, False)
        hub._on_message(f"zigbee2mqtt/{SOS_BUTTON}", EMERGENCY, 1, False)
        await asyncio.sleep(0.05)  # the turn's rule-state flush
        assert SOS_BUTTON in stored_subjects(hub)
        assert all(len(subject) <= 256 for subject in stored_subjects(hub))
        assert long_id not in hub.registry.unassigned
        assert {a.subject for a in hub.store.alerts()} == {SOS_BUTTON, f"{GROUP}zigbee2mqtt"}
        assert hub.rule_runtime.state_ok
    finally:
        hub.close()


async def test_a_failed_flush_is_marked_again_and_readiness_says_so(
    tmp_path: Path, postgres_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    hub = pg_hub(tmp_path, postgres_url)
    states = hub.rule_runtime.state_store
    original = states._write
    broken = [True]

    def write(*args: Any, **kwargs: Any) -> None:
        if broken[0]:
            raise OSError("connection reset")
        original(*args, **kwargs)

    monkeypatch.setattr(states, "_write", write)
    try:
        with pytest.raises(OSError):
            hub._on_message(f"zigbee2mqtt/{SOS_BUTTON}", EMERGENCY, 1, False)
            hub.flush_rule_state()
        assert not hub.rule_runtime.state_ok
        assert SOS_BUTTON not in stored_subjects(hub)
        broken[0] = False
        hub.flush_rule_state()
        assert SOS_BUTTON in stored_subjects(hub), "the slots of the failed flush were marked again"
        assert hub.rule_runtime.state_ok
    finally:
        hub.close()
