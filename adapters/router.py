"""Route a message to its family's decoder by topic, and say what to subscribe to.

Each enabled family is a :class:`FamilySource` ``(family, base_topic)``. ``base_topic`` is the
family's root; ``""`` means the family's default (:data:`DEFAULT_BASE`). Tasmota has two roots
(``tele`` and ``stat``): its ``base_topic`` is a prefix put in front of both (``""`` → ``tele/…``
and ``stat/…``; ``"site1"`` → ``site1/tele/…`` and ``site1/stat/…``).

The LoRaWAN servers and Linli's native topics put an application (or community) *inside* the
root: ``v3/<app-id>@<tenant>/devices/…`` (The Things Stack), ``application/<app-id>/device/…``
(ChirpStack) and ``linli/<community>/devices/…`` (native). A source with an ``application``
covers that one level only — a community's own TTS or ChirpStack application, or its native
topics — so each community can have its own roots under the shared base (issue 13). Decoding
is the same; only what is subscribed to and which source claims a topic change.

ChirpStack v3 and v4 both publish under ``application/``; enable one of them per root (on a
shared broker give one of them another ``base_topic``). When both are enabled on the same root,
the first listed wins and the other family's payloads are quarantined (``missing_field``).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from enum import StrEnum
from functools import partial

from adapters import chirpstack_v3, chirpstack_v4, native, tasmota, ttn_v3, zigbee2mqtt
from adapters.errors import DecodeError
from adapters.events import DeviceHints, Event
from adapters.profiles import ProfileSet, load_profiles

Decoder = Callable[[str, bytes, float, DeviceHints], list[Event]]


class Family(StrEnum):
    """Device message families Linli understands."""

    ZIGBEE2MQTT = "zigbee2mqtt"
    TTN_V3 = "ttn_v3"
    CHIRPSTACK_V4 = "chirpstack_v4"
    CHIRPSTACK_V3 = "chirpstack_v3"
    TASMOTA = "tasmota"
    NATIVE = "native"


#: The base topic used when a source's ``base_topic`` is empty.
DEFAULT_BASE: dict[Family, str] = {
    Family.ZIGBEE2MQTT: "zigbee2mqtt",
    Family.TTN_V3: "v3",
    Family.CHIRPSTACK_V4: "application",
    Family.CHIRPSTACK_V3: "application",
    Family.TASMOTA: "",
    Family.NATIVE: "linli",
}

#: Families with an application (or community) level right under the base topic.
APPLICATION_LEVEL = frozenset({Family.TTN_V3, Family.CHIRPSTACK_V4, Family.CHIRPSTACK_V3, Family.NATIVE})

#: Families whose decoded payloads are read through device profiles.
_PROFILED = frozenset({Family.TTN_V3, Family.CHIRPSTACK_V4, Family.CHIRPSTACK_V3, Family.TASMOTA})


@dataclass(frozen=True, slots=True)
class FamilySource:
    """One enabled family and the base topic its gateway publishes under ("" = default).

    ``application`` ("" = any): the one application (TTS ``<app-id>@<tenant>``, a ChirpStack
    application id) or community code (native) of the level below the base.
    """

    family: Family
    base_topic: str = ""
    application: str = ""

    def __post_init__(self) -> None:
        if self.application and self.family not in APPLICATION_LEVEL:
            raise ValueError(f"{self.family.value} topics have no application level")
        if any(c in self.application for c in "/+#"):
            raise ValueError(f"an application is one topic level: {self.application!r}")

    @property
    def base(self) -> str:
        base = self.base_topic.strip("/")
        return base or DEFAULT_BASE[self.family]

    def roots(self) -> tuple[str, ...]:
        """The topic prefixes (without trailing ``/``) this source's messages start with."""
        if self.family is Family.TASMOTA:
            prefix = f"{self.base}/" if self.base else ""
            return (f"{prefix}tele", f"{prefix}stat")
        if self.application:
            return (f"{self.base}/{self.application}",)
        return (self.base,)

    def subscriptions(self) -> list[str]:
        base = self.base
        if self.application:
            # The application level fixed: ``base/+/…`` below becomes ``base/<application>/…``.
            return [f.replace(f"{base}/+/", f"{base}/{self.application}/", 1) for f in self._filters(base)]
        return self._filters(base)

    def _filters(self, base: str) -> list[str]:
        if self.family is Family.TTN_V3:
            return [f"{base}/+/devices/+/up", f"{base}/+/devices/+/join"]
        if self.family in (Family.CHIRPSTACK_V4, Family.CHIRPSTACK_V3):
            return [f"{base}/+/device/+/event/+"]
        if self.family is Family.NATIVE:
            # Narrow on purpose: Linli publishes its notifications under the same `linli/` root.
            return [f"{base}/+/devices/+/events"]
        return [f"{root}/#" for root in self.roots()]


class AdapterRouter:
    """Picks the decoder for a topic; unknown topics are a ``DecodeError``, not silence.

    ``profiles`` are the device profiles for the LoRaWAN and Tasmota families; when ``None``
    and such a family is enabled, the profiles shipped in ``adapters/profiles`` are loaded
    once, here (decoding itself does no I/O).
    """

    def __init__(self, *, sources: Sequence[FamilySource], profiles: ProfileSet | None = None) -> None:
        self._sources = tuple(sources)
        if profiles is None:
            profiles = load_profiles() if any(s.family in _PROFILED for s in self._sources) else ProfileSet()
        self.profiles = profiles
        # Dispatch on the first topic level: a dict lookup per message, no regex.
        self._by_root: dict[str, list[tuple[str, Decoder]]] = {}
        for source in self._sources:
            decoder = self._decoder(source.family, source.base, profiles)
            for root in source.roots():
                self._by_root.setdefault(root.split("/", 1)[0], []).append((root + "/", decoder))
        for candidates in self._by_root.values():
            # The most specific root first: a community's application before the whole base.
            candidates.sort(key=lambda candidate: -len(candidate[0]))

    @staticmethod
    def _decoder(family: Family, base: str, profiles: ProfileSet) -> Decoder:
        if family is Family.ZIGBEE2MQTT:
            return partial(zigbee2mqtt.decode, base=base)
        if family is Family.TTN_V3:
            return partial(ttn_v3.decode, base=base, profiles=profiles)
        if family is Family.CHIRPSTACK_V4:
            return partial(chirpstack_v4.decode, base=base, profiles=profiles)
        if family is Family.CHIRPSTACK_V3:
            return partial(chirpstack_v3.decode, base=base, profiles=profiles)
        if family is Family.TASMOTA:
            return partial(tasmota.decode, base=base, profiles=profiles)
        if family is Family.NATIVE:
            return partial(native.decode, base=base)
        raise ValueError(f"no decoder for family {family}")  # pragma: no cover - closed enum

    def subscriptions(self) -> list[str]:
        """MQTT topic filters covering every enabled family."""
        filters: list[str] = []
        for source in self._sources:
            filters.extend(f for f in source.subscriptions() if f not in filters)
        return filters

    def decode(self, topic: str, payload: bytes, received: float, hints: DeviceHints) -> list[Event]:
        candidates = self._by_root.get(topic.split("/", 1)[0], ())
        for prefix, decoder in candidates:
            if topic.startswith(prefix):
                return decoder(topic, payload, received, hints)
        raise DecodeError("unknown_topic", "no adapter is configured for this topic", topic=topic)
