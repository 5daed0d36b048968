"""What people are told: the one producer of ``linli.notification.v1`` bodies (``docs/topics.md``).

Two kinds of body share the schema: an alert told straight to whoever is on duty
(information-only alerts, ``alert.raised``/``alert.repeated``), and a case step
(``case.dispatch``, ``case.escalate``, ``case.repeated`` …) with the case, its alert, the
place, the reply topic and — for an SOS, to those who must act on it only — the elder's
profile. ``id`` lets receivers drop repeats (delivery is at-least-once).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import orjson

from hub.clock import iso
from hub.records import NOTIFICATION_SCHEMA, Alert, Recipient, alert_json


def alert_notification(notification_id: str, alert: Alert, recipient: Recipient, created: bool) -> bytes:
    """The body published to a person's notification topic for an alert that opens no case."""
    return orjson.dumps(
        {
            "schema": NOTIFICATION_SCHEMA,
            "id": notification_id,
            "type": "alert.raised" if created else "alert.repeated",
            "recipient": recipient.id,
            "alert": alert_json(alert),
        }
    )


def case_notification(
    *,
    notification_id: str,
    kind: str,
    step_key: str,
    recipient: Recipient,
    case: Mapping[str, Any],
    alert: Alert,
    reply_topic: str,
    due_at: float | None = None,
    location: str = "",
    resident: Mapping[str, Any] | None = None,
    guardians: Sequence[Mapping[str, str]] = (),
) -> bytes:
    """One case step for one recipient; ``guardians`` go to the command centre, who calls them."""
    body: dict[str, Any] = {
        "schema": NOTIFICATION_SCHEMA,
        "id": notification_id,
        "type": kind,
        "recipient": recipient.id,
        "step": step_key,
        "case": dict(case),
        "alert": alert_json(alert),
        "reply_topic": reply_topic,
    }
    if due_at is not None:
        body["due_at"] = iso(due_at)
    if location:
        body["location"] = location
    if resident is not None:
        body["resident"] = dict(resident)
    if guardians:
        body["call_guardians"] = [dict(g) for g in guardians]
    return orjson.dumps(body)


def hub_alarm(*, notification_id: str, kind: str, detail: str, at: float, held: int = 0) -> bytes:
    """The hub reporting on itself (``hub.stuck``, ``hub.recovered``) to the command centre.

    Sent straight over MQTT, not through the outbox: it is what the hub says when its store
    cannot be written.
    """
    return orjson.dumps(
        {
            "schema": NOTIFICATION_SCHEMA,
            "id": notification_id,
            "type": kind,
            "recipient": "command-centre",
            "at": iso(at),
            "held_messages": held,
            "detail": detail,
        }
    )
