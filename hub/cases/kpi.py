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

**Grouping.** By ``grid`` (``-`` when unknown) and ``category``; by ``worker``: for the case
counts the case's final assignee, for response times the person who accepted (or arrived).
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

from hub.cases.model import Case, CaseAction, CaseState, Rating, Stage, TimelineEntry
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
        )


@dataclass(frozen=True, slots=True, kw_only=True)
class KpiReport:
    start: float
    end: float
    overall: KpiRow
    by_grid: dict[str, KpiRow]
    by_worker: dict[str, KpiRow]
    by_category: dict[str, KpiRow]


def compute(
    timelines: Iterable[Sequence[TimelineEntry]], *, sla: SlaBook, start: float, end: float
) -> KpiReport:
    """KPIs for ``[start, end)`` from whole timelines (see the module docstring for formulas)."""
    if end <= start:
        raise ValueError("the period must end after it starts")
    overall = _Acc()
    groups: dict[str, defaultdict[str, _Acc]] = {
        "grid": defaultdict(_Acc),
        "worker": defaultdict(_Acc),
        "category": defaultdict(_Acc),
    }
    for entries in timelines:
        f = facts(entries, sla=sla)
        case = f.case
        grid = case.grid or NONE_KEY
        counted = [overall, groups["grid"][grid], groups["category"][case.category]]
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
    return KpiReport(
        start=start,
        end=end,
        overall=overall.row(),
        by_grid={k: v.row() for k, v in sorted(groups["grid"].items())},
        by_worker={k: v.row() for k, v in sorted(groups["worker"].items())},
        by_category={k: v.row() for k, v in sorted(groups["category"].items())},
    )
