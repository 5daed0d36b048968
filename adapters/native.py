"""Linli native JSON: devices (or integrations) that speak Linli's own event vocabulary.

Topic: ``linli/<community>/devices/<device_id>/events`` (``linli`` is the family's base topic;
``<device_id>`` is one topic level). Payload: one event object or a list of 1–100, as defined
by ``adapters/schemas/native-event.v1.schema.json`` (JSON Schema 2020-12)::

    {"v": 1, "kind": "sos_press", "ts": "2026-05-01T08:00:00+08:00", "value": "single",
     "attrs": {"press": "single"}}

The schema is checked by hand here (no JSON Schema library at run time); a test keeps the two
in step. Reasons: ``malformed_json``, ``not_an_object`` (a scalar payload or a list item that
is not an object), ``missing_field`` (``v``, ``kind``), ``unknown_field``, ``wrong_type``,
``bad_value`` (unsupported ``v``, unknown ``kind``, bad time, too long, empty or too long a
list). In a list each item stands on its own: a bad one quarantines the message with its reason
and index, and the good ones are handled (an SOS press is not lost to a bad neighbour).

``ts`` is RFC 3339 with an offset or epoch seconds; absent → receive time; later than the
receive time → receive time (more than 300 s later: also ``attrs.ts_clamped``). Integers become floats.
"""

from __future__ import annotations

import math
import re
from datetime import datetime
from typing import Any

import orjson

from adapters._json import device_time, event_time, plausible_battery, put_volts
from adapters.errors import DecodeError
from adapters.events import DeviceHints, Event, EventKind

FAMILY = "native"
SCHEMA_VERSION = 1
MAX_EVENTS = 100
MAX_ATTRS = 32
MAX_STRING = 200
MAX_KEY = 64
MAX_TS_STRING = 40

#: RFC 3339 date-time with an offset; the same pattern as the schema's (a test checks).
RFC3339 = re.compile(
    r"^[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}(\.[0-9]{1,9})?(Z|[+-][0-9]{2}:[0-9]{2})$"
)
_KEYS = frozenset({"v", "kind", "ts", "value", "attrs"})
_KINDS = {kind.value: kind for kind in EventKind}

Attrs = dict[str, float | bool | str]


def decode(topic: str, payload: bytes, received: float, hints: DeviceHints, *, base: str) -> list[Event]:
    """Decode one native message published under ``base`` (normally ``linli``)."""
    parts = topic[len(base) + 1 :].split("/")
    if len(parts) != 4 or parts[1] != "devices" or parts[3] != "events" or not parts[0] or not parts[2]:
        raise DecodeError(
            "unknown_topic", "expected linli/<community>/devices/<device_id>/events", topic=topic
        )
    device_id = hints.registered_id(parts[2])  # the registry's copy, not the topic's slice
    try:
        doc = orjson.loads(payload)
    except orjson.JSONDecodeError as exc:
        raise DecodeError("malformed_json", str(exc), topic=topic) from None
    if isinstance(doc, list):
        if not doc:
            raise DecodeError("bad_value", "an event list must not be empty", topic=topic)
        if len(doc) > MAX_EVENTS:
            raise DecodeError("bad_value", f"at most {MAX_EVENTS} events per message", topic=topic)
        return _batch(device_id, doc, received, topic)
    return [_event(device_id, doc, received, topic, "")]


def _batch(device_id: str, items: list[Any], received: float, topic: str) -> list[Event]:
    """Every item decoded on its own: a bad one quarantines the message (the first one's reason,
    and how many were bad), and the good ones are still handled (an SOS beside it is not lost)."""
    events: list[Event] = []
    first: DecodeError | None = None
    bad = 0
    for index, item in enumerate(items):
        try:
            events.append(_event(device_id, item, received, topic, f"[{index}]"))
        except DecodeError as exc:
            bad += 1
            first = first or exc
    if first is None:
        return events
    detail = first.detail if bad == 1 else f"{first.detail} (and {bad - 1} more bad events)"
    raise DecodeError(
        first.reason, f"{detail}; {len(events)} of {len(items)} kept", topic=topic, salvaged=tuple(events)
    )


