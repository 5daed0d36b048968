"""A DevEUI registered in upper case, as printed on the device's label and shown by The Things
Stack, is the device ChirpStack names in lower case. Found in review: the registered SOS button
was never matched and its press became an unknown device's plain button press."""

from __future__ import annotations

from pathlib import Path

import orjson
import pytest

from hub.app import Hub
from hub.clock import ManualClock
from hub.config import load_settings
from tests.helpers import GRID, REGISTRY

PRESS = 1_795_371_180.0
EUI = "A840410000000001"


def _hub(tmp_path: Path, registered: str) -> Hub:
    registry = tmp_path / "community.yaml"
    extra = f'      - {{id: "{registered}", kind: sos_button, model: milesight-ws101, grid: "{GRID}"}}\n'
    registry.write_text(REGISTRY + extra, encoding="utf-8")
    settings = load_settings(
        None,
        environ={},
        overrides={
            "data_dir": str(tmp_path / "data"),
            "community_file": str(registry),
            "mqtt": {"url": "mqtt://u:p@127.0.0.1:1", "client_id": "t"},
            "http": {"host": "127.0.0.1", "port": 0},
        },
    )
    return Hub(settings=settings, clock=ManualClock(start=PRESS))


@pytest.mark.parametrize("registered", [EUI, EUI.lower(), "a840410000ABCDEF"])
def test_a_chirpstack_press_reaches_the_button_however_its_eui_was_written(
    tmp_path: Path, registered: str
) -> None:
    hub = _hub(tmp_path, registered)
    try:
        up = {
            "deviceInfo": {"devEui": registered.lower(), "deviceProfileName": "WS101"},
            "fCnt": 7,
            "fPort": 85,
            "object": {"battery": 90, "button_event": {"status": "short press"}},
        }
        topic = f"application/app-1/device/{registered.lower()}/event/up"
        hub._on_message(topic, orjson.dumps(up), 1, False)
        (case_id,) = hub.cases.case_ids()
        case = hub.cases.load(case_id)
        assert case is not None and case.grid == GRID and case.category == "sos"
        assert hub.registry.registered_id(registered.lower()) == registered
        assert not hub.registry.unassigned and not hub.quarantine.counts
    finally:
        hub.store.close()
