"""The embedded sink: points in a SQLite file of their own, for the demo and the console.

Used when ``kind`` is ``none``: no server to install, and the console can still chart.
One row per numeric (or boolean) field: ``(ts, measurement, tags JSON, field, value)``;
string fields are kept in ``text``. Rows older than ``retention_days`` are deleted about once
a minute. The same O(1) ``write`` as the InfluxDB writer; inserts run in a worker thread
(:func:`asyncio.to_thread`) from the named task ``linli-timeseries``.

Inserts are one ``INSERT … SELECT … FROM json_each(…)`` per :data:`INSERT_BATCH_ROWS` rows, as
the rule-state writer's (:mod:`hub.storage.rule_state_file`), not ``executemany``: the sqlite3
module lets go of the GIL around each row's ``sqlite3_step`` and then waits for it back, and
while the event loop is busy that wait is CPython's switch interval (5 ms) per row. Measured on
the bench machine, 300 000 rows took 1.06 s alone and **531 s** beside one busy thread; as one
statement per batch, 1.16 s and 1.13 s. While an insert crawled, the points of the next flush
piled up (116 207 points in one buffer at ≈ 6 000 msg/s; docs/benchmarks.md, "Thirty-second
pass"), and the buffer's floats and strings, freed once written, left ≈ 80 MB of holes among
the devices' long-lived objects that the process never gave back.

:func:`query_series` is the console's one query: a field of a measurement over a time range,
filtered by tags, optionally grouped by one tag, aggregated in fixed buckets.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import sqlite3
import threading
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from enum import StrEnum
from itertools import islice
from pathlib import Path

import orjson

from hub.clock import Clock
from hub.files import touch_private
from hub.timeseries.line_protocol import Point
from hub.timeseries.pending import TAG_JSON_LIMIT, PendingRows, Row
from hub.timeseries.writer import TASK_NAME, WriterStats

log = logging.getLogger(__name__)

#: Rows per insert statement. The batch's JSON is made holding the GIL (0.3 ms for 2 048 rows,
#: 0.5 at most), which bounds what a press can wait behind it; and each statement waits once
#: or twice for the GIL back after its step (5 ms behind a busy loop), which bounds how many
#: rows a second the sink writes then: 300 000 rows beside a busy thread took 1.1 s in batches
#: of 2 048 and 4.5 s in batches of 512, which is less than the hub makes at full load.
INSERT_BATCH_ROWS = 2048
#: Points waiting that start a flush before ``flush_interval_s`` is up (as ``batch_size`` does
#: for the Influx writer). By time alone a burst (every device reporting after an outage) kept
#: ≈ 50 000 points and their rows' text in memory per flush: at 100 000 devices the resident
#: memory ended the burst 15 MB higher (docs/benchmarks.md, "Forty-third pass").
FLUSH_POINTS = 8192
#: One statement inserts a batch, the rows given as one JSON array of row arrays. JSON numbers
#: come back as the same doubles (orjson writes the shortest text that reads back exactly).
_INSERT = (
    "INSERT INTO points (ts, measurement, tags, field, value, text)"
    " SELECT json_extract(value, '$[0]'), json_extract(value, '$[1]'), json_extract(value, '$[2]'),"
    " json_extract(value, '$[3]'), json_extract(value, '$[4]'), json_extract(value, '$[5]')"
    " FROM json_each(CAST(? AS TEXT))"
)
_INSERT_ROW = "INSERT INTO points (ts, measurement, tags, field, value, text) VALUES (?, ?, ?, ?, ?, ?)"
#: How orjson writes a NUL character inside a string (see :func:`_rows_with_nul`).
_ESCAPED_NUL = b"\\u0000"

SCHEMA = """
CREATE TABLE IF NOT EXISTS points (
    ts          REAL NOT NULL,
    measurement TEXT NOT NULL,
    tags        TEXT NOT NULL,
    field       TEXT NOT NULL,
    value       REAL,
    text        TEXT
);
CREATE INDEX IF NOT EXISTS points_by_series ON points (measurement, field, ts);
CREATE INDEX IF NOT EXISTS points_by_ts ON points (ts);
"""


def _rows_with_nul(batch: list[Row]) -> tuple[list[Row], list[Row]]:
    """The rows without a NUL character in any text, and those with one.

    SQLite's JSON functions end a string at an escaped NUL (``"a\\u0000b"`` reads back as
    ``"a"``, SQLite 3.40), so a row with one is bound as parameters instead: rare (only a
    payload's own text can hold one), it costs that row a statement of its own and its place
    in the insert order.
    """
    plain: list[Row] = []
    bound: list[Row] = []
    for row in batch:
        if any(isinstance(v, str) and "\x00" in v for v in row):
            bound.append(row)
        else:
            plain.append(row)
    return plain, bound


def _batch_json(batch: list[Row]) -> tuple[bytes, int]:
    """The rows as one JSON array of arrays, and how many were left out.

    orjson's bytes as they are, read as text by the statement (``CAST(? AS TEXT)``: SQLite's
    JSON functions refuse a BLOB). Decoded here, each batch made a second copy of ≈ 300 KB,
    and those copies left ≈ 6 MB of glibc's heap that ``malloc_trim`` did not hand back
    (``bench.memory_split``: 416 MB with every device reported, against 410 MB without).

    A row whose text field has a lone surrogate (no UTF-8 form; ``executemany`` refused it as
    well) is left out on its own, not the batch with it.
    """
    try:
        return orjson.dumps(batch), 0
    except orjson.JSONEncodeError:
        kept: list[bytes] = []
        for row in batch:
            with contextlib.suppress(orjson.JSONEncodeError):
                kept.append(orjson.dumps(row))
        return b"[" + b",".join(kept) + b"]", len(batch) - len(kept)


class Aggregate(StrEnum):
    MEAN = "mean"
    SUM = "sum"
    COUNT = "count"
    MIN = "min"
    MAX = "max"
    LAST = "last"


_SQL_AGG = {
    Aggregate.MEAN: "avg(value)",
    Aggregate.SUM: "sum(value)",
    Aggregate.COUNT: "count(*)",
    Aggregate.MIN: "min(value)",
    Aggregate.MAX: "max(value)",
    # SQLite: a bare column next to max() comes from the row holding the max.
    Aggregate.LAST: "value",
}


@dataclass(frozen=True, slots=True, kw_only=True)
class Series:
    """One line of a chart: the group's tag value (``""`` when ungrouped) and (bucket start, value)."""

    group: str
    points: tuple[tuple[float, float], ...]


