"""The grid's elder register (老人台账), read from the community registry.

An elder is a resident with a care flag (独居, 80+, 残疾, 认知障碍) or aged 60 or more; the flags
come from the registry's resident fields. Each elder belongs to the grid of his household's
building, else of his first device; the worker who visits is the first grid worker of that grid
on the roster (else its 网格长; nobody: the command centre sees it unassigned). Pure over the
registry: the store and the pages use it.

Must not import: ``hub.web``, ``hub.ingest``, ``hub.app``, ``hub.cli``.
"""

from __future__ import annotations

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


def _devices_of(community: Community, resident: Resident) -> tuple[Device, ...]:
    sharing = [
        r for r in community.residents if r.household is not None and r.household == resident.household
    ]
    return tuple(
        d
        for d in community.devices
        if d.resident == resident.id
        or (
            d.resident is None
            and d.household is not None
            and d.household == resident.household
            and len(sharing) == 1
        )
    )


def _grid_of(community: Community, resident: Resident, devices: tuple[Device, ...]) -> str | None:
    if resident.household is not None:
        for grid in community.grids:
            for building in grid.buildings:
                if any(h.id == resident.household for u in building.units for h in u.households):
                    return grid.code
    return devices[0].grid if devices else None


def _visitor(community: Community, grid: str) -> str | None:
    for role in (Role.GRID_WORKER, Role.GRID_LEADER):
        for person in community.people:
            if person.role is role and grid in person.grids:
                return person.id
    return None


def register(registry: Registry) -> list[RegisterEntry]:
    """Every elder of every community, in registry order."""
    entries: list[RegisterEntry] = []
    for community in registry.communities:
        for resident in community.residents:
            flags = flags_of(resident)
            if not flags and (resident.age is None or resident.age < ELDER_AGE):
                continue
            devices = _devices_of(community, resident)
            grid = _grid_of(community, resident, devices)
            if grid is None:
                continue  # no household and no device: nowhere to visit, not on the register
            elder = Elder(
                id=resident.id,
                community=community.code,
                grid=grid,
                flags=flags,
                assignee=_visitor(community, grid),
            )
            entries.append(RegisterEntry(elder=elder, resident=resident, devices=devices))
    return entries


def elder_of_device(registry: Registry, device_id: str) -> RegisterEntry | None:
    """The register entry whose devices include ``device_id`` (an inactivity alert's elder)."""
    return next((e for e in register(registry) if any(d.id == device_id for d in e.devices)), None)
