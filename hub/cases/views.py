"""The JSON shape of a case, shared by the API, the event stream and notifications.

Pure: ``now`` is a parameter, the SLA book is passed in.
"""

from __future__ import annotations

from typing import Any

from hub.cases.model import Case
from hub.cases.sla import SlaBook
from hub.cases.workflow import allowed_actions
from hub.clock import iso


def case_json(case: Case, *, sla: SlaBook, now: float) -> dict[str, Any]:
    """A case with its allowed actions and the traffic light of every stage at ``now``."""
    return {
        "id": case.id,
        "alert_id": case.alert_id,
        "category": case.category,
        "severity": case.severity,
        "state": case.state.value,
        "resolution": case.resolution.value if case.resolution else None,
        "title": {"zh": case.title_zh, "en": case.title_en},
        "subject": case.subject,
        "grid": case.grid,
        "community": case.community,
        "assignee": case.assignee,
        "filed_at": iso(case.filed_at),
        "updated_at": iso(case.updated_at),
        "allowed_actions": [a.value for a in allowed_actions(case)],
        "sla": [
            {
                "stage": s.stage.value,
                "light": s.light.value,
                "elapsed_s": round(s.elapsed, 3),
                "limit_s": s.limit,
                "due_at": iso(s.due_at),
                "done": s.done,
            }
            for s in sla.traffic_light(case, now)
        ],
    }
