"""The subject a rule is evaluated for: a device and where it sits in the community."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from adapters.events import DeviceKind

if TYPE_CHECKING:
    from rules.evaluator import PlanTable


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
    #: The evaluator's memo, not a fact about the device: the plans of every subject that
    #: rules cannot tell apart from this one (:meth:`rules.evaluator.Evaluator.plan` sets it).
    #: Held here, a device costs the memo one pointer; a table keyed by device id and event kind
    #: was ≈ 15 MB traced at 10⁵ reporting devices (``bench.memory_split``: 14 MB resident).
    plans: PlanTable | None = field(default=None, init=False, compare=False, repr=False)
    #: The maker's own record of the device, opaque to rules: the hub's registry keeps its
    #: ``Device`` here and finds it through the subject, where a second table keyed by device id
    #: was 3.8 MB at 10⁵ devices (docs/benchmarks.md, "Thirty-sixth pass").
    record: Any = field(default=None, compare=False, repr=False)
    #: The maker's memo, opaque to rules, like ``plans`` set once it is known: the hub's
    #: registry keeps the device's time-series tags here on its first event (another table
    #: keyed by device id before).
    memo: Any = field(default=None, init=False, compare=False, repr=False)
    #: The maker's last known state of the device, opaque to rules, set on its first event: the
    #: hub's device state (``hub.ingest.device_state``), where a table keyed by device id was
    #: 3.8 MB at 10⁵ reporting devices (docs/benchmarks.md, "Thirty-eighth pass").
    state: Any = field(default=None, init=False, compare=False, repr=False)

    @property
    def known(self) -> bool:
        # The pipeline reads ``grid is not None`` itself, per event (hub/ingest/pipeline.py).
        return self.grid is not None