def _connect(path: Path) -> sqlite3.Connection:
    touch_private(path)  # 0600; SQLite gives its -wal/-shm files the same mode
    db = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
    db.execute("PRAGMA journal_mode=WAL")
    db.execute("PRAGMA synchronous=NORMAL")
    db.executescript(SCHEMA)
    return db


class SqliteSink:
    """Embedded time-series sink with retention; same surface as :class:`InfluxWriter`."""

    def __init__(
        self,
        *,
        path: Path,
        retention_days: float,
        clock: Clock,
        flush_interval_s: float = 1.0,
        tag_json_limit: int = TAG_JSON_LIMIT,
    ) -> None:
        self.path = path
        # Retention is measured on the hub's clock, never the wall clock: points carry the
        # hub's (possibly simulated or test) time, and pruning them by another clock deletes
        # a test's or a simulation's data as soon as the real date moves on.
        self._clock = clock
        self._retention_s = retention_days * 86400
        self._interval = flush_interval_s
        # Rows by column, not points: see :class:`PendingRows` (and :class:`InfluxWriter`'s lines).
        self._buffer = PendingRows(tag_json_limit=tag_json_limit)
        self._points = 0  # points behind ``_buffer``
        self._db: sqlite3.Connection | None = None
        self._lock = threading.Lock()  # one worker thread at a time on the connection
        self._task: asyncio.Task[None] | None = None
        self._last_prune = 0.0
        self.stats = WriterStats()
        #: Set when FLUSH_POINTS wait: the flush loop goes before its interval is up.
        self._full = asyncio.Event()
        #: The insert of the flush under way, if any (stop() waits for it).
        self._inserting: asyncio.Future[int] | None = None

    def write(self, point: Point) -> None:
        """Queue one point's rows: no I/O, never blocks; a point with nothing to write is counted."""
        self._queued(*self._buffer.add_many((point,)))

    def write_many(self, points: Iterable[Point]) -> None:
        """Queue the points' rows in one call into the compiled half (:class:`PendingRows`)."""
        self._queued(*self._buffer.add_many(points))

    def _queued(self, seen: int, refused: int, why: str) -> None:
        self.stats.queued(seen, refused, why)
        self._points += seen - refused
        if self._points >= FLUSH_POINTS and not self._full.is_set():
            self._full.set()

    @property
    def buffered(self) -> int:
        return self._points

    @property
    def spool_fill(self) -> float:
        """No spool: points go straight to the local file."""
        return 0.0

    async def start(self) -> None:
        self._db = await asyncio.to_thread(_connect, self.path)
        self._task = asyncio.create_task(self._run(), name=TASK_NAME)

    async def stop(self, *, grace_s: float = 10.0) -> None:
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        # A flush the cancel interrupted goes on (shielded) and is waited for: its points had
        # left the buffer already, and stop's own flush below would not find them.
        inserting, self._inserting = self._inserting, None
        if inserting is not None:
            with contextlib.suppress(Exception):
                await inserting  # its error was the flush's, logged there or lost with the stop
        await self.flush()
        if self._db is not None:
            db, self._db = self._db, None
            # Under the lock: a flush cancelled above may still be inserting in its worker
            # thread (cancelling the task does not stop the thread); closing the connection
            # under it would crash the interpreter.
            await asyncio.to_thread(self._close, db)

    def _close(self, db: sqlite3.Connection) -> None:
        with self._lock:
            db.close()

    async def _run(self) -> None:
        while True:
            # Every interval, or as soon as FLUSH_POINTS wait.
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(self._interval):
                    await self._full.wait()
            self._full.clear()
            try:
                await self.flush()
            except Exception as exc:
                # Whatever one flush met (a full disk, a row SQLite refused), the next second's
                # points must still be written: this loop must not die of it.
                self.stats.last_error = str(exc)
                log.exception("time-series sqlite flush failed")

    async def flush(self) -> None:
        if not self._buffer or self._db is None:
            return
        rows, self._buffer = self._buffer, self._buffer.emptied()
        points, self._points = self._points, 0
        prune_before = None
        now = self._clock.now()
        if abs(now - self._last_prune) > 60:
            self._last_prune = now
            prune_before = now - self._retention_s
        # Shielded: a stop() that cancels this flush while its insert waits for a worker thread
        # would drop the job with the points in it (found in review); stop() waits for it.
        insert = asyncio.ensure_future(asyncio.to_thread(self._insert, rows.rows(), prune_before))
        self._inserting = insert
        try:
            dropped = await asyncio.shield(insert)
        finally:
            if insert.done() and self._inserting is insert:
                self._inserting = None
        if dropped:
            self.stats.invalid_points += dropped
            self.stats.last_error = f"{dropped} rows not written: a text that is not valid UTF-8"
            log.warning("time-series: %d rows not written: a text that is not valid UTF-8", dropped)
        self.stats.points_delivered += points
        self.stats.batches_sent += 1

    def _insert(self, rows: Iterable[Row], prune_before: float | None) -> int:
        """Write the rows in one transaction; returns how many could not be written (see :func:`_batch_json`)."""
        dropped = 0
        with self._lock:
            db = self._db
            if db is None:
                return 0
            db.execute("BEGIN")
            try:
                remaining = iter(rows)
                while batch := list(islice(remaining, INSERT_BATCH_ROWS)):
                    doc, unwritable = _batch_json(batch)
                    if _ESCAPED_NUL in doc:
                        batch, bound = _rows_with_nul(batch)
                        doc, unwritable = _batch_json(batch)
                        for row in bound:
                            try:
                                db.execute(_INSERT_ROW, row)
                            except UnicodeEncodeError:  # a lone surrogate as well
                                unwritable += 1
                    dropped += unwritable
                    db.execute(_INSERT, (doc,))
                if prune_before is not None:
                    db.execute("DELETE FROM points WHERE ts < ?", (prune_before,))
                db.execute("COMMIT")
            except BaseException:
                # On a constraint error SQLite undoes the failing statement only: the
                # transaction stays open, and every later ``BEGIN`` would fail with it. (A full
                # disk's transaction SQLite rolls back itself, hence the check.)
                if db.in_transaction:
                    db.execute("ROLLBACK")
                raise
        return dropped

    async def query(
        self,
        *,
        measurement: str,
        field: str,
        start: float,
        end: float,
        bucket_s: float,
        aggregate: Aggregate = Aggregate.MEAN,
        where: Mapping[str, str] | None = None,
        group_by: str | None = None,
    ) -> list[Series]:
        """:func:`query_series` on this sink's file, in a worker thread."""
        return await asyncio.to_thread(
            query_series,
            self.path,
            measurement=measurement,
            field=field,
            start=start,
            end=end,
            bucket_s=bucket_s,
            aggregate=aggregate,
            where=where,
            group_by=group_by,
        )


