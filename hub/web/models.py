"""Every request and response body of the HTTP API as a pydantic model (the OpenAPI document).

Requests are strict: unknown fields, wrong types, non-finite numbers (``1e400``, ``nan``),
integers beyond 64 bits and over-long text are refused with 422 before any handler runs.
Responses are validated on the way out, so a view that grows a field nobody declared (a
phone number, say) does not leak it: the model drops it.

Must not import: ``hub.app``, ``hub.cli``.
"""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, StringConstraints

from hub.cases.model import Stage
from hub.cases.workflow import MAX_EXTENSION_S, MAX_NOTE_CHARS
from hub.channels.webhook import without_secrets

#: Unix seconds the API accepts: 1970 … 2200 (later is a typo, and ``iso()`` must format it).
MAX_UNIX_S = 7_258_118_400.0
#: The largest id SQLite stores (a signed 64-bit integer).
MAX_ID = 2**63 - 1

FiniteFloat = Annotated[float, Field(allow_inf_nan=False)]
UnixSeconds = Annotated[float, Field(ge=0, le=MAX_UNIX_S, allow_inf_nan=False)]
PersonId = Annotated[str, StringConstraints(min_length=1, max_length=64, strip_whitespace=True)]
Note = Annotated[str, StringConstraints(max_length=MAX_NOTE_CHARS)]


