"""Care visits (探访) against the store: scheduling from care plans, outcomes, escalation, sensors.

The pure rules are :mod:`hub.cases.care`; the register is :mod:`hub.casework.elders`. This
service keeps one open task per elder and kind (``visit`` weekly, ``call`` monthly by default),
creates the next one when a task is done, escalates a missed task along ``care.yaml``'s steps
(assignee → 网格长 → 社区值班) at stored deadlines (keys sent once, so a restart repeats
nothing), and ties visits to sensors and cases:

* an **inactivity alert** of an elder's sensor raises his visit to urgent, due within
  ``URGENT_WITHIN_S`` (handbook §2: within 24 h of a major change); a planned visit due later is
  superseded by the urgent one. The alert still becomes a case with its escalation chain (call,
  guardians, 网格长: handbook §5 — a visit days away must not be the only answer);
* a visit that finds the elder **well** resolves the inactivity alert with that record (the
  record names the alert), and casework auto-clears its case: the work ends without any further
  case being filed;
* **needs help** raises a ``care.needs_help`` alert in the record's transaction, which casework
  turns into a case dispatched to the grid (立案 → 派遣).

A missed task's notifications hang on an ``info`` alert ``care.visit_overdue`` of the elder (the
outbox is keyed by alert; ``info`` opens no case), resolved when the task is done. Those alerts
and notices are built by :mod:`hub.casework.care_alerts`; which devices and events are a sign of
life is :mod:`hub.casework.signs`.

``sign_of_life`` tasks (每日平安) are scheduled only for elders whose devices can give a sign
(:mod:`hub.casework.signs`); the app hands every device event to :meth:`Visits.on_event`, and a
door, PIR or green-key event of the elder completes the open task and opens the next one, due at
``due_time`` of the day after the sign. So a task falls due — and escalates like a missed visit,
on its own ``care.no_sign_of_life`` alert and ``sign_of_life.missing`` notifications — only when
a whole day passes without any sign. These tasks are not visits: 探访完成率 leaves them out, and
the visit list shows them only once they are due.

Must not import: ``hub.web``, ``hub.ingest``, ``hub.app``, ``hub.cli``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import replace
from datetime import datetime, time, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from adapters.events import Event
from hub.cases.care import (
    CareFile,
    CarePlan,
    Outcome,
    TaskKind,
    VisitKpiReport,
    VisitTally,
    VisitTask,
    escalations_due,
    light,
    next_task,
    plan_for,
    record,
    same_due_until,
    task_after,
)
from hub.casework.access import Actor, Permission, Reach, Scope, Where
from hub.casework.care_alerts import NO_SIGN_RULE, CareAlerts, overdue_rule, subject_id
from hub.casework.early_signs import EarlySigns
from hub.casework.elders import RegisterEntry, elder_of_device, register, register_entries
from hub.casework.service import Casework
from hub.casework.signs import ANY_SIGN, is_sign, sign_sources, sign_status, source_device
from hub.clock import Clock, iso, wall_delay
from hub.community.model import Resident
from hub.community.registry import Registry
from hub.errors import NotAllowedError, NotFoundError
from hub.notify.routing import Routing
from hub.records import Alert, AlertChange, Role
from hub.steps import Steps, run_through
from hub.storage.engine import Tx
from hub.storage.store import Store
from hub.storage.visits import StoredRecord, StoredTask, VisitFilter, VisitStore
from hub.timeseries import TimeseriesSink, visit_point
from rules.subject import Subject

log = logging.getLogger(__name__)

#: Kinds scheduled from plans for every elder (``sign_of_life`` only where a device can give it).
SCHEDULED = (TaskKind.VISIT, TaskKind.CALL)
#: An urgent visit is due this long after the inactivity alert (a default: handbook §2).
URGENT_WITHIN_S = 86400.0
INACTIVITY = "inactivity"
#: The scheduler's longest sleep: the register may change (a reload) without a deadline.
POLL_S = 60.0
#: Tasks a 探访完成率 report reads (their records in one query) and counts between two turns.
VISIT_TASKS_PER_STEP = 64
#: Elders per slice of the scheduler task's round: one transaction, then the event loop's turn
#: (≈ 10–30 ms of work: short against the ingest's and the SOS lane's latency budget).
SLICE = 500
#: Signs of life held for the first round at most (two per device and local day, below): a round
#: that keeps failing (the store down for days) must not make the hub run out of memory. Past it
#: the oldest day's signs go first; a sign lost that way at worst lets a task fall due, and a
#: person checks on the elder (the no-sign escalation), which is what a missing sign means anyway.
EARLY_SIGNS_MAX = 200_000


#: Distinct times :meth:`Visits._time` shares before it starts over (a few a day are used).
_TIMES_LIMIT = 4096


class Visits:
    def __init__(
        self,
        *,
        store: Store,
        registry: Registry,
        care: CareFile,
        casework: Casework,
        routing: Routing,
        clock: Clock,
        zone: str,
        on_alert_change: Callable[[AlertChange], None],
        on_notifications: Callable[[], None],
        series: TimeseriesSink | None = None,
    ) -> None:
        self._series = series
        self._store = store
        self.visits = VisitStore(store=store)
        self._registry = registry
        self.care = care
        self._casework = casework
        self._routing = routing
        self._clock = clock
        self._zone = zone
        self._tz = ZoneInfo(zone)
        self._on_alert_change = on_alert_change
        self._on_notifications = on_notifications
        self._wake = asyncio.Event()
        #: When the scheduler last started a round (event-loop time), for readiness and tests.
        self.beat: float | None = None
        self._register: list[RegisterEntry] | None = None
        #: Equal plans and kind lists as one object each: 50 000 elders have a handful of
        #: distinct ones, and a plan of his own (a dict) and a tuple each were ≈ 15 MB at
        #: 100 000 devices (docs/benchmarks.md, "Twenty-ninth pass"). Both are read-only. Each
        #: elder's own are on his register entry (``RegisterEntry.plan``, ``.kinds``).
        self._plan_shapes: dict[tuple[tuple[TaskKind, float], ...], CarePlan] = {}
        self._kind_shapes: dict[tuple[TaskKind, ...], tuple[TaskKind, ...]] = {}
        #: Set once the scheduler task finished its first round (tests and tools wait on it).
        self.first_round = asyncio.Event()
        self._sources: dict[str, RegisterEntry] | None = None
        #: Equal times of the register's memo as one object each (:meth:`_time`).
        self._times: dict[float, float] = {}
        #: Signs of life seen before the register was built, for the first round: per (device,
        #: local day) the first sign and the newest one, in arrival order (:meth:`_keep_early_sign`).
        self._early_signs = EarlySigns(limit=EARLY_SIGNS_MAX)
        self._early_day_span = (0.0, 0.0, 0)
        self._alerts = CareAlerts(store=store, registry=registry, routing=routing, subject=self._subject)

    # -- the register and access ------------------------------------------------------------

    def register(self) -> list[RegisterEntry]:
        # The registry a hub runs with does not change under it: build the register once (the
        # scheduler asks on every round, and scenario time advances in many small rounds).
        if self._register is None:
            self._register = register(self._registry)
        return self._register

    @staticmethod
    def where(task: VisitTask) -> Where:
        return Where(community=task.community, grid=task.grid, assignee=task.assignee)

    @staticmethod
    def visit_filter(reach: Reach) -> VisitFilter | None:
        """The store's filter for the tasks ``reach`` may see and record (``None``: every task)."""
        scope = reach.scope(Permission.VISITS)
        if scope is Scope.ALL:
            return None
        return VisitFilter(
            grids=reach.grids if scope >= Scope.GRID else frozenset(),
            communities=reach.communities if scope >= Scope.COMMUNITY else frozenset(),
            person=reach.actor.id if scope >= Scope.ASSIGNED else None,
        )

    # -- scheduling -------------------------------------------------------------------------

    def schedule(self) -> int:
        """Open the next task of each planned kind for every elder who has none open; returns tasks made.

        All at once (scenario time, :meth:`tick`); the scheduler task runs the same round in
        slices instead (:meth:`schedule_in_slices`).
        """
        now = self._clock.now()
        scheduled = self.visits.open_kinds()
        entries = self.register()
        made = sum(
            self._schedule_slice(entries[at : at + SLICE], scheduled, now)
            for at in range(0, len(entries), SLICE)
        )
        self._take_early_signs()
        return made

    async def schedule_in_slices(self) -> int:
        """:meth:`schedule`, ``SLICE`` elders per turn of the event loop, one transaction per slice.

        At 100 000 devices a round covers 50 000 elders (and on a fresh store opens ≈ 150 000
        tasks): run in one piece it held up start-up and ingest for seconds (minutes when cold).
        The first round builds the register in slices too. Work another path did between two
        slices (a visit recorded, a sign of life) is safe: the store keeps one open task per
        elder and kind, so a task made twice is stored once.
        """
        entries = self._register
        if entries is None:
            entries = []
            for count, entry in enumerate(register_entries(self._registry), 1):
                entries.append(entry)
                if count % SLICE == 0:
                    await asyncio.sleep(0)
            if self._register is None:
                self._register = entries
            # A synchronous round (the register page) may have built it meanwhile: an equal list
            # of other entry objects. The round works on the kept one, whose entries hold the
            # memo (RegisterEntry's plan, kinds and sign-of-life day).
            entries = self._register
        scheduled = self.visits.open_kinds()
        made = 0
        for at in range(0, len(entries), SLICE):
            made += self._schedule_slice(entries[at : at + SLICE], scheduled, self._clock.now())
            await asyncio.sleep(0)
        self._take_early_signs()
        return made

    def _schedule_slice(
        self, entries: Sequence[RegisterEntry], scheduled: set[tuple[str, TaskKind]], now: float
    ) -> int:
        tasks: list[VisitTask] = []
        for entry in entries:
            for kind in self._planned(entry):
                if (entry.elder.id, kind) in scheduled:
                    continue
                since = self.visits.last_done(entry.elder.id, kind) or now
                task = self._next(entry, kind, since=since, after=self.visits.last_due(entry.elder.id, kind))
                if task is not None:
                    tasks.append(task)
        if not tasks:
            return 0
        made = 0
        with self._store.transaction() as db:
            for task in tasks:
                if self.visits.add_task(db, task, at=now):
                    self._plan_deadline(db, task, now, done_at=None)
                    made += 1
        return made

    def _planned(self, entry: RegisterEntry) -> tuple[TaskKind, ...]:
        """The kinds scheduled for this elder: his plan and devices do not change while the hub runs
        (like the register), so each round no longer works out every elder's plan again."""
        kinds = entry.kinds
        if kinds is None:
            plan = self._plan(entry)
            signs = (TaskKind.SIGN_OF_LIFE,) if sign_status(self.care, entry) is None else ()
            kinds = tuple(kind for kind in (*SCHEDULED, *signs) if kind in plan.intervals)
            kinds = self._kind_shapes.setdefault(kinds, kinds)
            object.__setattr__(entry, "kinds", kinds)  # the entry's memo (RegisterEntry)
        return kinds

    def _plan(self, entry: RegisterEntry) -> CarePlan:
        """His care plan, resolved once per elder: parsing the plan's durations on every round and
        every door event was a large share of the ingest's CPU per message (docs/benchmarks.md)."""
        plan = entry.plan
        if plan is None:
            plan = plan_for(self.care, entry.elder)
            plan = self._plan_shapes.setdefault(tuple(plan.intervals.items()), plan)
            object.__setattr__(entry, "plan", plan)  # the entry's memo (RegisterEntry)
        return plan

    def _next(
        self, entry: RegisterEntry, kind: TaskKind, *, since: float, after: float | None
    ) -> VisitTask | None:
        """The next task after a completion at ``since``, due after the previous one (``after``).

        A visit done on the day its task opened would otherwise give the next task the same due
        day, hence the same key: it would never be stored and the elder would drop off the plan.
        """
        interval = self._plan(entry).intervals.get(kind)
        if interval is None:
            return None
        task = task_after(
            entry.elder, kind, interval, since=since, zone=self._zone, due_time=self.care.due_time
        )
        if after is not None and task.due_at <= after:
            later = task_after(
                entry.elder, kind, interval, since=after, zone=self._zone, due_time=self.care.due_time
            )
            task = replace(later, window_start=since)
        return task

    def _plan_deadline(self, db: Tx, task: VisitTask, now: float, *, done_at: float | None) -> None:
        """Store when the task next needs the scheduler: its next escalation step (none once done)."""
        steps, later = escalations_due(
            task, self.care, now=now, done_at=done_at, sent=self.visits.sent_keys(task.key)
        )
        next_at = now if steps else later
        self.visits.set_deadline(db, task.key, None if done_at is not None else next_at)

    def tick(self) -> int:
        """Schedule, then send the escalation steps due now (once each). Returns steps sent."""
        self.schedule()
        return self.escalate_due()

    def escalate_due(self) -> int:
        """Send the escalation steps due now (once each). Returns steps sent."""
        now = self._clock.now()
        sent = 0
        for key in self.visits.due(now):
            try:
                sent += self._escalate(key, now)
            except Exception:
                # One task that cannot be worked must not hold up the others: retried next round.
                log.exception("visit task %s failed to escalate; retrying later", key)
                with self._store.transaction() as db:
                    self.visits.set_deadline(db, key, now + POLL_S)
        if sent:
            self._on_notifications()
        return sent

    def next_deadline(self) -> float | None:
        return self.visits.next_deadline()

    def _escalate(self, key: str, now: float) -> int:
        stored = self.visits.task(key)
        if stored is None or not stored.open:
            with self._store.transaction() as db:
                self.visits.set_deadline(db, key, None)
            return 0
        task = stored.task
        steps, later = escalations_due(
            task, self.care, now=now, done_at=None, sent=self.visits.sent_keys(key)
        )
        sent = 0
        created: Alert | None = None
        fell_due = False
        with self._store.transaction() as db:
            alert = None
            for step in steps:
                if alert is None:
                    alert, fresh = self._alerts.overdue(db, task, now)
                    created = alert if fresh else created
                for person in self._alerts.targets(task, step.target):
                    if self.visits.mark_sent(db, f"{step.key}/{person}", key, target=person, at=now):
                        visit = self.task_json(StoredTask(task=task, created_at=now), now=now)
                        self._alerts.notify(db, alert, task, person=person, step=step, visit=visit, now=now)
                        sent += 1
                if self.visits.mark_sent(db, step.key, key, target=step.target, at=now) and step.step == 0:
                    fell_due = True
            self.visits.set_deadline(db, key, later)
        if fell_due and task.kind is not TaskKind.SIGN_OF_LIFE:
            self._write(task, worker=task.assignee or "", done_at=None, ts=task.due_at)
        if created is not None:
            self._on_alert_change(AlertChange(alert=created, created=True, notifications=()))
        return sent

    def _write(self, task: VisitTask, *, worker: str, done_at: float | None, ts: float) -> None:
        if self._series is not None:
            self._series.write(
                visit_point(
                    community=task.community,
                    grid=task.grid,
                    worker=worker,
                    kind=task.kind.value,
                    due_at=task.due_at,
                    done_at=done_at,
                    ts=ts,
                )
            )

    def _subject(self, task: VisitTask) -> Subject:
        entry = next((e for e in self.register() if e.elder.id == task.elder), None)
        device = entry.devices[0].id if entry is not None and entry.devices else subject_id(task.elder)
        return Subject(device_id=device, grid=task.grid, community=task.community)

    # -- sensors ----------------------------------------------------------------------------

    def on_alert_change(self, change: AlertChange) -> None:
        """Before casework sees the change: an inactivity alert of an elder raises his visit to urgent."""
        alert = change.alert
        if not change.created or alert.category != INACTIVITY:
            return
        try:
            self.raise_urgent(alert)
        except Exception:
            # The alert still becomes a case (casework sees it next): only the visit is missing.
            log.exception("could not raise a visit for inactivity alert %s; it becomes a case", alert.id)

    def elder_of(self, device_id: str) -> RegisterEntry | None:
        """The register entry of the elder whose device ``device_id`` is (``None``: nobody's)."""
        return elder_of_device(self._registry, device_id, self.register())

    def raise_urgent(self, alert: Alert) -> StoredTask | None:
        entry = self.elder_of(alert.device_id)
        if entry is None:
            return None
        now = self._clock.now()
        due = now + URGENT_WITHIN_S
        with self._store.transaction() as db:
            current = self.visits.open_task(entry.elder.id, TaskKind.VISIT)
            if current is not None and current.task.due_at <= due:
                key = current.key
            else:
                task = VisitTask(
                    elder=entry.elder.id,
                    kind=TaskKind.VISIT,
                    community=entry.elder.community,
                    grid=entry.elder.grid,
                    assignee=entry.elder.assignee,
                    window_start=now,
                    due_at=due,
                )
                if current is not None:
                    self.visits.supersede(db, current.key, task.key)
                self.visits.add_task(db, task, at=now)
                self._plan_deadline(db, task, now, done_at=None)
                key = task.key
            self.visits.mark_urgent(db, key, at=now, alert_id=alert.id)
        log.info("inactivity alert %s: visit %s is urgent", alert.id, key)
        return self.visits.task(key)

    # -- signs of life (每日平安) ---------------------------------------------------------------

    def on_event(self, event: Event, retain: bool = False) -> None:
        """A device event the ingest saw: the elder's door, PIR or green key completes his daily sign.

        Called on the hot path for every event: anything that is not a sign returns before
        touching the store, and so does a second sign on a day that would not move the due time.
        A retained message is the broker's memory of an old state, not the elder's activity.
        """
        if retain or event.kind not in ANY_SIGN:
            return
        if self._sources is None:
            # The register is not built yet (the scheduler's first round builds it in slices
            # after start-up; building it here took seconds at 100 000 devices, inside the
            # backlog a restart works off): the round takes this sign when it has the register.
            self._keep_early_sign(event, self._sign_time(event))
            return
        self._take_sign(event, None)

    def _sign_time(self, event: Event) -> float:
        # The device's own time, but never ahead of the hub's clock (a clock-skewed sensor
        # must not complete tomorrow's task today).
        return min(event.ts, self._clock.now())

    def _take_sign(self, event: Event, at: float | None) -> None:
        """``at``: when the sign was seen (``None``: now, on the hot path)."""
        entry = self.sign_sources().get(event.device_id)
        if entry is None:
            return
        device = source_device(entry, event.device_id)
        if device is None or not is_sign(device, event):
            return
        at = self._sign_time(event) if at is None else at
        known_due = entry.sign_due
        if entry.day_from <= at < entry.day_until and entry.day_due <= known_due:
            return  # a later sign on the same local day: the due time it gives is known, and stands
        interval = self._plan(entry).intervals.get(TaskKind.SIGN_OF_LIFE)
        if interval is None:
            return
        elder = entry.elder
        following = task_after(
            elder, TaskKind.SIGN_OF_LIFE, interval, since=at, zone=self._zone, due_time=self.care.due_time
        )
        # The day's bounds, then its due time: the entry's memo (RegisterEntry).
        object.__setattr__(entry, "day_from", at)
        object.__setattr__(entry, "day_until", self._time(same_due_until(at, interval, zone=self._zone)))
        object.__setattr__(entry, "day_due", self._time(following.due_at))
        if following.due_at <= known_due:
            return
        try:
            self._sign(entry, following, at)
        except Exception:
            # Nothing is lost: the next sign completes the task, or it escalates and a person checks.
            log.exception("could not record a sign of life of elder %s", entry.elder.id)

    def sign_sources(self) -> dict[str, RegisterEntry]:
        """Device id → elder, for the elders whose plan has a daily sign of life."""
        if self._sources is None:
            self._sources = sign_sources(
                [e for e in self.register() if TaskKind.SIGN_OF_LIFE in self._planned(e)]
            )
        return self._sources

    def _keep_early_sign(self, event: Event, at: float) -> None:
        """Hold a sign for the first round, bounded: two per device and local day.

        Until a round has built the register nothing says whose door this is, so every door event
        would be kept — and a round whose store read keeps failing (PostgreSQL down) never comes.
        Two per device and day take what the round would do with all of them: the day's first
        sign completes the task open that day, and with a whole-day plan every later sign of
        the day gives the same due time (:func:`same_due_until`), so the round skips it; with a
        shorter interval the newest sign gives the latest due time, and the ones between would
        only have completed tasks the newest supersedes.
        """
        # The newest goes last: arrival order is the round's order.
        early = self._early_signs
        if not early.keep(event, self._early_day(at), at) and early.dropped % 10_000 == 1:
            log.warning(
                "%d signs of life dropped while the visits round cannot run (the store?): kept the newest %d",
                early.dropped,
                len(early),
            )

    def _early_day(self, at: float) -> int:
        """The local day's ordinal; the last day's bounds are kept (a backlog is mostly one day)."""
        start, end, day = self._early_day_span
        if start <= at < end:
            return day
        local = datetime.fromtimestamp(at, self._tz)
        midnight = datetime.combine(local.date(), time(0, 0), tzinfo=self._tz)
        next_midnight = datetime.combine(local.date() + timedelta(days=1), time(0, 0), tzinfo=self._tz)
        self._early_day_span = (midnight.timestamp(), next_midnight.timestamp(), local.toordinal())
        return local.toordinal()

    def _take_early_signs(self) -> None:
        """The signs :meth:`on_event` kept while the register was being built, in arrival order."""
        self.sign_sources()
        for event, at in self._early_signs.take():
            self._take_sign(event, at)

    def _time(self, at: float) -> float:
        """``at`` as the one object the register's memo holds that time as.

        The memo's day bounds and due times are a handful of instants a day (midnights, the
        care plan's due hour) that each elder's sign works out again: a float of his own for
        each was 3 objects an elder, 3.9 MB at 50 000 (docs/benchmarks.md, "Thirty-eighth
        pass"). Bounded: past ``_TIMES_LIMIT`` the table starts over (still correct, only
        not shared).
        """
        times = self._times
        shared = times.get(at)
        if shared is not None:
            return shared
        if len(times) >= _TIMES_LIMIT:
            times.clear()
        times[at] = at
        return at

    def _stands(self, entry: RegisterEntry, following: VisitTask, current: StoredTask | None) -> bool:
        """Whether the open task's due time stands for this sign (then it is the entry's memo)."""
        if current is None or following.due_at > current.task.due_at:
            return False
        # A sign on the day the task opened: its due time stands (a day after that sign).
        object.__setattr__(entry, "sign_due", self._time(current.task.due_at))
        return True

    def _sign(self, entry: RegisterEntry, following: VisitTask, at: float) -> None:
        # Each elder's first sign after a start mostly finds the day's task standing: one read
        # decides it, without a transaction (on PostgreSQL BEGIN and COMMIT were two of its three
        # round trips, 825 a run of the cluster bench; on SQLite BEGIN IMMEDIATE took the write
        # lock). Read again inside the transaction: another writer may have moved the task since.
        if self._stands(entry, following, self.visits.open_task(entry.elder.id, TaskKind.SIGN_OF_LIFE)):
            return
        changes: list[AlertChange] = []
        now = self._clock.now()
        with self._store.transaction() as db:
            current = self.visits.open_task(entry.elder.id, TaskKind.SIGN_OF_LIFE)
            if self._stands(entry, following, current):
                return
            if current is not None:
                self.visits.complete(db, current.key, at=max(at, current.task.window_start))
                self.visits.set_deadline(db, current.key, None)
                overdue = self._store.active_alert(NO_SIGN_RULE, subject_id(entry.elder.id))
                if overdue is not None:
                    resolved = self._store.resolve_alert(db, overdue.id, at=now)
                    if resolved is not None:
                        changes.append(AlertChange(alert=resolved, created=False, notifications=()))
            if self.visits.add_task(db, following, at=now):
                self._plan_deadline(db, following, now, done_at=None)
            object.__setattr__(entry, "sign_due", self._time(following.due_at))
        for change in changes:
            self._on_alert_change(change)
        self._wake.set()

    # -- outcomes ---------------------------------------------------------------------------

    def record(
        self,
        task_key: str,
        outcome: Outcome | str,
        *,
        actor: Actor,
        note: str = "",
        channel: str = "api",
        recorded_by: str | None = None,
    ) -> StoredRecord:
        """Record what the visitor found; 安好 resolves an inactivity alert, 需要帮助 files a case.

        ``actor`` is the visitor (his permissions apply, the record counts as his work);
        ``recorded_by`` is who typed it for him (the desk, ``on_behalf_of``), kept with the record.
        """
        stored = self.visits.task(task_key)
        if stored is None:
            raise NotFoundError(f"no visit task {task_key!r}")
        if not self._casework.allows(actor, Permission.VISITS, self.where(stored.task)):
            # A task one may not record is one one does not see (``visit_filter``): as absent as
            # a wrong id, or a 403 naming it tells a worker which elders other grids visit.
            raise NotFoundError(f"no visit task {task_key!r}")
        if not stored.open:
            raise NotAllowedError(f"visit {task_key} is no longer open / 该探访任务已完成")
        now = self._clock.now()
        made = record(
            stored.task,
            outcome,
            by=actor.id,
            at=max(now, stored.task.window_start),
            note=note,
            recorded_by=recorded_by,
        )
        changes: list[AlertChange] = []
        with self._store.transaction() as db:
            help_alert: Alert | None = None
            if made.outcome is Outcome.NEEDS_HELP:
                help_alert, fresh = self._alerts.needs_help(db, stored.task, made.note, now)
                if fresh:
                    changes.append(AlertChange(alert=help_alert, created=True, notifications=()))
            record_id = uuid.uuid4().hex[:16]
            self.visits.add_record(
                db,
                made,
                record_id=record_id,
                channel=channel,
                alert_id=help_alert.id if help_alert is not None else stored.urgent_alert,
            )
            if made.outcome.completes:
                self._plan_deadline(db, stored.task, now, done_at=made.at)
                if made.outcome is Outcome.VISITED_WELL and stored.urgent_alert is not None:
                    resolved = self._store.resolve_alert(db, stored.urgent_alert, at=now)
                    if resolved is not None:
                        changes.append(AlertChange(alert=resolved, created=False, notifications=()))
                overdue = self._store.active_alert(
                    overdue_rule(stored.task.kind), subject_id(stored.task.elder)
                )
                if overdue is not None:
                    resolved = self._store.resolve_alert(db, overdue.id, at=now)
                    if resolved is not None:
                        changes.append(AlertChange(alert=resolved, created=False, notifications=()))
                entry = next((e for e in self.register() if e.elder.id == stored.task.elder), None)
                if entry is not None:
                    following = next_task(
                        self.care, entry.elder, stored.task.kind, since=made.at, zone=self._zone
                    )
                    if following is not None and self.visits.add_task(db, following, at=now):
                        self._plan_deadline(db, following, now, done_at=None)
        if made.outcome.completes and stored.task.kind is not TaskKind.SIGN_OF_LIFE:
            self._write(stored.task, worker=made.by, done_at=made.at, ts=made.at)
        for change in changes:
            self._on_alert_change(change)
        self._wake.set()
        result = next(r for r in self.visits.records(task_key) if r.id == record_id)
        typed = "" if recorded_by is None else f" (typed by {recorded_by})"
        log.info("visit %s recorded: %s by %s%s", task_key, made.outcome.value, actor.id, typed)
        return result

    # -- reads ------------------------------------------------------------------------------

    def now(self) -> float:
        return self._clock.now()

    def role_of(self, person: str) -> Role | None:
        return self._casework.role_of(person)

    def resident(self, elder: str) -> Resident | None:
        """The elder's record whole, personal data included."""
        return self._registry.resident(elder)

    def whole(self, resident: Resident) -> Resident:
        """A register entry's resident with its personal data (the register holds it without)."""
        return self._registry.whole(resident)

    def open_cases(self, elder: str, devices: Sequence[str], *, per_subject: Mapping[str, int]) -> int:
        """Open cases of the elder's devices and of his care alerts (needs help), from
        ``per_subject`` (:meth:`open_case_counts`, read once for a page of elders)."""
        return sum(per_subject.get(subject, 0) for subject in {*devices, subject_id(elder)})

    def open_case_counts(self) -> Steps[dict[str, int]]:
        """Open cases per subject, read from the store in steps (:meth:`CaseStore.open_per_subject`)."""
        return self._casework.cases.open_per_subject()

    def tasks(
        self, *, reach: Reach, open_only: bool = True, limit: int = 200, offset: int = 0
    ) -> list[StoredTask]:
        if not reach.may_ever(Permission.VISITS):
            raise NotAllowedError("no access to visits")
        return self.visits.tasks(
            visible=self.visit_filter(reach),
            open_only=open_only,
            limit=limit,
            offset=offset,
            signs_due_by=self._clock.now(),
        )

    def kpis(self, *, start: float, end: float, reach: Reach | None = None) -> VisitKpiReport:
        """探访完成率 over the tasks due in ``[start, end)`` that ``reach`` may see (docs/cases.md)."""
        return run_through(self.kpi_steps(start=start, end=end, reach=reach))

    def kpi_steps(
        self,
        *,
        start: float,
        end: float,
        reach: Reach | None = None,
        tasks_per_step: int = VISIT_TASKS_PER_STEP,
    ) -> Steps[VisitKpiReport]:
        """:meth:`kpis` in steps of ``tasks_per_step`` tasks, their records read in one query.

        A year of weekly visits is tens of thousands of tasks; a query each, in one go on the
        event loop, was a stall an SOS press waited out (docs/benchmarks.md, "Twenty-fifth pass").
        """
        tally = VisitTally(start=start, end=end, now=self._clock.now())
        tasks = [
            t.task
            for t in self.visits.tasks_due_between(start, end)
            if t.task.kind is not TaskKind.SIGN_OF_LIFE  # a sensor's work, not a visit
        ]
        for at in range(0, len(tasks), tasks_per_step):
            if at:
                yield
            batch = [
                t
                for t in tasks[at : at + tasks_per_step]
                if reach is None or reach.allows(Permission.VISITS, self.where(t))
            ]
            records = self.visits.records_of([t.key for t in batch])
            for task in batch:
                tally.add(task, [r.record for r in records.get(task.key, ())])
        return tally.report()

    def task_json(self, stored: StoredTask, *, now: float | None = None) -> dict[str, Any]:
        at = self._clock.now() if now is None else now
        task = stored.task
        return {
            "key": task.key,
            "elder": task.elder,
            "kind": task.kind.value,
            "community": task.community,
            "grid": task.grid,
            "assignee": task.assignee,
            "window_start": iso(task.window_start),
            "due_at": iso(task.due_at),
            "urgent": stored.urgent,
            "done_at": iso(stored.done_at) if stored.done_at is not None else None,
            "light": light(task, at, yellow_ratio=self.care.yellow_ratio, done_at=stored.done_at).value,
        }

    # -- the scheduler task -----------------------------------------------------------------

    async def run(self) -> None:
        """The named task ``linli-visits``: work due deadlines on the hub's clock, then sleep until the next."""
        while True:
            self._wake.clear()
            self.beat = asyncio.get_running_loop().time()
            try:
                await self.schedule_in_slices()
                self.escalate_due()
                next_at = self.next_deadline()
            except Exception:
                log.exception("visits round failed; retrying in %.0f s", POLL_S)
                next_at = None
            self.first_round.set()
            now = self._clock.now()
            timeout = (
                POLL_S if next_at is None else min(POLL_S, wall_delay(self._clock, max(0.0, next_at - now)))
            )
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(timeout):
                    await self._wake.wait()

    def wake(self) -> None:
        self._wake.set()
