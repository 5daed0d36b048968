"""Message texts for case notifications: Simplified Chinese first, English available.

Pure: a :class:`CaseNotice` (plain data the hub fills from a case and an escalation step)
→ a title, a Markdown text and a plain text, in ``zh`` or ``en``. Times are shown in the
community's zone.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from typing import Any
from zoneinfo import ZoneInfo


class Lang(StrEnum):
    ZH = "zh"
    EN = "en"


class NoticeKind(StrEnum):
    NOTIFY = "notify"  # 新案件 / new case
    REMIND = "remind"  # 催办 / reminder
    ESCALATE = "escalate"  # 升级 / escalation
    SUPERVISE = "supervise"  # 督办 / supervised (overdue)
    EVALUATE = "evaluate"  # 请评价 / a guardian's one-time 评价 link


@dataclass(frozen=True, slots=True, kw_only=True)
class CaseNotice:
    case_id: str
    kind: NoticeKind
    category: str
    severity: str
    title_zh: str
    title_en: str
    state: str
    filed_at: float
    grid: str | None = None
    address: str = ""
    due_at: float | None = None
    #: Stage the notice is about (e.g. ``accept``), if any.
    stage: str = ""
    link: str = ""

    def to_json(self) -> dict[str, Any]:
        return {
            "schema": "linli.case_notice.v1",
            "case_id": self.case_id,
            "kind": self.kind.value,
            "category": self.category,
            "severity": self.severity,
            "title": {"zh": self.title_zh, "en": self.title_en},
            "state": self.state,
            "filed_at": self.filed_at,
            "grid": self.grid,
            "address": self.address,
            "due_at": self.due_at,
            "stage": self.stage,
            "link": self.link,
        }


_KIND = {
    Lang.ZH: {
        NoticeKind.NOTIFY: "新案件",
        NoticeKind.REMIND: "催办",
        NoticeKind.ESCALATE: "升级",
        NoticeKind.SUPERVISE: "督办",
        NoticeKind.EVALUATE: "请评价",
    },
    Lang.EN: {
        NoticeKind.NOTIFY: "New case",
        NoticeKind.REMIND: "Reminder",
        NoticeKind.ESCALATE: "Escalation",
        NoticeKind.SUPERVISE: "Overdue (supervised)",
        NoticeKind.EVALUATE: "Please rate",
    },
}
_SEVERITY = {
    Lang.ZH: {"critical": "紧急", "major": "重要", "minor": "一般", "info": "提示"},
    Lang.EN: {"critical": "critical", "major": "major", "minor": "minor", "info": "info"},
}
_STATE = {
    Lang.ZH: {
        "filed": "已立案",
        "dispatched": "已派遣",
        "accepted": "已受理",
        "on_site": "已到场",
        "handled": "已反馈",
        "verified": "已核查",
        "closed": "已结案",
        "void": "已作废",
    },
    Lang.EN: {},
}
_STAGE = {
    Lang.ZH: {"accept": "受理", "arrive": "到场", "handle": "处置", "verify": "核查", "case": "结案"},
    Lang.EN: {
        "accept": "accept",
        "arrive": "on site",
        "handle": "handle",
        "verify": "verify",
        "case": "close",
    },
}
_LABELS = {
    Lang.ZH: {
        "case": "案件",
        "severity": "等级",
        "state": "状态",
        "grid": "网格",
        "address": "地址",
        "filed": "立案时间",
        "due": "时限",
        "stage": "环节",
        "open": "查看",
    },
    Lang.EN: {
        "case": "Case",
        "severity": "Severity",
        "state": "State",
        "grid": "Grid",
        "address": "Address",
        "filed": "Filed",
        "due": "Due",
        "stage": "Stage",
        "open": "Open",
    },
}


@dataclass(frozen=True, slots=True, kw_only=True)
class Rendered:
    title: str
    markdown: str
    text: str


def _time(ts: float, zone: ZoneInfo) -> str:
    return datetime.fromtimestamp(ts, zone).strftime("%Y-%m-%d %H:%M:%S")


def render(notice: CaseNotice, *, zone: ZoneInfo, lang: Lang = Lang.ZH) -> Rendered:
    """The notice as a title, Markdown (DingTalk/WeCom) and plain text (SMS-sized first line)."""
    labels = _LABELS[lang]
    what = notice.title_zh if lang is Lang.ZH else (notice.title_en or notice.title_zh)
    kind = _KIND[lang][notice.kind]
    sep = "】" if lang is Lang.ZH else "] "
    title = f"{'【' if lang is Lang.ZH else '['}{kind}{sep}{what}"
    rows: list[tuple[str, str]] = [
        (labels["case"], notice.case_id),
        (labels["severity"], _SEVERITY[lang].get(notice.severity, notice.severity)),
        (labels["state"], _STATE[lang].get(notice.state, notice.state)),
    ]
    if notice.grid:
        rows.append((labels["grid"], notice.grid))
    if notice.address:
        rows.append((labels["address"], notice.address))
    rows.append((labels["filed"], _time(notice.filed_at, zone)))
    if notice.stage:
        rows.append((labels["stage"], _STAGE[lang].get(notice.stage, notice.stage)))
    if notice.due_at is not None:
        rows.append((labels["due"], _time(notice.due_at, zone)))
    colon = "：" if lang is Lang.ZH else ": "
    markdown = "\n".join([f"### {title}", *(f"- **{k}**{colon}{v}" for k, v in rows)])
    text = "\n".join([title, *(f"{k}{colon}{v}" for k, v in rows)])
    if notice.link:
        markdown += f"\n\n[{labels['open']}]({notice.link})"
        text += f"\n{notice.link}"
    return Rendered(title=title, markdown=markdown, text=text)
