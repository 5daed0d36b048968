"""``encode``'s fast paths (floats, integers, remembered field keys) against the plain rules.

The reference below is ``encode`` as it was before the fast paths: every value through the
``isinstance`` chain ``format_field`` had then (copied here), every key through
:func:`escape_key`. Both must give the same line for
any point, including the values the fast paths hand back (bools, int and float subclasses,
NaN and infinities, strings) and keys that need escaping.
"""

from __future__ import annotations

import enum
import math

from hypothesis import given
from hypothesis import strategies as st

from hub.timeseries.line_protocol import (
    FieldValue,
    Point,
    encode,
    encode_head,
    escape_key,
    format_field,
    timestamp_ns,
)


class _Level(enum.IntEnum):
    LOW = 1


class _Ratio(float):
    pass


def reference_field(value: FieldValue) -> str | None:
    if isinstance(value, bool):  # before int: bool is an int
        return "true" if value else "false"
    if isinstance(value, int):
        return f"{value}i"
    if isinstance(value, float):
        return repr(value) if math.isfinite(value) else None
    text = value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", " ").replace("\r", " ")
    return f'"{text}"'


def reference(point: Point) -> str | None:
    fields = []
    for key, value in point.fields:
        text = reference_field(value)
        if text is not None:
            fields.append(f"{escape_key(key)}={text}")
    if not fields or not point.measurement:
        return None
    head = point.head or encode_head(point.measurement, point.tags)
    return f"{head} {','.join(fields)} {timestamp_ns(point.ts)}"


_keys = st.sampled_from(["open", "battery_pct", "a b", "x,y", "k=v", "tail\\", "名 字", ""]) | st.text(
    max_size=8
)
_values: st.SearchStrategy[FieldValue] = st.one_of(
    st.booleans(),
    st.integers(min_value=-(2**63), max_value=2**63 - 1),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=8),
    st.just(_Level.LOW),
    st.floats(allow_nan=True, allow_infinity=True).map(_Ratio),
)


@given(
    measurement=st.sampled_from(["door", "device_health", "", "a b"]),
    fields=st.lists(st.tuples(_keys, _values), max_size=4),
    ts=st.floats(min_value=0, max_value=4e9),
    cached=st.booleans(),
)
def test_encode_matches_the_plain_rules(
    measurement: str, fields: list[tuple[str, FieldValue]], ts: float, cached: bool
) -> None:
    tags = (("community", "c 1"), ("device", "d,1"))
    point = Point(
        measurement=measurement,
        tags=tags,
        fields=tuple(fields),
        ts=ts,
        head=encode_head(measurement, tags) if cached else "",
    )
    assert encode(point) == reference(point)


def test_bools_are_not_integers_and_non_finite_floats_are_left_out() -> None:
    point = Point(
        measurement="m",
        tags=(),
        fields=(("ok", True), ("n", 3), ("x", float("nan")), ("y", float("-inf")), ("z", 0.5)),
        ts=1.5,
    )
    assert encode(point) == "m ok=true,n=3i,z=0.5 1500000000"


@given(value=_values)
def test_format_field_matches_the_plain_rules(value: FieldValue) -> None:
    assert format_field(value) == reference_field(value)
