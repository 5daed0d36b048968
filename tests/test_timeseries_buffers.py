"""What the time-series sinks hold between flushes, and what one bad point or a full disk does.

The sinks are written on the hot path for every event. What they keep until the flush must be
nothing the cyclic collector walks: points waiting as objects made every young collection at
10 000 msg/s walk thousands of them, and the collections that promoted them stalled the event
loop for longer than the SOS latency target (docs/benchmarks.md, "Nineteenth pass").
"""

from __future__ import annotations

import asyncio
import gc
import math
import random
import sqlite3
import struct
import threading
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import orjson
import pytest

from hub.clock import ManualClock
from hub.timeseries import InfluxWriter, Point, SqliteSink, TimeseriesSettings, query_series
from hub.timeseries.settings import TimeseriesKind
from hub.timeseries.sqlite_sink import FLUSH_POINTS, INSERT_BATCH_ROWS, Aggregate
from tests.support.servers import free_port

NOW = 1_790_000_000.0


def points(n: int, *, start: float = NOW) -> Iterator[Point]:
    for i in range(n):
        yield Point.of(
            "device_health",
            tags={"device_id": f"d{i % 7}", "grid": "g1"},
            fields={"battery_pct": 50.0 + i % 40, "rssi": -70 - i % 9},
            ts=start + i,
        )


def influx_writer(tmp_path: Path) -> InfluxWriter:
    # Nothing listens on the port and nothing is started: ``write`` alone is under test.
    settings = TimeseriesSettings(
        kind=TimeseriesKind.INFLUX_V1, url=f"http://127.0.0.1:{free_port()}", flush_interval_s=60
    )
    return InfluxWriter(settings=settings, spool_dir=tmp_path / "spool")


def sqlite_sink(tmp_path: Path) -> SqliteSink:
    return SqliteSink(path=tmp_path / "ts.sqlite", retention_days=30, clock=ManualClock(start=NOW))


Sink = Callable[[Path], InfluxWriter | SqliteSink]


def live_points() -> int:
    gc.collect()
    return sum(1 for o in gc.get_objects() if type(o) is Point)


@pytest.mark.parametrize("make", [influx_writer, sqlite_sink], ids=["influx", "sqlite"])
def test_points_waiting_for_the_flush_are_nothing_the_collector_walks(make: Sink, tmp_path: Path) -> None:
    sink = make(tmp_path)
    before = live_points()
    sink.write_many(points(5_000))
    assert sink.buffered == 5_000
    assert live_points() == before  # no point kept alive by the sink
    # What is kept instead (lines; rows by column) is nothing the collector tracks at all.
    held: list[object] = (
        list(sink._buffer)
        if isinstance(sink, InfluxWriter)
        else [v for column in sink._buffer.columns() for v in column]
    )
    assert held
    assert not any(gc.is_tracked(item) for item in held)


@pytest.mark.parametrize("make", [influx_writer, sqlite_sink], ids=["influx", "sqlite"])
def test_an_unwritable_point_is_counted_and_the_others_are_kept(make: Sink, tmp_path: Path) -> None:
    sink = make(tmp_path)
    bad = [
        Point.of("door", tags={"device_id": "a"}, fields={"open": 1}, ts=math.nan),
        Point.of("door", tags={"device_id": "a"}, fields={"open": 1}, ts=math.inf),
        Point.of("door", tags={"device_id": "a"}, fields={"open": math.nan}, ts=NOW),
        Point.of("door", tags={"device_id": "a"}, fields={"open": None}, ts=NOW),  # type: ignore[dict-item]
        # float() reads b"1.5" as a number; no column takes bytes.
        Point.of("door", tags={"device_id": "a"}, fields={"open": b"1.5"}, ts=NOW),  # type: ignore[dict-item]
        object(),  # not a point at all: refused, not raised (the compiled loop checks types)
    ]
    good = list(points(3))
    sink.write_many([good[0], *bad[:2], good[1], *bad[2:], good[2]])  # type: ignore[list-item]  # never raises
    assert sink.stats.points_written == 9
    assert sink.stats.invalid_points == 6
    assert sink.buffered == 3
    assert sink.stats.last_error.startswith("unwritable point: ")  # what /api/stats shows


