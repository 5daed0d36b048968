"""KPIs over a period: 结案率, 按期结案率, 返工率, 延期率 and response times, from the store."""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated, Any

from fastapi import FastAPI, Query

from hub.cases.kpi import KpiReport
from hub.casework.access import Permission, Reach, Scope, Where
from hub.clock import iso
from hub.errors import BadRequestError, NotAllowedError
from hub.steps import run_in_turns
from hub.web import models as m
from hub.web.care import add_visit_kpis
from hub.web.routes.common import ERRORS, Who, time_param

if TYPE_CHECKING:
    from hub.web.api import Api


async def staff_rows(
    web: Api, reach: Reach, report: KpiReport, *, start: float, end: float
) -> KpiReport | None:
    """The report whose ``by_worker`` ``reach`` may see (``None``: no per-worker KPIs at all).

    Per-worker KPIs are staff performance (``STAFF_KPIS``, his grids for a grid leader), not
    what he may read: a case of another grid he was told of is his to read, its worker's
    figures are not (found in review: another community's worker's row). When the two scopes
    differ the cases are counted again under the narrower one.
    """
    if not reach.may_ever(Permission.STAFF_KPIS):
        return None
    everything = reach.scope(Permission.STAFF_KPIS) is Scope.ALL
    if everything and reach.scope(Permission.READ) is Scope.ALL:
        return report  # counted over every case already
    # Where the case is, not who holds it or was told of it: those make a case readable, they do
    # not put its worker under this leader.
    include = (
        None if everything else lambda w: reach.allows(Permission.STAFF_KPIS, Where(w.community, w.grid))
    )
    return await run_in_turns(web.casework.kpi_steps(start=start, end=end, include=include))


def add_kpi_routes(api: FastAPI, web: Api) -> None:
    @api.get("/api/kpis", response_model=m.KpiOut, responses=ERRORS)
    async def kpis(
        who: Who,
        start: Annotated[str | None, Query(alias="from", max_length=40)] = None,
        end: Annotated[str | None, Query(alias="to", max_length=40)] = None,
        grid: Annotated[str | None, Query(max_length=32)] = None,
    ) -> dict[str, Any]:
        """结案率, 按期结案率, 返工率, 延期率 and response times over the cases the caller may read."""
        now = web.clock.now()
        lo = time_param(start, default=max(0.0, now - 30 * 86400), name="from")
        hi = time_param(end, default=now, name="to")
        reach = who.reach
        if not reach.may_ever(Permission.READ):
            raise NotAllowedError("no read access")
        everything = reach.scope(Permission.READ) is Scope.ALL
        try:
            # In turns: a year of cases is seconds of work an SOS press must not wait out.
            report = await run_in_turns(
                web.casework.kpi_steps(
                    start=lo,
                    end=hi,
                    include=None if everything else lambda w: reach.allows(Permission.READ, w),
                )
            )
        except ValueError as exc:
            raise BadRequestError(str(exc)) from None
        by_grid = {k: v.as_dict() for k, v in report.by_grid.items() if grid is None or k == grid}
        staff = await staff_rows(web, reach, report, start=lo, end=hi)
        body = {
            "from": iso(lo),
            "to": iso(hi),
            "overall": report.overall.as_dict(),
            "by_grid": by_grid,
            "by_worker": {k: v.as_dict() for k, v in staff.by_worker.items()} if staff is not None else {},
            "by_category": {k: v.as_dict() for k, v in report.by_category.items()},
        }
        if web.care is not None:  # issue 18: 探访完成率 in the same rows
            await add_visit_kpis(body, web.care, reach=reach, start=lo, end=hi, grid=grid)
        return body
