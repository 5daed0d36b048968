# ruff: noqa: S608 - InfluxQL text for Grafana, fixed at build time; no user input is interpolated.
"""The six command-centre dashboards, as data: titles and units in zh-CN, queries in InfluxQL.

InfluxQL works on InfluxDB 1.x, on 2.x through a DBRP mapping and on 3.x. The measurements,
tags and fields are those of ``hub/timeseries/schema.py`` (documented in ``docs/timeseries.md``);
this package does not import it (see the package docstring).

Grafana macros used: ``$timeFilter``, ``$__interval``; template variables ``$community`` and
``$grid`` (regex-matched, so "All" and multi-select work).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum

from dashboards.influxql import ResultFormat


class Viz(StrEnum):
    TIMESERIES = "timeseries"
    STAT = "stat"
    GAUGE = "gauge"
    BARGAUGE = "bargauge"
    TABLE = "table"
    HEATMAP = "heatmap"
    HISTOGRAM = "histogram"


# Units: Grafana unit ids; counts carry a Chinese suffix.
TIMES = "suffix:次"
CASES = "suffix:件"
DEVICES = "suffix:台"
PERCENT = "percent"
SECONDS = "s"
DBM = "suffix:dBm"
DB = "suffix:dB"
PCT_BATTERY = "percent"

GRID = '"community" =~ /^$community$/ AND "grid" =~ /^$grid$/'
TABLE = ResultFormat.TABLE


@dataclass(frozen=True, slots=True, kw_only=True)
class Query:
    text: str
    result_format: ResultFormat = ResultFormat.TIME_SERIES
    alias: str = ""


@dataclass(frozen=True, slots=True, kw_only=True)
class PanelSpec:
    title: str
    viz: Viz
    queries: tuple[Query, ...]
    unit: str = ""
    description: str = ""
    w: int = 12
    h: int = 8
    min: float | None = None
    max: float | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class DashboardSpec:
    uid: str
    title: str
    description: str
    panels: tuple[PanelSpec, ...]
    tags: tuple[str, ...] = ("linli",)
    grid_variables: bool = False
    time_from: str = "now-24h"
    extra_tags: tuple[str, ...] = field(default_factory=tuple)


def q(text: str, *, table: bool = False, alias: str = "") -> Query:
    return Query(
        text=" ".join(text.split()),
        result_format=ResultFormat.TABLE if table else ResultFormat.TIME_SERIES,
        alias=alias,
    )


def _open_cases(where: str, group: str) -> str:
    return (
        'SELECT sum("o") AS "在办" FROM (SELECT last("open") AS "o" FROM "case_open"'
        f' WHERE {where} GROUP BY "community", "grid", "severity", "light") GROUP BY {group}'
    )


def _rate(numerator: str, where: str, group: str) -> str:
    return (
        f'SELECT 100 * sum("{numerator}") / (sum("due") - sum("deferred")) FROM "case_transition"'
        f" WHERE {where} GROUP BY {group} fill(none)"
    )


OVERVIEW = DashboardSpec(
    uid="linli-overview",
    title="邻里 · 指挥中心总览",
    description="全辖区：在办案件、一键呼救、响应时长、按期结案率、设备在线率、最新告警",
    panels=(
        PanelSpec(
            title="在办案件（按网格、紧急程度）",
            viz=Viz.BARGAUGE,
            unit=CASES,
            queries=(q(_open_cases("$timeFilter", '"grid", "severity"')),),
        ),
        PanelSpec(
            title="近24小时一键呼救",
            viz=Viz.STAT,
            unit=TIMES,
            w=6,
            queries=(
                q(
                    """SELECT sum("count") AS "呼救" FROM "press" WHERE "press" = 'sos' AND time > now() - 24h"""
                ),
            ),
        ),
        PanelSpec(
            title="按期结案率",
            viz=Viz.GAUGE,
            unit=PERCENT,
            w=6,
            min=0,
            max=100,
            queries=(q(_rate("closed_on_time", "$timeFilter", '"community"')),),
        ),
        PanelSpec(
            title="响应时长（立案→受理）P50 / P90",
            viz=Viz.STAT,
            unit=SECONDS,
            queries=(
                q(
                    """SELECT percentile("response_s", 50) AS "P50", percentile("response_s", 90) AS "P90"
                    FROM "case_transition" WHERE "stage" = 'accepted' AND $timeFilter"""
                ),
            ),
        ),
        PanelSpec(
            title="设备在线率",
            viz=Viz.GAUGE,
            unit=PERCENT,
            w=6,
            min=0,
            max=100,
            queries=(
                q(
                    """SELECT 100 * sum("on") / sum("all") AS "在线率" FROM (SELECT last("online") AS "on",
                    last("total") AS "all" FROM "fleet" WHERE $timeFilter GROUP BY "community", "grid",
                    "device_kind")"""
                ),
            ),
        ),
        PanelSpec(
            title="一键呼救（按网格）",
            viz=Viz.TIMESERIES,
            unit=TIMES,
            w=6,
            queries=(
                q(
                    """SELECT sum("count") FROM "press" WHERE "press" = 'sos' AND $timeFilter
                    GROUP BY time($__interval), "grid" fill(0)"""
                ),
            ),
        ),
        PanelSpec(
            title="告警趋势（按类别）",
            viz=Viz.TIMESERIES,
            unit=TIMES,
            queries=(
                q(
                    """SELECT sum("n") FROM "alert" WHERE "transition" = 'raised' AND $timeFilter
                    GROUP BY time($__interval), "category" fill(0)"""
                ),
            ),
        ),
        PanelSpec(
            title="最新告警",
            viz=Viz.TABLE,
            w=12,
            h=10,
            queries=(
                q(
                    """SELECT "title" AS "告警", "device_id" AS "设备", "grid" AS "网格", "severity" AS "级别",
                    "category" AS "类别" FROM "alert" WHERE "transition" = 'raised' AND $timeFilter
                    ORDER BY time DESC LIMIT 50""",
                    table=True,
                ),
            ),
        ),
    ),
)

GRID_DETAIL = DashboardSpec(
    uid="linli-grid",
    title="邻里 · 网格详情",
    description="选定社区与网格：案件、告警、门磁、设备、呼救",
    grid_variables=True,
    panels=(
        PanelSpec(
            title="在办案件（按红黄绿灯）",
            viz=Viz.BARGAUGE,
            unit=CASES,
            w=8,
            queries=(q(_open_cases(f"{GRID} AND $timeFilter", '"light"')),),
        ),
        PanelSpec(
            title="一键呼救次数",
            viz=Viz.STAT,
            unit=TIMES,
            w=4,
            queries=(
                q(
                    f"""SELECT sum("count") AS "呼救" FROM "press" WHERE "press" = 'sos' AND {GRID} AND $timeFilter"""
                ),
            ),
        ),
        PanelSpec(
            title="告警（按类别）",
            viz=Viz.TIMESERIES,
            unit=TIMES,
            queries=(
                q(
                    f"""SELECT sum("n") FROM "alert" WHERE "transition" = 'raised' AND {GRID} AND $timeFilter
                    GROUP BY time($__interval), "category" fill(0)"""
                ),
            ),
        ),
        PanelSpec(
            title="开门次数（按楼栋）",
            viz=Viz.TIMESERIES,
            unit=TIMES,
            queries=(
                q(
                    f"""SELECT count("open") FROM "door" WHERE "open" = 1 AND {GRID} AND $timeFilter
                    GROUP BY time($__interval), "building" fill(0)"""
                ),
            ),
        ),
        PanelSpec(
            title="在线设备（按类型）",
            viz=Viz.TIMESERIES,
            unit=DEVICES,
            queries=(
                q(
                    f"""SELECT last("online") FROM "fleet" WHERE {GRID} AND $timeFilter
                    GROUP BY time($__interval), "device_kind" fill(previous)"""
                ),
            ),
        ),
        PanelSpec(
            title="案件流转（按阶段）",
            viz=Viz.TIMESERIES,
            unit=CASES,
            queries=(
                q(
                    f"""SELECT sum("n") FROM "case_transition" WHERE {GRID} AND $timeFilter
                    GROUP BY time($__interval), "stage" fill(0)"""
                ),
            ),
        ),
        PanelSpec(
            title="各阶段平均用时",
            viz=Viz.BARGAUGE,
            unit=SECONDS,
            queries=(
                q(
                    f"""SELECT mean("stage_s") AS "用时" FROM "case_transition" WHERE {GRID} AND $timeFilter GROUP BY "stage" """
                ),
            ),
        ),
    ),
)

ELDERLY = DashboardSpec(
    uid="linli-elderly",
    title="邻里 · 独居老人关怀",
    description="一键呼救时间线、无活动告警、24小时无开门记录的独居住户",
    panels=(
        PanelSpec(
            title="一键呼救时间线",
            viz=Viz.TABLE,
            queries=(
                q(
                    """SELECT "count" AS "次数", "grid" AS "网格", "building" AS "楼栋", "device_id" AS "设备",
                    "press_type" AS "按键方式" FROM "press" WHERE "press" = 'sos' AND $timeFilter
                    ORDER BY time DESC""",
                    table=True,
                ),
            ),
        ),
        PanelSpec(
            title="呼救与求助（按小时）",
            viz=Viz.TIMESERIES,
            unit=TIMES,
            queries=(
                q(
                    """SELECT sum("count") FROM "press" WHERE "press" =~ /^(sos|service)$/ AND $timeFilter
                    GROUP BY time(1h), "press" fill(0)"""
                ),
            ),
        ),
        PanelSpec(
            title="长时间无活动告警",
            viz=Viz.TIMESERIES,
            unit=TIMES,
            queries=(
                q(
                    """SELECT sum("n") FROM "alert" WHERE "category" = 'inactivity' AND "transition" = 'raised'
                    AND $timeFilter GROUP BY time($__interval), "grid" fill(0)"""
                ),
            ),
        ),
        PanelSpec(
            title="独居住户最后开门时间（超过24小时标红）",
            viz=Viz.TABLE,
            description="每户门磁最后一次开关门的时间；早于24小时前的住户需要电话或上门探访",
            queries=(
                q(
                    """SELECT last("open") AS "最后状态" FROM "door" WHERE "care" = 'living_alone'
                    AND time > now() - 7d GROUP BY "grid", "building", "device_id\"""",
                    table=True,
                ),
            ),
        ),
        PanelSpec(
            title="独居住户开门活动（按楼栋）",
            viz=Viz.TIMESERIES,
            unit=TIMES,
            queries=(
                q(
                    """SELECT count("open") FROM "door" WHERE "care" = 'living_alone' AND "open" = 1
                    AND $timeFilter GROUP BY time(1h), "building" fill(0)"""
                ),
            ),
        ),
    ),
)

