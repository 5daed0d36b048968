"""Case KPIs from timelines, per grid, per worker and per category (Jinhua rules).

Everything is recomputed from the timelines (:func:`hub.cases.workflow.replay`), never from
counters, so the figures can be audited entry by entry. For a period ``[start, end)``:

**Which cases count (应结案数, "due").** A case counts in the period in which it was closed
or fell due, whichever came first: ``anchor = min(closed_at, original whole-case due time)``
and ``start ≤ anchor < end``. The original due time is the first dispatch plus the
whole-case limit *without* extensions. Each case so counts in exactly one period. Voided
cases (作废) are not cases; a case never dispatched counts only once it is closed (e.g. a
false alarm cleared before dispatch).

* ``closed`` (结案数): due cases closed (any resolution: handled, false alarm, cleared by the
  sensor) before ``end``;
* ``deferred`` (缓办/延期未到期): due cases not closed before ``end`` whose approved
  extensions move their due time to ``end`` or later;
* ``closed_on_time`` (按期结案数): closed cases whose ``closed_at ≤`` due time *with*
  approved extensions (a case never dispatched has no due time and is on time);
* ``reworked``: due cases with at least one 返工 (failed verification);
* ``extended``: due cases with at least one approved 延期.

Rates (``None`` when the denominator is 0):

* 结案率 ``closure_rate = closed / (due − deferred)``
* 按期结案率 ``on_time_rate = closed_on_time / (due − deferred)``
* 返工率 ``rework_rate = reworked / (due − deferred)``
* 延期率 ``extension_rate = extended / due``

**Response times** are taken over the cases *filed* in ``[start, end)``, in calendar seconds:
``filed → accepted`` (first 受理, or first 到场 straight from dispatch) and ``filed → on
site`` (first 到场). Percentiles use the nearest-rank method: for sorted values
``v[1..n]``, ``p-th = v[ceil(p/100 · n)]``.

**满意率 (satisfaction)** is taken over the cases *evaluated* in ``[start, end)`` (评价,
handbook §3 综合评价): a case counts once, with the rating of its last evaluation in the
period, so a later evaluation (after a 返工) never changes a past period.

* ``evaluated``: cases with at least one ``evaluate`` entry in the period;
* ``satisfied`` / ``basically_satisfied`` / ``unsatisfied``: their last rating in the period;
* 满意率 ``satisfaction_rate = (satisfied + basically_satisfied) / evaluated``.

A 不满意 evaluation reopens the case as a 返工, so it also counts in ``reworked``.
The worker of an evaluation is the handler whose work was judged (``data.handler``: the
assignee when it was recorded). :func:`awaiting_evaluation` lists the closed cases still
without an evaluation some time after 结案, for a call-back (回访).

**Grouping.** By ``grid`` (``-`` when unknown) and ``category``; by ``worker``: for the case
counts the case's final assignee, for response times the person who accepted (or arrived).
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

from hub.cases.model import Case, CaseAction, CaseState, Rating, Resolution, Stage, TimelineEntry
from hub.cases.sla import SlaBook
from hub.cases.workflow import replay

NONE_KEY = "-"


@dataclass(frozen=True, slots=True, kw_only=True)
class CaseFacts:
    """What the KPIs need from one timeline."""

    case: Case
    due_at: float | None  # original whole-case due time (no extensions)
    due_at_extended: float | None
    accepted_at: float | None
    accepted_by: str | None
    on_site_at: float | None
    on_site_by: str | None
    reworked: bool
    extended: bool
    #: Every 评价: (time, rating, handler whose work was judged).
    evaluations: tuple[tuple[float, Rating, str | None], ...] = ()

    @property
    def anchor(self) -> float | None:
        times = [t for t in (self.case.closed_at, self.due_at) if t is not None]
        return min(times, default=None)


def facts(entries: Sequence[TimelineEntry], *, sla: SlaBook) -> CaseFacts:
    case = replay(entries)
    accept = next(
        (
            e
            for e in entries
            if e.action is CaseAction.ACCEPT
            or (e.action is CaseAction.ARRIVE and e.from_state is CaseState.DISPATCHED)
        ),
        None,
    )
    arrive = next((e for e in entries if e.action is CaseAction.ARRIVE), None)
    return CaseFacts(
        case=case,
        due_at=sla.due_at(case, Stage.CASE, with_extensions=False),
        due_at_extended=sla.due_at(case, Stage.CASE),
        accepted_at=None if accept is None else accept.ts,
        accepted_by=None if accept is None else accept.actor,
        on_site_at=None if arrive is None else arrive.ts,
        on_site_by=None if arrive is None else arrive.actor,
        reworked=any(_is_rework(e) for e in entries),
        extended=any(e.action is CaseAction.EXTEND for e in entries),
        evaluations=tuple(
            (e.ts, Rating(e.data["rating"]), e.data.get("handler"))
            for e in entries
            if e.action is CaseAction.EVALUATE
        ),
    )


def _is_rework(entry: TimelineEntry) -> bool:
    """返工: a failed 核查, or a 不满意 评价 that sent the closed case back."""
    return entry.action is CaseAction.REWORK or (
        entry.action is CaseAction.EVALUATE and entry.data.get("rating") == Rating.UNSATISFIED.value
    )


def percentile(values: Sequence[float], p: float) -> float | None:
    """Nearest-rank percentile (``None`` for no values)."""
    if not values:
        return None
    ordered = sorted(values)
    rank = max(1, math.ceil(p / 100 * len(ordered)))
    return ordered[rank - 1]


def _rate(numerator: int, denominator: int) -> float | None:
    return numerator / denominator if denominator > 0 else None


@dataclass(frozen=True, slots=True, kw_only=True)
class KpiRow:
    due: int = 0
    deferred: int = 0
    closed: int = 0
    closed_on_time: int = 0
    reworked: int = 0
    extended: int = 0
    accept_times: tuple[float, ...] = ()
    on_site_times: tuple[float, ...] = ()
    evaluated: int = 0
    satisfied: int = 0
    basically_satisfied: int = 0
    unsatisfied: int = 0

    @property
    def satisfaction_rate(self) -> float | None:
        """满意率 = (satisfied + basically satisfied) / evaluated."""
        return _rate(self.satisfied + self.basically_satisfied, self.evaluated)

    @property
    def closure_rate(self) -> float | None:
        """结案率 = closed / (due − deferred)."""
        return _rate(self.closed, self.due - self.deferred)

    @property
    def on_time_rate(self) -> float | None:
        """按期结案率 = closed on time / (due − deferred)."""
        return _rate(self.closed_on_time, self.due - self.deferred)

    @property
    def rework_rate(self) -> float | None:
        """返工率 = reworked / (due − deferred)."""
        return _rate(self.reworked, self.due - self.deferred)

    @property
    def extension_rate(self) -> float | None:
        """延期率 = extended / due."""
        return _rate(self.extended, self.due)

    @property
    def accept_p50(self) -> float | None:
        return percentile(self.accept_times, 50)

    @property
    def accept_p90(self) -> float | None:
        return percentile(self.accept_times, 90)

    @property
    def on_site_p50(self) -> float | None:
        return percentile(self.on_site_times, 50)

    @property
    def on_site_p90(self) -> float | None:
        return percentile(self.on_site_times, 90)

    def as_dict(self) -> dict[str, float | int | None]:
        return {
            "due": self.due,
            "deferred": self.deferred,
            "closed": self.closed,
            "closed_on_time": self.closed_on_time,
            "reworked": self.reworked,
            "extended": self.extended,
            "closure_rate": self.closure_rate,
            "on_time_rate": self.on_time_rate,
            "rework_rate": self.rework_rate,
            "extension_rate": self.extension_rate,
            "accept_n": len(self.accept_times),
            "accept_p50_s": self.accept_p50,
            "accept_p90_s": self.accept_p90,
            "on_site_n": len(self.on_site_times),
            "on_site_p50_s": self.on_site_p50,
            "on_site_p90_s": self.on_site_p90,
            "evaluated": self.evaluated,
            "satisfied": self.satisfied,
            "basically_satisfied": self.basically_satisfied,
            "unsatisfied": self.unsatisfied,
            "satisfaction_rate": self.satisfaction_rate,
        }


@dataclass(slots=True)
class _Acc:
    due: int = 0
    deferred: int = 0
    closed: int = 0
    closed_on_time: int = 0
    reworked: int = 0
    extended: int = 0
    accept_times: list[float] = field(default_factory=list)
    on_site_times: list[float] = field(default_factory=list)
    ratings: dict[Rating, int] = field(default_factory=dict)

    def rate(self, rating: Rating) -> None:
        self.ratings[rating] = self.ratings.get(rating, 0) + 1

    def row(self) -> KpiRow:
        return KpiRow(
            due=self.due,
            deferred=self.deferred,
            closed=self.closed,
            closed_on_time=self.closed_on_time,
            reworked=self.reworked,
            extended=self.extended,
            accept_times=tuple(self.accept_times),
            on_site_times=tuple(self.on_site_times),
            evaluated=sum(self.ratings.values()),
            satisfied=self.ratings.get(Rating.SATISFIED, 0),
            basically_satisfied=self.ratings.get(Rating.BASICALLY_SATISFIED, 0),
            unsatisfied=self.ratings.get(Rating.UNSATISFIED, 0),
        )


@dataclass(frozen=True, slots=True, kw_only=True)
class KpiReport:
    start: float
    end: float
    overall: KpiRow
    by_grid: dict[str, KpiRow]
    by_worker: dict[str, KpiRow]
    by_category: dict[str, KpiRow]


class KpiTally:
    """The KPIs of ``[start, end)``, one timeline at a time (:func:`compute` over all of them).

    Fed in pieces, a period of tens of thousands of cases is summed without holding every
    timeline at once and between turns of the event loop (``Casework.kpi_steps``).
    """

    __slots__ = ("_end", "_groups", "_overall", "_sla", "_start")

    def __init__(self, *, sla: SlaBook, start: float, end: float) -> None:
        if end <= start:
            raise ValueError("the period must end after it starts")
        self._sla = sla
        self._start = start
        self._end = end
        self._overall = _Acc()
        self._groups: dict[str, defaultdict[str, _Acc]] = {
            "grid": defaultdict(_Acc),
            "worker": defaultdict(_Acc),
            "category": defaultdict(_Acc),
        }

    def add(self, entries: Sequence[TimelineEntry]) -> None:
        """Count one case, from its whole timeline."""
        start, end, groups = self._start, self._end, self._groups
        f = facts(entries, sla=self._sla)
        case = f.case
        grid = case.grid or NONE_KEY
        counted = [self._overall, groups["grid"][grid], groups["category"][case.category]]
        anchor = f.anchor
        if case.state is not CaseState.VOID and anchor is not None and start <= anchor < end:
            closed = case.closed_at is not None and case.closed_at < end
            deferred = (
                not closed and f.extended and f.due_at_extended is not None and f.due_at_extended >= end
            )
            on_time = closed and (
                f.due_at_extended is None
                or (case.closed_at is not None and case.closed_at <= f.due_at_extended)
            )
            for acc in (*counted, groups["worker"][case.assignee or NONE_KEY]):
                acc.due += 1
                acc.deferred += deferred
                acc.closed += closed
                acc.closed_on_time += on_time
                acc.reworked += f.reworked
                acc.extended += f.extended
        if start <= case.filed_at < end:
            if f.accepted_at is not None:
                for acc in (*counted, groups["worker"][f.accepted_by or NONE_KEY]):
                    acc.accept_times.append(f.accepted_at - case.filed_at)
            if f.on_site_at is not None:
                for acc in (*counted, groups["worker"][f.on_site_by or NONE_KEY]):
                    acc.on_site_times.append(f.on_site_at - case.filed_at)
        in_period = [ev for ev in f.evaluations if start <= ev[0] < end]
        if in_period:
            _, rating, handler = in_period[-1]
            for acc in (*counted, groups["worker"][handler or NONE_KEY]):
                acc.rate(rating)

    def report(self) -> KpiReport:
        groups = self._groups
        return KpiReport(
            start=self._start,
            end=self._end,
            overall=self._overall.row(),
            by_grid={k: v.row() for k, v in sorted(groups["grid"].items())},
            by_worker={k: v.row() for k, v in sorted(groups["worker"].items())},
            by_category={k: v.row() for k, v in sorted(groups["category"].items())},
        )


def compute(
    timelines: Iterable[Sequence[TimelineEntry]], *, sla: SlaBook, start: float, end: float
) -> KpiReport:
    """KPIs for ``[start, end)`` from whole timelines (see the module docstring for formulas)."""
    tally = KpiTally(sla=sla, start=start, end=end)
    for entries in timelines:
        tally.add(entries)
    return tally.report()


@dataclass(frozen=True, slots=True, kw_only=True)
class CallBackDue:
    """A closed case still without its 评价 ``after`` seconds after 结案: call the resident back."""

    case_id: str
    grid: str | None
    community: str | None
    handler: str | None
    category: str
    closed_at: float
    due_at: float  # closed_at + after: from here on the case is listed

    @classmethod
    def of(cls, case: Case, *, closed_at: float, after: float) -> CallBackDue:
        """The 回访 entry of ``case``, 结案 at ``closed_at``, listed ``after`` seconds later."""
        return cls(
            case_id=case.id,
            grid=case.grid,
            community=case.community,
            handler=case.assignee,
            category=case.category,
            closed_at=closed_at,
            due_at=closed_at + after,
        )


def awaiting_evaluation(
    timelines: Iterable[Sequence[TimelineEntry]],
    *,
    now: float,
    after: float,
    resolutions: frozenset[Resolution] = frozenset({Resolution.RESOLVED}),
) -> tuple[CallBackDue, ...]:
    """Closed cases not evaluated ``after`` seconds (calendar) after their last 结案, oldest first.

    Only the given resolutions are listed (by default handled cases: a case the sensor cleared
    or a false alarm has nobody to ask). A case evaluated 不满意 is open again and is listed
    anew once re-closed and left without a fresh evaluation.
    """
    if after < 0:
        raise ValueError("after must not be negative")
    due: list[CallBackDue] = []
    for entries in timelines:
        case = replay(entries)
        if not case.awaiting_evaluation or case.closed_at is None or case.resolution not in resolutions:
            continue
        if case.closed_at + after <= now:
            due.append(CallBackDue.of(case, closed_at=case.closed_at, after=after))
    return tuple(sorted(due, key=lambda d: (d.closed_at, d.case_id)))
