"""An SOS press is never lost to a bad neighbour: a field of the wrong type, a null where a state
was expected, bad gateway metadata or a bad item of the same batch. The message is quarantined
with its reason *and* the press is handled (``DecodeError.salvaged``). Adapters first, then a hub
(the case is filed and the quarantine record kept)."""

from __future__ import annotations

import sqlite3
from pathlib import Path
from typing import Any

import orjson
import pytest

from adapters.errors import DecodeError
from adapters.events import DeviceKind, Event, EventKind
from adapters.router import AdapterRouter, Family, FamilySource
from hub.app import Hub
from hub.clock import ManualClock
from hub.errors import NotStoredError
from hub.mqtt.client import Unhandled
from tests.helpers import COMMUNITY, SOS_BUTTON, hub_settings
from tests.support.samples import Hints, sample
from tests.support.servers import Broker

PRESS = 1_795_371_180.0
_, EMERGENCY = sample("zigbee2mqtt", "tuya_ts0215a_sos_emergency")
Z2M = AdapterRouter(sources=[FamilySource(Family.ZIGBEE2MQTT)])
TTS = AdapterRouter(sources=[FamilySource(Family.TTN_V3)])
NATIVE = AdapterRouter(sources=[FamilySource(Family.NATIVE)])
HINTS = Hints({SOS_BUTTON: DeviceKind.SOS_BUTTON, "btn": DeviceKind.SOS_BUTTON, "gen": DeviceKind.SOS_BUTTON},
              {"btn": "milesight-ws101"})  # fmt: skip


def _kinds(events: list[Event] | tuple[Event, ...]) -> list[EventKind]:
    return [e.kind for e in events]


def _salvaged(router: AdapterRouter, topic: str, payload: bytes) -> DecodeError:
    with pytest.raises(DecodeError) as caught:
        router.decode(topic, payload, PRESS, HINTS)
    return caught.value


@pytest.mark.parametrize("key", ["tamper", "occupancy", "contact"])
def test_a_null_state_beside_a_press_is_unknown_not_an_error(key: str) -> None:
    """Zigbee2MQTT sets an exposed property it has not heard yet to null (SOURCES.md)."""
    doc = {**orjson.loads(EMERGENCY), key: None}
    events = Z2M.decode(f"zigbee2mqtt/{SOS_BUTTON}", orjson.dumps(doc), PRESS, HINTS)
    assert _kinds(events).count(EventKind.SOS_PRESS) == 1
    assert not {EventKind.TAMPER, EventKind.MOTION, EventKind.DOOR_OPEN, EventKind.DOOR_CLOSED} & set(
        _kinds(events)
    )


def test_a_bad_tamper_beside_a_zigbee2mqtt_press_keeps_the_press_only() -> None:
    doc = {**orjson.loads(EMERGENCY), "tamper": "maybe", "contact": False}
    error = _salvaged(Z2M, f"zigbee2mqtt/{SOS_BUTTON}", orjson.dumps(doc))
    assert error.reason == "wrong_type" and "tamper" in error.detail
    # The press stands; the report's states (its door, decoded before the bad field) do not.
    assert _kinds(error.salvaged) == [EventKind.SOS_PRESS]


@pytest.mark.parametrize("doc", [{"action": "emergency", "sos": "yes"}, {"action": 1, "sos": True}])
def test_two_press_fields_of_which_one_is_bad_keep_the_press(doc: dict[str, object]) -> None:
    """Found in review of the salvage: the press fields were read before it, so a bad one of
    the two still cost the other's press."""
    error = _salvaged(Z2M, f"zigbee2mqtt/{SOS_BUTTON}", orjson.dumps(doc))
    assert error.reason == "wrong_type"
    assert _kinds(error.salvaged) == [EventKind.SOS_PRESS]


def _tts(device: str, decoded: dict[str, Any], **uplink: object) -> tuple[str, bytes]:
    message = {
        "f_port": 85,
        "f_cnt": 3,
        "decoded_payload": decoded,
        "rx_metadata": [{"gateway_ids": {"gateway_id": "g"}, "rssi": -50, "snr": 5}],
        **uplink,
    }
    body = {"end_device_ids": {"device_id": device}, "uplink_message": message}
    return f"v3/app@ttn/devices/{device}/up", orjson.dumps(body)


@pytest.mark.parametrize(
    ("uplink", "reason"),
    [
        (_tts("btn", {"press": "short", "battery": True}), "wrong_type"),  # a profiled field
        (_tts("btn", {"press": "short"}, rx_metadata=[None]), "wrong_type"),  # gateway metadata
        (_tts("gen", {"sos": True, "contact": 1}), "ambiguous_polarity"),  # the generic reading
    ],
    ids=["profile-field", "rx-metadata", "generic-ambiguous"],
)
def test_a_bad_field_of_a_lorawan_uplink_keeps_its_press(uplink: tuple[str, bytes], reason: str) -> None:
    error = _salvaged(TTS, *uplink)
    assert error.reason == reason
    assert EventKind.SOS_PRESS in _kinds(error.salvaged)


def test_a_native_batch_keeps_its_good_items_and_names_the_bad_ones() -> None:
    batch = [
        {"v": 1, "kind": "sos_press", "value": "single", "attrs": {"press": "single"}},
        {"v": 1, "kind": "battery", "value": 80, "attrs": {"cells": {"a": 3.0}}},
        {"v": 1, "kind": "heartbeat"},
        {"v": 2, "kind": "heartbeat"},
    ]
    error = _salvaged(NATIVE, f"linli/{COMMUNITY}/devices/{SOS_BUTTON}/events", orjson.dumps(batch))
    assert error.reason == "wrong_type" and "event[1].attrs" in error.detail
    assert "1 more bad" in error.detail and "2 of 4 kept" in error.detail
    assert _kinds(error.salvaged) == [EventKind.SOS_PRESS, EventKind.HEARTBEAT]


