"""Devices that publish without being registered: heard, listed, grouped — and bounded.

An unregistered SOS button must still reach the command centre (handbook §4: never drop an
SOS), so unknown devices are processed, not discarded. But their ids come from whoever can
publish, so nothing kept per id may grow with them (issue 11, finding 6: 50 000 unknown ids
cost 185 MB and 50 000 rows; 500 "emergency" presses opened 500 cases):

* the first ``max_listed`` unknown ids are **listed** one by one (the unassigned list an
  installer works through, kept in the store), judged by the rules under their own id;
* beyond that an id is **aggregated**: its events are judged under its gateway group
  ``unassigned:<prefix>`` (the topic up to the device id: ``zigbee2mqtt``,
  ``application/<app>/device``, ``linli/<community>/devices`` …) and only counted per prefix;
  the number of prefixes is itself capped (``*other*`` beyond ``max_prefixes``);
* every alert of an unknown device is raised on its **group**, so presses from many unknown
  buttons through one gateway are one alert and one case; within ``burst_s`` of the group's
  last occurrence a new press only counts (no new notification), after it the case is
  reminded. The first press of a group opens the case at once, titled with the gateway.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

from adapters.events import Event
from hub.community.model import DEVICE_ID_MAX
from hub.community.registry import Registry
from hub.ingest.quarantine import Quarantine
from hub.storage.store import Store

log = logging.getLogger(__name__)

GROUP = "unassigned:"
OTHER_PREFIX = "*other*"
MAX_PREFIX_CHARS = 120


def gateway_prefix(topic: str, device_id: str) -> str:
    """The topic up to the device id (the gateway or application it came through)."""
    index = topic.find("/" + device_id) if device_id else -1
    prefix = topic[:index] if index > 0 else "/".join(topic.split("/")[:2])
    return prefix[:MAX_PREFIX_CHARS] or OTHER_PREFIX


@dataclass(frozen=True, slots=True)
class Stranger:
    """How one unknown device's event is treated: under its own id (listed) or its group's."""

    listed: bool
    prefix: str

    @property
    def group(self) -> str:
        return GROUP + self.prefix


class UnknownDevices:
    def __init__(
        self,
        *,
        registry: Registry,
        store: Store,
        quarantine: Quarantine,
        max_listed: int,
        max_prefixes: int,
    ) -> None:
        self._registry = registry
        self._store = store
        self._quarantine = quarantine
        self._max_listed = max_listed
        self._max_prefixes = max_prefixes
        #: Gateway prefix of each id listed by this process (at most ``max_listed`` entries).
        self._prefix_of: dict[str, str] = {}
        #: Events of aggregated (unlisted) ids per prefix (at most ``max_prefixes`` + 1 keys).
        self.aggregated: dict[str, int] = {}
        self._prefixes: set[str] = set()

    def _bounded_prefix(self, prefix: str) -> str:
        if prefix in self._prefixes:
            return prefix
        if len(self._prefixes) >= self._max_prefixes:
            return OTHER_PREFIX
        self._prefixes.add(prefix)
        return prefix

    def admit(self, event: Event, topic: str) -> Stranger:
        """Classify (and record) one event of a device the registry does not know."""
        device_id = event.device_id
        prefix = self._prefix_of.get(device_id)
        if prefix is None:
            prefix = self._bounded_prefix(gateway_prefix(topic, device_id))
        listed = device_id in self._registry.unassigned
        # An id longer than a registered one may be (the topic's own level, any length) is never
        # listed: its group stands in for it. On PostgreSQL a 6 000-character id outgrew the
        # primary key's index (2 704 bytes) in the unassigned list and in the rule state, and
        # every rule-state flush holding it failed (found in review).
        if (
            not listed
            and len(device_id) <= DEVICE_ID_MAX
            and len(self._registry.unassigned) < self._max_listed
        ):
            stranger = self._registry.note_unassigned(device_id, event.family, event.ts)
            if stranger is not None:
                log.warning(
                    "unregistered device %r (%s) is publishing; listed as unassigned", device_id, event.family
                )
                self._store.add_unassigned(stranger)
            listed = True
        if listed:
            if len(self._prefix_of) < self._max_listed:
                self._prefix_of[device_id] = prefix
            self._quarantine.add(
                topic=f"{event.family}:{device_id}",
                reason="unknown_device",
                detail="not in the registry; processed and listed as unassigned",
                payload=event.kind.value.encode(),
                at=event.ts,
            )
            return Stranger(listed=True, prefix=prefix)
        self.aggregated[prefix] = self.aggregated.get(prefix, 0) + 1
        self._quarantine.add(
            topic=GROUP + prefix,
            reason="unknown_device",
            detail=(
                f"unregistered devices beyond the {self._max_listed} listed; counted per gateway prefix"
                f" (last: {device_id[:80]!r})"
            ),
            payload=event.kind.value.encode(),
            at=event.ts,
        )
        return Stranger(listed=False, prefix=prefix)

    def group_of(self, subject: str) -> str | None:
        """The group an unknown subject's alerts are raised on (``None``: not one of ours)."""
        if subject.startswith(GROUP):
            return subject
        prefix = self._prefix_of.get(subject)
        return GROUP + prefix if prefix is not None else None