class _In(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class _Out(BaseModel):
    model_config = ConfigDict(frozen=True)


# -- requests --------------------------------------------------------------------------------


class CaseActionData(_In):
    """What an action needs besides its note (:mod:`hub.cases.workflow` says which)."""

    assignee: PersonId | None = Field(default=None, description="dispatch, reassign, rework: who gets it")
    photo_url: Annotated[str, StringConstraints(max_length=2000)] | None = Field(
        default=None, description="handle: an http(s) URL of a photo"
    )
    passed: bool | None = Field(default=None, description="verify: false means 返工 (rework)")
    approver: PersonId | None = Field(default=None, description="extend: who approved the 延期")
    seconds: Annotated[float, Field(gt=0, le=MAX_EXTENSION_S, allow_inf_nan=False)] | None = Field(
        default=None, description="extend: the extra time in seconds (at most a year)"
    )
    stage: Stage | None = Field(default=None, description="extend, supervise: which stage")
    callback_at: UnixSeconds | None = Field(
        default=None, description="call_back, false_alarm: when the elder was called back (Unix s)"
    )


class CaseActionIn(_In):
    note: Note = ""
    data: CaseActionData = CaseActionData()
    on_behalf_of: PersonId | None = Field(
        default=None, description="command centre only: the roster person who reported this by phone"
    )


class LoginIn(_In):
    token: Annotated[str, StringConstraints(min_length=1, max_length=512)]


class ClockIn(_In):
    to: UnixSeconds


# -- responses -------------------------------------------------------------------------------


class ErrorOut(_Out):
    """Every refusal: a machine-readable ``error`` and a message in Chinese and English."""

    error: str
    message: str = ""
    state: str | None = None
    action: str | None = None
    allowed: list[str] | None = None
    detail: list[dict[str, Any]] | None = None


class HealthOut(_Out):
    status: str


class Title(_Out):
    zh: str
    en: str


class AlertOut(_Out):
    id: int
    rule: str
    category: str
    severity: str
    status: str
    device_id: str
    grid: str | None
    community: str | None
    title: Title
    raised_at: str
    last_seen: str
    count: int
    resolved_at: str | None


def shown_address(address: str) -> str:
    """A webhook address without its query: DingTalk's ``access_token`` (and a WeCom ``key`` put
    in the address rather than the secrets file) travel there, and these rows go to every
    reader of notifications (found in review). The path still names the service."""
    return without_secrets(address, address) if "://" in address else address


ShownAddress = Annotated[str, AfterValidator(shown_address)]


def shown_error(error: str | None) -> str | None:
    return None if error is None else without_secrets(error, "")


#: A delivery error as stored: rows written before the channels took URLs' queries out of their
#: errors may still hold a robot key.
ShownError = Annotated[str | None, AfterValidator(shown_error)]


class NotificationAttempt(_Out):
    id: str
    recipient: str
    channel: str
    address: ShownAddress
    attempts: int
    delivered_at: float | None
    abandoned_at: float | None
    last_error: ShownError


class AlertDetailOut(AlertOut):
    #: Why the rule fired (empty for roles without ``personal_data`` on this alert).
    trace: dict[str, Any]
    #: Who was told (empty for roles without ``read_notifications`` on this alert).
    notifications: list[NotificationAttempt]


class SessionOut(_Out):
    name: str
    role: str
    person: str | None
    timezone: str
    #: Send back as ``X-CSRF-Token`` on every POST made with the session cookie.
    csrf: str | None


class LoginOut(_Out):
    name: str
    role: str
    next: str
    csrf: str


class StateValue(_Out):
    ts: str
    value: Any


class NamedRef(_Out):
    code: str
    name: str


class PlaceRef(_Out):
    id: str
    kind: str
    name: str


class DeviceWhere(_Out):
    community: NamedRef
    grid: NamedRef
    building: str | None
    unit: str | None
    room: str | None
    place: PlaceRef | None


class DeviceOut(_Out):
    id: str
    assigned: bool
    kind: str | None
    model: str | None
    grid: str | None
    community: str | None
    #: Household-level text ("3号楼2单元401"): only for roles with ``locations`` here.
    location: str | None
    place: str | None
    family: str | None
    heartbeat_s: float | None
    last_seen: str | None
    online: bool | None
    battery: float | None
    signal: float | None


class DeviceDetailOut(DeviceOut):
    installed: str | None = None
    first_seen_unassigned: str | None = None
    state: dict[str, StateValue] = {}
    where: DeviceWhere | None = None


class EventOut(_Out):
    device_id: str
    kind: str
    ts: str
    family: str
    value: Any
    attrs: dict[str, Any]


class Contact(_Out):
    name: str
    relation: str | None = None
    phone: str | None = None


class ResidentOut(_Out):
    """A resident: whole for ``personal_data``, else masked name and phone and no care flags."""

    id: str
    household: str | None
    name: str
    phone: str
    living_alone: bool | None = None
    aged_80_plus: bool | None = None
    disabled: bool | None = None
    cognitive_impairment: bool | None = None
    age: int | None = None
    address: str | None = None
    emergency_contacts: list[dict[str, Any]] | None = None
    medical_notes: str | None = None


class HouseholdOut(_Out):
    id: str
    room: str | None
    residents: list[ResidentOut]


class UnitOut(_Out):
    id: str
    name: str
    households: list[HouseholdOut]


class BuildingOut(_Out):
    id: str
    name: str
    units: list[UnitOut]


class GridOut(_Out):
    code: str
    name: str
    polygon: Any
    places: list[dict[str, Any]]
    devices: list[str]
    buildings: list[BuildingOut]


class StaffOut(_Out):
    id: str
    name: str
    role: str
    grids: list[str]


class CommunityOut(_Out):
    code: str
    name: str
    street: dict[str, Any] | None
    grids: list[GridOut]
    residents_without_household: list[ResidentOut]
    people: list[StaffOut]


class UnassignedOut(_Out):
    id: str
    family: str
    first_seen: str


class CommunityTreeOut(_Out):
    communities: list[CommunityOut]
    unassigned_devices: list[UnassignedOut]


class SlaOut(_Out):
    stage: str
    light: str
    elapsed_s: float
    limit_s: float | None
    due_at: str | None
    done: bool


class CaseOut(_Out):
    id: str
    alert_id: int | None
    category: str
    severity: str
    state: str
    resolution: str | None
    title: Title
    subject: str
    grid: str | None
    community: str | None
    assignee: str | None
    filed_at: str
    updated_at: str
    allowed_actions: list[str]
    sla: list[SlaOut]
    #: Grid, building, unit, room or named place: only for roles with ``locations`` on the case.
    place: str | None = None
    #: For an SOS, the elder (address, phone): only for roles with ``personal_data`` on the case.
    resident: ResidentOut | None = None


class TimelineOut(_Out):
    case_id: str
    seq: int
    ts: str
    action: str
    from_state: str | None
    to_state: str
    actor: str
    channel: str
    note: str
    data: dict[str, Any]


class CaseDetailOut(CaseOut):
    timeline: list[TimelineOut]
    alert: AlertOut | None
    location: str


class KpiOut(_Out):
    model_config = ConfigDict(frozen=True, populate_by_name=True)

    from_: str = Field(alias="from")
    to: str
    overall: dict[str, float | int | None]
    by_grid: dict[str, dict[str, float | int | None]]
    #: Per worker: only for roles with ``staff_kpis`` (empty otherwise).
    by_worker: dict[str, dict[str, float | int | None]]
    by_category: dict[str, dict[str, float | int | None]]


class StatsOut(_Out):
    pipeline: dict[str, Any]
    quarantine: dict[str, int]
    devices_seen: int
    unassigned_devices: int
    notifications_delivered: int
    notification_failures: int
    mqtt_connected: bool
    mqtt_subscribed: bool
    mqtt_outbound_connected: bool
    mqtt_handler_errors: int
    mqtt_reconnects: int
    #: Messages the store refused, held for the hub's own retry, and since when (hub clock).
    held_messages: int
    held_since: float | None
    cases_failing: int
    #: Active alerts the casework could not open a case for (nobody was told of them).
    alerts_without_case: int = 0
    replies: int
    timeseries: dict[str, Any]
    #: Event-stream (SSE) clients connected now, and those dropped for falling behind.
    stream_listeners: int = 0
    stream_dropped: int = 0
    #: The SOS priority lane (hub/ingest/lanes.py): topics, handled per lane, copies skipped.
    priority_lane: dict[str, Any] = Field(default_factory=dict)
    #: SQLite's checkpoint worker (hub/storage/checkpoints.py); ``None`` on PostgreSQL.
    store_checkpoints: dict[str, Any] | None = None
    #: Freed heap memory handed back to the system (hub/ingest/heap.py): available, runs, released_mb,
    #: longest_ms.
    heap_trim: dict[str, Any] = Field(default_factory=dict)
    #: The rules' clock (hub/clock.py SteadyClock): ahead_s of the wall clock while it absorbs a
    #: step back, steps_back seen, floor_failures; ``None`` on a hand-driven clock.
    rule_clock: dict[str, Any] | None = None
    #: The build of the per-message path (hub/ingest/hot_path.py): ``build`` compiled, pure or
    #: mixed, ``compiled`` of ``modules`` loaded from mypyc extensions.
    hot_path: dict[str, Any] = Field(default_factory=dict)


class NotificationLogRow(_Out):
    id: str
    alert_id: int
    case_id: str | None
    recipient: str
    channel: str
    address: ShownAddress
    created_at: float
    attempts: int
    delivered_at: float | None
    abandoned_at: float | None
    last_error: ShownError
    type: str
    rule: str


class ReloadOut(_Out):
    status: str
    rules: int


class ClockOut(_Out):
    now: float
