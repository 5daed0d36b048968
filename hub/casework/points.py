"""Case transitions as time-series points (``case`` measurement, docs/timeseries.md).

Which dashboard stage a timeline entry is, and the worst traffic light at that moment.
"""

from __future__ import annotations

from hub.cases.model import Case, CaseAction, CaseState, Stage, TimelineEntry
from hub.cases.sla import Light, SlaBook
from hub.timeseries import CaseStage, CaseTransition, Point, TrafficLight, case_point

_STAGE_OF_ACTION = {
    CaseAction.FILE: CaseStage.FILED,
    CaseAction.DISPATCH: CaseStage.DISPATCHED,
    CaseAction.ACCEPT: CaseStage.ACCEPTED,
    CaseAction.ARRIVE: CaseStage.HANDLED,  # 处置 begins on site
    CaseAction.HANDLE: CaseStage.FEEDBACK,
    CaseAction.VERIFY: CaseStage.VERIFIED,
    CaseAction.REWORK: CaseStage.REWORK,
    CaseAction.CLOSE: CaseStage.CLOSED,
    CaseAction.REASSIGN: CaseStage.REDISPATCHED,
    CaseAction.RETURN: CaseStage.RETURNED,
    CaseAction.EXTEND: CaseStage.EXTENDED,
    CaseAction.SUPERVISE: CaseStage.SUPERVISED,
    CaseAction.VOID: CaseStage.VOID,
}
#: Traffic lights from best to worst, for ``max``.
LIGHT_ORDER = (Light.GREEN, Light.YELLOW, Light.RED)


def stage_of(case: Case, entry: TimelineEntry) -> CaseStage | None:
    """The dashboard stage an entry moved the case into (``None``: not a stage change)."""
    if entry.action in (CaseAction.FALSE_ALARM, CaseAction.AUTO_CLEAR) and case.state is CaseState.CLOSED:
        return CaseStage.CLOSED
    if entry.action is CaseAction.EVALUATE:
        # 不满意 sends the case back (返工): on the dashboards it is a rework like a failed 核查.
        return CaseStage.REWORK if case.state is not CaseState.CLOSED else CaseStage.EVALUATED
    return _STAGE_OF_ACTION.get(entry.action)


def worst_light(case: Case, now: float, *, sla: SlaBook, open_stages_only: bool = False) -> Light:
    lights = sla.traffic_light(case, now)
    return max(
        (s.light for s in lights if not (open_stages_only and s.done)),
        key=LIGHT_ORDER.index,
        default=Light.GREEN,
    )


def transition_point(
    case: Case, stage: CaseStage, at: float, *, sla: SlaBook, rating: str | None = None
) -> Point:
    return case_point(
        CaseTransition(
            case_id=case.id,
            stage=stage,
            at=at,
            stage_entered_at=case.updated_at if stage is not CaseStage.FILED else case.filed_at,
            filed_at=case.filed_at,
            deadline=sla.due_at(case, Stage.CASE),
            light=TrafficLight(worst_light(case, at, sla=sla).value),
            community=case.community or "",
            grid=case.grid or "",
            category=case.category,
            severity=case.severity,
            worker=case.assignee or "",
            rating=rating,
        )
    )
