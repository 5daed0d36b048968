"""The Linli native JSON decoder, and its agreement with the published JSON Schema."""

from __future__ import annotations

import json
import re
from datetime import datetime
from pathlib import Path
from typing import Any

import orjson
import pytest

from adapters import native
from adapters.errors import DecodeError
from adapters.events import EventKind, NoHints

NOW = 1_790_000_000.0
TOPIC = "linli/110105001001/devices/sos-17/events"
SCHEMA_PATH = Path(native.__file__).parent / "schemas" / "native-event.v1.schema.json"
SCHEMA: dict[str, Any] = json.loads(SCHEMA_PATH.read_text(encoding="utf-8"))


def run(payload: object, received: float = NOW) -> list[tuple[str, EventKind, object]]:
    events = native.decode(TOPIC, orjson.dumps(payload), received, NoHints(), base="linli")
    assert all(e.family == "native" for e in events)
    return [(e.device_id, e.kind, e.value) for e in events]


# -- a minimal JSON Schema 2020-12 validator for the keywords the schema uses ---------------

_ANNOTATIONS = {"$schema", "$id", "$defs", "title", "description"}


def _type_ok(value: Any, name: str) -> bool:
    if name == "null":
        return value is None
    if name == "boolean":
        return isinstance(value, bool)
    if name == "number":
        return isinstance(value, int | float) and not isinstance(value, bool)
    if name == "integer":
        return isinstance(value, int | float) and not isinstance(value, bool) and float(value).is_integer()
    if name == "string":
        return isinstance(value, str)
    if name == "array":
        return isinstance(value, list)
    if name == "object":
        return isinstance(value, dict)
    raise AssertionError(f"unknown type {name}")


def valid(value: Any, schema: dict[str, Any] | bool = SCHEMA) -> bool:
    if schema is True:
        return True
    if schema is False:
        return False
    assert isinstance(schema, dict)
    for key, rule in schema.items():
        if key in _ANNOTATIONS:
            continue
        if key == "$ref":
            assert rule.startswith("#/$defs/")
            if not valid(value, SCHEMA["$defs"][rule.removeprefix("#/$defs/")]):
                return False
        elif key == "oneOf":
            if sum(valid(value, sub) for sub in rule) != 1:
                return False
        elif key == "type":
            names = rule if isinstance(rule, list) else [rule]
            if not any(_type_ok(value, n) for n in names):
                return False
        elif key == "const":
            if not (value == rule and isinstance(value, bool) == isinstance(rule, bool)):
                return False
        elif key == "enum":
            if value not in rule:
                return False
        elif key in ("minItems", "maxItems", "items"):
            if isinstance(value, list):
                if key == "minItems" and len(value) < rule:
                    return False
                if key == "maxItems" and len(value) > rule:
                    return False
                if key == "items" and not all(valid(v, rule) for v in value):
                    return False
        elif key in ("required", "properties", "additionalProperties", "maxProperties", "propertyNames"):
            if isinstance(value, dict):
                props = schema.get("properties", {})
                if key == "required" and not all(r in value for r in rule):
                    return False
                if key == "properties" and not all(valid(value[k], s) for k, s in rule.items() if k in value):
                    return False
                if key == "additionalProperties" and not all(
                    valid(v, rule) for k, v in value.items() if k not in props
                ):
                    return False
                if key == "maxProperties" and len(value) > rule:
                    return False
                if key == "propertyNames" and not all(valid(k, rule) for k in value):
                    return False
        elif key in ("minLength", "maxLength", "pattern", "format"):
            if isinstance(value, str):
                if key == "minLength" and len(value) < rule:
                    return False
                if key == "maxLength" and len(value) > rule:
                    return False
                if key == "pattern" and re.search(rule, value) is None:
                    return False
                if key == "format":
                    assert rule == "date-time"
                    try:
                        datetime.fromisoformat(value)
                    except ValueError:
                        return False
        elif key == "minimum":
            if _type_ok(value, "number") and value < rule:
                return False
        else:
            raise AssertionError(f"the test validator does not know the keyword {key!r}: extend it")
    return True


