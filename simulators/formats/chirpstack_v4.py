"""ChirpStack v4 (JSON marshaler): ``application/{app_uuid}/device/{dev_eui}/event/{up|status|join}``.

``object`` holds the codec's output; numbers in it are protobuf doubles (``100.0``), as
ChirpStack publishes them. Battery level comes in the ``status`` event (percent, float) for
every model. There is no "offline" event: a silent device is offline; it comes back with a join.
"""

from __future__ import annotations

import uuid
from typing import Any
from zoneinfo import ZoneInfo

import orjson

from simulators.community import LORA_MODELS, SimDevice, chirpstack_application
from simulators.formats._common import DOOR, PARKING, PRESSES, b64, iso_nanos, lora_decoded
from simulators.types import Act, Message, Reading

TENANT_ID = "52f14cd4-c6f1-4fbd-8f87-4025e1d49242"


def topic(device: SimDevice, event: str) -> str:
    return f"application/{chirpstack_application(device.community)}/device/{device.id}/event/{event}"


def supports(device: SimDevice, act: Act) -> bool:
    model = device.model
    if act in (Act.HEARTBEAT, Act.BATTERY, Act.ONLINE, Act.GARBAGE):
        return True
    if act in PRESSES:
        return model == LORA_MODELS["sos_button"]
    if act in DOOR or act in (Act.TAMPER, Act.TAMPER_CLEAR):
        return model == LORA_MODELS["door_sensor"]
    if act in PARKING:
        return model == LORA_MODELS["parking_sensor"]
    return False


def _doubles(value: Any) -> Any:
    """protobuf Struct: every number is a double."""
    if isinstance(value, bool):
        return value
    if isinstance(value, int):
        return float(value)
    if isinstance(value, dict):
        return {k: _doubles(v) for k, v in value.items()}
    return value


def _info(device: SimDevice) -> dict[str, Any]:
    app = chirpstack_application(device.community)
    return {
        "tenantId": TENANT_ID,
        "tenantName": "Linli",
        "applicationId": app,
        "applicationName": f"linli-{device.community}",
        "deviceProfileId": str(uuid.uuid5(uuid.NAMESPACE_URL, f"linli:profile:{device.model}")),
        "deviceProfileName": device.model,
        "deviceName": device.location or device.id,
        "devEui": device.id,
        "tags": {},
    }


def _dedup(reading: Reading, device: SimDevice) -> str:
    return str(uuid.uuid5(uuid.NAMESPACE_OID, f"{device.id}/{reading.counter}/{reading.nonce}"))


def uplink(device: SimDevice, act: Act, reading: Reading, ts: float) -> dict[str, Any]:
    f_port, raw, decoded = lora_decoded(
        device.model,
        act,
        battery=reading.battery_pct,
        is_open=reading.is_open,
        occupied=reading.occupied,
        tamper=reading.tamper,
        nonce=reading.nonce,
    )
    return {
        "deduplicationId": _dedup(reading, device),
        "time": iso_nanos(ts, z=False),
        "deviceInfo": _info(device),
        "devAddr": device.id[-8:],
        "adr": True,
        "dr": 5,
        "fCnt": reading.counter,
        "fPort": f_port,
        "confirmed": False,
        "data": b64(raw),
        "object": _doubles(decoded),
        "rxInfo": [
            {
                "gatewayId": "6a7e111a10000000",
                "uplinkId": reading.nonce % 65536,
                "time": iso_nanos(ts, z=False),
                "rssi": round(reading.rssi),
                "snr": reading.snr,
                "channel": reading.nonce % 8,
                "rfChain": 1,
                "location": {},
                "context": "EFwMtA==",
                "metadata": {"region_common_name": "CN470", "region_config_id": "cn470_0"},
                "crcStatus": "CRC_OK",
            }
        ],
        "txInfo": {
            "frequency": 471900000,
            "modulation": {"lora": {"bandwidth": 125000, "spreadingFactor": 7, "codeRate": "CR_4_5"}},
        },
    }


GARBAGE = (
    b'{"deduplicationId": "x", "deviceInfo": ',
    # A ChirpStack v3 payload on a v4 topic (no deviceInfo).
    b'{"applicationID": "1", "devEUI": "AQEBAQEBAQE=", "data": "qg==", "object": {"battery": 1}}',
    b'{"deviceInfo": {"devEui": "0000000000000000"}, "object": "not an object"}',
    b'{"deviceInfo": {"devEui": "0000000000000000"}, "fCnt": "seven"}',
)


def build(device: SimDevice, act: Act, reading: Reading, ts: float, zone: ZoneInfo) -> list[Message]:
    del zone
    if act is Act.GARBAGE:
        return [Message(topic(device, "up"), GARBAGE[reading.nonce % len(GARBAGE)])]
    if act is Act.ONLINE:
        join = {
            "deduplicationId": _dedup(reading, device),
            "time": iso_nanos(ts, z=False),
            "deviceInfo": _info(device),
            "devAddr": device.id[-8:],
        }
        return [Message(topic(device, "join"), orjson.dumps(join))]
    if act is Act.BATTERY:
        status = {
            "deduplicationId": _dedup(reading, device),
            "time": iso_nanos(ts, z=False),
            "deviceInfo": _info(device),
            "margin": 10 + reading.nonce % 10,
            "batteryLevel": round(reading.battery_pct, 1),
        }
        return [Message(topic(device, "status"), orjson.dumps(status))]
    qos = 1 if act in PRESSES else 0
    return [Message(topic(device, "up"), orjson.dumps(uplink(device, act, reading, ts)), qos)]
