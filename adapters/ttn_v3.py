"""The Things Stack v3 (The Things Network, TTS Cloud/Enterprise/Open Source) MQTT integration.

Topics: ``v3/{application_id}[@{tenant_id}]/devices/{device_id}/{event}``. On TTN the tenant
is ``ttn``; TTS Open Source has no ``@tenant`` part. The device id is the TTS *device ID*,
not the DevEUI. Reference: TheThingsIndustries/lorawan-stack-docs
``doc/content/integrations/mqtt/_index.md`` and ``integrations/data-formats/_index.md``.

Events:

* ``…/up``: the profile's events from ``uplink_message.decoded_payload`` (a heartbeat when
  there is none), plus a ``signal`` from the best gateway (value RSSI dBm, attrs ``snr``).
  Every event carries ``f_cnt``.
* ``…/join``: a ``heartbeat`` with ``join: true`` (the device (re)joined: it is alive and
  probably restarted).
* Anything else (``down/*``, ``service/data``, ``location/solved``, …): ignored.

Traps handled here:

* TTS leaves out fields that are zero, false or empty (``f_port``, ``f_cnt``): read with
  defaults. ``decoded_payload`` members keep their ``false``/``0``.
* ``decoded_payload`` exists only when a payload formatter is set; without it the uplink is a
  heartbeat (raw ``frm_payload`` is not decoded here).
* Simulated uplinks (``"simulated": true``) carry a zero-date inner ``received_at``: the
  event time falls back to the outer ``received_at`` / receive time, and every event gets
  ``attrs.simulated = true`` so rules can tell a console test from a real press.
* Packet Broker ``rx_metadata`` entries have no ``eui``/``timestamp``; RSSI may be only in
  ``channel_rssi``. Timestamps have nanosecond fractions and a ``Z`` suffix.
"""

from __future__ import annotations

from typing import Any

from adapters._json import as_number, event_time, parse_object
from adapters._lorawan import resolve_profile, uplink_events, with_signal
from adapters.errors import DecodeError
from adapters.events import DeviceHints, Event, EventKind
from adapters.profiles import ProfileSet

FAMILY = "ttn_v3"

Attrs = dict[str, float | bool | str]


def decode(
    topic: str, payload: bytes, received: float, hints: DeviceHints, *, base: str, profiles: ProfileSet
) -> list[Event]:
    """Decode one TTS message published under ``base`` (normally ``v3``)."""
    parts = topic[len(base) + 1 :].split("/")
    # {app}[@tenant] / devices / {device} / {event...}
    if len(parts) < 4 or parts[1] != "devices" or not parts[0] or not parts[2]:
        raise DecodeError("unknown_topic", "expected v3/{app}/devices/{device}/{event}", topic=topic)
    device_id = hints.registered_id(parts[2])  # the registry's copy, not the topic's slice
    event = "/".join(parts[3:])
    if event == "up":
        return _uplink(
            device_id, parse_object(payload, topic), received, hints=hints, profiles=profiles, topic=topic
        )
    if event == "join":
        doc = parse_object(payload, topic)
        ts, clamped = event_time(_str(doc.get("received_at")), received, topic)
        attrs: Attrs = {"join": True}
        if clamped:
            attrs["ts_clamped"] = True
        return [Event(device_id, EventKind.HEARTBEAT, ts, FAMILY, None, attrs)]
    return []


def _str(value: object) -> str | None:
    return value if isinstance(value, str) else None


def _object(doc: dict[str, Any], key: str, topic: str, *, required: bool = False) -> dict[str, Any] | None:
    value = doc.get(key)
    if value is None:
        if required:
            raise DecodeError("missing_field", f"{key} is missing", topic=topic)
        return None
    if not isinstance(value, dict):
        raise DecodeError("wrong_type", f"{key} must be an object, got {type(value).__name__}", topic=topic)
    return value


def _uplink(
    device_id: str,
    doc: dict[str, Any],
    received: float,
    *,
    hints: DeviceHints,
    profiles: ProfileSet,
    topic: str,
) -> list[Event]:
    uplink = _object(doc, "uplink_message", topic, required=True)
    assert uplink is not None
    simulated = doc.get("simulated") is True

    # The network server's receive time is the best "when" a LoRaWAN uplink has; the
    # application server's outer received_at is a fallback. A zero date (simulated uplinks)
    # is not a time: event_time ignores anything before 2000.
    device_time = _str(uplink.get("received_at"))
    ts, clamped = event_time(device_time, received, topic)
    if ts == received and not clamped:
        ts, clamped = event_time(_str(doc.get("received_at")), received, topic)

    common: Attrs = {}
    if clamped:
        common["ts_clamped"] = True
    if simulated:
        common["simulated"] = True
    f_cnt = as_number(uplink.get("f_cnt", 0), "f_cnt", topic)  # absent when zero
    common["f_cnt"] = f_cnt if f_cnt is not None else 0.0

    ids = _object(doc, "end_device_ids", topic)
    # Case-blind: the registry's copy may be a DevEUI registered in upper case (Registry.registered_id).
    if (
        ids is not None
        and isinstance(ids.get("device_id"), str)
        and ids["device_id"].lower() != device_id.lower()
    ):
        raise DecodeError("bad_value", "end_device_ids.device_id does not match the topic", topic=topic)
    version_ids = _object(uplink, "version_ids", topic)
    profile = resolve_profile(
        profiles,
        hints,
        device_id,
        topic,
        tts_ids=(version_ids.get("brand_id"), version_ids.get("model_id")) if version_ids else None,
    )
    events = uplink_events(
        profile,
        uplink.get("decoded_payload"),
        device_id=device_id,
        ts=ts,
        family=FAMILY,
        hints=hints,
        common=common,
        topic=topic,
        field="decoded_payload",
        raw=uplink.get("frm_payload"),
        raw_field="frm_payload",
    )
    return with_signal(
        events,
        uplink.get("rx_metadata"),
        rssi_keys=("rssi", "channel_rssi"),
        snr_key="snr",
        field="rx_metadata",
        device_id=device_id,
        ts=ts,
        family=FAMILY,
        common=common,
        topic=topic,
    )
