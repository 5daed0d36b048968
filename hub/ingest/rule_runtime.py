"""The rule engine at run time: persisted state, timers, and packs reloaded without a restart.

The evaluator (``rules/``) is pure; this module gives it the hub's clock, writes its state
to the store, fires its timers after the broker's backlog is processed, and reloads packs
on change or on request. Signals go to the pipeline, which stores them.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Sequence
from pathlib import Path

from adapters.errors import LinliError
from hub.clock import Clock, SteadyClock, wall_delay
from hub.community.registry import Registry
from hub.storage.rule_state import RuleStateStore
from rules.evaluator import Evaluator
from rules.loader import BUILTIN_PACKS, load_packs
from rules.model import Rule
from rules.signals import Signal
from rules.state import Key, MemoryState
from rules.subject import Subject

log = logging.getLogger(__name__)

#: After start-up, rule timers wait until no message came for this long (the broker's backlog
#: of queued messages is processed), but never longer than the bound.
CATCH_UP_QUIET_S = 1.0
CATCH_UP_MAX_S = 15.0
RULE_TIMER_POLL_S = 1.0
RULE_TIMER_MAX_BACKOFF_S = 60.0
RULE_WATCH_S = 2.0
ROUTINE_STATE_FLUSH_S = 5.0
#: Slots per transaction of the routine flush, the event loop's turn in between. Written in one
#: piece, thousands of slots held the loop for 200–500 ms every 5 s on the bench machine: the
#: largest stall an SOS press waited behind (docs/benchmarks.md, "SOS latency split").
ROUTINE_FLUSH_SLICE = 256
#: The routine flush hands the file's writer no more while it has this many rows to write. A
#: burst (every device reporting after an outage) marks 2 × 10⁵ slots within seconds; handed
#: over at once, their rows' text waited in memory for the writer (≈ 35 MB at 100 000 devices,
#: docs/benchmarks.md, "Thirty-fifth pass"). The marks wait instead, at no cost; what is
#: waiting is routine (deadlines moved on), never an alert's state (the per-turn flush).
ROUTINE_BACKLOG_ROWS = 8192
#: How often a waiting routine flush looks at the writer's backlog again.
ROUTINE_BACKLOG_POLL_S = 0.05


class RuleRuntime:
    """Owns the evaluator, its persisted state and its timers."""

    def __init__(
        self,
        *,
        rule_paths: Sequence[Path],
        rules: Sequence[Rule] | None,
        overrides: dict[str, dict[str, dict[str, float | int | str]]],
        zone: str,
        registry: Registry,
        state_store: RuleStateStore,
        clock: Clock,
    ) -> None:
        self._roots = tuple(rule_paths) or (BUILTIN_PACKS,)
        self._overrides = overrides
        self._registry = registry
        self._state_store = state_store
        self._clock = clock
        self.rules = tuple(rules if rules is not None else load_packs(self._roots))
        subjects = registry.subjects()
        # The slots' keys share the registry's copy of each device id.
        self._state: MemoryState = state_store.load(names={s.device_id: s.device_id for s in subjects})
        self.evaluator = Evaluator(rules=self.rules, state=self._state, zone=zone, overrides=overrides)
        # Every expected device gets its absence deadlines (a device that never reports is caught).
        self.evaluator.start(subjects, clock.now())
        self._flush_pending = False
        #: The subjects this hub works (``None``: the whole registry; a cluster node: its share).
        self._working: tuple[Subject, ...] | None = None
        self._closed = False
        self._stamp: tuple[tuple[str, float], ...] = ()
        self.caught_up = asyncio.Event()
        #: When the timer loop last ran (event-loop monotonic time): readiness checks it beats.
        self.beat: float | None = None

    # -- state -------------------------------------------------------------------------------

    def state_changed(self) -> None:
        """Rule state goes to disk once per event-loop turn, however many messages the turn had."""
        if not self._flush_pending:
            self._flush_pending = True
            try:
                asyncio.get_running_loop().call_soon(self.flush)
            except RuntimeError:  # no loop (tools, in-process benchmarks): write now
                self.flush()

    def flush(self, *, include_routine: bool = False) -> int:
        self._flush_pending = False
        if self._closed:
            # A flush scheduled for the loop turn after stop(): the final flush already ran.
            return 0
        return self._state_store.flush(self._state, include_routine=include_routine)

    @property
    def state_store(self) -> RuleStateStore:
        return self._state_store

    @property
    def state_set_aside(self) -> Path | None:
        """Where an unreadable rule-state file was moved at start (``None``: it was not)."""
        file = self._state_store.file
        return file.set_aside if file is not None else None

    @property
    def state_ok(self) -> bool:
        """Whether rule state reaches the disk (readiness: timers would not survive a restart)."""
        return self._state_store.ok

    def adopt(self, subjects: Sequence[Subject], *, owned: Sequence[Subject]) -> None:
        """A cluster node took these subjects over: their state as the store has it, timers included.

        ``owned`` is every subject this node works now (absence deadlines are armed for those
        with no stored state; nobody else's are touched). A deadline that passed while the
        community had no owner fires at the next timer round, once.
        """
        ids = [s.device_id for s in subjects]
        rows = self._state_store.load_subjects(ids)
        self._state.replace_subjects(ids, rows)
        if isinstance(self._clock, SteadyClock):
            # The last owner's newest applied event, on its clock: if ours is behind, our
            # events would be "late" against it until ours caught up (SteadyClock.raise_to).
            newest = max(
                (
                    t
                    for _, _, row in rows
                    if row is not None and isinstance(t := row.get("last_ts"), float | int)
                ),
                default=None,
            )
            if newest is not None and self._clock.raise_to(float(newest)):
                log.warning(
                    "the rules' clock is %.1f s behind the last owner's for the devices taken over;"
                    " it runs on from the newest event applied there (a cluster node's clock is off)",
                    self._clock.ahead,
                )
        self._working = tuple(owned)
        self.evaluator.start(owned, self._clock.now())

    def forget(self, device_ids: Sequence[str]) -> None:
        """Not this node's any more (or not yet): drop their state, write nothing for them."""
        # Their marks go too, so no flush writes (or deletes) a row of theirs: that would wipe
        # what the new owner loads. A routine flush takes its keys from the marks as it writes.
        self._state.replace_subjects(device_ids, ())
        gone = frozenset(device_ids)
        working = self._registry.subjects() if self._working is None else self._working
        self._working = tuple(s for s in working if s.device_id not in gone)

    def close(self) -> None:
        """The last flush (routine updates included); later scheduled flushes do nothing, even if
        this one failed (the store is about to close: a later one would hit a closed store)."""
        try:
            self.flush(include_routine=True)
        finally:
            self._closed = True
            self._state_store.close()  # the rule-state file's writer writes what it was handed

    async def flush_routine(self) -> None:
        """Routine rule-state updates (deadlines moved on by readings) go to disk every few seconds."""
        while True:
            await asyncio.sleep(ROUTINE_STATE_FLUSH_S)
            try:
                await self.flush_in_slices()
            except Exception:
                # The keys not written are dirty again: the next round retries them. A store
                # that stays broken is what readiness reports; this loop must not die of it.
                log.exception("routine rule-state flush failed; retrying in %.0f s", ROUTINE_STATE_FLUSH_S)

    async def flush_in_slices(self, *, slice_size: int = ROUTINE_FLUSH_SLICE) -> int:
        """Every changed slot, routine updates included, ``slice_size`` per transaction.

        The keys are taken from the state's marks a slice at a time (:meth:`MemoryState.take_dirty`),
        and only while the file's writer has fewer than :data:`ROUTINE_BACKLOG_ROWS` rows to
        write. Each slice is snapshotted when it is written, so a slot changed after its key
        was taken is marked again and goes out with its newest value (in this round or the
        next). The round takes as many keys as were marked when it began, so a steady stream
        of changes cannot keep it going. Keys not taken stay marked for the next flush or the
        final one at close; a slice taken but not written (a store error) is marked again.
        """
        state, store = self._state, self._state_store
        budget = state.dirty_count()
        written = 0
        chunk: list[Key] = []
        try:
            while budget > 0 and not self._closed:
                # Polled: the writer is a thread, and a wake-up from it would need the loop.
                while store.backlog >= ROUTINE_BACKLOG_ROWS and not self._closed:  # noqa: ASYNC110
                    await asyncio.sleep(ROUTINE_BACKLOG_POLL_S)
                if self._closed:
                    break
                chunk = state.take_dirty(min(slice_size, budget))
                if not chunk:
                    break
                budget -= len(chunk)
                # Taken and handed over in one step: a device forgotten (handed to another node)
                # meanwhile has no marks left to take (forget), and one adopted again is ours.
                written += store.write(state, chunk)
                chunk = []
                if budget > 0:
                    await asyncio.sleep(0)
        finally:
            if chunk and not self._closed:
                state.mark_dirty(chunk)  # not written (a store error): the next flush takes them
        return written

    # -- packs -------------------------------------------------------------------------------

    def _files(self) -> list[Path]:
        return sorted(f for root in self._roots for f in (root.glob("*.yaml") if root.is_dir() else [root]))

    def _files_stamp(self) -> tuple[tuple[str, float], ...]:
        return tuple((str(f), f.stat().st_mtime) for f in self._files() if f.exists())

    def reload(self) -> int:
        """Load the packs again; state of rules that still exist is kept. Bad packs change nothing."""
        rules = load_packs(self._roots)
        self.evaluator.reload(rules, self._overrides)
        self.evaluator.start(
            self._registry.subjects() if self._working is None else self._working, self._clock.now()
        )
        self.rules = tuple(rules)
        self._stamp = self._files_stamp()
        self.flush()
        log.info("rule packs reloaded: %d rules", len(rules))
        return len(rules)

    def remember_files(self) -> None:
        self._stamp = self._files_stamp()

    async def watch(self) -> None:
        """Reload the packs when a file changes (``linli rules reload`` does it on demand)."""
        while True:
            await asyncio.sleep(RULE_WATCH_S)
            stamp = await asyncio.to_thread(self._files_stamp)
            if stamp != self._stamp:
                try:
                    self.reload()
                except LinliError as exc:
                    self._stamp = stamp  # do not retry the same broken files every 2 s
                    log.error("rule packs changed but are invalid; keeping the old rules: %s", exc)
                except Exception:
                    # A loader bug must not end the watch: every later change would be missed.
                    self._stamp = stamp
                    log.exception("rule packs changed and could not be loaded; keeping the old rules")

    # -- timers ------------------------------------------------------------------------------

    def run_due(self, apply: Callable[[Sequence[Signal]], None]) -> int:
        """Fire the rule timers due now (durations, absences, count windows); returns signals applied."""
        signals = self.evaluator.due(self._clock.now())
        apply(signals)
        self.flush()
        return len(signals)

    async def run_timers(
        self, apply: Callable[[Sequence[Signal]], None], messages: Callable[[], int]
    ) -> None:
        """Rule timers, started only after the backlog the broker kept for us is processed.

        Messages queued while the hub was down arrive first; an overdue timer whose condition
        cleared in that backlog must be cancelled by it, not fire (a door closed while we were
        down). So: wait until the stream goes quiet (or a bound), then fire what is still due.
        """
        loop = asyncio.get_running_loop()
        seen, quiet_since, started = -1, loop.time(), loop.time()
        while loop.time() - started < CATCH_UP_MAX_S:
            if messages() != seen:
                seen, quiet_since = messages(), loop.time()
            elif loop.time() - quiet_since >= CATCH_UP_QUIET_S:
                break
            await asyncio.sleep(0.05)
        log.info("caught up after %d queued message(s); rule timers running", max(seen, 0))
        self.caught_up.set()
        failures = 0
        while True:
            self.beat = loop.time()
            try:
                self.run_due(apply)
            except Exception:
                # A bug in one rule's timer must not stop every other timer: log, back off, go on.
                failures += 1
                delay = min(RULE_TIMER_MAX_BACKOFF_S, RULE_TIMER_POLL_S * 2**failures)
                log.exception("rule timers failed; next try in %.0f s", delay)
                await asyncio.sleep(delay)
                continue
            failures = 0
            next_at = self.evaluator.next_due()
            delay = (
                RULE_TIMER_POLL_S
                if next_at is None
                else min(RULE_TIMER_POLL_S, wall_delay(self._clock, max(0.0, next_at - self._clock.now())))
            )
            await asyncio.sleep(delay)
