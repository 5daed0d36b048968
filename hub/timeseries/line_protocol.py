"""Points and their InfluxDB line-protocol encoding.

Escaping follows the line protocol reference
(https://docs.influxdata.com/influxdb/v1/write_protocols/line_protocol_reference/#special-characters
and, identically, https://docs.influxdata.com/influxdb/v2/reference/syntax/line-protocol/#special-characters):

* measurement: escape comma and space;
* tag keys, tag values and field keys: escape comma, equals sign and space;
* string field values: double-quoted, escape double quote and backslash;
* integers carry the ``i`` suffix, floats are written plainly, booleans as ``true``/``false``;
* the timestamp is integer nanoseconds (we keep microsecond resolution).

What the spec cannot carry is normalised instead of sent to fail: newlines become (escaped)
spaces (a newline ends a line), trailing backslashes of a name, key or tag value are removed (they
would escape the separator that follows; InfluxDB 1.6 refuses them even doubled), empty tag values (also those empty once escaped) are left out (the spec forbids them),
non-finite floats are left out (NaN/Inf are not representable), and a point with no field
left is invalid (:func:`encode` returns ``None``).
"""

from __future__ import annotations

import functools
import importlib.machinery
import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Final

FieldValue = bool | int | float | str

# A newline becomes an *escaped* space: a bare one ends the measurement or tag set mid-line
# (found in review: a native device's press attribute "a\rb" made its SOS press line refused).
_MEASUREMENT = str.maketrans({",": "\\,", " ": "\\ ", "\n": "\\ ", "\r": "\\ "})
_KEY = str.maketrans({",": "\\,", "=": "\\=", " ": "\\ ", "\n": "\\ ", "\r": "\\ "})


@dataclass(frozen=True, slots=True, kw_only=True, init=False)
class Point:
    """One point: a measurement, its tags (sorted pairs) and fields, at ``ts`` (Unix seconds)."""

    measurement: str
    tags: tuple[tuple[str, str], ...]
    fields: tuple[tuple[str, FieldValue], ...]
    ts: float
    #: ``measurement,tag=value…`` already escaped (:func:`encode_head`), when the caller has it
    #: cached (a device's tags are the same on every event); empty: :func:`encode` builds it.
    head: str = field(default="", compare=False, repr=False)

    def __init__(
        self,
        *,
        measurement: str,
        tags: tuple[tuple[str, str], ...],
        fields: tuple[tuple[str, FieldValue], ...],
        ts: float,
        head: str = "",
    ) -> None:
        # One point per door or occupancy report. As :class:`adapters.events.Event`: compiled,
        # the slots' own stores; interpreted, the slots' setters, not the frozen __init__'s
        # ``object.__setattr__`` per field.
        if _NATIVE:
            self.measurement = measurement  # type: ignore[misc]
            self.tags = tags  # type: ignore[misc]
            self.fields = fields  # type: ignore[misc]
            self.ts = ts  # type: ignore[misc]
            self.head = head  # type: ignore[misc]
        else:
            _SET_MEASUREMENT(self, measurement)
            _SET_TAGS(self, tags)
            _SET_FIELDS(self, fields)
            _SET_TS(self, ts)
            _SET_HEAD(self, head)

    @classmethod
    def of(
        cls, measurement: str, *, tags: Mapping[str, str], fields: Mapping[str, FieldValue], ts: float
    ) -> Point:
        """Build a point; tags are sorted by key (InfluxDB's recommended order) and empty ones dropped."""
        return cls(measurement=measurement, tags=sorted_tags(tags), fields=tuple(fields.items()), ts=ts)

    def tag(self, key: str) -> str | None:
        for k, v in self.tags:
            if k == key:
                return v
        return None

    def field(self, key: str) -> FieldValue | None:
        for k, v in self.fields:
            if k == key:
                return v
        return None


#: This module runs compiled (hub.ingest.hot_path): its own stores into a Point's slots work.
_NATIVE: Final = __file__.endswith(tuple(importlib.machinery.EXTENSION_SUFFIXES))
_SET_MEASUREMENT = vars(Point)["measurement"].__set__
_SET_TAGS = vars(Point)["tags"].__set__
_SET_FIELDS = vars(Point)["fields"].__set__
_SET_TS = vars(Point)["ts"].__set__
_SET_HEAD = vars(Point)["head"].__set__


def sorted_tags(tags: Mapping[str, str]) -> tuple[tuple[str, str], ...]:
    """Tags as a point holds them: sorted by key, empty values left out."""
    return tuple(sorted((k, v) for k, v in tags.items() if v))


def _trailing(escaped: str) -> str:
    # A backslash at the end would escape the separator that follows; InfluxDB 1.x rejects
    # even a doubled one ("invalid tag format"), so trailing backslashes are removed.
    return escaped.rstrip("\\")


