"""One case for the console: timeline, rule trace, who was told and how, the elder, the actions.

Each part is shown only where the access table reaches: the trace and the elder's profile
need ``personal_data``, who was told ``read_notifications``; the action buttons are the
workflow's allowed actions that the table lets this caller take here.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import orjson

from hub.cases.model import CaseAction
from hub.casework.access import Permission, Reach
from hub.community.model import Resident
from hub.errors import NotFoundError
from hub.web.models import shown_address, shown_error
from hub.web.pages.rows import CaseRow, case_row
from hub.web.views import timeline_json

if TYPE_CHECKING:
    from hub.web.api import Api


@dataclass(frozen=True, slots=True, kw_only=True)
class Notice:
    recipient: str
    channel: str
    address: str
    attempts: int
    outcome: str  # delivered | pending | abandoned
    error: str


@dataclass(frozen=True, slots=True, kw_only=True)
class CaseDetail:
    row: CaseRow
    sla: list[dict[str, Any]]
    timeline: list[dict[str, Any]]
    trace: list[tuple[str, str]]
    notices: list[Notice]
    may_see_notices: bool
    resident: Resident | None
    may_see_personal: bool
    actions: list[str]
    now: float


def _trace_lines(trace: dict[str, Any]) -> list[tuple[str, str]]:
    return [(str(k), v if isinstance(v, str) else orjson.dumps(v).decode()) for k, v in trace.items()]


def _notices(rows: list[dict[str, Any]]) -> list[Notice]:
    return [
        Notice(
            recipient=str(r["recipient"]),
            channel=str(r["channel"]),
            address=shown_address(str(r["address"])),
            attempts=int(r["attempts"]),
            outcome="delivered" if r["delivered_at"] else ("abandoned" if r["abandoned_at"] else "pending"),
            error=shown_error(str(r.get("last_error") or "")) or "",  # rows from before the fix
        )
        for r in rows
    ]


def case_detail(web: Api, reach: Reach, case_id: str) -> CaseDetail:
    found = web.casework.load(case_id)
    where = web.casework.where_of(found) if found is not None else None
    if found is None or where is None or not reach.allows(Permission.READ, where):
        raise NotFoundError("没有这个案件 / no such case")
    now = web.clock.now()
    view = web.casework.case_json(found, now=now)
    personal = reach.allows(Permission.PERSONAL_DATA, where)
    told = reach.allows(Permission.READ_NOTIFICATIONS, where)
    alert = web.store.alert(found.alert_id) if found.alert_id is not None else None
    device = web.registry.device(found.subject)
    resident = None
    if personal and device is not None and device.resident is not None:
        resident = web.registry.resident(device.resident)
    timeline = [timeline_json(entry, personal=personal) for entry in web.casework.timeline(found.id)]
    return CaseDetail(
        row=case_row(web, reach, view, now=now),
        sla=view["sla"],
        timeline=timeline,
        trace=_trace_lines(alert.trace) if alert is not None and personal else [],
        notices=_notices(web.store.notifications_for(alert.id)) if alert is not None and told else [],
        may_see_notices=told,
        resident=resident,
        may_see_personal=personal,
        actions=[a for a in view["allowed_actions"] if reach.allows(CaseAction(a), where)],
        now=now,
    )
