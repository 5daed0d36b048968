"""The Things Stack v3: ``v3/{application_id}@{tenant}/devices/{device_id}/up`` and ``…/join``.

The envelope is the TTS one (``end_device_ids``, ``uplink_message`` with ``f_port``, ``f_cnt``,
``frm_payload`` (the vendor's real bytes), ``decoded_payload`` (what the vendor's codec makes of
them), ``rx_metadata``, ``settings``, ``version_ids``). LoRaWAN has no "offline" message: a
silent device is offline; a device coming back rejoins (``…/join``).
"""

from __future__ import annotations

from typing import Any
from zoneinfo import ZoneInfo

import orjson

from simulators.community import LEAK_MODEL, LORA_MODELS, SimDevice, ttn_application
from simulators.formats._common import DOOR, PARKING, PRESSES, b64, iso_nanos, lora_decoded
from simulators.types import Act, Message, Reading

TENANT = "ttn"
_VERSION_IDS = {
    "Milesight WS101": ("milesight-iot", "ws101"),
    "Milesight WS301": ("milesight-iot", "ws301"),
    "Bosch TPS110": ("bosch", "tps110"),
    "Milesight WS303": ("milesight-iot", "ws303"),
}


def topic(device: SimDevice, event: str) -> str:
    return f"v3/{ttn_application(device.community)}@{TENANT}/devices/{device.id}/{event}"


def supports(device: SimDevice, act: Act) -> bool:
    model = device.model
    if act in (Act.HEARTBEAT, Act.ONLINE, Act.GARBAGE):
        return True
    if act in PRESSES:
        return model == LORA_MODELS["sos_button"]
    if act in DOOR or act in (Act.TAMPER, Act.TAMPER_CLEAR):
        return model == LORA_MODELS["door_sensor"]
    if act in PARKING:
        return model == LORA_MODELS["parking_sensor"]
    if act is Act.BATTERY:
        return model != LORA_MODELS["parking_sensor"]  # the TPS110 codec reports no battery
    if act is Act.WATER_LEAK:
        return model == LEAK_MODEL
    return False


def _ids(device: SimDevice) -> dict[str, Any]:
    eui = device.id.removeprefix("eui-").upper()
    return {
        "device_id": device.id,
        "application_ids": {"application_id": ttn_application(device.community)},
        "dev_eui": eui,
        "join_eui": "24E124C0002A0001",
        "dev_addr": eui[-8:],
    }


def _correlation(reading: Reading) -> list[str]:
    return [f"as:up:01HSIM{reading.nonce:020d}", f"ns:uplink:01HSIM{reading.counter:020d}"]


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
    gateway = device.gateway or "lora-gw"
    brand, model_id = _VERSION_IDS.get(device.model, ("unknown", "unknown"))
    return {
        "end_device_ids": _ids(device),
        "correlation_ids": _correlation(reading),
        "received_at": iso_nanos(ts + 0.21, z=True),
        "uplink_message": {
            "session_key_id": "AYfg8rhha5n+FWx0ZaAprA==",
            "f_port": f_port,
            "f_cnt": reading.counter,
            "frm_payload": b64(raw),
            "decoded_payload": decoded,
            "rx_metadata": [
                {
                    "gateway_ids": {"gateway_id": gateway, "eui": "6A7E111A10000000"},
                    "time": iso_nanos(ts, z=True),
                    "timestamp": int(ts * 1000) % 4294967296,
                    "rssi": round(reading.rssi),
                    "channel_rssi": round(reading.rssi),
                    "snr": reading.snr,
                    "channel_index": reading.nonce % 8,
                    "received_at": iso_nanos(ts + 0.02, z=True),
                }
            ],
            "settings": {
                "data_rate": {"lora": {"bandwidth": 125000, "spreading_factor": 7, "coding_rate": "4/5"}},
                "frequency": "471900000",
                "timestamp": int(ts * 1000) % 4294967296,
                "time": iso_nanos(ts, z=True),
            },
            "received_at": iso_nanos(ts + 0.03, z=True),
            "consumed_airtime": "0.061696s",
            "version_ids": {
                "brand_id": brand,
                "model_id": model_id,
                "hardware_version": "1.0",
                "firmware_version": "1.0",
                "band_id": "CN_470_510",
            },
            "network_ids": {"net_id": "000013", "tenant_id": TENANT, "cluster_id": "au1"},
        },
    }


GARBAGE = (
    b'{"end_device_ids": {"device_id": ',
    b'{"uplink_message": "not an object"}',
    b'{"end_device_ids": {}, "uplink_message": {"f_cnt": "five", "decoded_payload": {}}}',
    b'{"uplink_message": {"decoded_payload": [1, 2]}}',
    b'{"received_at": "2026-01-01T00:00:00Z"}',
)


def build(device: SimDevice, act: Act, reading: Reading, ts: float, zone: ZoneInfo) -> list[Message]:
    del zone
    if act is Act.GARBAGE:
        return [Message(topic(device, "up"), GARBAGE[reading.nonce % len(GARBAGE)])]
    if act is Act.ONLINE:
        join = {
            "end_device_ids": _ids(device),
            "correlation_ids": _correlation(reading),
            "received_at": iso_nanos(ts, z=True),
            "join_accept": {
                "session_key_id": "AYfg8rhha5n+FWx0ZaAprA==",
                "received_at": iso_nanos(ts, z=True),
            },
        }
        return [Message(topic(device, "join"), orjson.dumps(join))]
    qos = 1 if act in PRESSES else 0
    return [Message(topic(device, "up"), orjson.dumps(uplink(device, act, reading, ts)), qos)]
