"""Schema invariants, pure event → point functions, and the embedded SQLite sink."""

from __future__ import annotations

from pathlib import Path

import pytest

from adapters.events import Event, EventKind
from hub.clock import ManualClock
from hub.timeseries import (
    Aggregate,
    EventSeries,
    Measurement,
    Point,
    SqliteSink,
    SubjectInfo,
    TimeseriesSettings,
    encode,
    event_points,
    open_sink,
    query_series,
)
from hub.timeseries.schema import FIELDS, TAGS

INFO = SubjectInfo(
    community="c1", grid="g1", building="1号楼", device_kind="door_sensor", model="m", care="living_alone"
)


def test_every_measurement_has_fixed_tags_and_typed_fields_and_no_key_is_both() -> None:
    assert set(TAGS) == set(Measurement) == set(FIELDS)
    for m in Measurement:
        assert not set(TAGS[m]) & set(FIELDS[m]), m


@pytest.mark.parametrize("kind", list(EventKind))
def test_event_points_conform_to_the_schema(kind: EventKind) -> None:
    value: float | bool | str | None = {EventKind.OCCUPANCY: True, EventKind.MOTION: True}.get(kind, 42.0)
    event = Event("dev-1", kind, 1_700_000_000.0, "z2m", value, {"volts": 2.9, "snr": 7.5, "code": "MIC"})
    for point in event_points(event, INFO):
        m = Measurement(point.measurement)
        assert {k for k, _ in point.tags} <= set(TAGS[m])
        for key, v in point.fields:
            assert type(v) is FIELDS[m][key], (kind, key, v)
        assert encode(point) is not None


@pytest.mark.parametrize("kind", list(EventKind))
def test_cached_event_series_gives_the_same_points_and_lines_as_event_points(kind: EventKind) -> None:
    value: float | bool | str | None = {EventKind.OCCUPANCY: True, EventKind.SOS_PRESS: "single"}.get(
        kind, 42.0
    )
    series = EventSeries()
    # Tags that need escaping: the cached head must be escaped exactly as encode() does it.
    info = SubjectInfo(community="c 1", grid="g=1", building="1号楼,A", device_kind="door_sensor", model="m")
    for i in range(3):  # the first builds the cache entry, the others reuse it
        event = Event("dev,1", kind, 1_700_000_000.0 + i, "z2m", value, {"volts": 2.9, "snr": 7.5})
        expected = event_points(event, info)
        got = series.points(event, info)
        assert got == expected
        assert [encode(p) for p in got] == [encode(p) for p in expected]
    # A registry reload hands out a new SubjectInfo: the device's tags are built anew.
    moved = SubjectInfo(community="c 1", grid="g2", device_kind="door_sensor")
    event = Event("dev,1", kind, 1_700_000_010.0, "z2m", value, {"volts": 2.9})
    assert [encode(p) for p in series.points(event, moved)] == [encode(p) for p in event_points(event, moved)]


def test_event_series_cache_is_bounded_and_drops_the_oldest() -> None:
    series = EventSeries(limit=10)
    for i in range(25):
        series.points(Event(f"d{i}", EventKind.DOOR_OPEN, 1_700_000_000.0, "z2m"), INFO)
        assert len(series) <= 10
    assert len(series) == 10
    # The newest ten are kept: d15…d24 hit the cache (same head object), d0 is built again.
    head = series.points(Event("d24", EventKind.DOOR_OPEN, 1_700_000_001.0, "z2m"), INFO)[0].head
    assert series.points(Event("d24", EventKind.DOOR_OPEN, 1_700_000_002.0, "z2m"), INFO)[0].head is head
    assert len(series) == 10
    series.points(Event("d0", EventKind.DOOR_OPEN, 1_700_000_003.0, "z2m"), INFO)
    assert len(series) == 10


