"""The console's words, zh-CN first and English: one table per language, chosen per request."""

from __future__ import annotations

from enum import StrEnum

from fastapi import Request

from hub.web.pages.labels import ENUMS_EN, ENUMS_ZH

#: The cookie the language switch sets (not personal: just which table to use).
LANG_COOKIE = "linli_lang"


class Lang(StrEnum):
    ZH = "zh-CN"
    EN = "en"


def lang_of(request: Request) -> Lang:
    return Lang.EN if request.cookies.get(LANG_COOKIE) == Lang.EN.value else Lang.ZH


_ZH = {
    "app": "邻里 · 指挥中心",
    "overview": "总览",
    "map": "网格地图",
    "devices": "设备",
    "roster": "值班",
    "kpis": "考核指标",
    "care": "关爱探访",
    "phone": "手机页",
    "other_lang": "English",
    "logout": "退出",
    "live": "实时",
    "offline": "未连接",
    "sound_on": "提示音:开",
    "sound_off": "提示音:关",
    "open_cases": "待办案件",
    "sos_open": "一键呼救(未结)",
    "no_cases": "暂无待办案件",
    "severity": "级别",
    "category": "类别",
    "place": "位置",
    "elder": "老人",
    "elapsed": "已用时",
    "light": "时限",
    "assignee": "承办人",
    "stage": "环节",
    "by_grid": "按网格",
    "by_category": "按类别",
    "hub": "系统状态",
    "ready": "就绪",
    "not_ready": "未就绪",
    "ingest_rate": "接入速率",
    "per_s": "条/秒",
    "messages": "已接入消息",
    "unassigned": "未分配(指挥中心)",
    "timeline": "处理记录",
    "trace": "触发原因",
    "notifications": "通知",
    "channel": "渠道",
    "recipient": "接收人",
    "delivered": "已送达",
    "pending": "发送中",
    "abandoned": "已放弃",
    "attempts": "尝试次数",
    "outcome": "送达状态",
    "resident": "老人档案",
    "contacts": "紧急联系人",
    "phone_no": "电话",
    "address": "地址",
    "age": "年龄",
    "medical": "健康备注",
    "no_personal": "无权查看个人信息",
    "actions": "可执行操作",
    "note": "备注(作废、反馈等必填)",
    "approver": "审批人(延期)",
    "new_assignee": "改派给",
    "back": "‹ 返回总览",
    "sla": "各环节时限",
    "due": "期限",
    "online": "在线",
    "offline_dev": "离线",
    "battery": "电量",
    "last_seen": "最后上报",
    "signal": "信号",
    "kind": "类型",
    "grid": "网格",
    "all": "全部",
    "filter": "筛选",
    "only_offline": "仅离线",
    "only_low_battery": "仅低电量",
    "only_unassigned": "仅未分配",
    "prev": "上一页",
    "next": "下一页",
    "showing": "显示",
    "of_total": "共",
    "quarantine": "隔离消息",
    "reason": "原因",
    "count": "次数",
    "topic": "主题",
    "first_seen": "首次",
    "unassigned_devices": "未登记设备",
    "buildings": "楼栋",
    "units": "单元",
    "rooms": "户",
    "places": "公共场所",
    "schematic": "示意图(登记中无网格边界)",
    "on_duty_now": "当前在岗",
    "nobody": "无人值守",
    "gaps": "未来一周 SOS 无人值守时段",
    "no_gaps": "未来一周每个网格每小时都有人值守",
    "period": "统计期间",
    "from": "自",
    "to": "至",
    "show": "查看",
    "closure_rate": "结案率",
    "on_time_rate": "按期结案率",
    "rework_rate": "返工率",
    "extension_rate": "延期率",
    "response": "响应时间(立案→受理)",
    "median": "中位数",
    "p90": "90 分位",
    "due_cases": "应结案件",
    "closed": "已结案",
    "worker": "网格员",
    "overall": "总体",
    "drill": "查看楼栋",
    "refused": "未执行",
    "minutes": "分",
    "seconds": "秒",
    "hours": "时",
}

