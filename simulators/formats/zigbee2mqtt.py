"""Zigbee2MQTT: state on ``zigbee2mqtt/<friendly_name>``, availability on ``…/availability``."""

from __future__ import annotations

from zoneinfo import ZoneInfo

from simulators import zigbee2mqtt as z2m
from simulators.community import SimDevice
from simulators.formats._common import DOOR, PARKING, PRESSES, SAFETY
from simulators.types import Act, Message, Reading

BASE = "zigbee2mqtt"
_ALWAYS = frozenset({Act.HEARTBEAT, Act.BATTERY, Act.OFFLINE, Act.ONLINE, Act.GARBAGE})

#: What a broken coordinator/bridge sends: truncated JSON, wrong types, a non-object.
GARBAGE = (
    b'{"contact": fal',
    b'{"contact": "maybe", "linkquality": 80}',
    b'{"battery": "abc", "linkquality": 80}',
    b"[1, 2, 3]",
    b'{"action": 7}',
    b"\xff\xfe\x00garbage",
)


def supports(device: SimDevice, act: Act) -> bool:
    if act in _ALWAYS:
        return True
    if act in PRESSES:
        return device.kind == "sos_button"
    if act in DOOR:
        return device.kind == "door_sensor"
    if act in PARKING:
        return device.kind == "parking_sensor"
    if act in (Act.TAMPER, Act.TAMPER_CLEAR):
        return device.tamper_capable
    if act in _Z2M_SAFETY:
        return device.kind == SAFETY[act]
    return False


#: The Zigbee2MQTT expose each safety act sets to true (a PIR's motion is `occupancy`).
_Z2M_SAFETY = {Act.SMOKE: "smoke", Act.GAS: "gas", Act.WATER_LEAK: "water_leak", Act.MOTION: "occupancy"}


def build(device: SimDevice, act: Act, reading: Reading, ts: float, zone: ZoneInfo) -> list[Message]:
    del zone  # Zigbee2MQTT's last_seen is ISO 8601 UTC
    topic = z2m.state_topic(device.id, base=device.base_topic or BASE)
    battery = round(reading.battery_pct, 1)
    lq = reading.linkquality
    if act in PRESSES:
        # The press at QoS 1 (an installation configures SOS buttons so), then the legacy
        # action sensor's reset report.
        return [
            Message(
                topic, z2m.sos_press(action=device.sos_action, battery=battery, linkquality=lq, ts=ts), 1
            ),
            Message(topic, z2m.action_cleared(linkquality=lq)),
        ]
    if act in DOOR:
        payload = z2m.contact(
            is_open=act is Act.DOOR_OPEN,
            battery=battery,
            voltage_mv=round(reading.volts * 1000),
            linkquality=lq,
            ts=ts,
        )
        return [Message(topic, payload)]
    if act in PARKING:
        return [
            Message(
                topic, z2m.occupancy(occupied=act is Act.OCCUPIED, battery=battery, linkquality=lq, ts=ts)
            )
        ]
    if act in (Act.TAMPER, Act.TAMPER_CLEAR):
        return [
            Message(topic, z2m.tamper(tampered=act is Act.TAMPER, battery=battery, linkquality=lq, ts=ts))
        ]
    if act in _Z2M_SAFETY:
        payload = z2m.alarm(_Z2M_SAFETY[act], battery=battery, linkquality=lq, ts=ts)
        return [Message(topic, payload)]
    if act in (Act.OFFLINE, Act.ONLINE):
        return [
            Message(
                z2m.availability_topic(device.id, base=device.base_topic or BASE),
                z2m.availability(online=act is Act.ONLINE),
                0,
                True,
            )
        ]
    if act is Act.GARBAGE:
        return [Message(topic, GARBAGE[reading.nonce % len(GARBAGE)])]
    # HEARTBEAT, BATTERY: the periodic report (battery %, voltage in mV, link quality).
    payload = z2m.report(battery=battery, voltage_mv=round(reading.volts * 1000), linkquality=lq, ts=ts)
    return [Message(topic, payload)]
