"""Casework: alerts become cases, cases are dispatched, escalated, acted on and measured.

The pure rules live in :mod:`hub.cases` (workflow, SLA, escalation planner, KPIs); this
module connects them to the store, the roster, the notification outbox and the time series.
Every change is one transaction: the timeline entry, the escalation steps it sends (keyed,
``INSERT OR IGNORE``), their notifications and the case's next deadline. After ``kill -9``
the deadline is read back and the planner finds the same steps, so the next one goes out at
its original time and nothing is sent twice.

Notifications to people are MQTT messages (schema ``linli.notification.v1``, rendered by
:mod:`hub.notify.payloads`, see ``docs/topics.md``); a person replies on the topic
:mod:`hub.casework.replies` defines. Who may act is the access table's answer
(:mod:`hub.casework.access`).
Guardians (emergency contacts) have no channel of their own here: their names and phones go
to the command centre, whose operators call them.
"""

from __future__ import annotations

import functools
import logging
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any
from zoneinfo import ZoneInfo

from hub.cases.escalation import COMMAND_CENTRE, DueStep, Selector, Target, TargetKind, plan
from hub.cases.kpi import KpiReport, KpiTally
from hub.cases.model import TERMINAL, Case, CaseAction, CaseState, Channel, Stage, TimelineEntry
from hub.cases.policies import Policies
from hub.cases.views import case_json
from hub.cases.workflow import AUTOMATIC_ACTORS, allowed_actions, apply, case_from_alert, replay
from hub.casework.access import Action, Actor, Reach, Scope, Where
from hub.casework.points import stage_of, transition_point, worst_light
from hub.channels.messages import CaseNotice, NoticeKind
from hub.channels.preferences import EndpointKind, Preferences
from hub.clock import Clock, Deadlines
from hub.community.model import Contact
from hub.community.privacy import resident_json
from hub.community.registry import Registry
from hub.community.roster import Person, on_duty
from hub.errors import CaseNotFoundError, InvalidAssigneeError, NotAllowedError, StaleCaseError
from hub.notify.payloads import case_notification
from hub.notify.routing import Routing
from hub.notify.webhooks import outbox_entry
from hub.records import Alert, AlertChange, Recipient, Role, new_notification_id
from hub.steps import Steps, run_through
from hub.storage.cases import CaseFilter, CaseStore
from hub.storage.scope import partition
from hub.storage.store import Store
from hub.timeseries import CaseStage, TimeseriesSink

log = logging.getLogger(__name__)

#: A case whose round failed is tried again after this long, doubling up to the maximum.
CASE_RETRY_FIRST_S = 5.0
CASE_RETRY_MAX_S = 300.0
#: Alerts of these severities open no case (they are information, not work).
NO_CASE_SEVERITIES = frozenset({"info"})

#: Open cases per (community, grid, severity, worst traffic light): the dashboards' gauge.
OpenCounts = dict[tuple[str, str, str, str], int]
#: Cases the gauge reads from the store between two turns of the event loop (≈ 0.1-0.3 ms each).
READS_PER_STEP = 16
#: Cases a KPI report reads (one query) and sums between two turns (≈ 0.1-0.2 ms each).
KPI_CASES_PER_STEP = 32
#: Cases made into views between two turns of the loop (:meth:`Casework.view_steps`).
CASE_VIEWS_PER_STEP = 16
#: Open cases whose traffic lights the gauge works out between two turns (≈ 15-30 µs each).
CASES_PER_STEP = 256