def _json_path(key: str) -> str:
    if not key.replace("_", "").isalnum():
        raise ValueError(f"tag key {key!r}: letters, digits and underscores only")
    return f"$.{key}"


def query_series(
    path: Path,
    *,
    measurement: str,
    field: str,
    start: float,
    end: float,
    bucket_s: float,
    aggregate: Aggregate = Aggregate.MEAN,
    where: Mapping[str, str] | None = None,
    group_by: str | None = None,
) -> list[Series]:
    """A field of a measurement in ``[start, end)``, filtered by tags, bucketed and aggregated.

    Buckets start at multiples of ``bucket_s`` (Unix time); empty buckets are absent.
    """
    if bucket_s <= 0:
        raise ValueError("bucket_s must be positive")
    params: list[object] = [bucket_s, bucket_s]
    group_sql = "''"
    if group_by:
        group_sql = "coalesce(json_extract(tags, ?), '')"
        params.append(_json_path(group_by))
    agg = _SQL_AGG[aggregate]
    extra = ", max(ts)" if aggregate is Aggregate.LAST else ""
    sql = (
        f"SELECT CAST(ts / ? AS INTEGER) * ? AS bucket, {group_sql} AS grp, {agg}{extra} FROM points"  # noqa: S608
        " WHERE measurement = ? AND field = ? AND ts >= ? AND ts < ?"
    )
    params += [measurement, field, start, end]
    for key, value in (where or {}).items():
        sql += " AND json_extract(tags, ?) = ?"
        params += [_json_path(key), value]
    sql += " GROUP BY bucket, grp ORDER BY grp, bucket"
    db = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    try:
        rows = db.execute(sql, params).fetchall()
    finally:
        db.close()
    grouped: dict[str, list[tuple[float, float]]] = {}
    for bucket, group, value, *_ in rows:
        if value is not None:
            grouped.setdefault(str(group), []).append((float(bucket), float(value)))
    return [Series(group=g, points=tuple(p)) for g, p in grouped.items()]
