"""ChirpStack v4 MQTT integration (JSON marshaler).

Topics: ``application/{application_id}/device/{dev_eui}/event/{event}``; the application id is
a UUID and the DevEUI lower-case hex. Reference: chirpstack/chirpstack-docs
``src/chirpstack/integrations/mqtt.md`` and ``integrations/events.md``;
chirpstack/chirpstack ``api/proto/integration/integration.proto``.

Events (device id: ``deviceInfo.devEui``, lower-cased):

* ``up``: the profile's events from ``object`` (a heartbeat when there is none), plus a
  ``signal`` from the best ``rxInfo`` entry (value RSSI dBm, attrs ``snr``); attrs ``f_cnt``.
* ``status``: ``battery`` (``batteryLevel`` %, none when ``batteryLevelUnavailable``;
  attrs ``external_power``) and ``signal`` (value ``margin`` dB, attrs ``unit: margin_db``).
* ``log``: ``device_error`` (value and attrs ``code``; attrs ``level``, ``description``) for
  levels WARNING and ERROR; INFO is ignored.
* ``join``: ``heartbeat`` with ``join: true``.
* ``ack``, ``txack``, ``location``, ``integration``: ignored.

Profile choice: the registry's ``model`` (hints), else ``deviceInfo.tags.linli_profile``,
else ``deviceInfo.deviceProfileName``.

Traps handled here:

* ``object`` appears only when the device profile has a codec; a codec exception gives an
  uplink without ``object`` plus a separate ``log`` event with code ``UPLINK_CODEC``.
* Numbers in ``object`` are protobuf doubles (``12.0``): profile ``integer`` fields accept them.
* ``batteryLevel`` is a percent float; false flags (``externalPowerSource``) are left out.
* A v3 payload (no ``deviceInfo``) on a v4 topic is ``missing_field``, never a crash.
* ``deviceInfo.devEui`` must name the topic's DevEUI (case-insensitive), else ``bad_value``.
* Timestamps have nanosecond fractions and ``+00:00``.
"""

from __future__ import annotations

from typing import Any

from adapters._json import as_bool, as_number, event_time, parse_object, plausible_battery
from adapters._lorawan import resolve_profile, uplink_events, with_signal
from adapters.errors import DecodeError
from adapters.events import DeviceHints, Event, EventKind
from adapters.profiles import ProfileSet

FAMILY = "chirpstack_v4"

Attrs = dict[str, float | bool | str]

_HANDLED = frozenset({"up", "status", "log", "join"})
_LOG_LEVELS = frozenset({"WARNING", "ERROR"})
_ALL_LEVELS = frozenset({"INFO", "WARNING", "ERROR"})


def split_topic(topic: str, base: str) -> tuple[str, str]:
    """``(dev_eui, event)`` of ``{base}/{app}/device/{dev_eui}/event/{event}``."""
    parts = topic[len(base) + 1 :].split("/")
    if len(parts) != 5 or parts[1] != "device" or parts[3] != "event" or not all(parts):
        raise DecodeError(
            "unknown_topic", "expected application/{app}/device/{eui}/event/{event}", topic=topic
        )
    return parts[2].lower(), parts[4]