def test_a_time_line_protocol_cannot_carry_is_refused_not_sent(tmp_path: Path) -> None:
    """Line protocol's timestamps are int64 nanoseconds: a line past 2262 would make InfluxDB
    refuse its whole batch. Such a point is counted as unwritable instead."""
    sink = influx_writer(tmp_path)
    sink.write_many([Point.of("door", tags={"device_id": "a"}, fields={"open": 1}, ts=1e300), *points(1)])
    assert (sink.stats.points_written, sink.stats.invalid_points, sink.buffered) == (2, 1, 1)
    assert "outside line protocol" in sink.stats.last_error


@pytest.mark.pure_only("a compiled Point refuses an int time too large for a float when it is made")
@pytest.mark.parametrize("make", [influx_writer, sqlite_sink], ids=["influx", "sqlite"])
async def test_a_time_too_large_for_a_float_is_refused_and_the_sink_keeps_flushing(
    make: Sink, tmp_path: Path
) -> None:
    """Kept, such a row made SQLite's insert raise OverflowError (not a ``sqlite3.Error``) and
    the embedded sink's flush task died with it: no chart was written again."""
    sink = make(tmp_path)
    sink.write(Point.of("door", tags={"device_id": "a"}, fields={"open": 1}, ts=10**400))
    assert (sink.stats.points_written, sink.stats.invalid_points, sink.buffered) == (1, 1, 0)
    if isinstance(sink, SqliteSink):
        await sink.start()
        try:
            sink.write_many(points(2))
            await sink.flush()
            assert sink.buffered == 0 and sink.stats.points_delivered == 2
        finally:
            await sink.stop()


def count_rows(path: Path) -> int:
    series = query_series(
        path,
        measurement="device_health",
        field="battery_pct",
        start=NOW - 1,
        end=NOW + 100_000,
        bucket_s=1_000_000,
        aggregate=Aggregate.COUNT,
    )
    return int(sum(v for s in series for _, v in s.points))


def _nan_time() -> Point:
    return Point.of("device_health", tags={"device_id": "a"}, fields={"battery_pct": 5.0}, ts=math.nan)


def _lone_surrogate() -> Point:
    return Point.of("door", tags={"device_id": "a"}, fields={"note": "bad \ud800"}, ts=NOW)


@pytest.mark.parametrize(
    ("bad", "why"), [(_nan_time, None), (_lone_surrogate, "UTF-8")], ids=["nan-time", "lone-surrogate"]
)
async def test_what_cannot_be_stored_costs_only_itself_and_the_embedded_sink_goes_on(
    bad: Callable[[], Point], why: str | None, tmp_path: Path
) -> None:
    """``ts`` is NOT NULL and SQLite stores NaN as NULL: such a point must never reach the
    insert, where it failed the whole batch and left the transaction open for every later one.
    A lone surrogate has no UTF-8 form: binding it raised ``UnicodeEncodeError``, which ended
    the sink's flush task (no chart was written again); that row alone is left out now."""
    sink = sqlite_sink(tmp_path)
    await sink.start()
    try:
        sink.write(bad())
        sink.write_many(points(3))
        await sink.flush()
        sink.write_many(points(4, start=NOW + 100))
        await sink.flush()
    finally:
        await sink.stop()
    assert sink.stats.invalid_points == 1
    if why is not None:  # a NaN time is refused without a reason text
        assert why in sink.stats.last_error
    assert count_rows(tmp_path / "ts.sqlite") == 7


async def test_an_insert_that_fails_leaves_no_transaction_open(tmp_path: Path) -> None:
    """SQLite rolls back only the failing statement of a constraint error: the transaction
    stays open unless the sink ends it, and every later ``BEGIN`` would fail."""
    sink = sqlite_sink(tmp_path)
    await sink.start()
    try:
        with pytest.raises(sqlite3.IntegrityError):
            sink._insert([(None, "device_health", "{}", "battery_pct", 1.0, None)], None)  # type: ignore[list-item]
        sink.write_many(points(2))
        await sink.flush()
    finally:
        await sink.stop()
    assert count_rows(tmp_path / "ts.sqlite") == 2


