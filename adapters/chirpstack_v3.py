"""ChirpStack Application Server v3 MQTT integration (both JSON marshalers).

Topics: ``application/{applicationID}/device/{devEUI}/event/{up|status|join|ack|error}``; the
application id is a number. Before AS 3.11 the uplink topic ended in ``…/rx`` (also accepted).
Reference: brocaar/chirpstack-application-server ``docs/content/integrate/sending-receiving``.

Events (device id: the DevEUI in lower-case hex, as in the topic):

* ``up``: the profile's events from ``object`` / ``objectJSON`` (a heartbeat when there is
  none, or no profile), plus a ``signal`` from the best ``rxInfo`` entry (``loRaSNR``).
* ``status``: ``battery`` (``batteryLevel`` %) and ``signal`` (``margin``), as v4.
* ``error``: ``device_error`` (value and attrs ``code`` = the error ``type``).
* ``join``: ``heartbeat`` with ``join: true``; ``ack`` and others: ignored.

v3 payloads carry no device-profile name, so the profile comes from the registry (hints) or
a ``linli_profile`` device tag. The event time is the receive time (v3 uplinks have no
network-server time, only optional per-gateway times).

Traps handled here:

* Two marshalers: ``json_v3`` has a hex ``devEUI`` and a decoded ``object``; ``json``
  (Protobuf JSON) has a base64 ``devEUI`` and the decoded data as an escaped JSON *string*
  in ``objectJSON``, parsed a second time here.
* The deprecated 0–255 ``battery`` (0 = external power, 255 = not measurable) is ignored in
  favour of ``batteryLevel`` (percent).
* The docs' ``data: "..."`` is a placeholder, not base64: raw data is never decoded here.
"""

from __future__ import annotations

import base64
import binascii
from typing import Any

import orjson

from adapters._json import as_number, parse_object
from adapters._lorawan import resolve_profile, uplink_events, with_signal
from adapters.chirpstack_v4 import status_events
from adapters.errors import DecodeError
from adapters.events import DeviceHints, Event, EventKind
from adapters.profiles import ProfileSet

FAMILY = "chirpstack_v3"

Attrs = dict[str, float | bool | str]

_LEGACY_EVENTS = frozenset({"rx", "status", "join", "ack", "error"})
_HEX = frozenset("0123456789abcdef")


def _split(topic: str, base: str) -> tuple[str, str]:
    parts = topic[len(base) + 1 :].split("/")
    if len(parts) == 5 and parts[1] == "device" and parts[3] == "event" and all(parts):
        return parts[2].lower(), parts[4]
    if len(parts) == 4 and parts[1] == "device" and parts[3] in _LEGACY_EVENTS and all(parts):
        return parts[2].lower(), "up" if parts[3] == "rx" else parts[3]
    raise DecodeError("unknown_topic", "expected application/{id}/device/{eui}/event/{event}", topic=topic)


def eui_hex(value: object, topic: str) -> str:
    """A DevEUI as lower-case hex, from hex (``json_v3``) or base64 (Protobuf JSON)."""
    if not isinstance(value, str):
        raise DecodeError("wrong_type", "devEUI must be a string", topic=topic)
    lowered = value.lower()
    if len(lowered) == 16 and set(lowered) <= _HEX:
        return lowered
    try:
        raw = base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError):
        raw = b""
    if len(raw) != 8:
        raise DecodeError("bad_value", f"devEUI {value[:30]!r} is neither hex nor base64", topic=topic)
    return raw.hex()


def decode(
    topic: str, payload: bytes, received: float, hints: DeviceHints, *, base: str, profiles: ProfileSet
) -> list[Event]:
    """Decode one ChirpStack v3 message published under ``base`` (normally ``application``)."""
    eui, event = _split(topic, base)
    if event not in ("up", "status", "join", "error"):
        return []
    device_id = hints.registered_id(eui)  # the registry's copy, not this message's
    doc = parse_object(payload, topic)
    # eui_hex is lower case; the registry's copy may be upper case (Registry.registered_id).
    if "devEUI" in doc and eui_hex(doc["devEUI"], topic) != device_id.lower():
        raise DecodeError("bad_value", "devEUI does not match the topic", topic=topic)
    if event == "status":
        return status_events(device_id, doc, received, {}, topic, family=FAMILY)
    if event == "join":
        return [Event(device_id, EventKind.HEARTBEAT, received, FAMILY, None, {"join": True})]
    if event == "error":
        code = doc.get("type", "UNKNOWN")
        if not isinstance(code, str):
            raise DecodeError("wrong_type", "error type must be a string", topic=topic)
        attrs: Attrs = {"code": code[:60], "level": "ERROR"}
        if isinstance(doc.get("error"), str):
            attrs["description"] = doc["error"][:200]
        return [Event(device_id, EventKind.DEVICE_ERROR, received, FAMILY, code[:60], attrs)]
    return _uplink(device_id, doc, received, hints=hints, profiles=profiles, topic=topic)


def _decoded(doc: dict[str, Any], topic: str) -> object:
    if doc.get("object") is not None:
        return doc["object"]
    text = doc.get("objectJSON")
    if text is None or text == "":
        return None
    if not isinstance(text, str):
        raise DecodeError("wrong_type", "objectJSON must be a string", topic=topic)
    try:
        return orjson.loads(text)
    except orjson.JSONDecodeError as exc:
        raise DecodeError("malformed_json", f"objectJSON: {exc}", topic=topic) from None


def _uplink(
    device_id: str,
    doc: dict[str, Any],
    received: float,
    *,
    hints: DeviceHints,
    profiles: ProfileSet,
    topic: str,
) -> list[Event]:
    f_cnt = as_number(doc.get("fCnt", 0), "fCnt", topic)
    common: Attrs = {"f_cnt": f_cnt if f_cnt is not None else 0.0}
    tags = doc.get("tags")
    tag = tags.get("linli_profile") if isinstance(tags, dict) else None
    profile = resolve_profile(profiles, hints, device_id, topic, names=(tag,))
    events = uplink_events(
        profile,
        _decoded(doc, topic),
        device_id=device_id,
        ts=received,
        family=FAMILY,
        hints=hints,
        common=common,
        topic=topic,
        field="object",
        raw=doc.get("data"),
        raw_field="data",
    )
    return with_signal(
        events,
        doc.get("rxInfo"),
        rssi_keys=("rssi",),
        snr_key="loRaSNR",
        field="rxInfo",
        device_id=device_id,
        ts=received,
        family=FAMILY,
        common=common,
        topic=topic,
    )