_EN = {
    "app": "Linli · Command centre",
    "overview": "Overview",
    "map": "Grid map",
    "devices": "Devices",
    "roster": "Roster",
    "kpis": "KPIs",
    "care": "Care visits",
    "phone": "Phone page",
    "other_lang": "中文",
    "logout": "Log out",
    "live": "live",
    "offline": "offline",
    "sound_on": "Sound: on",
    "sound_off": "Sound: off",
    "open_cases": "Open cases",
    "sos_open": "Open SOS",
    "no_cases": "No open cases",
    "severity": "Severity",
    "category": "Category",
    "place": "Place",
    "elder": "Elder",
    "elapsed": "Elapsed",
    "light": "SLA",
    "assignee": "Assignee",
    "stage": "Stage",
    "by_grid": "By grid",
    "by_category": "By category",
    "hub": "Hub",
    "ready": "ready",
    "not_ready": "not ready",
    "ingest_rate": "Ingest rate",
    "per_s": "msg/s",
    "messages": "messages in",
    "unassigned": "unassigned (command centre)",
    "timeline": "Timeline",
    "trace": "Why it fired",
    "notifications": "Notifications",
    "channel": "Channel",
    "recipient": "Recipient",
    "delivered": "delivered",
    "pending": "sending",
    "abandoned": "abandoned",
    "attempts": "Attempts",
    "outcome": "Delivery",
    "resident": "Elder's profile",
    "contacts": "Emergency contacts",
    "phone_no": "Phone",
    "address": "Address",
    "age": "Age",
    "medical": "Medical notes",
    "no_personal": "Personal data not shown for your role",
    "actions": "Actions",
    "note": "Note (required to void, report …)",
    "approver": "Approver (extension)",
    "new_assignee": "Reassign to",
    "back": "‹ Back to overview",
    "sla": "Stage time limits",
    "due": "Due",
    "online": "online",
    "offline_dev": "offline",
    "battery": "Battery",
    "last_seen": "Last seen",
    "signal": "Signal",
    "kind": "Kind",
    "grid": "Grid",
    "all": "all",
    "filter": "Filter",
    "only_offline": "offline only",
    "only_low_battery": "low battery only",
    "only_unassigned": "unassigned only",
    "prev": "Previous",
    "next": "Next",
    "showing": "Showing",
    "of_total": "of",
    "quarantine": "Quarantined messages",
    "reason": "Reason",
    "count": "Count",
    "topic": "Topic",
    "first_seen": "First seen",
    "unassigned_devices": "Unassigned devices",
    "buildings": "Buildings",
    "units": "Units",
    "rooms": "Households",
    "places": "Shared places",
    "schematic": "Schematic (the registry has no grid boundaries)",
    "on_duty_now": "On duty now",
    "nobody": "nobody on duty",
    "gaps": "Hours of the coming week with nobody on duty for SOS",
    "no_gaps": "Every grid is covered for SOS every hour of the coming week",
    "period": "Period",
    "from": "From",
    "to": "To",
    "show": "Show",
    "closure_rate": "Closure rate",
    "on_time_rate": "On-time closure rate",
    "rework_rate": "Rework rate",
    "extension_rate": "Extension rate",
    "response": "Response time (filed → accepted)",
    "median": "median",
    "p90": "p90",
    "due_cases": "Cases due",
    "closed": "Closed",
    "worker": "Worker",
    "overall": "Overall",
    "drill": "Buildings",
    "refused": "Refused",
    "minutes": "min",
    "seconds": "s",
    "hours": "h",
}


class Words:
    """``words["key"]`` and ``words.of("light", "red")`` in one language; unknown keys show as-is."""

    __slots__ = ("_enums", "_table", "lang")

    def __init__(self, *, lang: Lang) -> None:
        self.lang = lang
        self._table = _EN if lang is Lang.EN else _ZH
        self._enums = ENUMS_EN if lang is Lang.EN else ENUMS_ZH

    def __getitem__(self, key: str) -> str:
        return self._table.get(key, key)

    def of(self, kind: str, value: str | None) -> str:
        if value is None:
            return ""
        return self._enums.get(kind, {}).get(value, value)

    def duration(self, seconds: float) -> str:
        """``1 时 05 分`` / ``4 min 07 s``: elapsed time for people, never negative."""
        s = max(0, int(seconds))
        hours, rest = divmod(s, 3600)
        minutes, secs = divmod(rest, 60)
        if hours:
            return f"{hours} {self['hours']} {minutes:02d} {self['minutes']}"
        return f"{minutes} {self['minutes']} {secs:02d} {self['seconds']}"
