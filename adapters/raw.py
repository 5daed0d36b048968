"""Raw LoRaWAN payloads Linli decodes itself, for profiles that name a codec (``raw:``).

A network server without the device's codec installed publishes only the bytes (TTS
``frm_payload``, ChirpStack ``data``, base64). For a button sold as an SOS button that was a
press read as a heartbeat (found in review: the verbatim WS101 samples
``ttn_v3/tti_milesight_ws101_button_raw_packetbroker.json`` and
``chirpstack_v4/milesight_ws101_button_up_no_codec.json``, ``AXUQ/y4B``). A profile naming a
codec gets the bytes decoded into the object its fields read, as the vendor's decoder would.

``milesight``: Milesight's channel format (Milesight-IoT/SensorDecoders, e.g.
``ws-series/ws101/ws101-decoder.js``): a sequence of ``channel_id, channel_type, value``, the
value's length given by the pair. Pairs Linli does not know end the reading: what came before
stands, and the rest is named as not read (the length of an unknown value is unknown).

Pure: bytes in, a dict out. Must not import: ``hub``, ``rules``.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from enum import StrEnum


class RawCodec(StrEnum):
    """The codecs a profile may name for its device's raw bytes."""

    MILESIGHT = "milesight"


_PRESS = {1: "short", 2: "long", 3: "double"}

#: (channel_id, channel_type) → (field, value length, reading). The device-information pairs
#: are skipped (``None``): a WS101 sends them once after power-on, before its first press.
_MILESIGHT: Mapping[tuple[int, int], tuple[str | None, int, Callable[[bytes], object] | None]] = {
    (0x01, 0x75): ("battery", 1, lambda v: v[0]),  # battery level, %
    (0xFF, 0x2E): ("press", 1, lambda v: _PRESS.get(v[0], f"unknown:{v[0]}")),  # button event
    (0xFF, 0x01): (None, 1, None),  # IPSO version
    (0xFF, 0x09): (None, 2, None),  # hardware version
    (0xFF, 0x0A): (None, 2, None),  # firmware version
    (0xFF, 0xFF): (None, 2, None),  # TSL version
    (0xFF, 0x16): (None, 8, None),  # serial number
    (0xFF, 0x0F): (None, 1, None),  # LoRaWAN class
    (0xFF, 0xFE): (None, 1, None),  # reset event
    (0xFF, 0x0B): (None, 1, None),  # device status (power on)
}


def decode_raw(codec: RawCodec, data: bytes) -> tuple[dict[str, object], str | None]:
    """The fields ``data`` holds, and why the rest could not be read (``None``: all was read)."""
    if codec is RawCodec.MILESIGHT:
        return _milesight(data)
    raise AssertionError(codec)  # a closed set: every codec is handled above


def _milesight(data: bytes) -> tuple[dict[str, object], str | None]:
    fields: dict[str, object] = {}
    at = 0
    while at < len(data):
        if at + 2 > len(data):
            return fields, f"a channel header cut short at byte {at}"
        channel, kind = data[at], data[at + 1]
        known = _MILESIGHT.get((channel, kind))
        if known is None:
            return fields, f"unknown Milesight channel 0x{channel:02x} type 0x{kind:02x} at byte {at}"
        name, length, read = known
        value = data[at + 2 : at + 2 + length]
        if len(value) < length:
            return fields, f"channel 0x{channel:02x} 0x{kind:02x} cut short at byte {at}"
        if name is not None and read is not None:
            fields[name] = read(value)
        at += 2 + length
    return fields, None
