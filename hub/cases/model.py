"""Case states, actions and records.

State names follow the stages of the digital urban management closed loop (GB/T 30428.1;
case filing and closing per CJ/T 315): 立案 filed → 派遣 dispatched → 受理 accepted →
到场 on site (处置) → 反馈 handled → 核查 verified → 结案 closed, plus 作废 void.
Side branches (改派, 回退, 延期, 督办, 返工, false alarm, cleared by the sensor) are actions
that move between these states or stay in one; every one leaves a timeline entry.
After 结案 comes 综合评价 (handbook §3): an ``evaluate`` action records the resident's,
a guardian's or the command centre's rating; 不满意 reopens the case as a 返工.

A :class:`Case` is a snapshot derived from its timeline: :func:`hub.cases.workflow.replay`
rebuilds it from the entries, so the timeline is the record and the case row a cache.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

#: The category whose cases are life-safety calls (一键通 SOS): stricter closing rules.
SOS_CATEGORY = "sos"


class CaseState(StrEnum):
    FILED = "filed"  # 立案: recorded, not yet sent to anybody (also after 回退)
    DISPATCHED = "dispatched"  # 派遣: sent to a handler; the SLA clock starts (GB/T 30428)
    ACCEPTED = "accepted"  # 受理: a handler took it
    ON_SITE = "on_site"  # 到场: the handler reported arrival (处置 begins)
    HANDLED = "handled"  # 反馈: the handler reported the result (note, optional photo)
    VERIFIED = "verified"  # 核查: the result was checked and passed
    CLOSED = "closed"  # 结案 (resolution says how: resolved, false alarm, cleared)
    VOID = "void"  # 作废 / 不予受理: not a case (never for an SOS)


#: States in which the work is finished. A void case never leaves its state; a closed one
#: only through an unsatisfied 评价 (不满意 → 返工, handbook §3 综合评价).
TERMINAL: frozenset[CaseState] = frozenset({CaseState.CLOSED, CaseState.VOID})
#: States in which somebody still has to do something.
OPEN: frozenset[CaseState] = frozenset(CaseState) - TERMINAL


class CaseAction(StrEnum):
    FILE = "file"  # 立案 (the first entry of every timeline)
    DISPATCH = "dispatch"  # 派遣 (data.assignee)
    ACCEPT = "accept"  # 受理
    ARRIVE = "arrive"  # 到场
    HANDLE = "handle"  # 反馈 (note required, data.photo_url optional)
    VERIFY = "verify"  # 核查通过
    REWORK = "rework"  # 核查不通过 → 返工
    CLOSE = "close"  # 结案
    REASSIGN = "reassign"  # 改派 (data.assignee)
    RETURN = "return"  # 回退 to the dispatcher (note required)
    EXTEND = "extend"  # 延期 (data.approver, data.seconds, note required)
    SUPERVISE = "supervise"  # 督办 (data.stage)
    CALL_BACK = "call_back"  # 回拨/回访 recorded (data.callback_at, note)
    FALSE_ALARM = "false_alarm"  # 误报 (an SOS needs a recorded call-back)
    AUTO_CLEAR = "auto_clear"  # the sensor reports the condition cleared
    VOID = "void"  # 作废 / 不予受理
    NOTE = "note"  # a remark; changes nothing else
    EVALUATE = "evaluate"  # 评价 after 结案 (data.rating, data.role, data.via; 不满意 → 返工)


class Channel(StrEnum):
    """Where an action came from."""

    CONSOLE = "console"
    MQTT = "mqtt"
    PHONE_PAGE = "phone_page"
    WEBHOOK = "webhook"
    SYSTEM = "system"


class Rating(StrEnum):
    """评价结果: the three answers of a 满意度 survey (handbook §3 综合评价)."""

    SATISFIED = "satisfied"  # 满意
    BASICALLY_SATISFIED = "basically_satisfied"  # 基本满意
    UNSATISFIED = "unsatisfied"  # 不满意 (sends the case back: 返工)

    @property
    def satisfied(self) -> bool:
        """Counted in 满意率 (满意 + 基本满意)."""
        return self is not Rating.UNSATISFIED

    @property
    def label_zh(self) -> str:
        return _RATING_ZH[self]


_RATING_ZH = {
    Rating.SATISFIED: "满意",
    Rating.BASICALLY_SATISFIED: "基本满意",
    Rating.UNSATISFIED: "不满意",
}


class EvaluatorRole(StrEnum):
    """Who gave a 评价: the elder, a family member, or the command centre after a call-back."""

    RESIDENT = "resident"  # 居民本人
    GUARDIAN = "guardian"  # 监护人/家属 (e.g. through a one-time link)
    COMMAND_CENTRE = "command_centre"  # 指挥中心回访


class EvaluationVia(StrEnum):
    """How the 评价 was collected (满意度 by questionnaire, home visits, random checks)."""

    PHONE_CALL = "phone_call"  # 电话回访
    LINK = "link"  # 一次性评价链接 (guardian's phone, no account)
    VISIT = "visit"  # 上门回访
    QUESTIONNAIRE = "questionnaire"  # 问卷
    CONSOLE = "console"  # 窗口/指挥中心录入


class Resolution(StrEnum):
    RESOLVED = "resolved"
    FALSE_ALARM = "false_alarm"
    AUTO_CLEARED = "auto_cleared"
    VOID = "void"


class Stage(StrEnum):
    """Timed stages; each has a limit and a traffic light (see :mod:`hub.cases.sla`)."""

    ACCEPT = "accept"  # dispatched → accepted
    ARRIVE = "arrive"  # accepted → on site
    HANDLE = "handle"  # on site → handled
    VERIFY = "verify"  # handled → verified
    CASE = "case"  # whole case: first dispatch → closed


@dataclass(frozen=True, slots=True, kw_only=True)
class Extension:
    """An approved 延期: extra time (in the policy's basis) for one stage and the case."""

    stage: Stage
    seconds: float
    approver: str
    at: float


@dataclass(frozen=True, slots=True, kw_only=True)
class Supervision:
    """A 督办 already recorded for one round of a stage (the round is its start time)."""

    stage: Stage
    round_start: float
    at: float


@dataclass(frozen=True, slots=True, kw_only=True)
class Evaluation:
    """One recorded 评价 (the data of an ``evaluate`` timeline entry, typed)."""

    rating: Rating
    role: EvaluatorRole
    via: EvaluationVia
    by: str  # the actor who recorded it (an operator may record for the resident)
    at: float
    note: str = ""


@dataclass(frozen=True, slots=True, kw_only=True)
class Case:
    id: str
    category: str
    severity: str
    subject: str
    grid: str | None
    community: str | None
    title_zh: str
    title_en: str
    alert_id: int | None
    state: CaseState
    resolution: Resolution | None
    filed_at: float
    #: Time of the last state change; the last timeline entry's time.
    updated_at: float
    #: Number of timeline entries (the next entry's sequence number).
    version: int
    assignee: str | None = None
    #: First dispatch: the whole-case SLA clock starts here and never restarts.
    clock_started_at: float | None = None
    #: The current round's stage starts (a reassign or rework starts a new round).
    dispatched_at: float | None = None
    accepted_at: float | None = None
    on_site_at: float | None = None
    handled_at: float | None = None
    verified_at: float | None = None
    closed_at: float | None = None
    handler_note: str = ""
    photo_url: str = ""
    callback_at: float | None = None
    sensor_cleared_at: float | None = None
    rework_count: int = 0
    extensions: tuple[Extension, ...] = ()
    supervisions: tuple[Supervision, ...] = ()
    #: The latest 评价 (``None``: never evaluated). An unsatisfied one reopened the case, so
    #: a closed case whose latest evaluation is not 不满意 was evaluated in this closing.
    evaluation: Evaluation | None = None
    evaluation_count: int = 0

    @property
    def is_sos(self) -> bool:
        return self.category == SOS_CATEGORY

    @property
    def open(self) -> bool:
        return self.state in OPEN

    @property
    def awaiting_evaluation(self) -> bool:
        """Closed and not yet evaluated since this 结案 (the only time ``evaluate`` is taken)."""
        return self.state is CaseState.CLOSED and (
            self.evaluation is None or self.evaluation.rating is Rating.UNSATISFIED
        )

    def stage_start(self, stage: Stage) -> float | None:
        """When ``stage`` started in the current round (``None``: not reached)."""
        return {
            Stage.ACCEPT: self.dispatched_at,
            Stage.ARRIVE: self.accepted_at,
            Stage.HANDLE: self.on_site_at,
            Stage.VERIFY: self.handled_at,
            Stage.CASE: self.clock_started_at,
        }[stage]

    def stage_end(self, stage: Stage) -> float | None:
        """When ``stage`` ended (a case that closes or is voided ends every stage)."""
        end = {
            Stage.ACCEPT: self.accepted_at,
            Stage.ARRIVE: self.on_site_at,
            Stage.HANDLE: self.handled_at,
            Stage.VERIFY: self.verified_at,
            Stage.CASE: self.closed_at,
        }[stage]
        if end is None and self.state in TERMINAL:
            return self.updated_at
        return end

    def extension_for(self, stage: Stage) -> float:
        """Approved extra seconds for ``stage`` (every extension also extends the case)."""
        if stage is Stage.CASE:
            return sum(e.seconds for e in self.extensions)
        start = self.stage_start(stage)
        return sum(
            e.seconds for e in self.extensions if e.stage is stage and start is not None and e.at >= start
        )


@dataclass(frozen=True, slots=True, kw_only=True)
class TimelineEntry:
    """One append-only record: who did what, when, through which channel and why."""

    case_id: str
    seq: int
    ts: float
    action: CaseAction
    from_state: CaseState | None
    to_state: CaseState
    actor: str
    channel: Channel
    note: str = ""
    data: Mapping[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {
            "case_id": self.case_id,
            "seq": self.seq,
            "ts": self.ts,
            "action": self.action.value,
            "from_state": None if self.from_state is None else self.from_state.value,
            "to_state": self.to_state.value,
            "actor": self.actor,
            "channel": self.channel.value,
            "note": self.note,
            "data": dict(self.data),
        }

    @classmethod
    def from_dict(cls, doc: Mapping[str, Any]) -> TimelineEntry:
        return cls(
            case_id=str(doc["case_id"]),
            seq=int(doc["seq"]),
            ts=float(doc["ts"]),
            action=CaseAction(doc["action"]),
            from_state=None if doc.get("from_state") is None else CaseState(doc["from_state"]),
            to_state=CaseState(doc["to_state"]),
            actor=str(doc["actor"]),
            channel=Channel(doc["channel"]),
            note=str(doc.get("note", "")),
            data=dict(doc.get("data") or {}),
        )