async def test_the_embedded_sink_writes_again_once_a_full_disk_has_room(tmp_path: Path) -> None:
    sink = sqlite_sink(tmp_path)
    await sink.start()
    try:
        db = sink._db
        assert db is not None
        # A full disk, as SQLite sees one: no page may be added to the file.
        pages = db.execute("PRAGMA page_count").fetchone()[0]
        db.execute(f"PRAGMA max_page_count = {pages}")
        sink.write_many(points(2_000))
        with pytest.raises(sqlite3.OperationalError, match="full"):
            await sink.flush()
        db.execute("PRAGMA max_page_count = 1073741823")  # room again
        sink.write_many(points(10, start=NOW + 10_000))
        await sink.flush()
    finally:
        await sink.stop()
    # The batch the full disk refused is lost (as a crash loses the buffer); the next is written.
    assert count_rows(tmp_path / "ts.sqlite") == 10


def test_the_embedded_sink_writes_each_point_s_own_tags(tmp_path: Path) -> None:
    # The sink remembers the JSON text per tags tuple (by identity: a device's points share one).
    # Every row must still carry its own point's tags: for the same tuple again, for an equal
    # one, for a new tuple that takes a freed one's id, and past the memo's limit.
    sink = SqliteSink(
        path=tmp_path / "ts.sqlite", retention_days=30, clock=ManualClock(start=NOW), tag_json_limit=3
    )
    grid = ("grid", "g1")
    devices = [("device_id", f"d{i}") for i in range(40)]
    shared = (devices[0], grid)
    expected: list[str] = []
    ids: list[int] = []
    for i in range(1, 40):
        # Only the outer tuple is new: once freed, the next one takes its memory and its id.
        tags = shared if i % 4 == 0 else (devices[i], grid)
        sink.write(Point(measurement="device_health", tags=tags, fields=(("rssi", -70.0),), ts=NOW + i))
        expected.append(orjson.dumps(dict(tags)).decode())
        ids.append(id(tags))
        del tags
    assert sink._buffer.tags == expected
    assert len(sink._buffer.tag_json) <= 3
    assert len(set(ids)) < len(ids) - 9  # ids were taken again (the case the memo must not confuse)


def stored_rows(path: Path) -> list[tuple[object, ...]]:
    with sqlite3.connect(path) as db:
        return db.execute(
            "SELECT ts, measurement, tags, field, value, text FROM points ORDER BY rowid"
        ).fetchall()


async def test_the_embedded_sink_stores_every_row_exactly_over_several_batches(tmp_path: Path) -> None:
    """Rows go in as JSON text, one statement per batch: each value must come back the same
    double, each text the same characters, in the order written, across batch boundaries."""
    rng = random.Random(7)
    sink = sqlite_sink(tmp_path)
    expected: list[tuple[object, ...]] = []
    for i in range(INSERT_BATCH_ROWS * 2 + 17):
        ts = NOW + rng.random() * 86_400
        # Random bit patterns too: every finite double, not only the short decimals of readings.
        reading = struct.unpack("<d", struct.pack("<Q", rng.getrandbits(62)))[0]
        if not math.isfinite(reading):
            reading = -0.0
        note = ["开门", 'a "quoted"\\ text\n', "", "⚠️ 低电量"][i % 4]
        tags = {"device_id": f"门磁-{i % 13}", "grid": 'g"1'}
        sink.write(Point.of("door", tags=tags, fields={"v": reading, "note": note}, ts=ts))
        tags_json = orjson.dumps(tags).decode()
        expected += [(ts, "door", tags_json, "v", reading, None), (ts, "door", tags_json, "note", None, note)]
    await sink.start()
    try:
        await sink.flush()
    finally:
        await sink.stop()
    assert stored_rows(tmp_path / "ts.sqlite") == expected


