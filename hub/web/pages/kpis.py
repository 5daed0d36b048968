"""The KPI page: 结案率, 按期结案率, 返工率 and response times per grid and worker, with bar charts.

Computed from the store's timelines (:meth:`Casework.kpi_steps`) over a chosen period, for the
cases the caller may read; per-worker figures only for roles with ``staff_kpis``.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any
from zoneinfo import ZoneInfo

from hub.casework.access import Permission, Reach, Scope
from hub.errors import BadRequestError, NotAllowedError
from hub.steps import run_in_turns
from hub.web import models as m
from hub.web.routes.kpis import staff_rows

if TYPE_CHECKING:
    from hub.web.api import Api

DEFAULT_DAYS = 30
#: The rates each row shows and charts, in the order of the table.
RATES = ("closure_rate", "on_time_rate", "rework_rate")


@dataclass(frozen=True, slots=True, kw_only=True)
class KpiRow:
    key: str
    label: str
    values: dict[str, Any]


@dataclass(frozen=True, slots=True, kw_only=True)
class KpiPage:
    start: str  # YYYY-MM-DD in the community's zone
    end: str
    overall: dict[str, Any]
    grids: list[KpiRow]
    workers: list[KpiRow]
    staff: bool


def _day(value: str, zone: ZoneInfo, name: str) -> datetime:
    """A day of the period, within the times the API accepts (``time_param``: 1970–2200).

    Bounded before any arithmetic: the period's end is the next midnight, and the day after
    9999-12-31 is no ``datetime`` (an ``OverflowError``, a 500 before this check).
    """
    try:
        day = datetime.strptime(value, "%Y-%m-%d").replace(tzinfo=zone)
    except ValueError:
        raise BadRequestError(f"{name}: {value!r} is not a date (YYYY-MM-DD)") from None
    if not 0 <= day.timestamp() <= m.MAX_UNIX_S - 86400:
        raise BadRequestError(f"{name}: {value!r} is not a day between 1970 and 2200")
    return day


async def kpi_page(web: Api, reach: Reach, *, start: str | None, end: str | None) -> KpiPage:
    if not reach.may_ever(Permission.READ):
        raise NotAllowedError("no read access")
    zone = ZoneInfo(web.timezone)
    today = datetime.fromtimestamp(web.clock.now(), zone).replace(hour=0, minute=0, second=0, microsecond=0)
    lo = _day(start, zone, "from") if start else today - timedelta(days=DEFAULT_DAYS)
    hi = _day(end, zone, "to") if end else today
    if hi < lo:
        raise BadRequestError("to: the period ends before it starts")
    if lo.timestamp() >= web.clock.now():
        # Nothing can have happened yet: the period would be empty (and the KPIs refuse one).
        raise BadRequestError(f"from: {lo:%Y-%m-%d} is in the future; the period must start before now")
    everything = reach.scope(Permission.READ) is Scope.ALL
    try:
        # In turns: a year of cases is seconds of work an SOS press must not wait out.
        report = await run_in_turns(
            web.casework.kpi_steps(
                start=lo.timestamp(),
                # The end day is included: the period runs to the next midnight (or now, if sooner).
                end=min((hi + timedelta(days=1)).timestamp(), web.clock.now()),
                include=None if everything else lambda w: reach.allows(Permission.READ, w),
            )
        )
    except ValueError as exc:  # as /api/kpis: a period the KPIs refuse is the caller's to fix
        raise BadRequestError(str(exc)) from None
    names = {g.code: g.name for c in web.registry.communities for g in c.grids}
    staff = await staff_rows(
        web,
        reach,
        report,
        start=lo.timestamp(),
        end=min((hi + timedelta(days=1)).timestamp(), web.clock.now()),
    )
    return KpiPage(
        start=f"{lo:%Y-%m-%d}",
        end=f"{hi:%Y-%m-%d}",
        overall=report.overall.as_dict(),
        grids=[
            KpiRow(key=k, label=names.get(k, k), values=v.as_dict())
            for k, v in sorted(report.by_grid.items())
        ],
        workers=[KpiRow(key=k, label=k, values=v.as_dict()) for k, v in sorted(staff.by_worker.items())]
        if staff is not None
        else [],
        staff=staff is not None,
    )
