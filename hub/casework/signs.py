"""每日平安: which devices can give an elder's daily sign of life, and which events are one.

A care plan's ``sign_of_life`` task is completed by the elder's own activity, not by a visitor:
a door contact opening or closing, a motion (PIR) sensor seeing someone, or the pendant's green
key pressed as "I am fine" (handbook §4: online call + offline care). Only an elder with such a
device gets the task: without one it would escalate every day for nobody's fault, so the
register shows why it is not scheduled instead (:func:`sign_status`). Pure over the registry's
devices and the normalised events; :mod:`hub.casework.visits` schedules and completes the tasks.

Must not import: ``hub.web``, ``hub.ingest``, ``hub.app``, ``hub.cli``.
"""

from __future__ import annotations

from enum import StrEnum

from adapters.events import DeviceKind, Event, EventKind
from hub.cases.care import CareFile, TaskKind, plan_for
from hub.casework.elders import RegisterEntry
from hub.community.model import Device

#: Pendants with a second, green key (求助 / "I am fine"); a one-key SOS button cannot give a
#: daily sign without raising an SOS, so it does not count. Matched on the registry's ``model``.
GREEN_KEY_MODELS = frozenset({"Linli two-key pendant"})

#: The events of each device kind that show the elder is up and about.
SIGN_EVENTS: dict[DeviceKind, frozenset[EventKind]] = {
    DeviceKind.DOOR_SENSOR: frozenset({EventKind.DOOR_OPEN, EventKind.DOOR_CLOSED}),
    DeviceKind.MOTION_SENSOR: frozenset({EventKind.MOTION, EventKind.OCCUPANCY}),
    DeviceKind.SOS_BUTTON: frozenset({EventKind.SERVICE_REQUEST}),
}
#: Every event kind that can be a sign (the hot path's first, cheapest test).
ANY_SIGN = frozenset().union(*SIGN_EVENTS.values())


class NoSign(StrEnum):
    """Why an elder on the register has no daily sign-of-life task."""

    NOT_PLANNED = "not_planned"
    NO_DEVICE = "no_device"

    @property
    def text(self) -> dict[str, str]:
        return _REASONS[self]


_REASONS = {
    NoSign.NOT_PLANNED: {"zh": "护理计划不含每日平安", "en": "the care plan has no daily sign of life"},
    NoSign.NO_DEVICE: {
        "zh": "没有能报平安的设备（门磁、人体感应或带绿键的呼叫器）",
        "en": "no device that can give a sign (door contact, motion sensor or a pendant with a green key)",
    },
}


_NO_SIGNS: frozenset[EventKind] = frozenset()
#: Presence events: a sign only when they saw someone.
_PRESENCE = frozenset({EventKind.MOTION, EventKind.OCCUPANCY})
#: Read per door event (:func:`is_sign`): on CPython 3.11 ``DeviceKind.SOS_BUTTON`` goes through
#: ``EnumType.__getattr__``'s slow hook, and ``device.kind`` through pydantic's (read once).
_SOS_BUTTON = DeviceKind.SOS_BUTTON


def gives_sign(device: Device) -> bool:
    """Whether this device can show the elder's daily sign of life."""
    return _gives_sign(device, device.kind)


def _gives_sign(device: Device, device_kind: DeviceKind) -> bool:
    if device_kind is _SOS_BUTTON:
        return device.model in GREEN_KEY_MODELS
    return device_kind in SIGN_EVENTS


def is_sign(device: Device, event: Event) -> bool:
    """Whether ``event`` of ``device`` is a sign of life (a PIR reporting "nobody" is not).

    Runs for every door event of an elder's home: the device's kind is read once.
    """
    device_kind = device.kind
    kind = event.kind
    if kind not in SIGN_EVENTS.get(device_kind, _NO_SIGNS) or not _gives_sign(device, device_kind):
        return False
    if kind in _PRESENCE:
        return event.value is None or event.value is True
    return True


def sign_status(care: CareFile, entry: RegisterEntry) -> NoSign | None:
    """``None`` when the elder's sign-of-life task is scheduled, else why it is not."""
    if TaskKind.SIGN_OF_LIFE not in plan_for(care, entry.elder).intervals:
        return NoSign.NOT_PLANNED
    if not any(gives_sign(d) for d in entry.devices):
        return NoSign.NO_DEVICE
    return None


def sign_sources(entries: list[RegisterEntry]) -> dict[str, RegisterEntry]:
    """Device id → elder for every device that can give a sign (:func:`source_device` finds it
    again: a tuple of the two per device was 2.8 MB at 50 000 elders)."""
    return {d.id: e for e in entries for d in e.devices if gives_sign(d)}


def source_device(entry: RegisterEntry, device_id: str) -> Device | None:
    """The elder's device ``device_id`` (he has one to three)."""
    for device in entry.devices:
        if device.id == device_id:
            return device
    return None
