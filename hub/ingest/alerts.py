"""A rule's signal becomes a stored alert and its queued notifications, in one transaction.

This is the transactional outbox (storage owns the tables, this module the composition):
the alert row and the notifications it causes commit together or not at all, so a crash
can lose neither one without the other, and the dispatcher delivers what is pending, again
after a restart. The notification body is rendered here, by the stage that owns the flow,
not by the store inside its transaction.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

from hub.notify.payloads import alert_notification
from hub.records import Alert, AlertChange, Notification, Recipient, new_notification_id
from hub.storage.scope import partition
from hub.storage.store import Store
from rules.signals import Signal, SignalAction
from rules.subject import Subject

#: Renders one notification body: (notification id, alert, recipient, created) → bytes.
Render = Callable[[str, Alert, Recipient, bool], bytes]


def record_signal(
    store: Store,
    signal: Signal,
    subject: Subject,
    recipients: Sequence[Recipient],
    *,
    render: Render = alert_notification,
) -> AlertChange | None:
    """Apply a raise/update/clear signal and queue its notifications, atomically.

    Returns ``None`` when the signal changes nothing (a redelivered message whose occurrence
    is already recorded, or a clear with no active alert).
    """
    if signal.action is SignalAction.CLEAR:
        return store.clear_alert(signal, community=partition(subject.community))
    # Fenced by the device's community (or the hub-wide partition) when clustered: a node that
    # lost it lands nothing.
    with store.transaction(community=partition(subject.community)) as db:
        recorded = store.upsert_alert(db, signal, subject)
        if recorded is None:
            return None
        alert, created = recorded
        notifications: list[Notification] = []
        if created or signal.action is SignalAction.RAISE:
            for recipient in recipients:
                note_id = new_notification_id()
                notifications.append(
                    store.queue_notification(
                        db,
                        notification_id=note_id,
                        alert_id=alert.id,
                        recipient=recipient,
                        payload=render(note_id, alert, recipient, created),
                        at=signal.ts,
                    )
                )
    return AlertChange(
        alert=alert,
        created=created,
        notifications=tuple(notifications),
        repeated=not created and signal.action is SignalAction.RAISE,
    )
