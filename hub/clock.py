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


class DemoClock:
    """The demo's clock: the wall clock, which a scenario may move *forward* (never back).

    ``linli demo`` runs on real time (deadlines and lights as people see them), yet a scenario
    played against it (``linli simulate scenario --hub``) steps through minutes or hours in
    seconds: each step moves this clock on, and it keeps running from there. Only the demo
    builds one; a production hub runs on :class:`SystemClock` and has no way to move it.
    """

    def __init__(self, *, wall: Clock | None = None) -> None:
        self._wall = wall or SystemClock()
        self._offset = 0.0

    def now(self) -> float:
        return self._wall.now() + self._offset

    @property
    def offset(self) -> float:
        """How far ahead of the wall clock scenarios have moved this clock (seconds)."""
        return self._offset

    def set(self, ts: float) -> None:
        """Move on to ``ts``; a moment already passed leaves the clock where it is."""
        ahead = ts - self.now()
        if ahead > 0:
            self._offset += ahead


class ScaledClock:
    """Simulated time running ``speed`` times faster than the wall clock, from ``start``.

    The demo gives the same clock to the hub and the simulator (``--speed 60``: an hour a
    minute), so shifts, durations and SLAs follow the simulated day.
    """

    def __init__(self, *, start: float, speed: float, wall: Clock | None = None) -> None:
        if speed <= 0:
            raise ValueError("speed must be positive")
        self._wall = wall or SystemClock()
        self._start = start
        self._wall_start = self._wall.now()
        self.speed = speed

    def now(self) -> float:
        return self._start + (self._wall.now() - self._wall_start) * self.speed

    def wall_seconds(self, simulated: float) -> float:
        """How long ``simulated`` seconds take on the wall clock."""
        return simulated / self.speed


def wall_delay(clock: Clock, simulated: float) -> float:
    """Wall-clock seconds to sleep until ``simulated`` seconds of ``clock`` time have passed."""
    return simulated / clock.speed if isinstance(clock, ScaledClock) else simulated


def local(ts: float, zone: ZoneInfo) -> datetime:
    """The wall-clock time in ``zone`` for a Unix timestamp."""
    return datetime.fromtimestamp(ts, zone)


def iso(ts: float) -> str:
    """RFC 3339 UTC, millisecond precision: the API's timestamp format."""
    return datetime.fromtimestamp(ts, UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")