def decode(
    topic: str, payload: bytes, received: float, hints: DeviceHints, *, base: str, profiles: ProfileSet
) -> list[Event]:
    """Decode one ChirpStack v4 message published under ``base`` (normally ``application``)."""
    topic_eui, event = split_topic(topic, base)
    if event not in _HANDLED:  # ack, txack, location, integration, …
        return []
    doc = parse_object(payload, topic)
    info = doc.get("deviceInfo")
    if info is None:
        raise DecodeError("missing_field", "deviceInfo is missing (a ChirpStack v3 payload?)", topic=topic)
    if not isinstance(info, dict):
        raise DecodeError("wrong_type", "deviceInfo must be an object", topic=topic)
    dev_eui = info.get("devEui")
    if not isinstance(dev_eui, str) or not dev_eui:
        raise DecodeError("missing_field", "deviceInfo.devEui is missing", topic=topic)
    device_id = dev_eui.lower()
    if device_id != topic_eui:
        # The topic is what the broker's ACL authorised the publisher for; a payload naming
        # another device would let one device's credentials speak for any other (v3 and TTN
        # reject the same mismatch). Both sides are lower-cased: hex compared case-blind.
        raise DecodeError("bad_value", "deviceInfo.devEui does not match the topic", topic=topic)
    device_id = hints.registered_id(device_id)  # the registry's copy, not this message's
    ts, clamped = event_time(doc.get("time"), received, topic)
    common: Attrs = {"ts_clamped": True} if clamped else {}

    if event == "up":
        return _uplink(
            device_id, doc, info, ts=ts, common=common, hints=hints, profiles=profiles, topic=topic
        )
    if event == "status":
        return status_events(device_id, doc, ts, common, topic, family=FAMILY)
    if event == "log":
        return _log(device_id, doc, ts, common, topic)
    return [Event(device_id, EventKind.HEARTBEAT, ts, FAMILY, None, {"join": True, **common})]


def _uplink(
    device_id: str,
    doc: dict[str, Any],
    info: dict[str, Any],
    *,
    ts: float,
    common: Attrs,
    hints: DeviceHints,
    profiles: ProfileSet,
    topic: str,
) -> list[Event]:
    f_cnt = as_number(doc.get("fCnt", 0), "fCnt", topic)
    common = {**common, "f_cnt": f_cnt if f_cnt is not None else 0.0}
    tags = info.get("tags")
    tag = tags.get("linli_profile") if isinstance(tags, dict) else None
    profile = resolve_profile(profiles, hints, device_id, topic, names=(tag, info.get("deviceProfileName")))
    events = uplink_events(
        profile,
        doc.get("object"),
        device_id=device_id,
        ts=ts,
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
        snr_key="snr",
        field="rxInfo",
        device_id=device_id,
        ts=ts,
        family=FAMILY,
        common=common,
        topic=topic,
    )


def status_events(
    device_id: str, doc: dict[str, Any], ts: float, common: Attrs, topic: str, *, family: str
) -> list[Event]:
    """A ``status`` event (same shape in v3 and v4): battery % and link margin."""
    events: list[Event] = []
    level = as_number(doc.get("batteryLevel"), "batteryLevel", topic)
    unavailable = doc.get("batteryLevelUnavailable")
    external = doc.get("externalPowerSource")
    attrs: Attrs = dict(common)
    if external is not None and as_bool(external, "externalPowerSource", topic):
        attrs["external_power"] = True
    if unavailable is not None and as_bool(unavailable, "batteryLevelUnavailable", topic):
        level = None
        attrs["unavailable"] = True
    level, _ = plausible_battery(level, None, attrs)  # an impossible level is named, not believed
    if level is not None or len(attrs) > len(common):
        events.append(Event(device_id, EventKind.BATTERY, ts, family, level, attrs))
    margin = as_number(doc.get("margin"), "margin", topic)
    if margin is not None:
        events.append(Event(device_id, EventKind.SIGNAL, ts, family, margin, {"unit": "margin_db", **common}))
    if not events:
        events.append(Event(device_id, EventKind.HEARTBEAT, ts, family, None, common))
    return events


def _log(device_id: str, doc: dict[str, Any], ts: float, common: Attrs, topic: str) -> list[Event]:
    level = doc.get("level", "INFO")  # proto3 JSON leaves out the zero value (INFO)
    code = doc.get("code", "UNKNOWN")
    if not isinstance(level, str) or not isinstance(code, str):
        raise DecodeError("wrong_type", "log level and code must be strings", topic=topic)
    if level not in _ALL_LEVELS:
        raise DecodeError("bad_value", f"unknown log level {level[:20]!r}", topic=topic)
    if level not in _LOG_LEVELS:
        return []
    attrs: Attrs = {"code": code[:60], "level": level, **common}
    description = doc.get("description")
    if isinstance(description, str) and description:
        attrs["description"] = description[:200]
    return [Event(device_id, EventKind.DEVICE_ERROR, ts, FAMILY, code[:60], attrs)]
