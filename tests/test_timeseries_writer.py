"""The InfluxDB writer against a real InfluxDB 1.x (and VictoriaMetrics for the v2 API)."""

from __future__ import annotations

import asyncio
import errno
import gzip
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from aiohttp import web

from adapters.events import Event, EventKind
from hub.timeseries import (
    InfluxWriter,
    Point,
    QuarantinedLines,
    SubjectInfo,
    TimeseriesKind,
    TimeseriesSettings,
    doctor,
    encode,
    event_points,
)
from hub.timeseries import spool as spool_module
from hub.timeseries import writer as writer_module
from hub.timeseries.doctor import Level
from hub.timeseries.line_protocol import shape
from hub.timeseries.spool import Spool
from tests.conftest import server_missing
from tests.support.influx import InfluxServer, VictoriaServer, influxdb, victoria_metrics
from tests.support.servers import ServerMissingError, free_port

pytestmark = pytest.mark.needs_server("influxd")
DB = "linli"
T0 = time.time() - 3600


@pytest.fixture
def influx(tmp_path: Path) -> Iterator[InfluxServer]:
    try:
        with influxdb(tmp_path / "influx") as server:
            server.create_db(DB)
            yield server
    except ServerMissingError as exc:
        server_missing(str(exc))


@pytest.fixture
def victoria(tmp_path: Path) -> Iterator[VictoriaServer]:
    try:
        with victoria_metrics(tmp_path / "vm") as server:
            yield server
    except ServerMissingError as exc:
        server_missing(str(exc))


def settings_for(url: str, **overrides: object) -> TimeseriesSettings:
    base: dict[str, object] = {
        "kind": TimeseriesKind.INFLUX_V1,
        "url": url,
        "db": DB,
        "flush_interval_s": 0.05,
        "backoff_base_s": 0.05,
        "backoff_max_s": 0.3,
        "request_timeout_s": 2.0,
    }
    base.update(overrides)
    return TimeseriesSettings.model_validate(base)


def reading(i: int, *, device: str = "d1") -> Point:
    return Point.of(
        "reading",
        tags={"grid": "g1", "device_id": device},
        fields={"seq": i, "value": i * 0.5},
        ts=T0 + i * 0.001,
    )


async def wait_for(predicate: object, limit_s: float = 15.0) -> None:
    assert callable(predicate)
    deadline = time.monotonic() + limit_s
    while time.monotonic() < deadline:
        if await asyncio.to_thread(predicate):
            return
        await asyncio.sleep(0.05)
    raise AssertionError("condition not met in time")


async def test_batches_land_exactly_count_and_values(influx: InfluxServer, tmp_path: Path) -> None:
    writer = InfluxWriter(settings=settings_for(influx.url, batch_size=1000), spool_dir=tmp_path / "spool")
    await writer.start()
    n = 12_345
    for i in range(n):
        writer.write(reading(i))
    await writer.stop()
    assert influx.count(DB, "reading", "seq") == n
    result = influx.query('SELECT sum("seq"), sum("value"), max("seq") FROM "reading"', db=DB)
    _, total_seq, total_value, max_seq = result["results"][0]["series"][0]["values"][0]
    assert total_seq == n * (n - 1) // 2
    assert total_value == pytest.approx(n * (n - 1) / 4)
    assert max_seq == n - 1
    assert writer.stats.batches_sent >= 13  # batched by size, not one request per point
    assert writer.stats.points_delivered == n
    assert writer.spool.empty


async def test_special_characters_round_trip(influx: InfluxServer, tmp_path: Path) -> None:
    writer = InfluxWriter(settings=settings_for(influx.url), spool_dir=tmp_path / "spool")
    await writer.start()
    tricky_tag = "楼 1,单元=2 end\\"
    tricky_text = 'say "hi"\\ and, = stop'
    writer.write(
        Point.of(
            "odd measurement,x",
            tags={"tag key=1": tricky_tag},
            fields={"f,1": tricky_text, "n": 7, "b": True, "x": 1.5, "nan": float("nan")},
            ts=T0,
        )
    )
    await writer.stop()
    result = influx.query('SELECT * FROM "odd measurement,x"', db=DB)
    series = result["results"][0]["series"][0]
    row = dict(zip(series["columns"], series["values"][0], strict=True))
    assert row["tag key=1"] == tricky_tag.rstrip("\\")  # InfluxDB cannot store a trailing backslash
    assert row["f,1"] == tricky_text
    assert row["n"] == 7
    assert row["b"] is True
    assert row["x"] == 1.5
    assert "nan" not in row


