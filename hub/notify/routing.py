"""Who is told about an alert: its subject's grid → the on-duty people of that grid.

Topic scheme for MQTT notifications (QoS 1, JSON, schema ``linli.notification.v1``; see
``docs/topics.md``):

* ``{prefix}/{community}/workers/{person_id}/notifications`` — one person's phone or app;
* ``{prefix}/command-centre/notifications`` — the district command centre (指挥中心).

Unknown or unassigned devices, and grids with nobody on duty, go to the command centre.
"""

from __future__ import annotations

from zoneinfo import ZoneInfo

from hub.community.registry import Registry
from hub.community.roster import WorkingDays, on_duty
from hub.mqtt.topics import COMMAND_CENTRE, WORKERS
from hub.records import Recipient, Role
from rules.signals import Signal
from rules.subject import Subject


def worker_topic(prefix: str, community: str, person_id: str) -> str:
    """One person's notification topic (the hub publishes there; the broker's ACL lets them read it)."""
    return f"{prefix}/{community}/{WORKERS}/{person_id}/notifications"


#: Roles notified first for an alert in their grid (escalation chains come with the case workflow).
FIRST_RESPONDERS = (Role.GRID_WORKER, Role.GRID_LEADER)


class Routing:
    def __init__(
        self, *, registry: Registry, zone: ZoneInfo, topic_prefix: str, calendar: WorkingDays | None = None
    ) -> None:
        self._registry = registry
        self._calendar = calendar
        self._zone = zone
        self._prefix = topic_prefix

    def worker_topic(self, community: str, person_id: str) -> str:
        return worker_topic(self._prefix, community, person_id)

    def command_centre_topic(self) -> str:
        return f"{self._prefix}/{COMMAND_CENTRE}/notifications"

    def command_centre(self) -> Recipient:
        return Recipient(id=COMMAND_CENTRE, channel="mqtt", address=self.command_centre_topic())

    def recipients(self, subject: Subject, signal: Signal) -> list[Recipient]:
        if subject.grid is None or subject.community is None:
            return [self.command_centre()]
        people = on_duty(
            self._registry.people_of(subject.community),
            grid=subject.grid,
            ts=signal.ts,
            zone=self._zone,
            roles=FIRST_RESPONDERS,
            calendar=self._calendar,
        )
        if not people:
            # Nobody on duty must never mean nobody told (handbook §4: presses after hours
            # rolling over to nobody).
            return [self.command_centre()]
        return [
            Recipient(id=p.id, channel="mqtt", address=self.worker_topic(subject.community, p.id))
            for p in people
        ]
