"""Active windows: is an instant inside a rule's local-time windows?

Instants are Unix seconds; they are turned into wall-clock time in the evaluator's zone with
:mod:`zoneinfo`, so midnight, DST gaps and repeated hours behave as the wall clock does:

* a window crossing midnight (``22:00``–``06:00``) belongs to the day it starts;
* on a spring-forward day the skipped hour simply never occurs (a window 02:30–03:30 in
  Europe/Berlin is active from 03:00 to 03:30 local that day);
* on a fall-back day a repeated hour is inside the window both times it occurs.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from functools import lru_cache
from zoneinfo import ZoneInfo

from rules.model import Window

DEFAULT_ZONE = "Asia/Shanghai"


@lru_cache(maxsize=64)
def zone(name: str) -> ZoneInfo:
    return ZoneInfo(name)


@dataclass(frozen=True, slots=True)
class _Span:
    days: frozenset[int]
    start_s: int
    end_s: int

    def contains(self, weekday: int, second: float) -> bool:
        if self.start_s < self.end_s:
            return weekday in self.days and self.start_s <= second < self.end_s
        # Crosses midnight: the evening part on a listed day, the morning part the day after.
        if second >= self.start_s:
            return weekday in self.days
        return second < self.end_s and (weekday - 1) % 7 in self.days


@dataclass(frozen=True, slots=True)
class ActiveWindows:
    """Compiled windows of one rule in one zone."""

    spans: tuple[_Span, ...]
    tz: ZoneInfo
    #: ``(whole second, answer)`` of the last instant asked about (see :meth:`contains`).
    _last: list[tuple[int, bool]] = field(
        default_factory=lambda: [(-(2**63), False)], init=False, compare=False, repr=False
    )

    @classmethod
    def build(cls, windows: Sequence[Window], zone_name: str) -> ActiveWindows | None:
        if not windows:
            return None
        spans = tuple(_Span(frozenset(d.weekday for d in w.days), w.start * 60, w.end * 60) for w in windows)
        return cls(spans, zone(zone_name))

    def contains(self, ts: float) -> bool:
        # Span bounds and zone offsets are whole seconds, so an instant is inside exactly when
        # its whole second is (a ≤ x < b ⟺ a ≤ ⌊x⌋ < b for integers a, b). The whole second is
        # what gets converted (converting ``ts`` would round its last half-microsecond into the
        # next second), and the events of a busy second (a report's three, a flood's hundreds)
        # convert to local time once.
        whole = math.floor(ts)
        last = self._last[0]
        if last[0] == whole:
            return last[1]
        local = datetime.fromtimestamp(whole, self.tz)
        second = local.hour * 3600 + local.minute * 60 + local.second
        weekday = local.weekday()
        inside = any(span.contains(weekday, second) for span in self.spans)
        self._last[0] = (whole, inside)  # one assignment: a reader on another thread sees old or new
        return inside