async def test_outage_spools_and_replays_in_order_without_loss(influx: InfluxServer, tmp_path: Path) -> None:
    writer = InfluxWriter(settings=settings_for(influx.url, batch_size=500), spool_dir=tmp_path / "spool")
    await writer.start()
    for i in range(2000):
        writer.write(reading(i))
    await wait_for(lambda: writer.stats.points_delivered == 2000)
    influx.stop()
    for i in range(2000, 7000):
        writer.write(reading(i))
        if i % 500 == 0:
            await asyncio.sleep(0.02)
    await wait_for(lambda: writer.buffered == 0 and writer.spool.pending_lines == 5000)
    assert writer.stats.retryable_failures >= 1
    assert writer.spool.pending_batches >= 10
    influx.start()
    await wait_for(lambda: writer.spool.empty, limit_s=30)
    for i in range(7000, 7100):
        writer.write(reading(i))
    await writer.stop()
    assert influx.count(DB, "reading", "seq") == 7100
    assert writer.stats.points_dropped == 0
    assert writer.stats.batches_replayed >= 10


async def test_graceful_shutdown_flushes_the_buffer(influx: InfluxServer, tmp_path: Path) -> None:
    writer = InfluxWriter(
        settings=settings_for(influx.url, flush_interval_s=60, batch_size=100_000),
        spool_dir=tmp_path / "spool",
    )
    await writer.start()
    for i in range(777):
        writer.write(reading(i))
    await asyncio.sleep(0.1)
    assert influx.count(DB, "reading", "seq") == 0  # nothing sent yet: interval and size not reached
    await writer.stop()
    assert influx.count(DB, "reading", "seq") == 777


async def test_shutdown_while_down_spools_and_next_start_replays(
    influx: InfluxServer, tmp_path: Path
) -> None:
    spool_dir = tmp_path / "spool"
    influx.stop()
    writer = InfluxWriter(settings=settings_for(influx.url), spool_dir=spool_dir)
    await writer.start()
    for i in range(1500):
        writer.write(reading(i))
    started = time.monotonic()
    await writer.stop()
    assert time.monotonic() - started < 5
    assert len(list(spool_dir.glob("*.lp.gz"))) >= 1
    influx.start()
    # a new process (as after a crash or restart) replays what the spool holds
    again = InfluxWriter(settings=settings_for(influx.url), spool_dir=spool_dir)
    await again.start()
    await wait_for(lambda: influx.count(DB, "reading", "seq") == 1500)
    await again.stop()
    assert list(spool_dir.glob("*.lp.gz")) == []


async def test_field_type_conflict_is_quarantined_with_the_servers_message(
    influx: InfluxServer, tmp_path: Path
) -> None:
    quarantined: list[QuarantinedLines] = []
    writer = InfluxWriter(
        settings=settings_for(influx.url), spool_dir=tmp_path / "spool", on_quarantine=quarantined.append
    )
    await writer.start()
    writer.write(Point.of("door", tags={"device_id": "a"}, fields={"open": 1}, ts=T0))
    await wait_for(lambda: writer.stats.points_delivered == 1)
    for i in range(100):
        writer.write(Point.of("door", tags={"device_id": "b"}, fields={"open": 1}, ts=T0 + 1 + i))
    bad = Point.of("door", tags={"device_id": "bad"}, fields={"open": 1.5}, ts=T0 + 50.5)  # float vs integer
    writer.write(bad)
    await writer.stop()
    assert len(quarantined) == 1
    assert quarantined[0].status == 400
    assert quarantined[0].lines == (encode(bad),)
    assert "field type conflict" in quarantined[0].message
    assert writer.stats.points_quarantined == 1
    assert writer.stats.retryable_failures == 0  # never retried
    assert influx.count(DB, "door", "open") == 101  # every good line landed
    assert writer.spool.empty