DOORS_PARKING = DashboardSpec(
    uid="linli-doors-parking",
    title="邻里 · 门禁与停车",
    description="开门活动热力图、各车场日内占用、消防通道占用",
    panels=(
        PanelSpec(
            title="开门活动热力图（按楼栋、小时）",
            viz=Viz.HEATMAP,
            unit=TIMES,
            w=24,
            queries=(
                q(
                    """SELECT count("open") FROM "door" WHERE "open" = 1 AND $timeFilter
                    GROUP BY time(1h), "building" fill(0)"""
                ),
            ),
        ),
        PanelSpec(
            title="各车场占用车位（日内）",
            viz=Viz.TIMESERIES,
            unit="suffix:个",
            queries=(
                q(
                    """SELECT sum("occ") FROM (SELECT last("occupied") AS "occ" FROM "occupancy"
                    WHERE $timeFilter GROUP BY time(15m), "place", "device_id" fill(previous))
                    WHERE $timeFilter GROUP BY time(15m), "place" fill(none)"""
                ),
            ),
        ),
        PanelSpec(
            title="消防通道占用事件",
            viz=Viz.TIMESERIES,
            unit=TIMES,
            queries=(
                q(
                    """SELECT sum("n") FROM "alert" WHERE "category" = 'fire_lane' AND "transition" = 'raised'
                    AND $timeFilter GROUP BY time($__interval), "grid" fill(0)"""
                ),
            ),
        ),
        PanelSpec(
            title="消防通道平均占用时长",
            viz=Viz.BARGAUGE,
            unit=SECONDS,
            queries=(
                q(
                    """SELECT mean("duration_s") AS "时长" FROM "alert" WHERE "category" = 'fire_lane'
                    AND "transition" = 'resolved' AND $timeFilter GROUP BY "grid\""""
                ),
            ),
        ),
        PanelSpec(
            title="门长时间未关告警",
            viz=Viz.STAT,
            unit=TIMES,
            queries=(
                q(
                    """SELECT sum("n") AS "告警" FROM "alert" WHERE "category" = 'door_held'
                    AND "transition" = 'raised' AND $timeFilter"""
                ),
            ),
        ),
    ),
)

