"""Small shared vocabulary of the simulators: message families, actions, wire messages, readings."""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from typing import NamedTuple


class Family(StrEnum):
    """The message family a device publishes in (the same names as the hub's adapters)."""

    ZIGBEE2MQTT = "zigbee2mqtt"
    TTN_V3 = "ttn_v3"
    CHIRPSTACK_V4 = "chirpstack_v4"
    TASMOTA = "tasmota"
    NATIVE = "native"


#: Short names accepted in a format mix (``z2m=0.6,ttn=0.2,…``).
FAMILY_ALIASES: dict[str, Family] = {
    "z2m": Family.ZIGBEE2MQTT,
    "zigbee": Family.ZIGBEE2MQTT,
    "zigbee2mqtt": Family.ZIGBEE2MQTT,
    "ttn": Family.TTN_V3,
    "tts": Family.TTN_V3,
    "ttn_v3": Family.TTN_V3,
    "chirpstack": Family.CHIRPSTACK_V4,
    "chirpstack_v4": Family.CHIRPSTACK_V4,
    "tasmota": Family.TASMOTA,
    "native": Family.NATIVE,
    "linli": Family.NATIVE,
}


class Act(StrEnum):
    """What a simulated device does; each family encodes it in its own wire format."""

    SOS_PRESS = "sos_press"
    #: An accidental press: the same bytes as an SOS on the wire; ground truth says "false".
    FALSE_PRESS = "false_press"
    #: The green key (求助): a non-urgent service request.
    SERVICE_REQUEST = "service_request"
    DOOR_OPEN = "door_open"
    DOOR_CLOSE = "door_close"
    OCCUPIED = "occupied"
    FREE = "free"
    HEARTBEAT = "heartbeat"
    BATTERY = "battery"
    TAMPER = "tamper"
    TAMPER_CLEAR = "tamper_clear"
    #: Home-safety devices (issue 16): an alarm or a detection each.
    SMOKE = "smoke"
    GAS = "gas"
    WATER_LEAK = "water_leak"
    FALL = "fall"
    MOTION = "motion"
    OFFLINE = "offline"
    ONLINE = "online"
    #: A broken gateway's output: malformed JSON or wrong types.
    GARBAGE = "garbage"


class Message(NamedTuple):
    """One MQTT message: unpacks as ``(topic, payload, qos, retain)``."""

    topic: str
    payload: bytes
    qos: int = 0
    retain: bool = False


class UnsupportedActError(ValueError):
    """The device's family (or model) has no way to say this on the wire."""


def volts_for(percent: float) -> float:
    """A coin/AA cell's terminal voltage for a charge level: flat at 2.8–3.0 V, then a knee.

    20 % → 2.80 V, 12 % → 2.60 V, 4 % → 2.40 V, 0 % → 2.30 V.
    """
    pct = max(0.0, min(100.0, percent))
    if pct >= 20.0:
        return round(2.8 + 0.2 * (pct - 20.0) / 80.0, 3)
    return round(2.3 + 0.5 * pct / 20.0, 3)


@dataclass(frozen=True, slots=True, kw_only=True)
class Reading:
    """The device's state when it speaks: what the payload reports besides the action itself."""

    battery_pct: float = 100.0
    is_open: bool = False
    occupied: bool = False
    tamper: bool = False
    #: Zigbee link quality (0–255) or, for LoRaWAN and Wi-Fi, RSSI in dBm.
    linkquality: int = 120
    rssi: float = -80.0
    snr: float = 7.5
    #: Uplink frame counter (LoRaWAN).
    counter: int = 1
    #: A per-message number the builders use for ids and to vary garbage; deterministic.
    nonce: int = 0

    @property
    def volts(self) -> float:
        return volts_for(self.battery_pct)