async def test_a_type_conflict_spread_through_a_batch_quarantines_only_its_lines(
    influx: InfluxServer, tmp_path: Path
) -> None:
    """Found in review: bisection within 64 requests cannot isolate 100 refused lines spread
    among 300 good ones; it quarantined whole runs of good lines with them. The batch is now
    sent shape by shape (measurement, field keys and types) before it is bisected."""
    quarantined: list[QuarantinedLines] = []
    writer = InfluxWriter(
        settings=settings_for(influx.url, batch_size=5000, flush_interval_s=0.5),
        spool_dir=tmp_path / "spool",
        on_quarantine=quarantined.append,
    )
    await writer.start()
    writer.write(Point.of("door", tags={"device_id": "a"}, fields={"open": 1}, ts=T0))
    await wait_for(lambda: writer.stats.points_delivered == 1)
    bad: list[str] = []
    for i in range(400):
        if i % 4 == 3:  # a float where the database holds integers
            point = Point.of("door", tags={"device_id": f"d{i}"}, fields={"open": 1.5}, ts=T0 + 1 + i)
            line = encode(point)
            assert line is not None
            bad.append(line)
            writer.write(point)
        else:
            writer.write(reading(i))
    await writer.stop()
    assert sorted(line for q in quarantined for line in q.lines) == sorted(bad)
    assert writer.stats.points_quarantined == 100
    assert writer.stats.points_delivered == 1 + 300
    assert influx.count(DB, "reading", "seq") == 300
    # Still bounded: the budget is checked once per split, so its last splits may pass it by a
    # request each, at most the bisection's depth.
    assert writer.stats.requests <= 2 + 64 + 13


def test_a_lines_shape_is_its_measurement_and_field_types() -> None:
    def line(**fields: object) -> str:
        encoded = encode(Point.of("door x,y", tags={"device_id": "a b,c"}, fields=fields, ts=T0))  # type: ignore[arg-type]
        assert encoded is not None
        return encoded

    assert shape(line(open=1)) == shape(line(open=2)) != shape(line(open=1.5))
    assert shape(line(open=True)) != shape(line(open="t")) != shape(line(open=1))
    assert shape(line(note='a "b", c=d e', open=1)) == shape(line(note="x", open=5))
    assert shape(line(note="x", open=5)) != shape(line(open=5))
    assert shape("not line protocol at all") and shape("") == ""


@pytest.mark.real_clock
async def test_v2_write_api_against_victoria_metrics(victoria: VictoriaServer, tmp_path: Path) -> None:
    settings = settings_for(
        victoria.url, kind=TimeseriesKind.INFLUX_V2, org="linli", bucket="linli", token="s3cret-token"
    )
    assert "s3cret-token" not in repr(settings)
    writer = InfluxWriter(settings=settings, spool_dir=tmp_path / "spool")
    await writer.start()
    n = 3000
    now = time.time()
    for i in range(n):
        writer.write(Point.of("vmtest", tags={"grid": "g1"}, fields={"seq": i}, ts=now - 60 + i * 0.01))
    await writer.stop()
    assert writer.stats.points_delivered == n

    def landed() -> bool:
        rows = victoria.export('{__name__="vmtest_seq"}')
        return sum(len(r["values"]) for r in rows) == n

    await wait_for(landed, limit_s=20)
    rows = victoria.export('{__name__="vmtest_seq"}')
    assert rows[0]["metric"]["grid"] == "g1"
    assert sorted(v for r in rows for v in r["values"]) == list(range(n))


async def test_doctor_v1_ok_missing_db_and_unreachable(influx: InfluxServer) -> None:
    ok = await doctor(settings_for(influx.url))
    assert [f.level for f in ok] == [Level.OK, Level.OK], ok
    missing = await doctor(settings_for(influx.url, db="nope"))
    assert missing[-1].level is Level.ERROR
    assert "404" in missing[-1].message and "does not exist" in missing[-1].message
    gone = await doctor(settings_for(f"http://127.0.0.1:{free_port()}"))
    assert gone[0].level is Level.ERROR and "cannot reach" in gone[0].message


