"""Helpers shared by the format builders."""

from __future__ import annotations

import base64
from datetime import UTC, datetime
from zoneinfo import ZoneInfo

from simulators.types import Act

PRESSES = frozenset({Act.SOS_PRESS, Act.FALSE_PRESS})
DOOR = frozenset({Act.DOOR_OPEN, Act.DOOR_CLOSE})
PARKING = frozenset({Act.OCCUPIED, Act.FREE})
#: Home-safety acts and the device kind that performs each.
SAFETY: dict[Act, str] = {
    Act.SMOKE: "smoke_detector",
    Act.GAS: "gas_detector",
    Act.WATER_LEAK: "water_leak_sensor",
    Act.FALL: "fall_detector",
    Act.MOTION: "motion_sensor",
}


def iso_nanos(ts: float, *, z: bool) -> str:
    """``2026-03-02T18:13:00.123456789Z`` (TTS) or ``…+00:00`` (ChirpStack): nanosecond fractions."""
    whole = int(ts)
    nanos = round((ts - whole) * 1e9)
    if nanos >= 1_000_000_000:
        whole, nanos = whole + 1, nanos - 1_000_000_000
    base = datetime.fromtimestamp(whole, UTC).strftime("%Y-%m-%dT%H:%M:%S")
    return f"{base}.{nanos:09d}{'Z' if z else '+00:00'}"


def local_iso(ts: float, zone: ZoneInfo, *, millis: bool = False) -> str:
    """Local time with its offset (``2026-03-02T02:13:00+08:00``)."""
    return datetime.fromtimestamp(ts, zone).isoformat(timespec="milliseconds" if millis else "seconds")


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def milesight_bytes(
    *,
    battery: float | None = None,
    press: int | None = None,
    magnet_open: bool | None = None,
    tamper: bool | None = None,
) -> bytes:
    """Milesight channel/type/value frames: battery 01 75, WS101 press ff 2e, WS301 03 00 / 04 00."""
    out = bytearray()
    if battery is not None:
        out += bytes([0x01, 0x75, max(0, min(100, round(battery)))])
    if press is not None:
        out += bytes([0xFF, 0x2E, press])
    if magnet_open is not None:
        out += bytes([0x03, 0x00, 1 if magnet_open else 0])
    if tamper is not None:
        out += bytes([0x04, 0x00, 1 if tamper else 0])
    return bytes(out)


def lora_decoded(
    device_model: str, act: Act, *, battery: float, is_open: bool, occupied: bool, tamper: bool, nonce: int
) -> tuple[int, bytes, dict[str, object]]:
    """``(f_port, frm_payload, decoded object)`` as the vendor's codec produces them."""
    if device_model == "Milesight WS101":
        if act in PRESSES:
            decoded: dict[str, object] = {
                "battery": round(battery),
                "button_event": {"status": "short press", "msgid": 100000 + nonce % 900000},
            }
            return 85, milesight_bytes(battery=battery, press=1), decoded
        return 85, milesight_bytes(battery=battery), {"battery": round(battery)}
    if device_model == "Milesight WS301":
        if act in DOOR:
            opened = act is Act.DOOR_OPEN
            return (
                85,
                milesight_bytes(battery=battery, magnet_open=opened, tamper=tamper),
                {
                    "battery": round(battery),
                    "magnet_status": "open" if opened else "close",
                    "tamper_status": "uninstalled" if tamper else "installed",
                },
            )
        if act in (Act.TAMPER, Act.TAMPER_CLEAR):
            flag = act is Act.TAMPER
            return (
                85,
                milesight_bytes(battery=battery, tamper=flag),
                {
                    "battery": round(battery),
                    "tamper_status": "uninstalled" if flag else "installed",
                },
            )
        return 85, milesight_bytes(battery=battery), {"battery": round(battery)}
    if device_model == "Milesight WS303":
        # Leakage status is channel 03 00 (README: 017564 030001 = battery 100 %, leak).
        leak = act is Act.WATER_LEAK
        raw = milesight_bytes(battery=battery) + bytes([0x03, 0x00, 1 if leak else 0])
        return 85, raw, {"battery": round(battery), "leakage_status": "leak" if leak else "normal"}
    # Bosch TPS110: fPort 1 parking status, fPort 2 heartbeat (occupied + temperature).
    if act in PARKING:
        flag = act is Act.OCCUPIED
        return 1, bytes([1 if flag else 0]), {"occupied": flag, "type": "parking status"}
    temperature = 12 + nonce % 15
    return (
        2,
        bytes([1 if occupied else 0, temperature]),
        {
            "occupied": occupied,
            "temperature": temperature,
            "type": "heartbeat",
        },
    )
