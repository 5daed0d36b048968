"""The hub's own alarms to the command centre: ``hub.stuck`` and ``hub.recovered``.

When the store refuses messages for longer than the retry queue's patience, someone must hear
of it without the store: the alarm goes straight over the notification MQTT session (not
through the outbox), and is logged as critical when that session is down too.
"""

from __future__ import annotations

import asyncio
import functools
import logging
from collections.abc import Callable

from hub.clock import Clock
from hub.mqtt.client import HubMqttClient
from hub.notify.payloads import hub_alarm
from hub.records import new_notification_id

log = logging.getLogger(__name__)


def _log_undelivered(kind: str, sent: asyncio.Future[None]) -> None:
    if not sent.cancelled() and sent.exception() is not None:
        log.error("%s not delivered to the command centre: %s", kind, sent.exception())


class HubAlarms:
    """Tells the command centre that messages are stuck, and when they are recorded again."""

    def __init__(
        self, *, outbound: HubMqttClient, topic: Callable[[], str], held: Callable[[], int], clock: Clock
    ) -> None:
        self._outbound = outbound
        self._topic = topic
        self._held = held
        self._clock = clock

    def _tell_command_centre(self, kind: str, detail: str) -> None:
        """Straight over MQTT, not through the store's outbox (the store may be what failed)."""
        body = hub_alarm(
            notification_id=new_notification_id(),
            kind=kind,
            detail=detail,
            at=self._clock.now(),
            held=self._held(),
        )
        if not self._outbound.connected.is_set():
            log.critical("cannot tell the command centre (%s): MQTT is down", kind)
            return
        sent = self._outbound.publish(self._topic(), body)
        sent.add_done_callback(functools.partial(_log_undelivered, kind))

    def stuck(self, held: int, waited: float, error: str) -> None:
        self._tell_command_centre(
            "hub.stuck", f"{held} message(s) not recorded for {waited:.0f} s, retrying: {error}"
        )

    def recovered(self) -> None:
        self._tell_command_centre("hub.recovered", "every held message was recorded")
