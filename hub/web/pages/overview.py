"""The overview: open cases by urgency (SOS on top), counts by grid and category, the hub's state."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from typing import TYPE_CHECKING

from hub.cases.model import OPEN
from hub.casework.access import Permission, Reach
from hub.web.pages.rows import CaseRow, case_row

if TYPE_CHECKING:
    from hub.web.api import Api

#: Open cases the overview lists (more than a wall shows; the counts cover them all).
MAX_ROWS = 500


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
    sos_open: int
    by_grid: list[tuple[str, int]]
    by_category: list[tuple[str, int]]
    ready: bool
    problems: list[str]
    messages: int
    rate: float | None
    warnings: list[str]


def overview(web: Api, reach: Reach, *, meter: IngestMeter) -> Overview:
    now = web.clock.now()
    views = web.casework.case_views(
        assignee=None,
        grid=None,
        states=OPEN,
        limit=MAX_ROWS,
        visible=web.casework.case_filter(reach, Permission.READ),
    )
    rows = sorted((case_row(web, reach, v, now=now) for v in views), key=lambda r: r.rank)
    grids = Counter(r.grid_name or r.grid or "—" for r in rows)
    categories = Counter(r.category for r in rows)
    report = web.readiness()
    messages = int(web.stats().get("pipeline", {}).get("messages", 0))
    return Overview(
        rows=rows,
        sos_open=sum(r.sos for r in rows),
        by_grid=sorted(grids.items()),
        by_category=categories.most_common(),
        ready=report.ready,
        problems=[f"{c.name}: {c.detail}" for c in report.checks if not c.ok],
        warnings=list(report.warnings),
        messages=messages,
        rate=meter.sample(now=now, count=messages),
    )