class Casework:
    def __init__(
        self,
        *,
        store: Store,
        cases: CaseStore,
        registry: Registry,
        routing: Routing,
        policies: Policies,
        clock: Clock,
        zone: ZoneInfo,
        series: TimeseriesSink,
        on_notifications: Callable[[], None],
        on_change: Callable[[Case], None],
        preferences: Preferences | None = None,
        reply_topic: Callable[[str, str], str],
        on_retry: Callable[[], None] = lambda: None,
        on_case_failed: Callable[[str, str], None] = lambda *_: None,
        on_alert_failed: Callable[[int, str], None] = lambda *_: None,
        scope: Callable[[], frozenset[str] | None] = lambda: None,
        monotonic: Callable[[], float] | None = time.monotonic,
    ) -> None:
        #: The communities whose deadlines this hub works (``None``: all; a cluster node: its leases).
        self._scope = scope
        #: Every case deadline this process set or read, also on the monotonic clock: a step of
        #: the wall clock back must not hold up an escalation step (``None``: a manual clock's hub).
        self._deadlines: Deadlines[str] = Deadlines(clock=clock, monotonic=monotonic)
        #: The share whose stored deadlines were last read into ``_deadlines`` (a 1-tuple; ``None``: not yet).
        self._tracked_scope: tuple[frozenset[str] | None] | None = None
        # A case that cannot be worked is reported (case id, reason) and retried with backoff.
        self._on_case_failed = on_case_failed
        # An active alert no case could be opened for (alert id, reason): nobody was told of it.
        self._on_alert_failed = on_alert_failed
        #: Active alerts whose case the last reconcile could not open.
        self.unopened: frozenset[int] = frozenset()
        self._failing: dict[str, tuple[int, float]] = {}
        #: The open cases as the gauge last read them: only a case whose version moved is read again.
        self._open_read: dict[str, Case] = {}
        #: Escalation steps queued, by kind (dispatch, escalate, remind …): the metrics' counter.
        self.steps_sent: Counter[str] = Counter()
        self._on_retry = on_retry
        self._reply_topic = reply_topic
        self._preferences = preferences or Preferences()
        self._store = store
        self.cases = cases
        self._registry = registry
        self._routing = routing
        self.policies = policies
        self._clock = clock
        self._zone = zone
        self._series = series
        self._on_notifications = on_notifications
        self._on_change = on_change

    # -- from alerts ------------------------------------------------------------------------

    def open_from_alert(self, alert: Alert, *, fresh: bool = False) -> Case | None:
        """立案 and 派遣 for a new alert; the first escalation step goes out in the same commit.

        ``fresh``: the alert was created by the change being handled now, in this same call,
        so no case can name it yet and the store is not asked (the ingest's path: each store
        read is a round trip the event loop waits for on PostgreSQL).
        """
        if alert.severity in NO_CASE_SEVERITIES:
            return None
        if not fresh and self.cases.open_for_alert(alert.id) is not None:
            return None
        now = self._clock.now()
        case, filed = case_from_alert(alert, case_id=uuid.uuid4().hex[:12], at=max(alert.raised_at, now))
        assignee = self._first_assignee(case, now)
        dispatched, dispatch = apply(
            case,
            CaseAction.DISPATCH,
            actor="system",
            at=filed.ts,
            channel=Channel.SYSTEM,
            data={"assignee": assignee},
        )
        with self._store.transaction(community=partition(case.community)) as db:
            self.cases.add(db, case, filed)
            self.cases.append(db, dispatched, dispatch)
            # A case made now has sent nothing yet, and its alert is the one in hand.
            sent = self._escalate(db, dispatched, now, sent_keys=frozenset(), alert=alert)
        if sent:
            # The worker's notification leaves first (the dispatcher publishes at wake); the
            # time-series points and the live console's view of 立案/派遣 can follow it.
            self._on_notifications()
        self._after(case, filed, sent=False)
        self._after(dispatched, dispatch, sent=False)
        log.info("case %s opened for alert %s, dispatched to %s", dispatched.id, alert.id, assignee)
        return dispatched

    def on_alert_change(self, change: AlertChange) -> None:
        """Called by the pipeline after every committed alert change (same call, before PUBACK)."""
        alert = change.alert
        try:
            if change.created:
                self.open_from_alert(alert, fresh=True)
            elif alert.status == "resolved":
                self.alert_cleared(alert)
            elif change.repeated:
                self.alert_repeated(alert)
        except Exception:
            # The alert itself is committed; a case that failed to open is opened by the next
            # reconcile (the casework loop runs it every few seconds), never forgotten.
            log.exception("casework for alert %s failed; the casework loop will retry", alert.id)
            self._on_retry()

    def alert_cleared(self, alert: Alert) -> None:
        """The sensor says the condition is over: recorded on the case (an SOS still needs its note)."""
        case = self.cases.open_for_alert(alert.id)
        if case is not None and CaseAction.AUTO_CLEAR in allowed_actions(case):
            self._act(case, CaseAction.AUTO_CLEAR, actor="sensor", channel=Channel.SYSTEM, note="", data={})

    def alert_repeated(self, alert: Alert) -> None:
        """The same occurrence again after the merge window: remind whoever has the case, or,
        its case closed, file a new one.

        An alert of an event (an SOS press, smoke, a fall) is never cleared by a sensor, and
        closing its case does not resolve it: its next occurrence lands on the same active
        alert. Found in review: that press then opened no case and told nobody, so one handled
        press (a false alarm included) silenced the button for good.
        """
        case = self.cases.open_for_alert(alert.id)
        if case is None:
            if self.open_from_alert(alert) is not None:
                log.info("alert %s occurred again after its case was closed: a new case", alert.id)
            return
        now = self._clock.now()
        targets = [self._person_target(case.assignee)] if case.assignee else []
        with self._store.transaction(community=partition(case.community)) as db:
            queued = self._queue(
                db, case, targets, kind="case.repeated", key=f"{case.id}/repeat/{round(now * 1000)}"
            )
        if queued:
            self._on_notifications()

    def reconcile(self) -> int:
        """Open cases for active alerts that have none (a crash between the two commits)."""
        opened = 0
        unopened: set[int] = set()
        for alert_id in self.cases.alerts_without_case(communities=self._scope()):
            try:
                alert = self._store.alert(alert_id)
                if alert is not None and self.open_from_alert(alert) is not None:
                    opened += 1
            except Exception as exc:
                # One alert that cannot become a case must not keep the others from theirs.
                log.exception("cannot open a case for alert %s; next round tries again", alert_id)
                # Nobody was told of it: shown (metric, quarantine, console banner), not only logged.
                unopened.add(alert_id)
                self._on_alert_failed(alert_id, f"{type(exc).__name__}: {exc}")
        self.unopened = frozenset(unopened)
        return opened

    # -- actions by people --------------------------------------------------------------------

    def act(
        self,
        case_id: str,
        action: CaseAction,
        *,
        actor: Actor,
        channel: Channel,
        note: str = "",
        data: Mapping[str, Any] | None = None,
        where: Where | None = None,
        within: Callable[[Any], object] | None = None,
    ) -> Case:
        """Act as ``actor``; ``where`` replaces the case's own place for the access check (a
        guardian's link reaches its case), ``within`` runs in the change's transaction (and can
        refuse it by raising: spending a one-time link commits with the action or not at all)."""
        case = self.cases.load(case_id)
        if case is None:
            raise CaseNotFoundError(case_id)
        place = where or self.where_of(case)
        if not self.allows(actor, action, place):
            raise NotAllowedError(f"{actor.id} ({actor.role.value}) may not {action.value} case {case.id}")
        self._check_assignee(case, action, actor=actor, where=place, data=data or {})
        return self._act(
            case, action, actor=actor.id, channel=channel, note=note, data=dict(data or {}), within=within
        )

    def _check_assignee(
        self, case: Case, action: CaseAction, *, actor: Actor, where: Where, data: Mapping[str, Any]
    ) -> None:
        """Whoever ``data.assignee`` names must be someone who can take the case where it is.

        The case goes to that person, who then reads the elder's phone, address and notes (the
        ``ASSIGNED`` scope): a name the table would not let work the case's grid, or nobody at
        all, would hand personal data to a stranger or strand the case with a typo.
        """
        raw = data.get("assignee")
        if raw is None or (isinstance(raw, str) and not raw.strip()):
            return  # not given: the workflow reads a blank one as absent too
        assignee = raw.strip() if isinstance(raw, str) else ""
        if action is CaseAction.ACCEPT:
            if assignee == actor.id:
                return  # what accepting does anyway
            # Accepting makes the actor the assignee; naming another person is a 改派 by
            # another name and needs the permission ``reassign`` needs, where the case is.
            if not self.allows(actor, CaseAction.REASSIGN, where):
                raise NotAllowedError(
                    f"{actor.id} ({actor.role.value}) may accept case {case.id} only for himself:"
                    " giving it to someone else is a reassign"
                )
        if not assignee or not assignee.isprintable():
            raise InvalidAssigneeError(f"data.assignee {raw!r} names nobody (a roster person's id)")
        if assignee == self._routing.command_centre().id:
            return  # the command centre as a whole: where the hub itself sends unstaffed cases
        role = self.role_of(assignee)
        # The grid and community alone, no assignee or ``told``: the person must be able to
        # work the case by his own reach, not because this very assignment would put it in hand.
        if role is None or not self.allows(
            Actor(assignee, role), CaseAction.ACCEPT, Where(community=case.community, grid=case.grid)
        ):
            # One answer for both: naming his role (or "not in any roster") told a grid worker
            # who the other communities' staff are (found in review).
            raise InvalidAssigneeError(
                f"data.assignee {assignee!r} is nobody who may work cases in grid {case.grid}"
            )

    def where_of(self, case: Case) -> Where:
        """Where a case is for the access table, with everybody it was dispatched or escalated to."""
        return Where(
            community=case.community, grid=case.grid, assignee=case.assignee, told=self.cases.told(case.id)
        )

    def allows(self, actor: Actor, action: Action, where: Where) -> bool:
        """The access table's answer for this actor, with the grids their roster entry covers."""
        return self.reach(actor).allows(action, where)

    def reach(self, actor: Actor, *, person: bool = True) -> Reach:
        """``actor`` with the grids and communities of their roster entry.

        ``person=False`` for a console token that is no roster person: it covers no grid,
        whatever its name (before issue 11 a token's name doubled as a roster id).
        """
        grids: set[str] = set()
        communities: set[str] = set()
        if person:
            role = self.role_of(actor.id)
            for community in self._registry.communities:
                for member in community.people:
                    # Only the roster entries of the role he acts with: a duty officer of one
                    # community who volunteers in another must not have the desk over both (the
                    # registry refuses such a roster; a store that holds one logs it).
                    if member.id == actor.id and member.role is role:
                        grids.update(member.grids)
                        communities.add(community.code)
        return Reach(actor=actor, grids=frozenset(grids), communities=frozenset(communities))

    @staticmethod
    def case_filter(reach: Reach, action: Action) -> CaseFilter | None:
        """The store's filter for the cases ``reach`` may take ``action`` on (``None``: every case)."""
        scope = reach.scope(action)
        if scope is Scope.ALL:
            return None
        return CaseFilter(
            grids=reach.grids if scope >= Scope.GRID else frozenset(),
            communities=reach.communities if scope >= Scope.COMMUNITY else frozenset(),
            person=reach.actor.id if scope >= Scope.ASSIGNED else None,
        )

    def _act(
        self,
        case: Case,
        action: CaseAction,
        *,
        actor: str,
        channel: Channel,
        note: str,
        data: dict[str, Any],
        within: Callable[[Any], object] | None = None,
    ) -> Case:
        # The case's own time (the clock's unless it stepped back since the case's deadline was
        # set): what it plans next is timed from the moment it is, not an hour before.
        now = self._deadlines.now(case.id)
        at = max(now, case.updated_at)

        def steps(base: Case, when: float) -> list[tuple[Case, TimelineEntry]]:
            updated, entry = apply(base, action, actor=actor, at=when, channel=channel, note=note, data=data)
            done = [(updated, entry)]
            if action is CaseAction.RETURN and updated.state is CaseState.FILED:
                # 退回 puts the case back to 立案, where no escalation phase runs: it would wait
                # there with nobody told. The hub hands it on to the command centre at once (as
                # it does a case nobody is on duty for), whose desk re-dispatches it; until then
                # the dispatched phase's steps remind and escalate as for any dispatch.
                done.append(
                    apply(
                        updated,
                        CaseAction.DISPATCH,
                        actor="system",
                        at=entry.ts,
                        channel=Channel.SYSTEM,
                        note="退回后转指挥中心重新派遣 / returned: to the command centre for dispatch",
                        data={"assignee": self._routing.command_centre().id},
                    )
                )
            return done

        # What the hub does by itself is fenced (a node that lost the community lands nothing);
        # a person's action may come through any node's API and is ordered by the case version.
        fence = partition(case.community) if actor in AUTOMATIC_ACTORS else None

        def commit(done: list[tuple[Case, TimelineEntry]]) -> bool:
            with self._store.transaction(community=fence) as db:
                if within is not None:
                    within(db)
                for updated, entry in done:
                    self.cases.append(db, updated, entry)
                last, entry = done[-1]
                if last.state in TERMINAL and last.alert_id is not None:
                    # The case is over, and so is its alert: the next press (or smoke, or fall)
                    # is a new alert and a new case. Found in review: an event's alert is never
                    # cleared by a sensor, so it stayed active after 结案 and the elder's next
                    # press, merged into it or repeated, opened no case and told nobody.
                    self._store.resolve_alert(db, last.alert_id, at=entry.ts)
                return self._escalate(db, last, now)

        done = steps(case, at)
        try:
            sent = commit(done)
        except StaleCaseError:
            # Someone else changed it first: act on the fresh state (the rules apply again).
            fresh = self.cases.load(case.id)
            assert fresh is not None
            done = steps(fresh, max(at, fresh.updated_at))
            sent = commit(done)
        for index, (updated, entry) in enumerate(done):
            self._after(updated, entry, sent=sent and index == len(done) - 1)
        return done[-1][0]

    def role_of(self, person_id: str) -> Role | None:
        """The roster role of a person (``None`` for someone not in any roster)."""
        for community in self._registry.communities:
            for person in community.people:
                if person.id == person_id:
                    return person.role
        return None

    # -- reads ---------------------------------------------------------------------------------

    def load(self, case_id: str) -> Case | None:
        return self.cases.load(case_id)

    def timeline(self, case_id: str) -> list[TimelineEntry]:
        return self.cases.timeline(case_id)

    def case_views(
        self,
        *,
        assignee: str | None,
        grid: str | None,
        states: Iterable[CaseState],
        limit: int,
        offset: int = 0,
        visible: CaseFilter | None = None,
    ) -> list[dict[str, Any]]:
        """Cases as JSON at the same instant, filtered as the store's index allows, in one go
        (tools, tests); the web layer makes the views in turns (:meth:`view_steps`)."""
        wanted = frozenset(states)
        ids = self.cases.case_ids(
            assignee=assignee, grid=grid, states=wanted, limit=limit, offset=offset, visible=visible
        )
        return run_through(self.view_steps(ids, states=wanted))

    def view_steps(
        self,
        case_ids: Sequence[str],
        *,
        states: Iterable[CaseState] | None = None,
        cases_per_step: int = CASE_VIEWS_PER_STEP,
    ) -> Steps[list[dict[str, Any]]]:
        """The cases of ``case_ids`` as JSON, in that order, all at the instant asked for, in
        steps of ``cases_per_step`` cases, each step's timelines in one query.

        A view costs 0.1–0.3 ms (the timeline replayed, every stage's traffic light). The
        console's overview and ``GET /api/cases`` ask for 200–1 000 at a time, on every refresh
        of every console, and a refresh follows every alert: made in one go, 200 were a stall of
        70–100 ms and 1 000 of 250–450 ms on the loop that takes SOS presses (docs/benchmarks.md,
        "Twenty-seventh pass"). Made in turns (:func:`hub.steps.run_in_turns`), a press waits
        for one step. The ids were chosen before the first turn; a case that left ``states``
        while the list was being made (closed, voided) is left out rather than listed with its
        new state.
        """
        now = self._clock.now()
        wanted = None if states is None else frozenset(states)
        views: list[dict[str, Any]] = []
        for at in range(0, len(case_ids), cases_per_step):
            if at:
                yield
            views.extend(
                self.case_json(case, now=now)
                for case in self.load_many(case_ids[at : at + cases_per_step])
                if wanted is None or case.state in wanted
            )
        return views

    def load_many(self, case_ids: Sequence[str], *, retry: bool = True) -> list[Case]:
        """The cases of ``case_ids`` that can be read, in that order: one query for all of them,
        and where that fails (an entry that does not decode), each on its own, so one bad case
        is reported and the others are listed.

        ``retry``: a case that cannot be read goes to the casework round's backoff
        (:meth:`load_safely`), as an open case must; a list of closed cases (the 回访 list)
        passes ``False``, and the bad case is logged and left out, nothing written.
        """
        try:
            timelines = self.cases.timelines_of(case_ids)
        except Exception:
            log.warning("reading %d cases at once failed; reading them one by one", len(case_ids))
            return [
                c for c in (self._load_one(case_id, retry=retry) for case_id in case_ids) if c is not None
            ]
        cases: list[Case] = []
        for entries in timelines:
            try:
                cases.append(replay(entries))
            except Exception:
                again = self._load_one(entries[0].case_id, retry=retry)  # reports it
                if again is not None:
                    cases.append(again)
        return cases

    def _load_one(self, case_id: str, *, retry: bool) -> Case | None:
        if retry:
            return self.load_safely(case_id)
        try:
            return self.cases.load(case_id)
        except Exception as exc:
            log.warning(
                "case %s cannot be read, left out of the list: %s: %s", case_id, type(exc).__name__, exc
            )
            return None

    def kpi_steps(
        self,
        *,
        start: float,
        end: float,
        include: Callable[[Where], bool] | None = None,
        cases_per_step: int = KPI_CASES_PER_STEP,
    ) -> Steps[KpiReport]:
        """结案率, 按期结案率, 返工率, 延期率 and response times over ``[start, end]`` (docs/cases.md),
        in steps of ``cases_per_step`` cases, each step's timelines read in one query.

        ``include`` keeps the cases a reader may see (asked with each case's place).

        A year of a district's cases is tens of thousands: read a query per case and summed in
        one go on the event loop, 20 000 took 2–4 s in which no SOS press was handled and no
        escalation sent (docs/benchmarks.md, "Twenty-fifth pass"). The web layer runs this
        in turns (:func:`hub.steps.run_in_turns`): a press waits for one step, not the report.
        """
        tally = KpiTally(sla=self.policies.sla, start=start, end=end)
        ids = self.cases.touching(start, end)
        for at in range(0, len(ids), cases_per_step):
            if at:
                yield
            batch = ids[at : at + cases_per_step]
            timelines = self.cases.timelines_of(batch)
            if include is not None:
                told = self.cases.told_of(batch)
                timelines = [t for t in timelines if include(self._where_filed(t[0], told[t[0].case_id]))]
            for entries in timelines:
                tally.add(entries)
        return tally.report()

    @staticmethod
    def _where_filed(first: TimelineEntry, told: frozenset[str]) -> Where:
        grid, community = first.data.get("grid"), first.data.get("community")
        return Where(
            community=community if isinstance(community, str) else None,
            grid=grid if isinstance(grid, str) else None,
            assignee=None,
            told=told,
        )

    # -- escalation and SLA ------------------------------------------------------------------

    def tick(self) -> int:
        """Do what is due now: escalation steps, reminders, 督办 for red stages. Returns changes made.

        Each case is worked alone: one that fails (a poisoned record, a bug) is reported and
        retried with backoff, and every other case keeps its deadlines.
        """
        scope = self._scope()
        self._track_stored(scope)
        due = self.cases.due(self._clock.now(), communities=scope)
        due += self._fallen_due(exclude=frozenset(due), scope=scope)
        done = 0
        for case_id in due:
            # The case's own time: the clock's, or later if the clock stepped back since its
            # deadline was set (then the steps due by the monotonic clock are found due).
            now = self._deadlines.now(case_id)
            try:
                done += self._tick_case(case_id, now)
            except Exception as exc:
                self._case_failed(case_id, exc, now)
            else:
                self._failing.pop(case_id, None)
        return done

    def _track_stored(self, scope: frozenset[str] | None) -> None:
        """Track the stored deadlines of this hub's share (at start, and when a cluster share changes).

        They were set by an earlier process (or another node) on the wall clock alone; from
        now on a step back delays them no more than the ones this process sets.
        """
        if self._tracked_scope != (scope,):
            self._deadlines.adopt(self.cases.deadlines(communities=scope))
            self._tracked_scope = (scope,)

    def _fallen_due(self, *, exclude: frozenset[str], scope: frozenset[str] | None) -> list[str]:
        """Cases due by the monotonic clock though not (yet) by the wall clock: it stepped back."""
        fallen = {k: at for k, at in self._deadlines.fallen_due().items() if k not in exclude}
        if not fallen:
            return []
        stored = self.cases.deadlines(case_ids=fallen, communities=scope)
        due: list[str] = []
        for case_id, tracked in fallen.items():
            at = stored.get(case_id)
            if at is None:
                # Closed meanwhile, or no longer this node's: its deadline is not ours to keep.
                self._deadlines.forget(case_id)
                continue
            if at != tracked:
                # Moved by a write this process did not see land (rolled back, another node):
                # the stored one counts, timed by the case's own reckoning of the time.
                self._deadlines.set(case_id, at, now=self._deadlines.now(case_id))
            if at <= self._deadlines.now(case_id):
                due.append(case_id)
        return due

    def monotonic_wait(self) -> float | None:
        """Real seconds until a case deadline falls due on the monotonic clock (``None``: none tracked).

        The casework loop waits no longer than this besides :meth:`next_deadline`'s wall-clock
        wait: after a step back the latter is an hour too long.
        """
        return self._deadlines.next_in()

    @property
    def failing(self) -> dict[str, int]:
        """Cases whose last round failed, with how many rounds in a row."""
        return {case_id: failures for case_id, (failures, _) in self._failing.items()}

    def _case_failed(self, case_id: str, exc: Exception, now: float) -> None:
        failures = self._failing.get(case_id, (0, 0.0))[0] + 1
        delay = min(CASE_RETRY_MAX_S, CASE_RETRY_FIRST_S * 2 ** (failures - 1))
        self._failing[case_id] = (failures, now + delay)
        log.exception("case %s failed (%d in a row); next try in %.0f s", case_id, failures, delay)
        self._on_case_failed(case_id, f"{type(exc).__name__}: {exc}")
        # Tracked even if the store refuses the move below: the retry is not held up by a step back.
        self._deadlines.set(case_id, now + delay, now=now)
        try:
            # Move its deadline, so the loop does not spin on it; others keep theirs.
            with self._store.transaction() as db:
                self.cases.set_deadline(db, case_id, now + delay)
        except Exception:
            log.exception("cannot move the deadline of failing case %s", case_id)

    def load_safely(self, case_id: str, *, kept: Case | None = None) -> Case | None:
        """A case, or ``None`` (reported) if its record cannot be read: one bad case never breaks a list.

        With ``kept`` (the case as read earlier), only the timeline entries it missed are read.
        """
        try:
            return self.cases.load(case_id) if kept is None else self.cases.refresh(kept)
        except Exception as exc:
            self._case_failed(case_id, exc, self._deadlines.now(case_id))
            return None

    def _tick_case(self, case_id: str, now: float) -> int:
        done = 0
        supervised = False
        case = self.cases.load(case_id)
        if case is not None:
            for event in self.policies.sla.due_events(case, now):
                if not any(
                    s.stage is event.stage and s.round_start == event.round_start for s in case.supervisions
                ):
                    if event.stage is Stage.CASE:
                        self._series.write(
                            transition_point(case, CaseStage.OVERDUE, now, sla=self.policies.sla)
                        )
                    # 督办 tells whoever has the case and the command centre that supervises it,
                    # in the entry's own transaction. Found in review: it was recorded and told
                    # nobody (the escalation plan has no steps past 受理), so an SOS whose
                    # handler arrived and never reported went red with nobody hearing of it.
                    told = [self._person_target(case.assignee)] if case.assignee else []
                    told.append(
                        Target(
                            kind=TargetKind.COMMAND_CENTRE,
                            id=COMMAND_CENTRE,
                            selector=Selector.COMMAND_CENTRE,
                        )
                    )
                    key = f"{case.id}/supervise/{event.stage.value}/{round(event.round_start * 1000)}"
                    overdue = case
                    case = self._act(
                        case,
                        CaseAction.SUPERVISE,
                        actor="system",
                        channel=Channel.SYSTEM,
                        note=f"{event.stage.value} 超时 / overdue",
                        data={"stage": event.stage.value},
                        within=functools.partial(
                            self._queue, case=overdue, targets=tuple(told), kind="case.supervise", key=key
                        ),
                    )
                    done += 1
                    supervised = True  # its notices are queued (the command centre always)
            with self._store.transaction(community=partition(case.community)) as db:
                sent = self._escalate(db, case, now)
            if sent or supervised:
                done += 1
                self._on_notifications()
        return done

    def open_counts(self, now: float) -> OpenCounts:
        """Open cases per (community, grid, severity, worst traffic light) — the dashboards' gauge."""
        return run_through(self.open_counts_steps(now))

    def open_counts_steps(self, now: float, *, reads_per_step: int = READS_PER_STEP) -> Steps[OpenCounts]:
        """:meth:`open_counts` in steps of at most ``reads_per_step`` cases read from the store.

        Reading every open case's timeline on each gauge write was a stall of the event loop
        that grew with the open cases: ≈ 0.2–0.3 s with 290 open, where SOS presses waited
        (docs/benchmarks.md, "Twenty-first pass"). A case is read again only when its version
        (one per timeline entry) moved, and then only the entries it missed; the lights are
        computed for ``now`` each time. Busy cases (each escalation step is an entry) still
        made writes of 150–200 ms with a few hundred cases open ("Twenty-second pass"), so the
        gauge loop runs this in turns: a press waits for one step, not for the whole count.
        """
        counts: dict[tuple[str, str, str, str], int] = {}
        kept = self._open_read
        read: dict[str, Case] = {}
        reads = walked = 0
        for case_id, version in self.cases.open_versions(limit=100_000):
            case = kept.get(case_id)
            stale = case is None or case.version != version
            if (stale and reads >= reads_per_step) or walked >= CASES_PER_STEP:
                yield
                reads = walked = 0
            walked += 1
            if stale:
                reads += 1
                case = self.load_safely(case_id, kept=case)
            if case is None:
                continue
            read[case_id] = case
            worst = worst_light(case, now, sla=self.policies.sla, open_stages_only=True)
            key = (case.community or "", case.grid or "", case.severity, worst.value)
            counts[key] = counts.get(key, 0) + 1
        self._open_read = read
        return counts

    def next_deadline(self) -> float | None:
        return self.cases.next_deadline(communities=self._scope())

    def _escalate(
        self,
        db: Any,
        case: Case,
        now: float,
        *,
        sent_keys: frozenset[str] | None = None,
        alert: Alert | None = None,
    ) -> bool:
        """Send the steps due now (once each) and store the next deadline; inside a transaction.

        ``sent_keys``: the steps already sent, if known (else read); ``alert``: the case's alert
        as just stored, if at hand (else read for the notices).
        """
        community = case.community or ""
        escalation = plan(
            case,
            chain=self.policies.chain(case.category, case.severity),
            sla=self.policies.sla,
            roster=self._registry.people_of(community),
            zone=self._zone,
            now=now,
            contacts=self._contacts(case),
            sent=self.cases.sent_keys(case.id) if sent_keys is None else sent_keys,
            calendar=self.policies.calendar,
        )
        sent = False
        for step in escalation.due:
            if self.cases.mark_sent(db, step.key, case.id, now):
                self.steps_sent[step.kind.value] += 1
                sent |= self._queue(
                    db,
                    case,
                    step.targets,
                    kind=f"case.{step.kind.value}",
                    key=step.key,
                    step=step,
                    alert=alert,
                )
        deadlines = [
            d for d in (escalation.next_deadline, self.policies.sla.next_change(case, now)) if d is not None
        ]
        next_at = min(deadlines) if case.open and deadlines else None
        self.cases.set_deadline(db, case.id, next_at)
        # Counted from ``now``, the time it was planned at. Tracked before the commit: if that
        # fails, the tick finds the stored deadline differs and goes by the stored one.
        self._deadlines.set(case.id, next_at, now=now)
        return sent

    # -- notifications -------------------------------------------------------------------------

    def _queue(
        self,
        db: Any,
        case: Case,
        targets: Sequence[Target],
        *,
        kind: str,
        key: str,
        step: DueStep | None = None,
        alert: Alert | None = None,
    ) -> bool:
        if case.alert_id is None:
            return False
        if alert is None or alert.id != case.alert_id:
            alert = self._store.alert(case.alert_id)
        if alert is None:
            return False
        people = [t for t in targets if t.kind is TargetKind.PERSON]
        guardians = [t for t in targets if t.kind is TargetKind.CONTACT]
        recipients = [self._recipient(case, t.id) for t in people]
        centre = self._routing.command_centre()
        # Once: with nobody of the grid on duty the command centre is already the assignee,
        # and a second notice with its own id showed the operators the same press twice.
        if (
            guardians or any(t.kind is TargetKind.COMMAND_CENTRE for t in targets)
        ) and centre not in recipients:
            recipients.append(centre)
        now = self._clock.now()
        for person in people:
            # Besides the phone app's topic: the person's own channels (DingTalk, WeCom, webhooks).
            for endpoint in self._preferences.endpoints_for(person.id, case.severity):
                if endpoint.kind is EndpointKind.MQTT and not endpoint.address:
                    continue
                channel, address, body = outbox_entry(
                    endpoint, self._notice(case, alert, kind=kind, step=step)
                )
                self._store.queue_notification(
                    db,
                    notification_id=new_notification_id(),
                    alert_id=alert.id,
                    recipient=Recipient(id=person.id, channel=channel, address=address),
                    payload=body,
                    at=now,
                    case_id=case.id,
                )
        # One view of the case for every recipient (its traffic lights at one ``now``).
        shown = self.case_json(case, now=now) if recipients else {}
        for recipient in recipients:
            note_id = new_notification_id()
            body = self._payload(
                note_id, case, shown, alert, recipient, kind=kind, key=key, guardians=guardians, step=step
            )
            self._store.queue_notification(
                db,
                notification_id=note_id,
                alert_id=alert.id,
                recipient=recipient,
                payload=body,
                at=now,
                case_id=case.id,
            )
        return bool(recipients)

    def _notice(self, case: Case, alert: Alert, *, kind: str, step: DueStep | None) -> CaseNotice:
        suffix = kind.rsplit(".", 1)[-1]
        location = self._registry.location(alert.device_id)
        return CaseNotice(
            case_id=case.id,
            kind=NoticeKind(suffix) if suffix in NoticeKind.__members__.values() else NoticeKind.NOTIFY,
            category=case.category,
            severity=case.severity,
            title_zh=case.title_zh,
            title_en=case.title_en,
            state=case.state.value,
            filed_at=case.filed_at,
            grid=case.grid,
            address=location.grid.name if location is not None else "",
            due_at=step.due_at if step is not None else None,
        )

    def _recipient(self, case: Case, person_id: str) -> Recipient:
        if person_id == self._routing.command_centre().id:
            return self._routing.command_centre()
        return Recipient(
            id=person_id, channel="mqtt", address=self._routing.worker_topic(case.community or "-", person_id)
        )

    @staticmethod
    def _person_target(person_id: str) -> Target:
        return Target(kind=TargetKind.PERSON, id=person_id, selector=Selector.ASSIGNEE)

    def _payload(
        self,
        note_id: str,
        case: Case,
        shown: dict[str, Any],
        alert: Alert,
        recipient: Recipient,
        *,
        kind: str,
        key: str,
        guardians: Sequence[Target],
        step: DueStep | None,
    ) -> bytes:
        device = self._registry.device(alert.device_id)
        # The elder's profile goes to those who must act on this SOS (the people told by the
        # escalation chain and the command centre), never to a broadcast topic.
        resident = None
        if case.is_sos and device is not None and device.resident is not None:
            found = self._registry.resident(device.resident)
            resident = resident_json(found, personal=True) if found is not None else None
        to_centre = recipient.id == self._routing.command_centre().id
        return case_notification(
            notification_id=note_id,
            kind=kind,
            step_key=key,
            recipient=recipient,
            case=shown,
            alert=alert,
            reply_topic=self._reply_topic(case.community or "-", recipient.id),
            due_at=step.due_at if step is not None else None,
            location=self._registry.place_label(alert.device_id),
            resident=resident,
            guardians=[{"name": g.name, "phone": g.phone, "relation": g.role} for g in guardians]
            if to_centre
            else (),
        )

    # -- helpers ------------------------------------------------------------------------------

    def _first_assignee(self, case: Case, now: float) -> str:
        """The on-duty grid worker of the case's grid; the command centre if there is none."""
        if case.grid is None or case.community is None:
            return self._routing.command_centre().id
        people = on_duty(
            self._registry.people_of(case.community),
            grid=case.grid,
            ts=now,
            zone=self._zone,
            roles=(Role.GRID_WORKER,),
            calendar=self.policies.calendar,
        ) or on_duty(
            self._registry.people_of(case.community),
            grid=case.grid,
            ts=now,
            zone=self._zone,
            roles=(Role.GRID_LEADER,),
            calendar=self.policies.calendar,
        )
        return people[0].id if people else self._routing.command_centre().id

    def _person(self, case: Case, person_id: str) -> Person | None:
        return next((p for p in self._registry.people_of(case.community or "") if p.id == person_id), None)

    def _contacts(self, case: Case) -> tuple[Contact, ...]:
        device = self._registry.device(case.subject)
        if device is None or device.resident is None:
            return ()
        resident = self._registry.resident(device.resident)
        return resident.emergency_contacts if resident is not None else ()

    def _after(self, case: Case, entry: TimelineEntry, *, sent: bool) -> None:
        stage = stage_of(case, entry)
        if stage is not None:
            rating = entry.data.get("rating") if entry.action is CaseAction.EVALUATE else None
            self._series.write(
                transition_point(
                    case,
                    stage,
                    entry.ts,
                    sla=self.policies.sla,
                    rating=rating if isinstance(rating, str) else None,
                )
            )
        if sent:
            self._on_notifications()
        self._on_change(case)

    def case_json(self, case: Case, *, now: float | None = None) -> dict[str, Any]:
        return case_json(case, sla=self.policies.sla, now=self._clock.now() if now is None else now)
