"""The JSON shape of an alert, shared by the API, the console stream and notifications."""

from __future__ import annotations

from typing import Any

import orjson

from hub.clock import iso
from hub.store import Alert, Recipient

NOTIFICATION_SCHEMA = "linli.notification.v1"


def alert_json(alert: Alert, *, with_trace: bool = False) -> dict[str, Any]:
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


def notification_payload(notification_id: str, alert: Alert, recipient: Recipient, created: bool) -> bytes:
    """The body published to a person's notification topic; ``id`` lets receivers drop repeats."""
    return orjson.dumps(
        {
            "schema": NOTIFICATION_SCHEMA,
            "id": notification_id,
            "type": "alert.raised" if created else "alert.repeated",
            "recipient": recipient.id,
            "alert": alert_json(alert),
        }
    )
