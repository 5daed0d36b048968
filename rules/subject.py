"""The subject a rule is evaluated for: a device and where it sits in the community."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Final

from adapters.events import DeviceKind

if TYPE_CHECKING:
    from rules.evaluator import PlanTable

Fact = str | bool | int | float

#: The facts whose values are a device's own (one resident, one place), not shared with other
#: devices: :attr:`Subject.own` may hold them instead of ``attributes`` (``rules.facts``).
RESIDENT_ID: Final = "resident.id"
PLACE_ID: Final = "place.id"

#: A device's own ids in one field (:attr:`Subject.own`): the resident id alone, as the string
#: itself, for the common case (every elder's device at scale), else ``(resident id, place id)``.
#: One field, not two: the interpreted ``Subject``'s 112-byte block has room for one more
#: pointer, not two; the compiled one (a vtable pointer more) was full at nine fields and is 128
#: bytes with ten or eleven, so one field keeps it a single field away from 112 again.
OwnIds = str | tuple[str | None, str | None] | None


def own_ids(resident: str | None, place: str | None) -> OwnIds:
    """``resident`` and ``place`` (ids, either may be ``None``) as :attr:`Subject.own` holds them."""
    if place is None:
        return resident
    return (resident, place)


@dataclass(frozen=True, slots=True)
class Subject:
    """What rules may know about the device an event came from.

    ``grid`` and ``community`` are ``None`` for a device the registry does not know (or has
    not assigned): such a subject still matches rules whose scope does not name grids.
    ``attributes`` holds flattened facts such as ``resident.living_alone``; the device's own
    resident and place ids may be in ``own`` instead (the registry's subjects: their
    ``attributes`` are shared by every device with the same facts, ``rules.facts``). Read a
    fact by name with :meth:`fact`, which looks in both.
    """

    device_id: str
    kind: DeviceKind | None = None
    grid: str | None = None
    community: str | None = None
    attributes: Mapping[str, Fact] = field(default_factory=dict)
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
    #: The device's own ``resident.id`` and ``place.id`` (:data:`OwnIds`, made by :func:`own_ids`)
    #: when ``attributes`` is shared with other devices. Compared: two devices with the same
    #: shared facts but another resident are two subjects, as they were when the ids sat in
    #: ``attributes``.
    own: OwnIds = None

    def fact(self, name: str) -> Fact | None:
        """The fact ``name`` (``resident.living_alone``, ``resident.id``…), ``None`` when unknown.

        The own ids come from :attr:`own` when it holds them, else (subjects made with one dict,
        as tools and tests do) from ``attributes`` like every other fact.
        """
        own = self.own
        if own is not None:
            if name == RESIDENT_ID:
                resident = own if isinstance(own, str) else own[0]
                if resident is not None:
                    return resident
            elif name == PLACE_ID and not isinstance(own, str) and own[1] is not None:
                return own[1]
        return self.attributes.get(name)

    def facts(self) -> dict[str, Fact]:
        """Every fact as one new dict, the own ids included (tools, tests; not per event)."""
        facts = dict(self.attributes)
        for name in (PLACE_ID, RESIDENT_ID):
            value = self.fact(name)
            if value is not None:
                facts[name] = value
        return facts

    @property
    def known(self) -> bool:
        # The pipeline reads ``grid is not None`` itself, per event (hub/ingest/pipeline.py).
        return self.grid is not None
