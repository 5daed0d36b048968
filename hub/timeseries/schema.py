"""The time-series schema: every measurement, its fixed tag set and fields, and the pure functions
that turn events, alert changes and case transitions into points.

Rules (checked by ``tests/test_timeseries_schema.py``, documented in ``docs/timeseries.md``):

* each measurement has a **fixed** set of tag keys (a point may leave a tag out when the value
  is unknown, never add another) and fixed field keys with one type each;
* no key is both a tag and a field of the same measurement;
* tags are low-cardinality: community, grid, building, place (parking lot, entrance), device
  kind, model, care flag; ``device_id`` only where a chart needs one line per device (doors,
  presses, occupancy, device health); free text (titles, case ids, error codes) is a field.

The dashboards in ``dashboards/`` are written against this file (they do not import it).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from enum import StrEnum
from typing import Protocol

from adapters.events import Event, EventKind, PressType
from hub.timeseries.line_protocol import FieldValue, Point


class Measurement(StrEnum):
    DOOR = "door"
    OCCUPANCY = "occupancy"
    MOTION = "motion"
    PRESS = "press"
    READING = "reading"
    #: Smoke, gas/CO, water-leak and fall alarms (tag ``hazard``).
    HAZARD = "hazard"
    DEVICE_HEALTH = "device_health"
    ALERT = "alert"
    CASE = "case_transition"
    CASE_OPEN = "case_open"
    #: Care visits (探访, issue 18): a task falling due and a task done.
    VISIT = "visit"
    FLEET = "fleet"
    HUB = "hub"
    QUARANTINE = "quarantine"


_PLACE = ("community", "grid", "building")
_DEVICE = (*_PLACE, "device_kind", "model", "device_id")

#: Tag keys per measurement: fixed, sorted in the written line.
TAGS: Mapping[Measurement, tuple[str, ...]] = {
    Measurement.DOOR: (*_DEVICE, "place", "care"),
    Measurement.OCCUPANCY: (*_DEVICE, "place"),
    Measurement.MOTION: (*_DEVICE, "care"),
    Measurement.PRESS: (*_DEVICE, "care", "press", "press_type"),
    Measurement.READING: (*_DEVICE, "place"),
    Measurement.HAZARD: (*_DEVICE, "place", "care", "hazard"),
    Measurement.DEVICE_HEALTH: _DEVICE,
    Measurement.ALERT: ("community", "grid", "rule", "category", "severity", "transition", "device_kind"),
    Measurement.CASE: ("community", "grid", "category", "severity", "worker", "stage", "light"),
    Measurement.CASE_OPEN: ("community", "grid", "severity", "light"),
    Measurement.VISIT: ("community", "grid", "worker", "kind"),
    Measurement.FLEET: ("community", "grid", "device_kind"),
    Measurement.HUB: ("instance",),
    Measurement.QUARANTINE: ("instance", "reason"),
}

#: Field keys per measurement and their one type.
FIELDS: Mapping[Measurement, Mapping[str, type]] = {
    Measurement.DOOR: {"open": int},
    Measurement.OCCUPANCY: {"occupied": int},
    Measurement.MOTION: {"motion": int},
    Measurement.PRESS: {"count": int},
    Measurement.READING: {"distance_mm": float, "temperature_c": float, "humidity_pct": float},
    Measurement.HAZARD: {"alarm": int},
    Measurement.DEVICE_HEALTH: {
        "battery_pct": float,
        "battery_v": float,
        "rssi": float,
        "snr": float,
        "online": int,
        "heartbeat": int,
        "tamper": int,
        "error": int,
        "error_code": str,
    },
    Measurement.ALERT: {
        "n": int,
        "alert_id": int,
        "count": int,
        "duration_s": float,
        "device_id": str,
        "title": str,
    },
    Measurement.CASE: {
        "n": int,
        "case_id": str,
        "stage_s": float,
        "elapsed_s": float,
        "response_s": float,
        "due": int,
        "closed": int,
        "closed_on_time": int,
        "deferred": int,
        "rework": int,
        "evaluated": int,
        "satisfied": int,
    },
    Measurement.CASE_OPEN: {"open": int},
    Measurement.VISIT: {"n": int, "due": int, "on_time": int, "late": int},
    Measurement.FLEET: {"total": int, "online": int, "low_battery": int},
    Measurement.HUB: {
        "messages": int,
        "events": int,
        "signals": int,
        "alerts_raised": int,
        "quarantined": int,
        "ts_points_written": int,
        "ts_points_spooled": int,
        "ts_points_dropped": int,
        "ts_points_quarantined": int,
        "ts_spool_bytes": int,
        "loop_lag_ms": float,
    },
    Measurement.QUARANTINE: {"count": int},
}

UNASSIGNED = "unassigned"


@dataclass(frozen=True, slots=True, kw_only=True)
class SubjectInfo:
    """Where the event's device sits, as plain strings (the hub fills it from its registry).

    ``place`` names the shared facility (parking lot, entrance, fire lane); ``care`` a
    resident's care flag (``living_alone``, ``aged_80``; empty for none). Empty = unknown.
    """

    community: str = ""
    grid: str = ""
    building: str = ""
    device_kind: str = ""
    model: str = ""
    place: str = ""
    care: str = ""


def _tags(measurement: Measurement, values: Mapping[str, str]) -> dict[str, str]:
    allowed = TAGS[measurement]
    return {k: v for k, v in values.items() if k in allowed and v}


def _device_tags(device_id: str, info: SubjectInfo) -> dict[str, str]:
    return {
        "community": info.community or UNASSIGNED,
        "grid": info.grid or UNASSIGNED,
        "building": info.building,
        "device_kind": info.device_kind,
        "model": info.model,
        "device_id": device_id,
        "place": info.place,
        "care": info.care,
    }


def _flag(value: float | bool | str | None, *, default: bool = True) -> int:
    if value is None:
        return int(default)
    if isinstance(value, str):
        return int(value.strip().lower() in ("1", "true", "on", "yes", "open", "occupied", "detected"))
    return int(bool(value))


def _number(value: object) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return float(value)


_PRESS = {
    EventKind.SOS_PRESS: "sos",
    EventKind.SERVICE_REQUEST: "service",
    EventKind.BUTTON_PRESS: "button",
}


_HAZARDS = frozenset({EventKind.SMOKE, EventKind.GAS, EventKind.WATER_LEAK, EventKind.FALL})
_READINGS = {
    EventKind.DISTANCE: "distance_mm",
    EventKind.TEMPERATURE: "temperature_c",
    EventKind.HUMIDITY: "humidity_pct",
}


#: Doors, occupancy and motion: measurement, field and the field's value for the kind
#: (``None``: the event's value as a flag).
_STATES: dict[EventKind, tuple[Measurement, str, int | None]] = {
    EventKind.DOOR_OPEN: (Measurement.DOOR, "open", 1),
    EventKind.DOOR_CLOSED: (Measurement.DOOR, "open", 0),
    EventKind.OCCUPANCY: (Measurement.OCCUPANCY, "occupied", None),
    EventKind.MOTION: (Measurement.MOTION, "motion", None),
}


#: ``press_type`` tag values: the press types, each the one string object (low cardinality).
_PRESS_TYPES: dict[str, str] = {p.value: p.value for p in PressType}

#: Tags an event adds to its device's (press kind, hazard): sorted pairs, hashable.
ExtraTags = tuple[tuple[str, str], ...]


# Members read per event, as module constants: on CPython 3.11 every ``EnumClass.MEMBER``
# read goes through ``EnumType.__getattr__``'s slow hook (≈ 180 ns; gone in 3.12).
_BATTERY = EventKind.BATTERY
_SIGNAL = EventKind.SIGNAL
_HEARTBEAT = EventKind.HEARTBEAT
_ONLINE = EventKind.ONLINE
_OFFLINE = EventKind.OFFLINE
_TAMPER = EventKind.TAMPER
_DEVICE_ERROR = EventKind.DEVICE_ERROR
_M_PRESS = Measurement.PRESS
_M_HAZARD = Measurement.HAZARD
_M_READING = Measurement.READING
_M_DEVICE_HEALTH = Measurement.DEVICE_HEALTH


def event_shape(event: Event) -> tuple[Measurement, dict[str, FieldValue], ExtraTags] | None:
    """What an event charts: measurement, fields and its own tags (``None``: nothing to chart)."""
    kind = event.kind
    measurement: Measurement
    fields: dict[str, FieldValue] = {}
    extra: ExtraTags = ()
    if kind in _PRESS:
        measurement = _M_PRESS
        fields["count"] = 1
        press = event.attrs.get("press", event.value)
        extra = (
            # One of the press types or "other": the text is the device's (a native payload's free
            # string), and a tag per distinct text was a series per press (found in review).
            (("press", _PRESS[kind]), ("press_type", _PRESS_TYPES.get(press, "other")))
            if isinstance(press, str)
            else (("press", _PRESS[kind]),)
        )
    elif (state := _STATES.get(kind)) is not None:
        measurement, name, fixed = state
        fields[name] = _flag(event.value) if fixed is None else fixed
    elif kind in _HAZARDS:
        measurement = _M_HAZARD
        fields["alarm"] = _flag(event.value)
        extra = (("hazard", kind.value),)
    elif kind in _READINGS:
        measurement = _M_READING
        reading = _number(event.value)
        if reading is None:
            return None
        fields[_READINGS[kind]] = reading
    else:
        measurement = _M_DEVICE_HEALTH
        fields = _health_fields(event)
        if not fields:
            return None
    return measurement, fields, extra


def event_tags(
    measurement: Measurement, device_id: str, info: SubjectInfo, extra: ExtraTags
) -> dict[str, str]:
    """The tags of a device's point: where it sits (``info``) and the event's own ``extra``."""
    return _tags(measurement, {**_device_tags(device_id, info), **dict(extra)})


def event_points(event: Event, info: SubjectInfo) -> list[Point]:
    """The points one normalised event becomes (none for kinds with nothing to chart)."""
    shape = event_shape(event)
    if shape is None:
        return []
    measurement, fields, extra = shape
    tags = event_tags(measurement, event.device_id, info, extra)
    return [Point.of(measurement, tags=tags, fields=fields, ts=event.ts)]


def _health_fields(event: Event) -> dict[str, FieldValue]:
    kind = event.kind
    fields: dict[str, FieldValue] = {}
    if kind is _BATTERY:
        if (pct := _number(event.value)) is not None:
            fields["battery_pct"] = pct
        if (volts := _number(event.attrs.get("volts"))) is not None:
            fields["battery_v"] = volts
    elif kind is _SIGNAL:
        if (rssi := _number(event.value)) is not None:
            fields["rssi"] = rssi
        if (snr := _number(event.attrs.get("snr"))) is not None:
            fields["snr"] = snr
    elif kind is _HEARTBEAT:
        fields["heartbeat"] = 1
    elif kind is _ONLINE or kind is _OFFLINE:
        fields["online"] = int(kind is _ONLINE)
    elif kind is _TAMPER:
        fields["tamper"] = _flag(event.value)
    elif kind is _DEVICE_ERROR:
        fields["error"] = 1
        code = event.attrs.get("code", event.value)
        if code is not None:
            fields["error_code"] = str(code)
    return fields


# ------------------------------------------------------------------------------------ alerts
class AlertTransition(StrEnum):
    RAISED = "raised"
    REPEATED = "repeated"
    RESOLVED = "resolved"


class AlertLike(Protocol):
    """What an alert point needs; :class:`hub.store.Alert` has it all."""

    @property
    def id(self) -> int: ...
    @property
    def rule(self) -> str: ...
    @property
    def category(self) -> str: ...
    @property
    def severity(self) -> str: ...
    @property
    def status(self) -> str: ...
    @property
    def device_id(self) -> str: ...
    @property
    def grid(self) -> str | None: ...
    @property
    def community(self) -> str | None: ...
    @property
    def title_zh(self) -> str: ...
    @property
    def raised_at(self) -> float: ...
    @property
    def last_seen(self) -> float: ...
    @property
    def count(self) -> int: ...
    @property
    def resolved_at(self) -> float | None: ...


def alert_transition(alert: AlertLike, *, created: bool) -> AlertTransition:
    """Which transition a stored alert change is (``hub.store.AlertChange``: ``alert``, ``created``)."""
    if created:
        return AlertTransition.RAISED
    if alert.status == "resolved":
        return AlertTransition.RESOLVED
    return AlertTransition.REPEATED


def alert_point(alert: AlertLike, *, transition: AlertTransition, device_kind: str = "") -> Point:
    """One alert transition; ``duration_s`` is raised → resolved (0 until resolved)."""
    if transition is AlertTransition.RESOLVED:
        at = alert.resolved_at if alert.resolved_at is not None else alert.last_seen
        duration = max(0.0, at - alert.raised_at)
    else:
        at = alert.raised_at if transition is AlertTransition.RAISED else alert.last_seen
        duration = 0.0
    tags = _tags(
        Measurement.ALERT,
        {
            "community": alert.community or UNASSIGNED,
            "grid": alert.grid or UNASSIGNED,
            "rule": alert.rule,
            "category": alert.category,
            "severity": alert.severity,
            "transition": transition.value,
            "device_kind": device_kind,
        },
    )
    fields: dict[str, FieldValue] = {
        "n": 1,
        "alert_id": alert.id,
        "count": alert.count,
        "duration_s": float(duration),
        "device_id": alert.device_id,
        "title": alert.title_zh,
    }
    return Point.of(Measurement.ALERT, tags=tags, fields=fields, ts=at)


# ------------------------------------------------------------------------------------- cases
class CaseStage(StrEnum):
    """The closed loop of the handbook §3, plus its side branches and one clock event."""

    COLLECTED = "collected"
    FILED = "filed"
    DISPATCHED = "dispatched"
    ACCEPTED = "accepted"
    HANDLED = "handled"
    FEEDBACK = "feedback"
    VERIFIED = "verified"
    CLOSED = "closed"
    EVALUATED = "evaluated"
    VOID = "void"
    RETURNED = "returned"
    REDISPATCHED = "redispatched"
    EXTENDED = "extended"
    PARKED = "parked"
    REWORK = "rework"
    SUPERVISED = "supervised"
    #: Not a stage: the deadline passed while the case was open (its light turned red).
    OVERDUE = "overdue"


class TrafficLight(StrEnum):
    GREEN = "green"
    YELLOW = "yellow"
    RED = "red"


@dataclass(frozen=True, slots=True, kw_only=True)
class CaseTransition:
    """A case entering ``stage`` at ``at``; all times Unix seconds.

    ``stage_entered_at`` is when the previous stage began; ``filed_at`` starts the response
    clock; ``deadline`` is the whole-case limit (``None`` = no limit); ``light`` the traffic
    light right after the transition.
    """

    case_id: str
    stage: CaseStage
    at: float
    stage_entered_at: float
    filed_at: float
    deadline: float | None
    light: TrafficLight
    community: str
    grid: str
    category: str
    severity: str
    worker: str = ""
    #: ``evaluate`` transitions (评价): the rating given (satisfied, basically_satisfied, unsatisfied).
    rating: str | None = None


def case_point(t: CaseTransition) -> Point:
    """One case transition with its durations and the KPI counters of the handbook §3.

    Summed over a window: 结案率 = sum(closed) / (sum(due) − sum(deferred)),
    按期结案率 = sum(closed_on_time) / (sum(due) − sum(deferred)). A case counts as *due* once:
    when it is closed on time, or when its deadline passes open (``OVERDUE``).
    """
    on_time = t.deadline is None or t.at <= t.deadline
    closing = t.stage is CaseStage.CLOSED
    fields: dict[str, FieldValue] = {
        "n": 1,
        "case_id": t.case_id,
        "stage_s": max(0.0, t.at - t.stage_entered_at),
        "elapsed_s": max(0.0, t.at - t.filed_at),
        "due": int((closing and on_time) or t.stage is CaseStage.OVERDUE),
        "closed": int(closing),
        "closed_on_time": int(closing and on_time),
        "deferred": int(t.stage is CaseStage.EXTENDED),
        "rework": int(t.stage is CaseStage.REWORK),
    }
    if t.stage is CaseStage.ACCEPTED:
        fields["response_s"] = max(0.0, t.at - t.filed_at)
    if t.rating is not None:
        # 满意率 = sum(satisfied) / sum(evaluated): 满意 and 基本满意 count as satisfied.
        fields["evaluated"] = 1
        fields["satisfied"] = int(t.rating in ("satisfied", "basically_satisfied"))
    tags = _tags(
        Measurement.CASE,
        {
            "community": t.community or UNASSIGNED,
            "grid": t.grid or UNASSIGNED,
            "category": t.category,
            "severity": t.severity,
            "worker": t.worker,
            "stage": t.stage.value,
            "light": t.light.value,
        },
    )
    return Point.of(Measurement.CASE, tags=tags, fields=fields, ts=t.at)


def visit_point(
    *, community: str, grid: str, worker: str, kind: str, due_at: float, done_at: float | None, ts: float
) -> Point:
    """A visit task falling due undone (``done_at`` None) or done, counted once in 探访完成率.

    Summed over a window: 探访完成率 = sum(on_time) / sum(due). A task counts as *due* once: when
    it is done on time, or when its due time passes undone; done late it adds to ``late`` only.
    """
    on_time = done_at is not None and done_at <= due_at
    fields: dict[str, FieldValue] = {
        "n": 1,
        "due": int(done_at is None or on_time),
        "on_time": int(on_time),
        "late": int(done_at is not None and not on_time),
    }
    tags = _tags(
        Measurement.VISIT,
        {"community": community or UNASSIGNED, "grid": grid or UNASSIGNED, "worker": worker, "kind": kind},
    )
    return Point.of(Measurement.VISIT, tags=tags, fields=fields, ts=ts)


# ------------------------------------------------------------------------------------ gauges
def case_open_point(
    *, community: str, grid: str, severity: str, light: TrafficLight, open_cases: int, ts: float
) -> Point:
    """Periodic gauge (e.g. every minute): open cases per grid, severity and light."""
    tags = {"community": community, "grid": grid, "severity": severity, "light": light.value}
    return Point.of(Measurement.CASE_OPEN, tags=tags, fields={"open": open_cases}, ts=ts)


def fleet_point(
    *, community: str, grid: str, device_kind: str, total: int, online: int, low_battery: int, ts: float
) -> Point:
    """Periodic gauge: devices expected, online and with a low battery, per grid and kind."""
    tags = {"community": community, "grid": grid, "device_kind": device_kind}
    fields: dict[str, FieldValue] = {"total": total, "online": online, "low_battery": low_battery}
    return Point.of(Measurement.FLEET, tags=tags, fields=fields, ts=ts)


def hub_point(*, instance: str, metrics: Mapping[str, int | float], ts: float) -> Point:
    """Hub self-metrics (cumulative counters and gauges); unknown keys are ignored."""
    known = FIELDS[Measurement.HUB]
    fields: dict[str, FieldValue] = {
        k: (float(v) if known[k] is float else int(v)) for k, v in metrics.items() if k in known
    }
    return Point.of(Measurement.HUB, tags={"instance": instance}, fields=fields, ts=ts)


def quarantine_point(*, instance: str, reason: str, count: int, ts: float) -> Point:
    """Cumulative count of quarantined messages for one reason."""
    tags = {"instance": instance, "reason": reason}
    return Point.of(Measurement.QUARANTINE, tags=tags, fields={"count": count}, ts=ts)