async def test_doctor_v2_against_victoria_metrics(victoria: VictoriaServer) -> None:
    findings = await doctor(
        settings_for(victoria.url, kind=TimeseriesKind.INFLUX_V2, bucket="b", token="tok-never-shown")
    )
    assert all(f.level is Level.OK for f in findings), findings
    assert all("tok-never-shown" not in str(f) for f in findings)


async def test_spool_is_bounded_drops_oldest_and_counts(tmp_path: Path) -> None:
    spool = Spool(directory=tmp_path / "spool", max_bytes=1000)
    await spool.open()
    body = gzip.compress(b"x" * 10, mtime=0)
    dropped = 0
    for _ in range(200):
        dropped += await spool.append(body, lines=3)
    assert spool.pending_bytes <= 1000
    kept = spool.pending_batches
    assert dropped == (200 - kept) * 3
    first = spool.peek()
    assert first is not None and first.seq == 200 - kept + 1  # the newest survive
    reopened = Spool(directory=tmp_path / "spool", max_bytes=1000)
    await reopened.open()
    assert reopened.pending_batches == kept
    assert reopened.peek() == first


async def test_write_only_queues_and_never_blocks(tmp_path: Path) -> None:
    """``write`` encodes and appends, nothing more: 100 000 calls with no server at all make no
    request and touch no disk (its cost per call is a benchmark's business, not a test's)."""
    writer = InfluxWriter(
        settings=settings_for(f"http://127.0.0.1:{free_port()}", flush_interval_s=60),
        spool_dir=tmp_path / "spool",
    )
    for i in range(100_000):
        writer.write(reading(i))
    assert writer.buffered == 100_000
    assert writer.stats.requests == writer.stats.batches_spooled == 0
    assert not (tmp_path / "spool").exists() or not any((tmp_path / "spool").iterdir())