def decoder_accepts(payload: Any) -> bool:
    try:
        native.decode(TOPIC, orjson.dumps(payload), NOW, NoHints(), base="linli")
    except DecodeError:
        return False
    return True


EV: dict[str, Any] = {"v": 1, "kind": "sos_press"}
VALID: list[Any] = [
    EV,
    {"v": 1, "kind": "battery", "ts": 1_789_999_000, "value": 88.5, "attrs": {"volts": 2.9, "low": False}},
    [
        {"v": 1, "kind": "door_open", "ts": "2026-05-01T08:00:00+08:00", "value": True},
        {"v": 1, "kind": "heartbeat"},
    ],
    {"v": 1, "kind": "signal", "value": -70, "attrs": {"unit": "dBm"}},
    {"v": 1, "kind": "device_error", "value": None, "ts": "2026-05-01T00:00:00.123456789Z"},
    {"v": 1.0, "kind": "heartbeat"},
    [EV] * 100,
]
INVALID: list[tuple[Any, str]] = [
    ({"kind": "sos_press"}, "missing_field"),
    ({"v": 1}, "missing_field"),
    ({"v": 2, "kind": "sos_press"}, "bad_value"),
    ({"v": True, "kind": "sos_press"}, "wrong_type"),
    ({"v": 1, "kind": "explode"}, "bad_value"),
    ({"v": 1, "kind": 3}, "wrong_type"),
    ({**EV, "extra": 1}, "unknown_field"),
    ({**EV, "device_id": "x"}, "unknown_field"),
    ({**EV, "ts": "yesterday"}, "bad_value"),
    ({**EV, "ts": "2026-05-01T08:00:00"}, "bad_value"),
    ({**EV, "ts": "2026-05-01 08:00:00Z"}, "bad_value"),
    ({**EV, "ts": "2026-13-01T08:00:00Z"}, "bad_value"),
    ({**EV, "ts": "2026-05-01T08:00:00Z\n"}, "bad_value"),
    ({**EV, "ts": -5}, "bad_value"),
    ({**EV, "ts": True}, "wrong_type"),
    ({**EV, "value": [1]}, "wrong_type"),
    ({**EV, "value": "x" * 201}, "bad_value"),
    ({**EV, "attrs": []}, "wrong_type"),
    ({**EV, "attrs": {"a": {"b": 1}}}, "wrong_type"),
    ({**EV, "attrs": {"a": None}}, "wrong_type"),
    ({**EV, "attrs": {"": 1}}, "bad_value"),
    ({**EV, "attrs": {f"k{i}": i for i in range(33)}}, "bad_value"),
    ([], "bad_value"),
    ([EV] * 101, "bad_value"),
    ([EV, 1], "not_an_object"),
    ("text", "not_an_object"),
    (5, "not_an_object"),
]


def test_schema_kind_enum_is_event_kind() -> None:
    kinds = SCHEMA["$defs"]["event"]["properties"]["kind"]["enum"]
    assert kinds == [k.value for k in EventKind]


def test_schema_limits_match_the_decoder() -> None:
    event = SCHEMA["$defs"]["event"]
    assert SCHEMA["oneOf"][1]["maxItems"] == native.MAX_EVENTS
    assert event["properties"]["attrs"]["maxProperties"] == native.MAX_ATTRS
    assert event["properties"]["value"]["maxLength"] == native.MAX_STRING
    assert event["properties"]["ts"]["oneOf"][0]["pattern"] == native.RFC3339.pattern
    assert set(event["properties"]) == native._KEYS
    assert event["required"] == ["v", "kind"]


@pytest.mark.parametrize("payload", VALID, ids=range(len(VALID)))
def test_valid_examples_pass_schema_and_decoder(payload: Any) -> None:
    assert valid(payload)
    assert decoder_accepts(payload)


@pytest.mark.parametrize(("payload", "reason"), INVALID, ids=[str(i) for i in range(len(INVALID))])
def test_invalid_examples_fail_schema_and_decoder(payload: Any, reason: str) -> None:
    assert not valid(payload)
    with pytest.raises(DecodeError) as info:
        native.decode(TOPIC, orjson.dumps(payload), NOW, NoHints(), base="linli")
    assert info.value.reason == reason


