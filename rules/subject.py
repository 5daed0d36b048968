"""The subject a rule is evaluated for: a device and where it sits in the community."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from adapters.events import DeviceKind


@dataclass(frozen=True, slots=True)
class Subject:
    """What rules may know about the device an event came from.

    ``grid`` and ``community`` are ``None`` for a device the registry does not know (or has
    not assigned): such a subject still matches rules whose scope does not name grids.
    ``attributes`` holds flattened facts such as ``resident.living_alone``.
    """

    device_id: str
    kind: DeviceKind | None = None
    grid: str | None = None
    community: str | None = None
    attributes: Mapping[str, str | bool | int | float] = field(default_factory=dict)

    @property
    def known(self) -> bool:
        return self.grid is not None
