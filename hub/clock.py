"""The one clock every duration, shift and SLA is measured with.

Everything that needs "now" is given a :class:`Clock`; tests pass a :class:`ManualClock`
and advance it instead of sleeping.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Hashable, Mapping
from datetime import UTC, datetime
from typing import Generic, Protocol, TypeVar
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


class SteadyClock:
    """The rules' clock: the hub's wall clock, except that it never runs backwards.

    Why: the rules know a redelivered or late event by its time (``rules.triggers.base.accept``:
    an event older than the newest one applied for a rule and device is *late* and changes
    nothing). Most devices send no time of their own, so their events carry the hub's receive
    time. When NTP steps the wall clock back an hour, every such event is an hour older than
    the ones before it: for that hour a car entering the fire lane, a door held open, a
    device back online were all "late" and dropped, and the duration timers they would have
    started never ran. (Measured before this clock: with a step of −1 h, a fire-lane car got no
    alert; with no step or +1 h, its alert came after 60 s.)

    So the rules run on this clock instead. It follows the wall clock, and forward steps at
    once (their deadlines fall due early: the safe side). When the wall clock goes back, it
    keeps going, at ``1 - slew`` of the monotonic clock's pace, until the wall clock has caught
    up with it: the step is absorbed in ``Δ / slew`` seconds (``slew=0.5``: an hour's step in
    two hours, during which a rule's duration takes up to twice as long; an escalation is
    not slowed, see :class:`Deadlines`). A step back of more than ``max_absorb_s`` (a clock
    that was badly wrong, say a day ahead) is followed instead and logged as critical: the
    rules then treat events as late until the wall clock reaches their newest one again.

    Everything people see (shifts, alerts, cases, SLAs, reply windows) stays on the wall clock.
    Only ingest runs on this one: receive stamps, device times moved by :attr:`ahead` onto the
    same axis, the device states and charts made from them, and the rule timers. Signals go
    back to the wall clock where they are stored (``Pipeline.apply_signals``).

    ``floor``: the latest time this clock gave in a previous run (``hub.ingest.rule_clock``): a
    restart during an absorption, or after the clock stepped back while the hub was down,
    starts from there instead of from the stepped-back wall clock. One owner, the event loop.
    """

    def __init__(
        self,
        *,
        wall: Clock,
        monotonic: Callable[[], float] = time.monotonic,
        floor: float | None = None,
        slew: float = 0.5,
        max_absorb_s: float = 12 * 3600.0,
        on_step: Callable[[float, bool], None] | None = None,
    ) -> None:
        if not 0.0 < slew < 1.0:
            raise ValueError("slew must be between 0 and 1")
        self._wall = wall
        self._monotonic = monotonic
        self._pace = 1.0 - slew
        self._max_absorb_s = max_absorb_s
        self._on_step = on_step
        wall_now = wall.now()
        start = wall_now
        if floor is not None and 0.0 < floor - wall_now <= max_absorb_s:
            start = floor
        self._last = start
        self._last_mono = monotonic()
        #: How far this clock is ahead of the wall clock (seconds; 0 unless absorbing a step).
        self.ahead = start - wall_now
        #: Steps back seen while running (absorbed or followed), for the log and ``/metrics``.
        self.steps_back = 0

    def now(self) -> float:
        wall = self._wall.now()
        mono = self._monotonic()
        last = self._last
        if wall >= last:
            self._last, self._last_mono, self.ahead = wall, mono, 0.0
            return wall
        if self.ahead == 0.0:
            self._stepped(last - wall)
        steady = last + max(0.0, mono - self._last_mono) * self._pace
        if steady - wall > self._max_absorb_s:
            steady = wall  # too far to ride out: follow the wall clock (logged by _stepped)
        elif wall > steady:
            steady = wall
        self._last, self._last_mono, self.ahead = steady, mono, steady - wall
        return steady

    def raise_to(self, ts: float) -> bool:
        """Give no time before ``ts`` from now on, absorbing the difference as a step back.

        For a cluster node that took a community over: its rule state holds the newest event
        time another node applied (``Slot.last_ts``, on that node's clock). If this node's
        clock is behind, every event it stamps would be older than that one, "late", until its
        own clock passed it — the step-back failure, met through clock skew instead of a step.
        Returns whether the clock moved. A ``ts`` more than ``max_absorb_s`` ahead of the wall
        clock is not followed (as a step back that far is not: a clock that badly wrong).
        """
        now = self.now()
        wall = self._wall.now()
        if ts <= now or ts - wall > self._max_absorb_s:
            return False
        self._last, self._last_mono, self.ahead = ts, self._monotonic(), ts - wall
        return True

    def _stepped(self, seconds: float) -> None:
        self.steps_back += 1
        if self._on_step is not None:
            self._on_step(seconds, seconds <= self._max_absorb_s)


def wall_delay(clock: Clock, simulated: float) -> float:
    """Wall-clock seconds to sleep until ``simulated`` seconds of ``clock`` time have passed."""
    return simulated / clock.speed if isinstance(clock, ScaledClock) else simulated


def local(ts: float, zone: ZoneInfo) -> datetime:
    """The wall-clock time in ``zone`` for a Unix timestamp."""
    return datetime.fromtimestamp(ts, zone)


def iso(ts: float) -> str:
    """RFC 3339 UTC, millisecond precision: the API's timestamp format."""
    return datetime.fromtimestamp(ts, UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def clock_span(clock: Clock, wall: float) -> float:
    """Seconds of ``clock`` time that pass in ``wall`` seconds (the inverse of :func:`wall_delay`)."""
    return wall * clock.speed if isinstance(clock, ScaledClock) else wall


Key = TypeVar("Key", bound=Hashable)


class Deadlines(Generic[Key]):
    """Deadlines on the hub's clock, each also tracked on the monotonic clock: due by either.

    Why: a deadline people wait on (an escalation step, the retry of a notification whose
    delivery failed) is a wall-clock time, because that is what survives a restart. When NTP
    steps the wall clock back an hour, such a time comes an hour late: an unacknowledged SOS
    not escalated for an hour. So while the process runs, each deadline also gets a due time
    on the monotonic clock (which no step moves) when it is set, and it is due when *either*
    comes. After a forward step the wall-clock time comes first, as before.

    The hub's time itself is not moved (riding a step out on the monotonic clock would leave
    shifts and SLAs off by the step for good). Only :meth:`now` tells, per deadline, how far
    the hub's time has got since the deadline was set *as the monotonic clock counts it*: the
    ``now`` to plan that deadline's work with, so that what fell due is found due and the next
    deadline is timed from there (and tracked from there).

    ``monotonic=None`` tracks nothing: a :class:`ManualClock` hub's time moves only when a
    test says so, and the real monotonic clock beside it would count the test's own seconds.
    Plain scans, no heap: a round looks at every tracked key (about a microsecond each, and a
    hub has at most thousands open). One owner, on the event loop.
    """

    def __init__(self, *, clock: Clock, monotonic: Callable[[], float] | None = time.monotonic) -> None:
        self._clock = clock
        self._monotonic = monotonic
        #: Key → (its deadline on the hub's clock, its due time on the monotonic clock).
        self._due: dict[Key, tuple[float, float]] = {}
        #: The monotonic time of the last :meth:`fallen_due`: what fell due up to then was handed out.
        self._handed_out = float("-inf")

    def __len__(self) -> int:
        return len(self._due)

    def __contains__(self, key: object) -> bool:
        return key in self._due

    def set(self, key: Key, deadline: float | None, *, now: float | None = None) -> None:
        """``key`` is next due at ``deadline`` (``None``: no longer), worked out at hub time ``now``.

        ``now`` defaults to the clock's; pass the key's :meth:`now` when the deadline was
        planned with it, so that its monotonic due time counts from the same moment.
        """
        if deadline is None:
            self._due.pop(key, None)
        elif self._monotonic is not None:
            at = self._clock.now() if now is None else now
            self._due[key] = (deadline, self._monotonic() + wall_delay(self._clock, deadline - at))

    def adopt(self, stored: Mapping[Key, float]) -> None:
        """Track deadlines an earlier process (or another node) stored, on the wall clock alone.

        Counted on the monotonic clock from now; a key already tracked keeps its own reckoning.
        """
        now = self._clock.now()
        for key, deadline in stored.items():
            if key not in self._due:
                self.set(key, deadline, now=now)

    def forget(self, key: Key) -> None:
        self._due.pop(key, None)

    def deadline(self, key: Key) -> float | None:
        """The deadline tracked for ``key`` on the hub's clock (``None``: none)."""
        tracked = self._due.get(key)
        return tracked[0] if tracked is not None else None

    def now(self, key: Key) -> float:
        """The hub's time for ``key``: the clock's or, if later, the deadline's own reckoning.

        That reckoning is the moment the deadline was set plus the monotonic seconds since:
        without a step both agree (to the clocks' drift, and the clock's wins); after a step
        back it is where the clock would be had it not stepped.
        """
        wall = self._clock.now()
        tracked = self._due.get(key)
        if tracked is None or self._monotonic is None:
            return wall
        deadline, due = tracked
        return max(wall, deadline + clock_span(self._clock, self._monotonic() - due))

    def fallen_due(self) -> dict[Key, float]:
        """Keys whose monotonic due time has come, with their deadline on the hub's clock.

        They stay tracked until their owner sets the next deadline (or forgets them), so a
        round that failed to work one finds it again.
        """
        if self._monotonic is None or not self._due:
            return {}
        mono = self._monotonic()
        self._handed_out = mono
        return {key: deadline for key, (deadline, due) in self._due.items() if due <= mono}

    def next_in(self) -> float | None:
        """Real seconds until a key falls due on the monotonic clock that :meth:`fallen_due` has not
        handed out yet (``None``: none); 0 for one that fell due since (while its round ran).

        Keys handed out are left out: their owner works them each round until it sets their
        next deadline, and one it cannot work must not make its loop spin. Those that fell due
        during the round are not: the round began before them (two SOS cases dispatched a
        millisecond apart — the second's step waited for the next wake-up, 4 s, without this).
        """
        if self._monotonic is None or not self._due:
            return None
        mono = self._monotonic()
        return min(
            (max(0.0, due - mono) for _, due in self._due.values() if due > self._handed_out), default=None
        )
