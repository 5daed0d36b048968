"""The grid's elder register (老人台账), read from the community registry.

An elder is a resident with a care flag (独居, 80+, 残疾, 认知障碍) or aged 60 or more; the flags
come from the registry's resident fields. Each elder belongs to the grid of his household's
building, else of his first device; the worker who visits is the first grid worker of that grid
on the roster (else its 网格长; nobody: the command centre sees it unassigned). Pure over the
registry: the store and the pages use it.

Must not import: ``hub.web``, ``hub.ingest``, ``hub.app``, ``hub.cli``.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

from hub.cases.care import CareFlag, Elder
from hub.community.model import Community, Device, Resident
from hub.community.registry import Registry
from hub.records import Role

#: From this age a resident is on the register even without a flag (老年人: 60 周岁以上).
ELDER_AGE = 60
AGED_80 = 80


@dataclass(frozen=True, slots=True, kw_only=True)
class RegisterEntry:
    """One elder of the register, with his devices for the register's health column."""

    elder: Elder
    resident: Resident
    devices: tuple[Device, ...]


def flags_of(resident: Resident) -> frozenset[CareFlag]:
    flags: set[CareFlag] = set()
    if resident.living_alone:
        flags.add(CareFlag.LIVING_ALONE)
    if resident.age is not None and resident.age >= AGED_80:
        flags.add(CareFlag.AGED_80)
    if resident.disabled:
        flags.add(CareFlag.DISABLED)
    if resident.cognitive_impairment:
        flags.add(CareFlag.COGNITIVE)
    return frozenset(flags)


@dataclass(frozen=True, slots=True, kw_only=True)
class _CommunityIndex:
    """One community's residents, devices and households by key, built once per register.

    Why: asked per resident, "who else lives here, which devices are his, which grid holds his
    household" scanned the whole community each time: quadratic, never finished at 100 000
    devices (50 000 residents × 150 000 rows; docs/benchmarks.md, state at scale).
    """

    #: Residents per household id.
    living: dict[str, int]
    #: (position in ``community.devices``, device) per resident id, and per household id for
    #: devices without a resident.
    by_resident: dict[str, list[tuple[int, Device]]]
    by_household: dict[str, list[tuple[int, Device]]]
    #: The first grid (in file order) whose buildings hold the household.
    household_grid: dict[str, str]

    @classmethod
    def of(cls, community: Community) -> _CommunityIndex:
        living: dict[str, int] = {}
        for resident in community.residents:
            if resident.household is not None:
                living[resident.household] = living.get(resident.household, 0) + 1
        by_resident: dict[str, list[tuple[int, Device]]] = {}
        by_household: dict[str, list[tuple[int, Device]]] = {}
        for position, device in enumerate(community.devices):
            if device.resident is not None:
                by_resident.setdefault(device.resident, []).append((position, device))
            elif device.household is not None:
                by_household.setdefault(device.household, []).append((position, device))
        household_grid: dict[str, str] = {}
        for grid in community.grids:
            for building in grid.buildings:
                for unit in building.units:
                    for household in unit.households:
                        household_grid.setdefault(household.id, grid.code)
        return cls(
            living=living, by_resident=by_resident, by_household=by_household, household_grid=household_grid
        )

    def devices_of(self, resident: Resident) -> tuple[Device, ...]:
        """His own devices, and those of his household's door when he lives there alone; file order."""
        found = list(self.by_resident.get(resident.id, ()))
        if resident.household is not None and self.living.get(resident.household, 0) == 1:
            found.extend(self.by_household.get(resident.household, ()))
        return tuple(device for _, device in sorted(found, key=lambda item: item[0]))

    def grid_of(self, resident: Resident, devices: tuple[Device, ...]) -> str | None:
        if resident.household is not None:
            grid = self.household_grid.get(resident.household)
            if grid is not None:
                return grid
        return devices[0].grid if devices else None


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
        index = _CommunityIndex.of(community)
        for resident in community.residents:
            flags = flags_of(resident)
            if not flags and (resident.age is None or resident.age < ELDER_AGE):
                continue
            devices = index.devices_of(resident)
            grid = index.grid_of(resident, devices)
            if grid is None:
                continue  # no household and no device: nowhere to visit, not on the register
            elder = Elder(
                id=resident.id,
                community=community.code,
                grid=grid,
                flags=flags,
                assignee=_visitor(community, grid),
            )
            yield RegisterEntry(elder=elder, resident=resident, devices=devices)


def elder_of_device(registry: Registry, device_id: str) -> RegisterEntry | None:
    """The register entry whose devices include ``device_id`` (an inactivity alert's elder)."""
    return next((e for e in register(registry) if any(d.id == device_id for d in e.devices)), None)
