"""What the LoRaWAN network-server families share: profile choice, uplink events, best gateway."""

from __future__ import annotations

import base64
import binascii
from collections.abc import Mapping, Sequence
from typing import Any

from adapters import generic
from adapters._json import as_number
from adapters.errors import DecodeError
from adapters.events import DeviceHints, DeviceKind, Event, EventKind
from adapters.profiles import Profile, ProfileSet
from adapters.raw import decode_raw

Attrs = dict[str, float | bool | str]

#: Kinds that say nothing about the device's state: a message with only these is a heartbeat.
HEALTH_KINDS = frozenset({EventKind.BATTERY, EventKind.SIGNAL, EventKind.TEMPERATURE, EventKind.HUMIDITY})


def resolve_profile(
    profiles: ProfileSet,
    hints: DeviceHints,
    device_id: str,
    topic: str,
    *,
    tts_ids: tuple[object, object] | None = None,
    names: Sequence[object] = (),
) -> Profile | None:
    """The profile for a device: the registry's word first, then the envelope's metadata.

    A profile the registry names but Linli does not have is ``unknown_profile`` (a typo in the
    community file must be visible in the quarantine, not silently decode nothing).
    """
    hinted = hints.device_profile(device_id)
    if hinted:
        profile = profiles.get(hinted)
        if profile is None:
            raise DecodeError("unknown_profile", f"no device profile named {hinted[:60]!r}", topic=topic)
        return profile
    if tts_ids is not None:
        brand, model = tts_ids
        if isinstance(brand, str) and isinstance(model, str):
            profile = profiles.for_tts(brand, model)
            if profile is not None:
                return profile
    for name in names:
        if isinstance(name, str) and name:
            profile = profiles.get(name)
            if profile is not None:
                return profile
    return None


def uplink_events(
    profile: Profile | None,
    decoded: object,
    *,
    device_id: str,
    ts: float,
    family: str,
    hints: DeviceHints,
    common: Mapping[str, float | bool | str],
    topic: str,
    field: str,
    raw: object = None,
    raw_field: str = "",
) -> list[Event]:
    """Events of one uplink's decoded object, plus a heartbeat when it holds no state.

    Every uplink is a sign of life, so an uplink without a decoded object (no codec on the
    network server) is a heartbeat. Without a profile the decoded object gets the generic
    reading (:mod:`adapters.generic`); when that finds no state either, the heartbeat says
    ``profile: none``.

    ``raw`` (``raw_field``: its name in the envelope) is the uplink's base64 bytes. With no
    decoded object they are read by the profile's codec when it names one (:mod:`adapters.raw`).
    An SOS button's bytes nobody decoded are quarantined as ``undecoded_uplink`` (its
    heartbeat still counts): its press would otherwise be lost without a word.
    """
    events: list[Event] = []
    problem: DecodeError | None = None
    if decoded is None and raw is not None and profile is not None and profile.raw is not None:
        decoded, unread = decode_raw(profile.raw, _base64(raw, raw_field, topic))
        if unread:
            problem = DecodeError("bad_value", f"{raw_field}: {unread}", topic=topic)
    elif decoded is None and raw is not None and hints.device_kind(device_id) is DeviceKind.SOS_BUTTON:
        problem = DecodeError(
            "undecoded_uplink",
            f"an SOS button's uplink has only {raw_field} and no decoded object: install the device's"
            " codec on the network server, or name a profile Linli decodes raw (adapters/raw.py)",
            topic=topic,
        )
    if decoded is not None:
        if not isinstance(decoded, dict):
            raise DecodeError(
                "wrong_type", f"{field} must be an object, got {type(decoded).__name__}", topic=topic
            )
        if profile is not None:
            events = profile.apply(
                decoded, device_id=device_id, ts=ts, family=family, hints=hints, common=common, topic=topic
            )
        else:
            # No profile names this device: read the vendor's field conventions (adapters/generic.py).
            events = generic.read(
                decoded, device_id=device_id, ts=ts, family=family, hints=hints, common=common, topic=topic
            )
    if all(e.kind in HEALTH_KINDS for e in events):
        attrs: Attrs = dict(common)
        if decoded is None:
            attrs["decoded"] = False
        elif profile is None:
            attrs["profile"] = "none"
        events.append(Event(device_id, EventKind.HEARTBEAT, ts, family, None, attrs))
    if problem is not None:
        raise problem.keeping(events)
    return events


def _base64(raw: object, field: str, topic: str) -> bytes:
    if not isinstance(raw, str):
        raise DecodeError("wrong_type", f"{field} must be base64 text, got {type(raw).__name__}", topic=topic)
    try:
        return base64.b64decode(raw, validate=True)
    except (binascii.Error, ValueError):
        raise DecodeError("bad_value", f"{field} is not base64", topic=topic) from None


def best_gateway(
    entries: object, *, rssi_keys: Sequence[str], snr_key: str, field: str, topic: str
) -> tuple[float, float | None, int] | None:
    """``(rssi, snr, gateways)`` of the gateway that heard the uplink best, by SNR then RSSI.

    One uplink heard by several gateways is one uplink (SOURCES.md, ChirpStack node-red issue
    #1): pick one entry, do not emit one signal per gateway. Packet Broker entries have no
    ``eui`` or ``timestamp`` but do have ``rssi``/``snr``.
    """
    if entries is None:
        return None
    if not isinstance(entries, list):
        raise DecodeError("wrong_type", f"{field} must be a list", topic=topic)
    best: tuple[float, float, float | None] | None = None
    count = 0
    for entry in entries:
        if not isinstance(entry, dict):
            raise DecodeError("wrong_type", f"{field} entries must be objects", topic=topic)
        count += 1
        rssi = next(
            (v for v in (as_number(entry.get(k), f"{field}.{k}", topic) for k in rssi_keys) if v is not None),
            None,
        )
        snr = as_number(entry.get(snr_key), f"{field}.{snr_key}", topic)
        if rssi is None:
            continue
        key = (snr if snr is not None else float("-inf"), rssi, snr)
        if best is None or key[:2] > best[:2]:
            best = key
    if best is None:
        return None
    return best[1], best[2], count


def with_signal(
    events: list[Event],
    entries: object,
    *,
    rssi_keys: Sequence[str],
    snr_key: str,
    field: str,
    device_id: str,
    ts: float,
    family: str,
    common: Mapping[str, Any],
    topic: str,
) -> list[Event]:
    """``events`` and the uplink's signal event; bad gateway metadata is quarantined with the
    uplink's events salvaged (the signal is health: it must not cost a press)."""
    try:
        gateway = best_gateway(entries, rssi_keys=rssi_keys, snr_key=snr_key, field=field, topic=topic)
    except DecodeError as exc:
        raise exc.keeping(events) from None
    return events + signal_event(device_id, gateway, ts, family, common)


def signal_event(
    device_id: str,
    gateway: tuple[float, float | None, int] | None,
    ts: float,
    family: str,
    common: Mapping[str, Any],
) -> list[Event]:
    if gateway is None:
        return []
    rssi, snr, count = gateway
    attrs: Attrs = {"unit": "dBm", "gateways": float(count), **common}
    if snr is not None:
        attrs["snr"] = snr
    return [Event(device_id, EventKind.SIGNAL, ts, family, rssi, attrs)]