DEVICE_HEALTH = DashboardSpec(
    uid="linli-device-health",
    title="邻里 · 设备健康",
    description="电量分布、离线设备、信号质量、隔离消息与时序写入状态",
    panels=(
        PanelSpec(
            title="电量分布",
            viz=Viz.HISTOGRAM,
            unit=PCT_BATTERY,
            queries=(
                q(
                    """SELECT last("battery_pct") AS "电量" FROM "device_health" WHERE $timeFilter
                    GROUP BY "device_id\"""",
                    table=True,
                ),
            ),
        ),
        PanelSpec(
            title="离线设备",
            viz=Viz.TABLE,
            queries=(
                q(
                    """SELECT "online" AS "在线" FROM (SELECT last("online") AS "online" FROM "device_health"
                    WHERE $timeFilter GROUP BY "grid", "device_kind", "model", "device_id") WHERE "online" = 0
                    GROUP BY "grid", "device_kind", "model", "device_id\"""",
                    table=True,
                ),
            ),
        ),
        PanelSpec(
            title="信号强度 RSSI（按设备类型）",
            viz=Viz.TIMESERIES,
            unit=DBM,
            queries=(
                q(
                    """SELECT mean("rssi") FROM "device_health" WHERE $timeFilter
                    GROUP BY time($__interval), "device_kind" fill(none)"""
                ),
            ),
        ),
        PanelSpec(
            title="信噪比 SNR（按设备类型）",
            viz=Viz.TIMESERIES,
            unit=DB,
            queries=(
                q(
                    """SELECT mean("snr") FROM "device_health" WHERE $timeFilter
                    GROUP BY time($__interval), "device_kind" fill(none)"""
                ),
            ),
        ),
        PanelSpec(
            title="低电量设备数",
            viz=Viz.STAT,
            unit=DEVICES,
            w=6,
            queries=(
                q(
                    """SELECT sum("low") AS "低电量" FROM (SELECT last("low_battery") AS "low" FROM "fleet"
                    WHERE $timeFilter GROUP BY "community", "grid", "device_kind")"""
                ),
            ),
        ),
        PanelSpec(
            title="隔离消息（按原因）",
            viz=Viz.TIMESERIES,
            unit=TIMES,
            w=18,
            queries=(
                q(
                    """SELECT non_negative_difference(last("count")) FROM "quarantine" WHERE $timeFilter
                    GROUP BY time($__interval), "reason" fill(none)"""
                ),
            ),
        ),
        PanelSpec(
            title="时序写入：缓存、丢弃、隔离点数",
            viz=Viz.TIMESERIES,
            unit="suffix:点",
            queries=(
                q(
                    """SELECT last("ts_points_spooled") AS "缓存", last("ts_points_dropped") AS "丢弃",
                    last("ts_points_quarantined") AS "隔离" FROM "hub" WHERE $timeFilter
                    GROUP BY time($__interval) fill(none)"""
                ),
            ),
        ),
        PanelSpec(
            title="中枢接收速率",
            viz=Viz.TIMESERIES,
            unit="suffix:条/秒",
            queries=(
                q(
                    """SELECT non_negative_derivative(last("messages"), 1s) AS "消息" FROM "hub"
                    WHERE $timeFilter GROUP BY time($__interval) fill(none)"""
                ),
            ),
        ),
    ),
)

