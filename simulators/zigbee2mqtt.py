"""Zigbee2MQTT payloads as real devices publish them (compare ``shared/samples/zigbee2mqtt``)."""

from __future__ import annotations

from datetime import UTC, datetime

import orjson


def state_topic(name: str, *, base: str = "zigbee2mqtt") -> str:
    return f"{base}/{name}"


def availability_topic(name: str, *, base: str = "zigbee2mqtt") -> str:
    return f"{base}/{name}/availability"


def _last_seen(ts: float) -> str:
    return datetime.fromtimestamp(ts, UTC).isoformat(timespec="seconds")


def sos_press(*, action: str, battery: float, linkquality: int, ts: float) -> bytes:
    """A Tuya TS0215A (``emergency``) or Heiman HS1EB (``single``) press."""
    return orjson.dumps(
        {"action": action, "battery": battery, "linkquality": linkquality, "last_seen": _last_seen(ts)}
    )


def action_cleared(*, linkquality: int) -> bytes:
    """The report after a press that resets ``action`` (legacy action sensor)."""
    return orjson.dumps({"action": "", "battery": None, "linkquality": linkquality})


def contact(*, is_open: bool, battery: float, voltage_mv: int, linkquality: int, ts: float) -> bytes:
    """An Aqara MCCGQ11LM door contact: ``contact: false`` means open."""
    return orjson.dumps(
        {
            "battery": battery,
            "contact": not is_open,
            "linkquality": linkquality,
            "voltage": voltage_mv,
            "last_seen": _last_seen(ts),
        }
    )


def occupancy(*, occupied: bool, battery: float, linkquality: int, ts: float) -> bytes:
    return orjson.dumps(
        {"occupancy": occupied, "battery": battery, "linkquality": linkquality, "last_seen": _last_seen(ts)}
    )


def availability(*, online: bool) -> bytes:
    """Zigbee2MQTT 2.x JSON availability (retained)."""
    return orjson.dumps({"state": "online" if online else "offline"})


def report(*, battery: float, voltage_mv: int, linkquality: int, ts: float) -> bytes:
    """A periodic report with no state change (a battery device checking in): a heartbeat."""
    return orjson.dumps(
        {"battery": battery, "voltage": voltage_mv, "linkquality": linkquality, "last_seen": _last_seen(ts)}
    )


def tamper(*, tampered: bool, battery: float, linkquality: int, ts: float) -> bytes:
    """An IAS zone device (Heiman HS1DS/HS1EB) reporting its tamper switch."""
    return orjson.dumps(
        {"battery": battery, "linkquality": linkquality, "tamper": tampered, "last_seen": _last_seen(ts)}
    )


def alarm(expose: str, *, battery: float, linkquality: int, ts: float) -> bytes:
    """A hazard or PIR report (``smoke``, ``gas``, ``water_leak``, ``occupancy`` set to true)."""
    return orjson.dumps(
        {"battery": battery, "linkquality": linkquality, expose: True, "last_seen": _last_seen(ts)}
    )
