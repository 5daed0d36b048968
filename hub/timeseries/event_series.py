"""Event points on the hot path: each device's tags sorted and line-protocol-escaped once.

:func:`hub.timeseries.schema.event_points` builds a tag dict, filters, sorts and (later, in
the writer) escapes every tag of every point. A device's tags only change when the registry
does, so :class:`EventSeries` keeps, per (device, measurement, the event's own tags), the
sorted tags and the encoded ``measurement,tag=value…`` head, and reuses them while the
registry hands out the same :class:`SubjectInfo` object. The points are equal to
``event_points``'s (``tests/test_timeseries_schema.py`` checks it); only the work differs.
"""

from __future__ import annotations

from adapters.events import Event
from hub.timeseries.line_protocol import Point, encode_head, sorted_tags
from hub.timeseries.schema import ExtraTags, Measurement, SubjectInfo, event_shape, event_tags

#: Cached heads: about two per device; past this the cache starts over (memory stays bounded).
CACHE_LIMIT = 300_000

_Key = tuple[str, Measurement, ExtraTags]
_Entry = tuple[SubjectInfo, tuple[tuple[str, str], ...], str]


class EventSeries:
    """``event_points`` with per-device tags cached (see the module docstring)."""

    def __init__(self, *, limit: int = CACHE_LIMIT) -> None:
        self._limit = limit
        self._cache: dict[_Key, _Entry] = {}

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
            tags = sorted_tags(event_tags(measurement, event.device_id, info, extra))
            entry = (info, tags, encode_head(measurement, tags))
            if len(self._cache) >= self._limit:
                self._cache.clear()
            self._cache[key] = entry
        return [
            Point(
                measurement=measurement,
                tags=entry[1],
                fields=tuple(fields.items()),
                ts=event.ts,
                head=entry[2],
            )
        ]
