"""The overview: open cases by urgency (SOS on top), counts by grid and category, the hub's state."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from typing import TYPE_CHECKING

from hub.cases.model import OPEN
from hub.casework.access import Permission, Reach, Scope
from hub.steps import Steps, run_through
from hub.web.pages.rows import CaseRow, case_row

if TYPE_CHECKING:
    from hub.web.api import Api

#: Open cases the overview lists in full (more than a wall shows; newest filed first).
MAX_ROWS = 500
#: Beyond the listed ones, open cases are still read (up to this many) so that no SOS is left
#: off the top of the page however old it is, and the counts stay whole.
MAX_SCAN = 10_000


@dataclass(slots=True)
class IngestMeter:
    """Messages per second between two looks, on the hub's clock (no wall-clock reads)."""

    last_at: float | None = None
    last_count: int = 0
    rate: float | None = None

    def sample(self, *, now: float, count: int) -> float | None:
        if self.last_at is not None and now - self.last_at >= 1.0:
            self.rate = max(0.0, (count - self.last_count) / (now - self.last_at))
        if self.last_at is None or now - self.last_at >= 1.0:
            self.last_at, self.last_count = now, count
        return self.rate


@dataclass(frozen=True, slots=True, kw_only=True)
class Overview:
    rows: list[CaseRow]
    open_total: int
    sos_open: int
    by_grid: list[tuple[str, int]]
    by_category: list[tuple[str, int]]
    ready: bool
    problems: list[str]
    messages: int
    rate: float | None
    warnings: list[str]


def overview(web: Api, reach: Reach, *, meter: IngestMeter) -> Overview:
    """The overview in one go (tests); the console's page makes it in turns (:func:`overview_steps`)."""
    return run_through(overview_steps(web, reach, meter=meter))


def overview_steps(web: Api, reach: Reach, *, meter: IngestMeter) -> Steps[Overview]:
    """The overview, yielding between steps of cases made into views.

    In a storm it reads up to :data:`MAX_SCAN` open cases, and every console refreshes it on
    every alert: in one go that was seconds in which no SOS press was handled.
    """
    now = web.clock.now()
    visible = web.casework.case_filter(reach, Permission.READ)
    # One read of the open cases (newest filed first), then views in turns: pages read by
    # OFFSET between turns shift when a case is filed or closed meanwhile (in a storm, always),
    # skipping an old SOS or listing a row twice.
    index = web.casework.cases.open_index(limit=MAX_SCAN, visible=visible)
    listed = [case_id for i, (case_id, category, _) in enumerate(index) if i < MAX_ROWS or category == "sos"]
    views = yield from web.casework.view_steps(listed, states=OPEN)
    rows = sorted((case_row(web, reach, v, now=now) for v in views), key=lambda r: r.rank)
    names = {g.code: g.name for c in web.registry.communities for g in c.grids}
    grids = Counter(names.get(grid or "", grid or "—") for _, _, grid in index)
    categories = Counter(category for _, category, _ in index)
    report = web.readiness()
    # As /readyz: the reasons and warnings name hub-wide things (alert, device and resident ids
    # of every grid, files): for a reader of every grid, the check's name alone for the others.
    details = reach.scope(Permission.READ) is Scope.ALL
    messages = int(web.stats().get("pipeline", {}).get("messages", 0))
    return Overview(
        rows=rows,
        open_total=len(index),
        sos_open=categories["sos"],  # from the index, as the other counts
        by_grid=sorted(grids.items()),
        by_category=categories.most_common(),
        ready=report.ready,
        problems=[f"{c.name}: {c.detail}" if details else c.name for c in report.checks if not c.ok],
        warnings=list(report.warnings) if details else [],
        messages=messages,
        rate=meter.sample(now=now, count=messages),
    )
