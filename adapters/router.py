"""Route a message to its family's decoder by topic, and say what to subscribe to."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from enum import StrEnum

from adapters import zigbee2mqtt
from adapters.errors import DecodeError
from adapters.events import DeviceHints, Event

Decoder = Callable[[str, bytes, float, DeviceHints], list[Event]]


class Family(StrEnum):
    """Device message families Linli understands."""

    ZIGBEE2MQTT = "zigbee2mqtt"


@dataclass(frozen=True, slots=True)
class FamilySource:
    """One enabled family and the base topic its gateway publishes under."""

    family: Family
    base_topic: str


class AdapterRouter:
    """Picks the decoder for a topic; unknown topics are a ``DecodeError``, not silence."""

    def __init__(self, *, sources: Sequence[FamilySource]) -> None:
        self._sources = tuple(sources)
        # Dispatch on the first topic level: a dict lookup per message, no regex.
        self._by_root: dict[str, list[tuple[str, Decoder]]] = {}
        for source in self._sources:
            base = source.base_topic.strip("/")
            decoder = self._decoder(source.family, base)
            self._by_root.setdefault(base.split("/", 1)[0], []).append((base + "/", decoder))

    @staticmethod
    def _decoder(family: Family, base: str) -> Decoder:
        if family is Family.ZIGBEE2MQTT:

            def decode_z2m(topic: str, payload: bytes, received: float, hints: DeviceHints) -> list[Event]:
                return zigbee2mqtt.decode(topic, payload, received, hints, base=base)

            return decode_z2m
        raise ValueError(f"no decoder for family {family}")  # pragma: no cover - closed enum

    def subscriptions(self) -> list[str]:
        """MQTT topic filters covering every enabled family."""
        return [f"{s.base_topic.strip('/')}/#" for s in self._sources]

    def decode(self, topic: str, payload: bytes, received: float, hints: DeviceHints) -> list[Event]:
        candidates = self._by_root.get(topic.split("/", 1)[0], ())
        for prefix, decoder in candidates:
            if topic.startswith(prefix):
                return decoder(topic, payload, received, hints)
        raise DecodeError("unknown_topic", "no adapter is configured for this topic", topic=topic)