def escape_measurement(name: str) -> str:
    return _trailing(name.translate(_MEASUREMENT))


def escape_key(text: str) -> str:
    """Escape a tag key, tag value or field key."""
    return _trailing(text.translate(_KEY))


def format_field(value: FieldValue) -> str | None:
    """The value's line-protocol text, or ``None`` when it cannot be represented (NaN, Inf)."""
    # Event points carry floats and integers: those first, by exact type (bool is an int, and
    # subclasses take the isinstance chain below), since the flusher formats every field.
    if type(value) is float:
        return repr(value) if math.isfinite(value) else None
    if type(value) is int:
        return f"{value}i"
    if isinstance(value, bool):  # before int: bool is an int
        return "true" if value else "false"
    if isinstance(value, int):
        return f"{value}i"
    if isinstance(value, float):
        return repr(value) if math.isfinite(value) else None
    text = value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", " ").replace("\r", " ")
    return f'"{text}"'


#: Line protocol's timestamps are signed 64-bit nanoseconds (1677-09-21 to 2262-04-11): a line
#: with a larger one is refused by the server, and with it the rest of its batch.
_NS_RANGE = (-(2**63), 2**63 - 1)


def timestamp_ns(ts: float) -> int:
    """Unix seconds → integer nanoseconds, rounded to the microsecond (a float's honest resolution).

    Raises ``ValueError`` (``OverflowError`` for an infinity) for a time line protocol cannot carry.
    """
    ns = round(ts * 1_000_000) * 1000
    if not _NS_RANGE[0] <= ns <= _NS_RANGE[1]:
        raise ValueError(f"time {ts!r} is outside line protocol's int64 nanoseconds (years 1677-2262)")
    return ns


def encode(point: Point) -> str | None:
    """One line of line protocol (no newline), or ``None`` if no field can be written.

    The writer's flusher runs this for every point on the event loop: a field key is escaped
    once per distinct key (the schema has a few dozen), not once per point, and
    :func:`format_field` takes floats and integers first (docs/benchmarks.md, "Thirteenth pass").
    """
    fields = []
    for key, value in point.fields:
        text = format_field(value)
        if text is not None:
            fields.append(f"{_field_key(key)}={text}")
    if not fields or not point.measurement:
        return None
    head = point.head or encode_head(point.measurement, point.tags)
    return f"{head} {','.join(fields)} {timestamp_ns(point.ts)}"


@functools.lru_cache(maxsize=1024)
def _field_key(key: str) -> str:
    """:func:`escape_key` for a field key, remembered: keys come from the schema, not from devices."""
    return escape_key(key)


def encode_head(measurement: str, tags: tuple[tuple[str, str], ...]) -> str:
    """The escaped ``measurement,tag=value,…`` part of a line (tags in the order given)."""
    head = escape_measurement(measurement)
    for key, value in tags:
        # Empty after escaping too (a value of backslashes only, found in review): the spec
        # forbids an empty tag value, and the server refused the line ("missing tag value").
        escaped = escape_key(value) if value else ""
        if escaped:
            head += f",{escape_key(key)}={escaped}"
    return head


def shape(line: str) -> str:
    """An encoded line's measurement and its fields' keys and types (``i``, ``u``, ``f``, ``s``, ``b``).

    Lines of one shape stand or fall together against a field type conflict, the refusal a
    running site meets (a field once written as an integer, now as a float): the writer sends a
    refused batch shape by shape before it bisects (:mod:`hub.timeseries.writer`). Any text is
    taken; a malformed line gets some shape of its own.
    """
    n = len(line)
    i = 0
    measurement_end = -1
    while i < n:  # the measurement and tags end at the first unescaped space
        char = line[i]
        if char == "\\":
            i += 2
            continue
        if char == "," and measurement_end < 0:
            measurement_end = i
        if char == " ":
            break
        i += 1
    parts = [line[: measurement_end if measurement_end >= 0 else i]]
    i += 1
    while i < n:
        start = i
        while i < n and line[i] != "=":  # a field key ends at its unescaped "="
            i += 2 if line[i] == "\\" else 1
        key = line[start:i]
        i += 1
        if i < n and line[i] == '"':
            kind = "s"
            i += 1
            while i < n and line[i] != '"':
                i += 2 if line[i] == "\\" else 1
            i += 1
        else:
            start = i
            while i < n and line[i] not in ", ":
                i += 1
            value = line[start:i]
            if value[:1] in ("t", "T", "f", "F"):
                kind = "b"
            elif value[-1:] in ("i", "u"):
                kind = value[-1:]
            else:
                kind = "f"
        parts.append(f"{key}={kind}")
        if i >= n or line[i] == " ":
            break
        i += 1
    return "\x00".join(parts)
