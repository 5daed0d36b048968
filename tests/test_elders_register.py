"""The elder register (老人台账) read from an index per community: the same entries as reading
the community once per resident (the quadratic way it was done), for shared households, doors
of one-person households, residents without a household and devices in file order."""

from __future__ import annotations

from typing import Any

import yaml

from hub.casework.elders import ELDER_AGE, register
from hub.community.files import parse_yaml
from hub.community.model import Community, Device, Resident
from hub.community.registry import Registry
from simulators.community import generate
from tests.helpers import REGISTRY


def _scan_devices(community: Community, resident: Resident) -> tuple[Device, ...]:
    """The former per-resident scan, kept here as the reference."""
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


def _scan_grid(community: Community, resident: Resident, devices: tuple[Device, ...]) -> str | None:
    if resident.household is not None:
        for grid in community.grids:
            for building in grid.buildings:
                if any(h.id == resident.household for u in building.units for h in u.households):
                    return grid.code
    return devices[0].grid if devices else None


def _reference(registry: Registry) -> list[tuple[str, str, tuple[str, ...]]]:
    out: list[tuple[str, str, tuple[str, ...]]] = []
    for community in registry.communities:
        for resident in community.residents:
            flagged = resident.living_alone or resident.disabled or resident.cognitive_impairment
            if not flagged and (resident.age is None or resident.age < ELDER_AGE):
                continue
            devices = _scan_devices(community, resident)
            grid = _scan_grid(community, resident, devices)
            if grid is not None:
                out.append((resident.id, grid, tuple(d.id for d in devices)))
    return out


def _entries(registry: Registry) -> list[tuple[str, str, tuple[str, ...]]]:
    return [(e.elder.id, e.elder.grid, tuple(d.id for d in e.devices)) for e in register(registry)]


def _with_shared_household_and_strays(document: dict[str, Any]) -> dict[str, Any]:
    """Two residents in one household (its door is nobody's alone), one elder with no household."""
    doc: dict[str, Any] = yaml.safe_load(yaml.safe_dump(document))
    community = doc["communities"][0]
    first = community["residents"][0]
    community["residents"].append(
        {"id": "spouse-1", "name": "老伴", "household": first["household"], "age": 75}
    )
    community["residents"].append({"id": "nohome-1", "name": "无户", "age": 82})
    grid = community["grids"][0]["code"]
    community["devices"].append(
        {"id": "nohome-btn", "kind": "sos_button", "grid": grid, "resident": "nohome-1"}
    )
    community["devices"].append(
        {"id": "door-of-two", "kind": "door_sensor", "grid": grid, "household": first["household"]}
    )
    return doc


def test_register_matches_the_per_resident_scan() -> None:
    sim = generate(seed=5, grids=3, buildings_per_grid=2, elders_per_building=4, parking_per_grid=1)
    doc = _with_shared_household_and_strays(sim.document)
    registry = Registry(communities=parse_yaml(yaml.safe_dump(doc, allow_unicode=True), file="generated"))
    entries = _entries(registry)
    assert entries == _reference(registry)
    by_id = {elder: devices for elder, _, devices in entries}
    assert "door-of-two" not in by_id[doc["communities"][0]["residents"][0]["id"]]
    assert by_id["nohome-1"] == ("nohome-btn",)
    assert any(len(devices) > 1 for devices in by_id.values())


def test_register_matches_on_the_test_registry() -> None:
    registry = Registry(communities=parse_yaml(REGISTRY, file="helpers"))
    assert _entries(registry) == _reference(registry) != []
