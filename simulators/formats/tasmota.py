"""Tasmota: an ESP8266 switch input wired to a door reed (``<node>/switch1``).

* A change: ``stat/<node>/RESULT`` ``{"Switch1": {"Action": "ON"}}`` (SetOption114, detached
  switch), the way the input reports at once.
* Every TelePeriod (300 s): ``tele/<node>/SENSOR`` ``{"Time": …, "Switch1": "OFF"}`` (a
  re-sync of the state, which is also the heartbeat of the switch) and ``tele/<node>/STATE``.
* ``tele/<node>/LWT`` ``Online``/``Offline`` (retained, bare text): this is the *node's*
  availability; the hub decodes it for device ``<node>``, not ``<node>/switch1``.

The door models here use the ``tasmota-switch-open-on`` profile: ``ON`` means open. Mains
powered: no battery, no tamper.
"""

from __future__ import annotations

from zoneinfo import ZoneInfo

import orjson

from simulators.community import TASMOTA_DOOR_MODEL, SimDevice
from simulators.formats._common import DOOR, local_iso
from simulators.types import Act, Message, Reading


def node(device: SimDevice) -> str:
    return device.id.split("/", 1)[0]


def prefix(device: SimDevice) -> str:
    """The community's topic prefix in front of ``tele``/``stat`` ("" on the default roots)."""
    return f"{device.base_topic}/" if device.base_topic else ""


def switch_number(device: SimDevice) -> str:
    tail = device.id.rsplit("/", 1)[-1]
    return tail.removeprefix("switch") if tail.startswith("switch") else "1"


def supports(device: SimDevice, act: Act) -> bool:
    if act in (Act.HEARTBEAT, Act.OFFLINE, Act.ONLINE, Act.GARBAGE):
        return True
    return act in DOOR and device.kind == "door_sensor"


def _text(device: SimDevice, is_open: bool) -> str:
    # Default Tasmota polarity: ON = circuit closed = door closed; the open-on profile inverts.
    on_means_open = device.model == TASMOTA_DOOR_MODEL
    return "ON" if is_open == on_means_open else "OFF"


GARBAGE = (
    b'{"Time":"2026-01-01T00:00:00","Switch1":',
    b'{"Switch1": 1}',
    b'{"Switch1": "MAYBE"}',
    b'{"ZbReceived": [1, 2]}',
)


def build(device: SimDevice, act: Act, reading: Reading, ts: float, zone: ZoneInfo) -> list[Message]:
    name = node(device)
    key = f"Switch{switch_number(device)}"
    if act in DOOR:
        result = {key: {"Action": _text(device, act is Act.DOOR_OPEN)}}
        return [Message(f"{prefix(device)}stat/{name}/RESULT", orjson.dumps(result))]
    if act in (Act.OFFLINE, Act.ONLINE):
        return [
            Message(
                f"{prefix(device)}tele/{name}/LWT", b"Online" if act is Act.ONLINE else b"Offline", 1, True
            )
        ]
    if act is Act.GARBAGE:
        return [Message(f"{prefix(device)}tele/{name}/SENSOR", GARBAGE[reading.nonce % len(GARBAGE)])]
    # HEARTBEAT: the TelePeriod pair.
    when = local_iso(ts, zone)
    uptime = 3600 + reading.counter * 300
    state = {
        "Time": when,
        "Uptime": f"0T{uptime // 3600:02d}:{uptime % 3600 // 60:02d}:00",
        "UptimeSec": uptime,
        "Heap": 28,
        "SleepMode": "Dynamic",
        "Sleep": 50,
        "LoadAvg": 19,
        "MqttCount": 1,
        "Wifi": {
            "AP": 1,
            "SSId": "linli-iot",
            "BSSId": "AA:BB:CC:00:00:01",
            "Channel": 6,
            "Mode": "11n",
            "RSSI": max(0, min(100, round(2 * (reading.rssi + 100)))),
            "Signal": round(reading.rssi),
            "LinkCount": 1,
            "Downtime": "0T00:00:07",
        },
    }
    sensor = {"Time": when, key: _text(device, reading.is_open)}
    return [
        Message(f"{prefix(device)}tele/{name}/STATE", orjson.dumps(state)),
        Message(f"{prefix(device)}tele/{name}/SENSOR", orjson.dumps(sensor)),
    ]
