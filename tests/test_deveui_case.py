"""A DevEUI registered in upper case, as printed on the device's label and shown by The Things
Stack, is the device ChirpStack names in lower case. Found in review: the registered SOS button
was never matched and its press became an unknown device's plain button press."""

from __future__ import annotations

from pathlib import Path

import orjson
import pytest

from adapters.events import EventKind
from adapters.router import AdapterRouter, Family, FamilySource
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


@pytest.mark.parametrize("registered", [EUI, EUI.lower()])
@pytest.mark.parametrize("family", ["chirpstack_v3", "ttn_v3"])
def test_the_envelopes_that_name_the_device_twice_match_it_case_blind(
    tmp_path: Path, registered: str, family: str
) -> None:
    """Found in review: ChirpStack v3 (``devEUI``) and TTS (``end_device_ids.device_id``) compared
    the body's lower-case id with the registry's copy, upper case: ``bad_value``, the press lost."""
    hub = _hub(tmp_path, registered)
    try:
        decoded = {"battery": 90, "button_event": {"status": "short press"}}
        if family == "chirpstack_v3":
            router = AdapterRouter(sources=[FamilySource(Family.CHIRPSTACK_V3)])
            topic = f"application/1/device/{EUI.lower()}/event/up"
            body = {"devEUI": EUI.lower(), "fCnt": 7, "fPort": 85, "object": decoded}
        else:
            router = AdapterRouter(sources=[FamilySource(Family.TTN_V3)])
            topic = f"v3/app@ttn/devices/{EUI.lower()}/up"
            body = {
                "end_device_ids": {"device_id": EUI.lower()},
                "uplink_message": {"f_port": 85, "f_cnt": 7, "decoded_payload": decoded},
            }
        events = router.decode(topic, orjson.dumps(body), PRESS, hub.registry)
        presses = [e for e in events if e.kind is EventKind.SOS_PRESS]
        assert len(presses) == 1 and presses[0].device_id == registered
    finally:
        hub.store.close()
