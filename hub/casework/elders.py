"""The grid's elder register (老人台账), read from the community registry.

An elder is a resident with a care flag (独居, 80+, 残疾, 认知障碍) or aged 60 or more; the flags
come from the registry's resident fields. Each elder belongs to the grid of his household's
building, else of his first device; the worker who visits is the first grid worker of that grid
on the roster (else its 网格长; nobody: the command centre sees it unassigned). Pure over the
registry: the store and the pages use it.

Must not import: ``hub.web``, ``hub.ingest``, ``hub.app``, ``hub.cli``.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field

from hub.cases.care import CareFlag, CarePlan, Elder, TaskKind
from hub.community.model import Community, Device, Resident
from hub.community.registry import Registry
from hub.records import Role

#: From this age a resident is on the register even without a flag (老年人: 60 周岁以上).
ELDER_AGE = 60
AGED_80 = 80


@dataclass(frozen=True, slots=True, kw_only=True)
class RegisterEntry:
    """One elder of the register, with his devices for the register's health column.

    The fields after ``devices`` are the visits scheduler's memo of this elder
    (:class:`hub.casework.visits.Visits` sets them with ``object.__setattr__``, as the rule
    engine does ``Subject.plans``); they take no part in comparisons and mean nothing to the
    register. They were four dicts keyed by elder id, plus a tuple per elder for his sign-of-life
    day: ≈ 11 MB at 50 000 elders, where six slots here are 2.4 MB (the floats they hold were
    held before too; docs/benchmarks.md, "Thirty-seventh pass"). A new register (another
    registry) starts with an empty memo.
    """

    elder: Elder
    resident: Resident
    devices: tuple[Device, ...]
    #: His care plan (one object per distinct plan, shared) and the task kinds it schedules.
    plan: CarePlan | None = field(default=None, compare=False, repr=False)
    kinds: tuple[TaskKind, ...] | None = field(default=None, compare=False, repr=False)
    #: Due time of his open sign-of-life task that a sign today would not move.
    sign_due: float = field(default=-math.inf, compare=False, repr=False)
    #: A sign at a time in [``day_from``, ``day_until``) gives the due time ``day_due`` (the
    #: last sign's local day; empty at first).
    day_from: float = field(default=math.inf, compare=False, repr=False)
    day_until: float = field(default=-math.inf, compare=False, repr=False)
    day_due: float = field(default=math.inf, compare=False, repr=False)


def flags_of(resident: Resident) -> frozenset[CareFlag]:
    return _flag_set(
        resident.living_alone,
        resident.age is not None and resident.age >= AGED_80,
        resident.disabled,
        resident.cognitive_impairment,
    )


@functools.cache
def _flag_set(alone: bool, aged_80: bool, disabled: bool, cognitive: bool) -> frozenset[CareFlag]:
    """One frozenset per combination of flags (16 at most), shared by every elder who has it: a
    set of his own was ≈ 220 bytes an elder, 11 MB for 50 000 (docs/benchmarks.md, "Twenty-ninth pass")."""
    flags: set[CareFlag] = set()
    if alone:
        flags.add(CareFlag.LIVING_ALONE)
    if aged_80:
        flags.add(CareFlag.AGED_80)
    if disabled:
        flags.add(CareFlag.DISABLED)
    if cognitive:
        flags.add(CareFlag.COGNITIVE)
    return frozenset(flags)


class _Index:
    """One community's lookups for the register, built in one pass over it.

    The register used to scan every device and every building per resident (residents ×
    devices): with 1 000 elders that was seconds of CPU on the hub's first sign-of-life event.
    The index answers the same questions in the same order (devices in registry order, the
    first grid that lists a household, the first worker on the roster).
    """

    def __init__(self, community: Community) -> None:
        self._community = community
        self._sharing: dict[str, int] = {}
        for r in community.residents:
            if r.household is not None:
                self._sharing[r.household] = self._sharing.get(r.household, 0) + 1
        #: Device positions in registry order, by resident and (for devices of nobody) by household.
        self._by_resident: dict[str, list[int]] = {}
        self._by_household: dict[str, list[int]] = {}
        for index, d in enumerate(community.devices):
            if d.resident is not None:
                self._by_resident.setdefault(d.resident, []).append(index)
            elif d.household is not None:
                self._by_household.setdefault(d.household, []).append(index)
        self._grid_of_household: dict[str, str] = {}
        for grid in community.grids:
            for building in grid.buildings:
                for unit in building.units:
                    for household in unit.households:
                        self._grid_of_household.setdefault(household.id, grid.code)
        self._visitors: dict[str, str | None] = {}

    def devices_of(self, resident: Resident) -> tuple[Device, ...]:
        """His own devices, and his household's unowned ones when he lives there alone."""
        positions = self._by_resident.get(resident.id, [])
        household = resident.household
        if household is not None and self._sharing.get(household, 0) == 1:
            shared = self._by_household.get(household)
            if shared:
                positions = sorted([*positions, *shared])
        devices = self._community.devices
        return tuple(devices[i] for i in positions)

    def grid_of(self, resident: Resident, devices: tuple[Device, ...]) -> str | None:
        if resident.household is not None:
            grid = self._grid_of_household.get(resident.household)
            if grid is not None:
                return grid
        return devices[0].grid if devices else None

    def visitor(self, grid: str) -> str | None:
        if grid not in self._visitors:
            self._visitors[grid] = _visitor(self._community, grid)
        return self._visitors[grid]


def _visitor(community: Community, grid: str) -> str | None:
    for role in (Role.GRID_WORKER, Role.GRID_LEADER):
        for person in community.people:
            if person.role is role and grid in person.grids:
                return person.id
    return None


def register(registry: Registry) -> list[RegisterEntry]:
    """Every elder of every community, in registry order."""
    return list(register_entries(registry))


def register_entries(registry: Registry) -> Iterator[RegisterEntry]:
    """:func:`register` one elder at a time (the visits scheduler builds it between turns of its loop)."""
    for community in registry.communities:
        index: _Index | None = None
        for resident in community.residents:
            flags = flags_of(resident)
            if not flags and (resident.age is None or resident.age < ELDER_AGE):
                continue
            if index is None:
                index = _Index(community)
            devices = index.devices_of(resident)
            grid = index.grid_of(resident, devices)
            if grid is None:
                continue  # no household and no device: nowhere to visit, not on the register
            elder = Elder(
                id=resident.id,
                community=community.code,
                grid=grid,
                flags=flags,
                assignee=index.visitor(grid),
            )
            yield RegisterEntry(elder=elder, resident=resident, devices=devices)


def elder_of_device(
    registry: Registry, device_id: str, entries: Sequence[RegisterEntry]
) -> RegisterEntry | None:
    """The entry of ``entries`` (the register, kept) whose devices include ``device_id``: an
    inactivity alert's elder, a closed case's guardians.

    A device is an elder's when it names him or is on the door of a household he lives in
    alone (:meth:`_Index.devices_of`), which is what the registry resolves a device's resident
    by: only his entries are looked at. Building the register for each lookup, as this did,
    held the event loop for ≈ 650 ms at 50 000 elders on every inactivity alert and every
    closed case (docs/benchmarks.md, "Thirty-eighth pass").
    """
    resident = registry.resident_of_device(device_id)
    if resident is None:
        return None
    elder = resident.id
    for entry in entries:
        # Ids, not the resident object: where two communities register one id (strict=False),
        # each has an entry of its own and the device is in the one of its community.
        if entry.elder.id == elder and any(d.id == device_id for d in entry.devices):
            return entry
    return None
