"""Linli native JSON: ``linli/<community>/devices/<device_id>/events`` (schema native-event.v1).

One event object, or a list (a heartbeat carries its battery reading in the same message).
``ts`` is RFC 3339 with the local offset.
"""

from __future__ import annotations

from typing import Any
from zoneinfo import ZoneInfo

import orjson

from simulators.community import SimDevice
from simulators.formats._common import DOOR, PARKING, PRESSES, SAFETY, local_iso
from simulators.types import Act, Message, Reading

BASE = "linli"


def topic(device: SimDevice) -> str:
    return f"{BASE}/{device.community}/devices/{device.id}/events"


def supports(device: SimDevice, act: Act) -> bool:
    if act in (
        Act.HEARTBEAT,
        Act.BATTERY,
        Act.OFFLINE,
        Act.ONLINE,
        Act.GARBAGE,
        Act.TAMPER,
        Act.TAMPER_CLEAR,
    ):
        return True
    if act in PRESSES:
        return device.kind == "sos_button"
    if act is Act.SERVICE_REQUEST:
        return device.kind == "sos_button" and device.green_key
    if act in DOOR:
        return device.kind == "door_sensor"
    if act in PARKING:
        return device.kind == "parking_sensor"
    if act in SAFETY:
        return device.kind == SAFETY[act]
    return False


def _event(
    kind: str, ts: float, zone: ZoneInfo, value: Any = None, attrs: dict[str, Any] | None = None
) -> dict[str, Any]:
    event: dict[str, Any] = {"v": 1, "kind": kind, "ts": local_iso(ts, zone, millis=True)}
    if value is not None:
        event["value"] = value
    if attrs:
        event["attrs"] = attrs
    return event


GARBAGE = (
    b'{"v": 1, "kind": "door_open", ',
    b'{"v": 2, "kind": "door_open"}',
    b'{"v": 1, "kind": "teleport"}',
    b'{"v": 1, "kind": "battery", "value": [50]}',
    b'{"v": 1, "kind": "heartbeat", "ts": "2026-03-02 08:00:00"}',
    b'"just a string"',
)


def build(device: SimDevice, act: Act, reading: Reading, ts: float, zone: ZoneInfo) -> list[Message]:
    if act is Act.GARBAGE:
        return [Message(topic(device), GARBAGE[reading.nonce % len(GARBAGE)])]
    battery = _event("battery", ts, zone, round(reading.battery_pct, 1), {"volts": reading.volts})
    body: Any
    qos = 0
    if act in PRESSES:
        body = _event("sos_press", ts, zone, "single", {"press": "single", "key": "red"})
        qos = 1
    elif act is Act.SERVICE_REQUEST:
        body = _event("service_request", ts, zone, "green", {"key": "green"})
        qos = 1
    elif act in DOOR:
        opened = act is Act.DOOR_OPEN
        body = _event("door_open" if opened else "door_closed", ts, zone, opened)
    elif act in PARKING:
        body = _event("occupancy", ts, zone, act is Act.OCCUPIED)
    elif act in (Act.TAMPER, Act.TAMPER_CLEAR):
        body = _event("tamper", ts, zone, act is Act.TAMPER)
    elif act in SAFETY:
        body = _event(act.value, ts, zone, True)
        qos = 1 if act is not Act.MOTION else 0
    elif act in (Act.OFFLINE, Act.ONLINE):
        body = _event("online" if act is Act.ONLINE else "offline", ts, zone, act is Act.ONLINE)
    elif act is Act.BATTERY:
        body = battery
    else:
        body = [
            _event("heartbeat", ts, zone),
            battery,
            _event("signal", ts, zone, round(reading.rssi), {"unit": "dBm"}),
        ]
    return [Message(topic(device), orjson.dumps(body), qos)]
