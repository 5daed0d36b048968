"""What the ``cases`` table keeps beside a case's timeline, derived from the case (schema v5 on).

Shared by the case store, which writes it with every change, and the migration that fills it
in for cases stored before it existed; only the pure case model is imported here, so the
schema may use it without importing the store.
"""

from __future__ import annotations

from collections.abc import Sequence

import orjson

from hub.cases.model import Case, Resolution, TimelineEntry
from hub.cases.workflow import replay


def call_back_from(case: Case) -> float | None:
    """When a case joins the 回访 list's clock: its 结案, if closed as resolved and not yet evaluated."""
    if case.awaiting_evaluation and case.resolution is Resolution.RESOLVED and case.closed_at is not None:
        return case.closed_at
    return None


def replay_rows(rows: Sequence[Sequence[object]]) -> Case | None:
    """The case from its stored timeline rows (``entry`` column, by ``seq``)."""
    entries = [TimelineEntry.from_dict(orjson.loads(row[0])) for row in rows]  # type: ignore[arg-type]
    return replay(entries) if entries else None
