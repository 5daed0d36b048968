"""Event points on the hot path: each device's tags sorted and line-protocol-escaped once.

:func:`hub.timeseries.schema.event_points` builds a tag dict, filters, sorts and (later, in
the writer) escapes every tag of every point. A device's tags only change when the registry
does, so :class:`EventSeries` keeps, per (device, measurement, the event's own tags), the
sorted tags and the encoded ``measurement,tag=value…`` head, and reuses them while the
registry hands out the same :class:`SubjectInfo` object. The points are equal to
``event_points``'s (``tests/test_timeseries_schema.py`` checks it); only the work differs.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Sequence
from typing import Any

from adapters.events import Event
from hub.timeseries.line_protocol import Point, encode_head, sorted_tags
from hub.timeseries.schema import ExtraTags, Measurement, SubjectInfo, event_shape, event_tags

#: Cached heads (one to three per device), oldest dropped first past this. An entry is ≈ 0.6 KB:
#: held for every device of a 100 000-device district they were ≈ 190 MB once all had reported
#: (docs/benchmarks.md, "Ninth pass"). Most of such a fleet's points are its health points,
#: charted every few minutes per device, which a cache cannot speed up anyway: at 32 768 the
#: cache held ≈ 17 MB there and missed all the same. 8 192 keeps a community of a few thousand
#: devices whole (the ingest bench's 2 260 devices fill 3 702) and a district's busiest
#: (doors, parking) most of the time (docs/benchmarks.md, "Thirtieth pass").
CACHE_LIMIT = 8_192

_Key = tuple[str, Measurement, ExtraTags]
_Entry = tuple[SubjectInfo, tuple[tuple[str, str], ...], str]


class EventSeries:
    """``event_points`` with per-device tags cached (see the module docstring)."""

    def __init__(self, *, limit: int = CACHE_LIMIT) -> None:
        self._limit = limit
        # An OrderedDict: taking a plain dict's first key after many deletions at the front
        # scans past their dummies (measured: 10 s more CPU for 101 300 first messages).
        self._cache: OrderedDict[_Key, _Entry] = OrderedDict()
        #: One object per distinct ``(tag, value)`` pair across the entries. A device's tags
        #: are its own id (not kept here: one pair per device) and seven or so it shares with
        #: its neighbours (community, grid, model…); a tuple of its own for each pair was
        #: ≈ 0.4 KB an entry (docs/benchmarks.md, "Twenty-first pass"). Bounded like the cache:
        #: past the limit it starts over (so it holds at most one entry's pairs more).
        #: Typed ``Any``, as the loop below: the compiled build (hub/ingest/hot_path.py) holds a
        #: ``tuple[str, str]`` unboxed and makes a new tuple object each time it hands one on,
        #: which would give every entry its own pairs again.
        self._pairs: dict[Any, Any] = {}

    def __len__(self) -> int:
        return len(self._cache)

    def points(self, event: Event, info: SubjectInfo) -> list[Point]:
        shape = event_shape(event)
        if shape is None:
            return []
        measurement, fields, extra = shape
        key = (event.device_id, measurement, extra)
        entry = self._cache.get(key)
        if entry is None or entry[0] is not info:
            pairs = self._pairs
            if len(pairs) >= self._limit:
                pairs.clear()
            raw: Sequence[Any] = sorted_tags(event_tags(measurement, event.device_id, info, extra))
            tags = tuple([pair if pair[0] == "device_id" else pairs.setdefault(pair, pair) for pair in raw])
            entry = (info, tags, encode_head(measurement, tags))
            cache = self._cache
            if key not in cache and len(cache) >= self._limit:
                cache.popitem(last=False)  # the oldest entry
            cache[key] = entry
        return [
            Point(
                measurement=measurement,
                tags=entry[1],
                fields=tuple(fields.items()),
                ts=event.ts,
                head=entry[2],
            )
        ]
