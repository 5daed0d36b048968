"""The one clock every duration, shift and SLA is measured with.

Everything that needs "now" is given a :class:`Clock`; tests pass a :class:`ManualClock`
and advance it instead of sleeping.
"""

from __future__ import annotations

import time
from datetime import UTC, datetime
from typing import Protocol
from zoneinfo import ZoneInfo


class Clock(Protocol):
    def now(self) -> float:
        """Unix epoch seconds (UTC)."""
        ...


class SystemClock:
    def now(self) -> float:
        return time.time()


class ManualClock:
    """A clock that moves only when told to."""

    def __init__(self, *, start: float) -> None:
        self._now = start

    def now(self) -> float:
        return self._now

    def advance(self, seconds: float) -> None:
        if seconds < 0:
            raise ValueError("time does not run backwards")
        self._now += seconds

    def set(self, ts: float) -> None:
        self._now = ts


def local(ts: float, zone: ZoneInfo) -> datetime:
    """The wall-clock time in ``zone`` for a Unix timestamp."""
    return datetime.fromtimestamp(ts, zone)


def iso(ts: float) -> str:
    """RFC 3339 UTC, millisecond precision: the API's timestamp format."""
    return datetime.fromtimestamp(ts, UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")
