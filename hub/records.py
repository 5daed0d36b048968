"""What the hub's stages hand each other: alerts, their changes, notifications, roles.

These are plain, frozen records with no behaviour beyond their JSON shape. Every stage
(ingest, casework, notify, storage, web) speaks them, so they live below all of them: this
module imports nothing of the hub except the clock's formatting helper.

Must not import: any other ``hub`` module but :mod:`hub.clock`; ``simulators``, ``dashboards``.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from hub.clock import iso

#: The schema name of every notification body (``docs/topics.md``).
NOTIFICATION_SCHEMA = "linli.notification.v1"


class Role(StrEnum):
    """Every role a person or a token can have; a closed set (unknown roles are refused).

    The roster roles follow the "1+3+N" grid team of the handbook (§2); the last three are
    console roles that no roster shift needs;
    ``guardian`` is no login at all (a one-time link). :mod:`hub.casework.access` says what each may do.
    """

    GRID_LEADER = "grid_leader"  # 网格长
    GRID_WORKER = "grid_worker"  # 专职网格员
    GRID_POLICE = "grid_police"  # 网格警员
    VOLUNTEER = "volunteer"  # 志愿者
    DUTY_OFFICER = "duty_officer"  # 社区值班
    COMMAND_OPERATOR = "command_operator"  # 指挥中心 operator
    COMMAND_SUPERVISOR = "command_supervisor"  # 指挥中心 supervisor
    COMMAND_CENTRE = "command_centre"  # the command centre as a whole (shared console token)
    ADMIN = "admin"  # the person who runs Linli
    VIEWER = "viewer"  # a wall display: reads, never acts, no personal data
    #: 监护人: an elder's emergency contact acting through a signed one-time link (issue 18),
    #: never a token or a roster shift.
    GUARDIAN = "guardian"


@dataclass(frozen=True, slots=True)
class Alert:
    id: int
    rule: str
    subject: str
    category: str
    severity: str
    status: str
    device_id: str
    grid: str | None
    community: str | None
    title_zh: str
    title_en: str
    raised_at: float
    last_seen: float
    count: int
    resolved_at: float | None
    trace: dict[str, Any]


def alert_json(alert: Alert, *, with_trace: bool = False) -> dict[str, Any]:
    """The JSON shape of an alert, shared by the API, the event stream and notifications."""
    body: dict[str, Any] = {
        "id": alert.id,
        "rule": alert.rule,
        "category": alert.category,
        "severity": alert.severity,
        "status": alert.status,
        "device_id": alert.device_id,
        "grid": alert.grid,
        "community": alert.community,
        "title": {"zh": alert.title_zh, "en": alert.title_en},
        "raised_at": iso(alert.raised_at),
        "last_seen": iso(alert.last_seen),
        "count": alert.count,
        "resolved_at": iso(alert.resolved_at) if alert.resolved_at is not None else None,
    }
    if with_trace:
        body["trace"] = alert.trace
    return body


@dataclass(frozen=True, slots=True)
class Recipient:
    """Where one notification goes: a person (or the command centre) on one channel."""

    id: str
    channel: str
    address: str


def new_notification_id() -> str:
    """Receivers drop repeats by this id (delivery is at-least-once)."""
    return uuid.uuid4().hex


@dataclass(frozen=True, slots=True)
class Notification:
    id: str
    alert_id: int
    recipient: str
    channel: str
    address: str
    payload: bytes
    attempts: int


@dataclass(frozen=True, slots=True)
class AlertChange:
    alert: Alert
    created: bool
    notifications: tuple[Notification, ...]
    #: The same subject triggered the rule again after its merge window: people are told again.
    repeated: bool = False


@dataclass(frozen=True, slots=True)
class QuarantineRecord:
    topic: str
    reason: str
    detail: str
    excerpt: bytes
    first_seen: float
    last_seen: float
    count: int


@dataclass(frozen=True, slots=True)
class UnassignedDevice:
    """A device that publishes but is not in the registry (processed, and listed for an installer)."""

    id: str
    family: str
    first_seen: float
