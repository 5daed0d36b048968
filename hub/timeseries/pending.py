"""Points waiting for a sink's flush, kept in the form that sink writes: the sinks' hot-path half.

Every event's points go through here, so this module is on :data:`hub.ingest.hot_path.MODULES`
and runs compiled in a compiled build. The sinks themselves (:mod:`hub.timeseries.writer`,
:mod:`hub.timeseries.sqlite_sink`) do I/O, threads and asyncio and stay pure Python. Their
``write_many`` was a loop in that pure Python calling ``write`` for each point: 1–2 interpreted
calls per point, and the embedded sink's row building interpreted too, ≈ 12 800 of a message's
≈ 112 000 instructions on the compiled build (docs/benchmarks.md, "Twenty-eighth pass"). A sink
now makes one call per message into this module.

Must not import: the sinks, asyncio, anything that does I/O (only :mod:`hub.timeseries.line_protocol`).
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator

import orjson

from hub.timeseries.line_protocol import Point, encode

Tags = tuple[tuple[str, str], ...]
Columns = tuple[list[float], list[str], list[str], list[str], list[float | None], list[str | None]]

#: One row of the embedded sink's ``points`` table: (ts, measurement, tags JSON, field, value, text).
Row = tuple[float, str, str, str, float | None, str | None]

#: Tags tuples whose JSON text the embedded sink remembers; past this many it starts over. About
#: two per charted device (its state and its health points): ≈ 3 MB when full.
TAG_JSON_LIMIT = 8192


def _finite(number: float) -> bool:
    """``math.isfinite`` in native arithmetic: ``x - x`` is NaN for NaN and the infinities.
    Compiled, ``math.isfinite`` is a module attribute read and a call (≈ 300 instructions)."""
    return number - number == 0.0


class Pending:
    """Points taken into what a sink writes: :meth:`add` one (a subclass's), :meth:`add_many` a
    message's worth. Never raises for a point: a time that is not a finite number, a field of a
    type the sink has no form for, or an item that is not a point at all makes that one
    unwritable, not its event nor the other points."""

    def add(self, point: Point) -> bool:
        """Take the point; ``False`` if it has nothing the sink can write."""
        raise NotImplementedError

    def add_many(self, points: Iterable[object]) -> tuple[int, int, str]:
        """How many points there were, how many had nothing to write, and why the last one that
        raised did (``""`` if none did)."""
        seen = refused = 0
        why = ""
        # Items typed ``object``, not ``Point``: compiled, the loop checks each item's type as
        # it takes it, and would raise for one that is not a point; here that is one refusal.
        for item in points:
            seen += 1
            if not isinstance(item, Point):
                refused += 1
                why = f"unwritable point: not a point but a {type(item).__name__}"
                continue
            try:
                added = self.add(item)
            except Exception as exc:
                why = f"unwritable point: {type(exc).__name__}: {exc}"
                added = False
            if not added:
                refused += 1
        return seen, refused, why


class PendingLines(Pending):
    """The InfluxDB writer's buffer: each point's line of line protocol, oldest first."""

    def __init__(self, lines: list[str]) -> None:
        self.lines = lines

    def add(self, point: Point) -> bool:
        line = encode(point)
        if line is None:
            return False
        self.lines.append(line)
        return True


def queue_lines(points: Iterable[object], lines: list[str]) -> tuple[int, int, str]:
    """Each point's line appended to ``lines`` (:meth:`Pending.add_many`'s counts)."""
    return PendingLines(lines).add_many(points)


class PendingRows(Pending):
    """The embedded sink's rows waiting for the insert, kept by column.

    Strings and floats are nothing the cyclic collector tracks; a row tuple is until a
    collection has looked at it, and one holding a :class:`Measurement` member (an object
    with a ``__dict__``) never leaves its lists. Thousands of rows waiting a flush interval
    made young collections walk them at 10 000 msg/s (docs/benchmarks.md, "Nineteenth pass").
    The tuples :meth:`rows` makes live only as long as the insert that reads them.
    """

    def __init__(
        self,
        *,
        tag_json_limit: int = TAG_JSON_LIMIT,
        tag_json: dict[int, tuple[Tags, str]] | None = None,
        plain: dict[str, str] | None = None,
    ) -> None:
        #: Each tags tuple's JSON text, started over past ``tag_json_limit``; kept across flushes.
        self.tag_json: dict[int, tuple[Tags, str]] = {} if tag_json is None else tag_json
        self.tag_json_limit = tag_json_limit
        #: Each measurement's plain ``str`` (a few dozen: the schema's); kept across flushes.
        self._plain: dict[str, str] = {} if plain is None else plain
        self.times: list[float] = []
        self.measurements: list[str] = []
        self.tags: list[str] = []
        self.fields: list[str] = []
        self.values: list[float | None] = []
        self.texts: list[str | None] = []

    def emptied(self) -> PendingRows:
        """An empty buffer with this one's memos: what the sink writes to while this one is inserted."""
        return PendingRows(tag_json_limit=self.tag_json_limit, tag_json=self.tag_json, plain=self._plain)

    def columns(self) -> Columns:
        """The six columns, in the table's order (tests: what the sink holds)."""
        return self.times, self.measurements, self.tags, self.fields, self.values, self.texts

    def add(self, point: Point) -> bool:
        """The point's rows, one per numeric, boolean or string field (NaN and infinities left
        out); ``False`` when it has none or no finite time (``ts`` is NOT NULL, and SQLite
        stores NaN as NULL)."""
        ts = float(point.ts)  # interpreted, an int too large for a float raises here, as it must
        if not _finite(ts):
            return False
        kept: list[tuple[str, float | None, str | None]] = []
        for key, value in point.fields:
            if isinstance(value, str):
                kept.append((key, None, value))
            elif isinstance(value, (int, float)):  # a tuple: compiled, `int | float` builds a union per call
                real = float(value)  # a bool is 0.0 / 1.0; an int too large for a float raises
                if _finite(real):
                    kept.append((key, real, None))
            else:  # bytes, None …: no column takes it (float() would read b"1.5" as a number)
                raise TypeError(f"field {key!r}: a {type(value).__name__} has no column")
        if not kept:
            return False
        # A Measurement member is a str subclass with a __dict__: keep its plain value, made
        # once per measurement (``str.__str__`` each time was a generic call per point).
        measurement = point.measurement
        if type(measurement) is not str:
            plain = self._plain.get(measurement)
            if plain is None:
                plain = self._plain[measurement] = str.__str__(measurement)
            measurement = plain
        # A device's points share one tags tuple (hub.timeseries.event_series caches it), so
        # its JSON text is made once per tuple, not per point: dict, orjson and decode were
        # ≈ 3 k instructions a point (docs/benchmarks.md, "Twenty-fifth pass"). Keyed by
        # identity: the entry holds the tuple, so no other object can have its id meanwhile.
        point_tags = point.tags
        known = self.tag_json.get(id(point_tags))
        if known is not None:
            tags = known[1]
        else:
            tags = orjson.dumps(dict(point_tags)).decode()
            if len(self.tag_json) >= self.tag_json_limit:
                self.tag_json.clear()
            self.tag_json[id(point_tags)] = (point_tags, tags)
        for key, number, text in kept:
            self.times.append(ts)
            self.measurements.append(measurement)
            self.tags.append(tags)
            self.fields.append(key)
            self.values.append(number)
            self.texts.append(text)
        return True

    def __len__(self) -> int:
        return len(self.times)

    def rows(self) -> Iterator[Row]:
        return zip(
            self.times, self.measurements, self.tags, self.fields, self.values, self.texts, strict=True
        )