def test_events_and_times() -> None:
    assert run(EV) == [("sos-17", EventKind.SOS_PRESS, None)]
    payload = [
        {"v": 1, "kind": "door_open", "ts": "2026-05-01T08:00:00+08:00", "value": True},
        {"v": 1, "kind": "battery", "value": 80},
    ]
    events = native.decode(TOPIC, orjson.dumps(payload), NOW, NoHints(), base="linli")
    assert events[0].ts == 1777593600.0
    assert events[1].ts == NOW
    assert events[1].value == 80.0 and isinstance(events[1].value, float)


@pytest.mark.parametrize("ts", [NOW + 3600, "2027-01-01T00:00:00Z", NOW * 1000])
def test_future_time_is_clamped(ts: object) -> None:
    (event,) = native.decode(TOPIC, orjson.dumps({**EV, "ts": ts}), NOW, NoHints(), base="linli")
    assert event.ts == NOW
    assert event.attrs["ts_clamped"] is True


@pytest.mark.parametrize("ahead", [1.0, 150.0, 299.0, 300.0])
def test_slightly_future_time_becomes_the_receive_time(ahead: float) -> None:
    # Within the skew a device time used to be kept: an SOS dated +299 s then made every real
    # press of the next five minutes "late" for the rules. It is now capped, not flagged
    # (a clock a little fast is drift, not a fault).
    for ts in (NOW + ahead, datetime.fromtimestamp(NOW + ahead).astimezone().isoformat()):
        (event,) = native.decode(TOPIC, orjson.dumps({**EV, "ts": ts}), NOW, NoHints(), base="linli")
        assert event.ts == NOW
        assert "ts_clamped" not in event.attrs


def test_malformed_json_and_bad_topics() -> None:
    with pytest.raises(DecodeError) as info:
        native.decode(TOPIC, b"{", NOW, NoHints(), base="linli")
    assert info.value.reason == "malformed_json"
    for topic in (
        "linli/c/workers/p/notifications",
        "linli/c/devices/a/b/events",
        "linli/command-centre/notifications",
    ):
        with pytest.raises(DecodeError) as info:
            native.decode(topic, orjson.dumps(EV), NOW, NoHints(), base="linli")
        assert info.value.reason == "unknown_topic"


def test_schema_is_draft_2020_12() -> None:
    assert SCHEMA["$schema"] == "https://json-schema.org/draft/2020-12/schema"


@pytest.mark.parametrize(
    ("doc", "value", "attrs"),
    [
        ({"value": -1}, None, {}),
        ({"value": 101, "attrs": {"volts": 3.0}}, None, {"volts": 3.0}),
        ({"value": 50, "attrs": {"volts": -5}}, 50.0, {}),
        ({"value": 50, "attrs": {"volts": 3.0}}, 50.0, {"volts": 3.0}),
    ],
)
def test_impossible_battery_readings_are_dropped_and_named(
    doc: dict[str, object], value: float | None, attrs: dict[str, float]
) -> None:
    (event,) = native.decode(
        TOPIC, orjson.dumps({"v": 1, "kind": "battery", **doc}), NOW, NoHints(), base="linli"
    )
    assert event.value == value
    assert {k: v for k, v in event.attrs.items() if k != "implausible"} == attrs
    assert ("implausible" in event.attrs) is (doc != {"value": 50, "attrs": {"volts": 3.0}})


def test_common_battery_readings_are_one_object_per_value() -> None:
    # A hub keeps every device's last reading: whole percents and millivolt voltages are one
    # float object each (adapters._json), on the compiled build too (make unit-compiled).
    def battery(doc: dict[str, object]) -> tuple[object, object]:
        (event,) = native.decode(
            TOPIC, orjson.dumps({"v": 1, "kind": "battery", **doc}), NOW, NoHints(), base="linli"
        )
        return event.value, event.attrs.get("volts")

    first = battery({"value": 80, "attrs": {"volts": 3.1}})
    second = battery({"value": 80.0, "attrs": {"volts": 3.1}})
    assert first == second == (80.0, 3.1)
    assert first[0] is second[0] and first[1] is second[1]
    assert battery({"value": 80.5, "attrs": {"volts": 3.1004}}) == (80.5, 3.1004)