def test_event_series_entries_share_the_tag_pairs_neighbours_have_in_common() -> None:
    series = EventSeries(limit=10)
    first = series.points(Event("d1", EventKind.DOOR_OPEN, 1_700_000_000.0, "z2m"), INFO)[0]
    second = series.points(Event("d2", EventKind.DOOR_OPEN, 1_700_000_000.0, "z2m"), INFO)[0]
    assert first.tags == event_points(Event("d1", EventKind.DOOR_OPEN, 1_700_000_000.0, "z2m"), INFO)[0].tags
    shared = {k: pair for pair in first.tags if (k := pair[0]) != "device_id"}
    assert len(shared) >= 5
    for pair in second.tags:
        if pair[0] == "device_id":
            assert pair == ("device_id", "d2")
        else:
            assert pair is shared[pair[0]], pair  # one object for both devices, not a copy each
    # Bounded like the cache (past the limit it starts over, so at most one entry's pairs more):
    # many devices with tags of their own never grow it without end.
    for i in range(50):
        info = SubjectInfo(community="c1", grid=f"g{i}", building=f"b{i}", device_kind="door_sensor")
        series.points(Event(f"x{i}", EventKind.DOOR_OPEN, 1_700_000_000.0, "z2m"), info)
        assert len(series._pairs) <= 10 + len(TAGS[Measurement.DOOR])


def test_line_protocol_escaping_and_integer_suffix() -> None:
    point = Point.of(
        "door", tags={"building": "1号 楼,A=B"}, fields={"open": 1, "t": 'a"b\\c', "x": 0.5}, ts=1.5
    )
    assert encode(point) == 'door,building=1号\\ 楼\\,A\\=B open=1i,t="a\\"b\\\\c",x=0.5 1500000000'


async def test_sqlite_sink_queries_buckets_and_prunes(tmp_path: Path) -> None:
    # A fixed instant: the sink prunes by the clock it is given, so the test is the same any day.
    now = 1_790_000_000.0
    sink = open_sink(TimeseriesSettings(), data_dir=tmp_path, clock=ManualClock(start=now))
    assert isinstance(sink, SqliteSink)
    await sink.start()
    # Buckets start at multiples of their size (Unix time): align to two hours, or the two-hour
    # bucket below would split depending on the hour the test runs in.
    t0 = now - now % 7200 - 2 * 7200
    old = SubjectInfo(community="c1", grid="g1", device_kind="door_sensor")
    sink.write_many(
        event_points(Event("old", EventKind.DOOR_OPEN, now - 8 * 86400, "z2m"), old)
    )  # beyond 7 days
    for i in range(120):
        grid = "g1" if i % 2 else "g2"
        info = SubjectInfo(community="c1", grid=grid, device_kind="door_sensor")
        sink.write_many(event_points(Event(f"d{i % 4}", EventKind.DOOR_OPEN, t0 + i * 60, "z2m"), info))
    await sink.stop()
    series = query_series(
        tmp_path / "timeseries.sqlite",
        measurement="door",
        field="open",
        start=t0,
        end=t0 + 7200,
        bucket_s=3600,
        aggregate=Aggregate.COUNT,
        group_by="grid",
    )
    assert {s.group: s.points for s in series} == {
        "g1": ((t0, 30.0), (t0 + 3600, 30.0)),
        "g2": ((t0, 30.0), (t0 + 3600, 30.0)),
    }
    only = query_series(
        tmp_path / "timeseries.sqlite",
        measurement="door",
        field="open",
        start=t0,
        end=t0 + 7200,
        bucket_s=7200,
        aggregate=Aggregate.SUM,
        where={"grid": "g1"},
    )
    assert only[0].points == ((t0, 60.0),)
    pruned = query_series(
        tmp_path / "timeseries.sqlite",
        measurement="door",
        field="open",
        start=0,
        end=now,
        bucket_s=86400 * 365,
        aggregate=Aggregate.COUNT,
    )
    assert pruned[0].points[0][1] == 120.0  # the 8-day-old point fell to retention