def _event(device_id: str, item: object, received: float, topic: str, where: str) -> Event:
    if not isinstance(item, dict):
        raise DecodeError("not_an_object", f"event{where} must be a JSON object", topic=topic)
    for key in item:
        if key not in _KEYS:
            raise DecodeError("unknown_field", f"event{where} has an unknown field {key[:40]!r}", topic=topic)
    if "v" not in item:
        raise DecodeError("missing_field", f"event{where}.v is missing", topic=topic)
    version = item["v"]
    if isinstance(version, bool) or not isinstance(version, int | float):
        raise DecodeError("wrong_type", f"event{where}.v must be a number", topic=topic)
    if version != SCHEMA_VERSION:
        raise DecodeError("bad_value", f"event{where}.v {version} is not supported (only 1)", topic=topic)
    if "kind" not in item:
        raise DecodeError("missing_field", f"event{where}.kind is missing", topic=topic)
    kind_name = item["kind"]
    if not isinstance(kind_name, str):
        raise DecodeError("wrong_type", f"event{where}.kind must be a string", topic=topic)
    kind = _KINDS.get(kind_name)
    if kind is None:
        raise DecodeError("bad_value", f"event{where}.kind {kind_name[:40]!r} is unknown", topic=topic)

    ts, clamped = _ts(item.get("ts"), received, topic, where)
    attrs = _attrs(item.get("attrs"), topic, where)
    if clamped:
        attrs["ts_clamped"] = True
    value = _scalar(item.get("value"), f"event{where}.value", topic, allow_null=True)
    if kind is EventKind.BATTERY:
        value = _battery(value, attrs)
    return Event(device_id, kind, ts, FAMILY, value, attrs)


def _battery(value: float | bool | str | None, attrs: Attrs) -> float | bool | str | None:
    """A battery event's percent (``value``) and ``attrs.volts``, impossible ones dropped and named.

    Only numbers are checked: other types are not readings the rules compare anyway.
    """
    # The value as ``Any``: compiled, a float narrowed by ``isinstance`` is passed on as a new
    # object. (The voltage is narrowed here, but ``plausible_battery`` returns the shared
    # object for a common reading, which ``put_volts`` stores as it is.)
    number: Any = value
    reading: Any = attrs.get("volts")
    is_percent = isinstance(value, float)
    checked, kept = plausible_battery(
        number if is_percent else None, reading if isinstance(reading, float) else None, attrs
    )
    if isinstance(reading, float):
        put_volts(attrs, kept)  # the shared reading in place of the message's own
        if kept is None:
            del attrs["volts"]
    return checked if is_percent else value


def _ts(raw: object, received: float, topic: str, where: str) -> tuple[float, bool]:
    if raw is None:
        return received, False
    if isinstance(raw, str):
        if len(raw) > MAX_TS_STRING:
            raise DecodeError("bad_value", f"event{where}.ts is too long", topic=topic)
        parsed = None
        if RFC3339.fullmatch(raw):  # fullmatch: Python `$` also matches before a final newline
            try:
                parsed = datetime.fromisoformat(raw)
            except ValueError:
                parsed = None
        if parsed is None or parsed.tzinfo is None:
            raise DecodeError("bad_value", f"event{where}.ts must be RFC 3339 with an offset", topic=topic)
        return event_time(raw, received, topic)
    if isinstance(raw, bool) or not isinstance(raw, int | float):
        raise DecodeError("wrong_type", f"event{where}.ts must be a string or a number", topic=topic)
    if raw < 0 or not math.isfinite(raw):
        raise DecodeError("bad_value", f"event{where}.ts must be epoch seconds >= 0", topic=topic)
    # Epoch *seconds* (no millisecond guessing): a millisecond value is far in the future
    # and is clamped like any other future time; a time slightly ahead is capped at the
    # receive time (the shared rule of adapters._json.device_time).
    return device_time(float(raw), received)


def _scalar(raw: object, field: str, topic: str, *, allow_null: bool) -> float | bool | str | None:
    if raw is None and allow_null:
        return None
    if isinstance(raw, bool):
        return raw
    if isinstance(raw, int | float):
        number = float(raw)
        if not math.isfinite(number):
            raise DecodeError("bad_value", f"{field} must be finite", topic=topic)
        return number
    if isinstance(raw, str):
        if len(raw) > MAX_STRING:
            raise DecodeError("bad_value", f"{field} is longer than {MAX_STRING} characters", topic=topic)
        return raw
    raise DecodeError("wrong_type", f"{field} must be a boolean, number or string", topic=topic)


def _attrs(raw: object, topic: str, where: str) -> Attrs:
    if raw is None:
        return {}
    if not isinstance(raw, dict):
        raise DecodeError("wrong_type", f"event{where}.attrs must be an object", topic=topic)
    if len(raw) > MAX_ATTRS:
        raise DecodeError("bad_value", f"event{where}.attrs has more than {MAX_ATTRS} entries", topic=topic)
    attrs: Attrs = {}
    items: dict[str, Any] = raw
    for key, value in items.items():
        if not 1 <= len(key) <= MAX_KEY:
            raise DecodeError("bad_value", f"event{where}.attrs key length must be 1–{MAX_KEY}", topic=topic)
        scalar = _scalar(value, f"event{where}.attrs.{key[:40]}", topic, allow_null=False)
        assert scalar is not None
        attrs[key] = scalar
    return attrs