SLA = DashboardSpec(
    uid="linli-sla",
    title="邻里 · 时限与考核",
    description="红黄绿灯、结案率与按期结案率（按网格、网格员）、返工率、满意率、探访完成率",
    panels=(
        PanelSpec(
            title="在办案件红黄绿灯",
            viz=Viz.BARGAUGE,
            unit=CASES,
            w=8,
            queries=(q(_open_cases("$timeFilter", '"light"')),),
        ),
        PanelSpec(
            title="结案率（按网格）",
            viz=Viz.TIMESERIES,
            unit=PERCENT,
            w=8,
            queries=(q(_rate("closed", "$timeFilter", 'time(6h), "grid"')),),
        ),
        PanelSpec(
            title="按期结案率（按网格）",
            viz=Viz.TIMESERIES,
            unit=PERCENT,
            w=8,
            queries=(q(_rate("closed_on_time", "$timeFilter", 'time(6h), "grid"')),),
        ),
        PanelSpec(
            title="结案率（按网格员）",
            viz=Viz.TIMESERIES,
            unit=PERCENT,
            queries=(q(_rate("closed", "$timeFilter", 'time(6h), "worker"')),),
        ),
        PanelSpec(
            title="按期结案率（按网格员）",
            viz=Viz.TIMESERIES,
            unit=PERCENT,
            queries=(q(_rate("closed_on_time", "$timeFilter", 'time(6h), "worker"')),),
        ),
        PanelSpec(
            title="返工率与延期率（按网格）",
            viz=Viz.BARGAUGE,
            unit=PERCENT,
            queries=(
                q(
                    """SELECT 100 * sum("rework") / sum("closed") AS "返工率",
                    100 * sum("deferred") / sum("closed") AS "延期率" FROM "case_transition"
                    WHERE $timeFilter GROUP BY "grid\""""
                ),
            ),
        ),
        PanelSpec(
            title="满意率（按网格）",
            viz=Viz.BARGAUGE,
            unit=PERCENT,
            description="评价（回访、监护人链接）中满意与基本满意的比例：满意率 = (满意 + 基本满意) / 已评价",
            min=0,
            max=100,
            queries=(
                q(
                    """SELECT 100 * sum("satisfied") / sum("evaluated") AS "满意率" FROM "case_transition"
                    WHERE $timeFilter GROUP BY "grid\""""
                ),
            ),
        ),
        PanelSpec(
            title="探访完成率（按网格）",
            viz=Viz.BARGAUGE,
            unit=PERCENT,
            description="按期完成的探访任务 / 到期的探访任务（上门探访、电话问候）",
            min=0,
            max=100,
            queries=(
                q(
                    """SELECT 100 * sum("on_time") / sum("due") AS "探访完成率" FROM "visit"
                    WHERE $timeFilter GROUP BY "grid\""""
                ),
            ),
        ),
        PanelSpec(
            title="响应时长 P90（按网格员）",
            viz=Viz.BARGAUGE,
            unit=SECONDS,
            queries=(
                q(
                    """SELECT percentile("response_s", 90) AS "P90" FROM "case_transition"
                    WHERE "stage" = 'accepted' AND $timeFilter GROUP BY "worker\""""
                ),
            ),
        ),
    ),
)

DASHBOARDS: tuple[DashboardSpec, ...] = (OVERVIEW, GRID_DETAIL, ELDERLY, DOORS_PARKING, DEVICE_HEALTH, SLA)