async def test_the_embedded_sink_inserts_a_batch_in_one_statement(tmp_path: Path) -> None:
    """``executemany`` ran one statement per row, each giving up the GIL for its step and waiting
    for it back: behind a busy event loop that is the switch interval (5 ms) a row, and 300 000
    rows took 531 s instead of 1 s while the next flush's points piled up in memory."""
    sink = sqlite_sink(tmp_path)
    await sink.start()
    try:
        assert sink._db is not None
        statements: list[str] = []
        sink._db.set_trace_callback(statements.append)
        sink.write_many(points(3 * INSERT_BATCH_ROWS))  # two rows a point
        await sink.flush()
    finally:
        await sink.stop()
    inserts = [s for s in statements if s.lstrip().upper().startswith("INSERT")]
    assert len(inserts) == 6
    assert count_rows(tmp_path / "ts.sqlite") == 3 * INSERT_BATCH_ROWS


async def test_texts_with_a_nul_character_are_stored_whole(tmp_path: Path) -> None:
    """SQLite's JSON functions end a string at an escaped NUL: such a row is bound as
    parameters instead, and stored whole, as ``executemany`` stored it."""
    sink = sqlite_sink(tmp_path)
    expected: list[tuple[object, ...]] = []
    for i, note in enumerate(["前\x00后", "plain", "\x00", "a\\u0000b"]):
        tags = {"device_id": f"d{i}\x00x" if i == 2 else f"d{i}"}
        sink.write(Point.of("door", tags=tags, fields={"note": note, "v": float(i)}, ts=NOW + i))
        tags_json = orjson.dumps(tags).decode()
        expected += [
            (NOW + i, "door", tags_json, "note", None, note),
            (NOW + i, "door", tags_json, "v", float(i), None),
        ]
    await sink.start()
    try:
        await sink.flush()
    finally:
        await sink.stop()
    assert sorted(stored_rows(tmp_path / "ts.sqlite"), key=repr) == sorted(expected, key=repr)
    assert sink.stats.invalid_points == 0


async def test_the_embedded_sink_flushes_once_enough_points_wait(tmp_path: Path) -> None:
    """By time alone a burst kept every point of the interval (≈ 50 000 at 100 000 devices
    reporting) and their rows in memory: FLUSH_POINTS waiting start the flush at once."""
    sink = SqliteSink(
        path=tmp_path / "ts.sqlite", retention_days=30, clock=ManualClock(start=NOW), flush_interval_s=60
    )
    await sink.start()
    try:
        sink.write_many(points(FLUSH_POINTS // 2 - 1))  # under the mark
        await asyncio.sleep(0.3)
        assert sink.stats.batches_sent == 0 and sink.buffered == FLUSH_POINTS // 2 - 1
        sink.write_many(points(FLUSH_POINTS - FLUSH_POINTS // 2 + 1))
        for _ in range(100):
            if sink.stats.batches_sent:
                break
            await asyncio.sleep(0.05)
        assert sink.stats.batches_sent == 1 and sink.buffered == 0
        assert count_rows(tmp_path / "ts.sqlite") == FLUSH_POINTS  # one battery_pct row a point
    finally:
        await sink.stop()


async def test_stop_writes_the_points_of_a_flush_waiting_for_a_thread(tmp_path: Path) -> None:
    """Found in review: the flush loop had moved the points out of the buffer and its insert
    waited for a worker thread (another user of the pool busy) when stop() cancelled it; the
    job was dropped, stop's own flush found an empty buffer, and the points were lost."""
    loop = asyncio.get_running_loop()
    pool = ThreadPoolExecutor(max_workers=1)
    loop.set_default_executor(pool)
    sink = SqliteSink(
        path=tmp_path / "ts.sqlite", retention_days=30, clock=ManualClock(start=NOW), flush_interval_s=60
    )
    await sink.start()
    busy = threading.Event()
    # The one worker busy (the rule-state file, a checkpoint). Its wait has no timeout and the
    # event loop's relative timer frees it: a timed wait in a thread (threading.Timer,
    # Event.wait(5)) turns the faked clock into an absolute deadline a year ahead of the
    # kernel's under `faketime '+1 year'` and sleeps that long, which hung the CI run.
    pool.submit(busy.wait)
    try:
        sink.write_many(points(FLUSH_POINTS))
        await asyncio.sleep(0.05)  # the loop's flush: the buffer moved out, its insert queued
        assert sink.buffered == 0
        loop.call_later(0.2, busy.set)
        await sink.stop()
    finally:
        busy.set()
    assert count_rows(tmp_path / "ts.sqlite") == FLUSH_POINTS