@pytest.fixture
def hub(tmp_path: Path) -> Any:
    built = Hub(
        settings=hub_settings(tmp_path, Broker("127.0.0.1", 1, "u", "p")), clock=ManualClock(start=PRESS)
    )
    yield built
    built.store.close()


@pytest.mark.parametrize(
    ("topic", "payload"),
    [
        (
            f"linli/{COMMUNITY}/devices/{SOS_BUTTON}/events",
            orjson.dumps([{"v": 1, "kind": "sos_press", "value": "single"}, {"v": 1, "kind": "nonsense"}]),
        ),
        (f"zigbee2mqtt/{SOS_BUTTON}", orjson.dumps({**orjson.loads(EMERGENCY), "tamper": 7})),
    ],
    ids=["native-batch", "zigbee2mqtt-report"],
)
def test_the_hub_files_the_case_and_keeps_the_quarantine_record(hub: Hub, topic: str, payload: bytes) -> None:
    hub._on_message(topic, payload, 1, False)
    assert len(hub.cases.case_ids()) == 1
    hub.quarantine.flush()
    (record,) = hub.store.quarantine()
    assert record.topic == topic and record.count == 1 and payload.startswith(record.excerpt)


SALVAGED = orjson.dumps({**orjson.loads(EMERGENCY), "tamper": 7})


@pytest.mark.parametrize("where", ["before the rules decided", "after the rules decided"])
def test_a_salvaged_press_retried_after_a_store_failure_is_quarantined_once(
    hub: Hub, monkeypatch: pytest.MonkeyPatch, where: str
) -> None:
    """Found in review: the message of a salvaged press, held through a store outage, was
    quarantined again on every retry (its count said 5 bad messages where one came)."""
    topic = f"zigbee2mqtt/{SOS_BUTTON}"
    failures = [sqlite3.OperationalError("database or disk is full")] * 2
    if where == "before the rules decided":
        target, name = hub.pipeline, "_on_event"
    else:
        target, name = hub.store, "upsert_alert"
    original = getattr(target, name)

    def failing(*args: Any, **kwargs: Any) -> Any:
        if failures:
            raise failures.pop()
        return original(*args, **kwargs)

    monkeypatch.setattr(target, name, failing)
    with pytest.raises(Exception) as caught:
        hub._on_message(topic, SALVAGED, 1, False)
    hub.redelivery.hold(Unhandled(topic, SALVAGED, 1, False, None, caught.value))
    assert hub.redelivery.retry_now() == 0  # the store still refuses
    assert hub.redelivery.retry_now() == 1
    assert len(hub.cases.case_ids()) == 1
    hub.quarantine.flush()
    (record,) = hub.store.quarantine()
    assert record.count == 1 and record.reason == "wrong_type"
    assert hub.pipeline.stats.quarantined == 1


def test_a_resumed_message_is_judged_as_its_own_not_as_the_last_one(
    hub: Hub, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Review: a held message's rest was judged against the topic of the last message handled
    meanwhile; a native SOS press in it was quarantined as that message's community_mismatch."""
    original = hub.store.upsert_alert
    refusals = [sqlite3.OperationalError("database or disk is full")]

    def upsert(*args: Any, **kwargs: Any) -> Any:
        if refusals:
            raise refusals.pop()
        return original(*args, **kwargs)

    monkeypatch.setattr(hub.store, "upsert_alert", upsert)
    batch = orjson.dumps(
        [{"v": 1, "kind": "tamper", "value": True}, {"v": 1, "kind": "sos_press", "value": "single"}]
    )
    with pytest.raises(NotStoredError) as held:
        hub.pipeline.handle(f"linli/{COMMUNITY}/devices/heiman-1/events", batch, 1, False)
    hub.pipeline.handle("zigbee2mqtt/door-1", orjson.dumps({"contact": False, "battery": 90}), 1, False)
    held.value.resume()  # as the retry queue does
    assert "elderly.sos" in {a.rule for a in hub.store.alerts()}
    assert hub.pipeline.stats.community_mismatches == 0


def test_a_resume_refused_again_keeps_the_rest_of_the_message(
    hub: Hub, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Review: a store outage longer than one retry dropped the message's rest (its SOS press),
    and the message was acknowledged as handled."""
    original = hub.store.upsert_alert
    refusals = [sqlite3.OperationalError("database or disk is full")] * 2

    def upsert(*args: Any, **kwargs: Any) -> Any:
        if refusals:
            raise refusals.pop()
        return original(*args, **kwargs)

    monkeypatch.setattr(hub.store, "upsert_alert", upsert)
    topic = f"linli/{COMMUNITY}/devices/heiman-1/events"
    batch = orjson.dumps(
        [{"v": 1, "kind": "tamper", "value": True}, {"v": 1, "kind": "sos_press", "value": "single"}]
    )
    with pytest.raises(NotStoredError) as held:
        hub.pipeline.handle(topic, batch, 1, False)
    hub.redelivery.hold(Unhandled(topic, batch, 1, False, None, held.value))
    assert hub.redelivery.retry_now() == 0  # refused again
    assert hub.redelivery.retry_now() == 1
    assert {a.rule for a in hub.store.alerts()} == {"device.tamper", "elderly.sos"}