async def test_a_batch_the_full_disk_refused_does_not_stop_the_replay(
    influx: InfluxServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """InfluxDB down and the data disk full at once: the batch that could not be spooled is
    counted as dropped, and once both are back everything spooled after it is delivered.

    The spool used to list the batch without its file; every later replay failed on it
    (``FileNotFoundError``) until the spool overflowed, with InfluxDB long back.
    """
    writer = InfluxWriter(settings=settings_for(influx.url, batch_size=100), spool_dir=tmp_path / "spool")
    await writer.start()
    influx.stop()
    refused = 0

    def disk_full(path: Path, data: bytes) -> None:
        nonlocal refused
        refused += 1
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(spool_module, "write_private", disk_full)
    for i in range(100):
        writer.write(reading(i))
    await wait_for(lambda: refused >= 1)
    monkeypatch.undo()  # the disk has room again
    for i in range(100, 300):
        writer.write(reading(i))
    await wait_for(lambda: writer.buffered == 0 and writer.spool.pending_lines == 200)
    influx.start()
    await wait_for(lambda: writer.spool.empty, limit_s=20)
    await writer.stop()
    assert writer.stats.points_dropped == 100  # counted, never silent
    assert influx.count(DB, "reading", "seq") == 200


async def test_a_spool_file_deleted_by_hand_does_not_stop_the_replay(
    influx: InfluxServer, tmp_path: Path
) -> None:
    """An operator freeing a full disk deletes a spooled batch: the rest is still delivered.

    The writer backs off for long after its first failure, so that no replay has the oldest
    batch read into memory when its file goes (then it was delivered from there, and the test
    proved nothing: CI once saw all 300 points arrive); the final flush of ``stop`` replays.
    """
    spool_dir = tmp_path / "spool"
    settings = settings_for(influx.url, batch_size=100, backoff_base_s=60, backoff_max_s=120)
    writer = InfluxWriter(settings=settings, spool_dir=spool_dir)
    await writer.start()
    influx.stop()
    for i in range(300):
        writer.write(reading(i))
    await wait_for(lambda: writer.buffered == 0 and writer.spool.pending_lines == 300)
    oldest = writer.spool.peek()
    assert oldest is not None
    oldest.path.unlink()
    influx.start()
    await writer.stop()  # its last flush replays the spool, backoff or not
    assert writer.spool.empty
    assert influx.count(DB, "reading", "seq") == 300 - oldest.lines
    assert writer.stats.points_quarantined == oldest.lines  # counted, never silent


# -- found in review: what a device writes must not get its SOS press refused -----------------


def _press_point(value: str, device: str = "sos-1") -> Point:
    event = Event(device, EventKind.SOS_PRESS, T0, "native", "single", {"press": value})
    return event_points(event, SubjectInfo(community="c1", grid="g1"))[0]


@pytest.mark.parametrize("hostile", ["\\", "\\\\\\", "a\rb", "a\nb", "单击"])
async def test_a_press_attribute_of_any_text_lands_as_a_low_cardinality_tag(
    influx: InfluxServer, tmp_path: Path, hostile: str
) -> None:
    """A native device's attrs.press is free text: a CR/LF split the line and backslashes alone
    left an empty tag value (the server refused the SOS press's line); each distinct text was a
    series of its own. Now the tag is one of the press types or "other"."""
    writer = InfluxWriter(settings=settings_for(influx.url), spool_dir=tmp_path / "spool")
    await writer.start()
    writer.write(_press_point(hostile))
    writer.write(_press_point("single", device="sos-2"))
    await writer.stop()
    assert writer.stats.points_quarantined == 0
    assert influx.count(DB, "press", "count") == 2
    assert _press_point(hostile).tag("press_type") == "other"
    assert _press_point("double").tag("press_type") == "double"


@pytest.mark.parametrize("device", ["\\", "door\r1", "门\n2"])
async def test_a_device_id_of_any_text_lands(influx: InfluxServer, tmp_path: Path, device: str) -> None:
    writer = InfluxWriter(settings=settings_for(influx.url), spool_dir=tmp_path / "spool")
    await writer.start()
    writer.write_many(event_points(Event(device, EventKind.HEARTBEAT, T0, "native", None, {}), SubjectInfo()))
    await writer.stop()
    assert writer.stats.points_quarantined == 0
    assert influx.count(DB, "device_health", "heartbeat") == 1


async def test_a_slow_server_does_not_grow_the_buffer_without_bound(tmp_path: Path) -> None:
    """Found in review: a server answering every batch after 1 s let the buffer grow by the whole
    stream (24 000 points after 6 s at 5 000/s, linearly). Past a few batches it is spooled."""

    async def slow(request: web.Request) -> web.Response:
        await request.read()
        await asyncio.sleep(1.0)
        return web.Response(status=204)

    app = web.Application()
    app.router.add_post("/write", slow)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    settings = settings_for(
        f"http://127.0.0.1:{port}", batch_size=1000, flush_interval_s=0.1, request_timeout_s=5
    )
    writer = InfluxWriter(settings=settings, spool_dir=tmp_path / "spool")
    await writer.start()
    peak = written = 0
    try:
        for tick in range(60):  # 6 s at 5 000 points/s
            for i in range(500):
                writer.write(
                    Point.of("reading", tags={"device_id": "d"}, fields={"v": 1.0}, ts=T0 + tick + i * 1e-4)
                )
                written += 1
            peak = max(peak, writer.buffered)
            await asyncio.sleep(0.1)
        assert peak <= 5 * 1000 + 5000 + 1000  # spill bound + one request's worth + a flush
        kept = writer.stats.points_delivered + writer.spool.pending_lines + writer.buffered
        assert kept >= written - 1000  # nothing lost (one batch may be in flight)
        assert writer.stats.points_dropped == 0
    finally:
        await writer.stop(grace_s=0.5)
        await runner.cleanup()


def test_past_the_hard_bound_the_oldest_lines_are_dropped_and_counted(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(writer_module, "MAX_BUFFERED_LINES", 50)
    writer = InfluxWriter(
        settings=settings_for("http://127.0.0.1:9", batch_size=10), spool_dir=tmp_path / "spool"
    )
    for i in range(100):  # the flusher never ran: stuck, as in one endless request
        writer.write(Point.of("reading", tags={"device_id": "d"}, fields={"v": float(i)}, ts=T0 + i))
    assert writer.buffered <= 50 and writer.stats.points_dropped == 100 - writer.buffered
