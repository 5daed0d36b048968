"""The elder register (老人台账) built with per-community indexes gives the direct scan's answer."""

from __future__ import annotations

from pathlib import Path

import pytest

import hub.casework.elders as elders_module
from hub.cases.care import Elder
from hub.casework.elders import ELDER_AGE, RegisterEntry, elder_of_device, flags_of, register
from hub.community.model import Community, Device, Resident
from hub.community.registry import Registry
from hub.records import Role
from simulators.community import generate

SHARED = """
version: 1
communities:
  - code: "110105001001"
    name: 幸福里社区
    street: {code: "110105001", name: 幸福街道}
    grids:
      - code: "110105001001001"
        name: 第一网格
        buildings:
          - id: b1
            name: 1号楼
            units:
              - {id: b1-u1, name: 1单元, households: [{id: h-alone, room: "101"}, {id: h-pair, room: "102"}]}
      - code: "110105001001002"
        name: 第二网格
        buildings:
          - id: b2
            name: 2号楼
            units:
              - {id: b2-u1, name: 1单元, households: [{id: h-far, room: "201"}]}
    people:
      - {id: leader-2, name: 网格长, role: grid_leader, grids: ["110105001001002"], shifts: [{start: "00:00", end: "00:00"}]}
      - {id: w-1, name: 网格员, role: grid_worker, grids: ["110105001001001"], shifts: [{start: "00:00", end: "00:00"}]}
    residents:
      - {id: r-alone, name: 甲, household: h-alone, age: 81}
      - {id: r-pair-a, name: 乙, household: h-pair, living_alone: false, disabled: true}
      - {id: r-pair-b, name: 丙, household: h-pair, age: 70}
      - {id: r-young, name: 丁, household: h-far, age: 30}
      - {id: r-far, name: 戊, household: h-far, age: 66}
      - {id: r-nohome, name: 己, age: 90}
      - {id: r-nowhere, name: 庚, age: 90}
    devices:
      - {id: d-alone-door, kind: door_sensor, model: MCCGQ11LM, grid: "110105001001001", household: h-alone}
      - {id: d-pair-door, kind: door_sensor, model: MCCGQ11LM, grid: "110105001001001", household: h-pair}
      - {id: d-alone-sos, kind: sos_button, model: TS0215A, grid: "110105001001001", resident: r-alone}
      - {id: d-pair-b-sos, kind: sos_button, model: TS0215A, grid: "110105001001001", resident: r-pair-b}
      - {id: d-nohome-sos, kind: sos_button, model: TS0215A, grid: "110105001001002", resident: r-nohome}
      - {id: d-alone-pir, kind: motion_sensor, model: RTCGQ11LM, grid: "110105001001001", household: h-alone}
"""


def _scan(registry: Registry) -> list[RegisterEntry]:
    """The register as it was computed before the index: every question a scan of the community."""

    def devices_of(community: Community, resident: Resident) -> tuple[Device, ...]:
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

    def grid_of(community: Community, resident: Resident, devices: tuple[Device, ...]) -> str | None:
        if resident.household is not None:
            for grid in community.grids:
                for building in grid.buildings:
                    if any(h.id == resident.household for u in building.units for h in u.households):
                        return grid.code
        return devices[0].grid if devices else None

    def visitor(community: Community, grid: str) -> str | None:
        for role in (Role.GRID_WORKER, Role.GRID_LEADER):
            for person in community.people:
                if person.role is role and grid in person.grids:
                    return person.id
        return None

    entries: list[RegisterEntry] = []
    for community in registry.communities:
        for resident in community.residents:
            flags = flags_of(resident)
            if not flags and (resident.age is None or resident.age < ELDER_AGE):
                continue
            devices = devices_of(community, resident)
            grid = grid_of(community, resident, devices)
            if grid is None:
                continue
            elder = Elder(
                id=resident.id,
                community=community.code,
                grid=grid,
                flags=flags,
                assignee=visitor(community, grid),
            )
            entries.append(RegisterEntry(elder=elder, resident=resident, devices=devices))
    return entries


def _summary(entries: list[RegisterEntry]) -> list[tuple[str, str, str | None, tuple[str, ...]]]:
    return [(e.elder.id, e.elder.grid, e.elder.assignee, tuple(d.id for d in e.devices)) for e in entries]


def test_shared_households_lone_residents_and_homeless_elders(tmp_path: Path) -> None:
    path = tmp_path / "community.yaml"
    path.write_text(SHARED, encoding="utf-8")
    registry = Registry.load(path)
    entries = register(registry)
    assert _summary(entries) == [
        # Alone in his household: its unowned door and PIR are his too, in registry order.
        ("r-alone", "110105001001001", "w-1", ("d-alone-door", "d-alone-sos", "d-alone-pir")),
        # Two in one household: its unowned door belongs to neither.
        ("r-pair-a", "110105001001001", "w-1", ()),
        ("r-pair-b", "110105001001001", "w-1", ("d-pair-b-sos",)),
        # Grid 2 has no worker: its leader visits; the young resident is not on the register.
        ("r-far", "110105001001002", "leader-2", ()),
        # No household: the grid of his first device.
        ("r-nohome", "110105001001002", "leader-2", ("d-nohome-sos",)),
    ]
    assert entries == _scan(registry)


def test_a_simulated_district_gives_the_scans_register(tmp_path: Path) -> None:
    community = generate(seed=3, grids=4, buildings_per_grid=3, elders_per_building=5, parking_per_grid=1)
    path = tmp_path / "community.yaml"
    community.write(path)
    registry = Registry.load(path)
    entries = register(registry)
    assert len(entries) == 4 * 3 * 5
    assert entries == _scan(registry)


def _scanned_elder(entries: list[RegisterEntry], device_id: str) -> RegisterEntry | None:
    """The entry whose devices include ``device_id``, by a scan of the whole register."""
    return next((e for e in entries if any(d.id == device_id for d in e.devices)), None)


@pytest.mark.parametrize("simulated", [False, True], ids=["edge-cases", "simulated"])
def test_a_devices_elder_is_the_one_the_register_lists_it_under(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, simulated: bool
) -> None:
    path = tmp_path / "community.yaml"
    if simulated:
        generate(seed=3, grids=2, buildings_per_grid=2, elders_per_building=4, parking_per_grid=2).write(path)
    else:
        path.write_text(SHARED, encoding="utf-8")
    registry = Registry.load(path)
    entries = register(registry)
    # The lookup works on the register it is given: it never builds one (≈ 650 ms at 50 000
    # elders, on the event loop, for every inactivity alert and every closed case).
    built: list[object] = []
    monkeypatch.setattr(elders_module, "_Index", built.append)
    ids = [d.id for d in registry.devices()]
    found = {i: elder_of_device(registry, i, entries) for i in [*ids, "not-registered"]}
    assert built == []
    assert found == {i: _scanned_elder(entries, i) for i in found}
    assert found["not-registered"] is None
    owned = [i for i, entry in found.items() if entry is not None]
    # The answers span elders, devices of nobody's and devices of non-elders.
    assert owned and len(owned) < len(ids)
    if not simulated:
        assert found["d-alone-door"] is entries[0]  # a lone elder's unowned door
        assert found["d-pair-door"] is None  # two live there: the door is neither's


#: A second community that reuses the first's household ids (ids are a community's own: the
#: simulator numbers "b1-u1-101" in each), with an elder of its own alone in "h-alone".
OTHER = """
  - code: "110105001002"
    name: 平安里社区
    grids:
      - code: "110105001002001"
        name: 第一网格
        buildings:
          - id: b9
            name: 9号楼
            units:
              - {id: b9-u1, name: 1单元, households: [{id: h-alone, room: "901"}, {id: h-pair, room: "902"}]}
    people:
      - {id: w-9, name: 网格员, role: grid_worker, grids: ["110105001002001"], shifts: [{start: "00:00", end: "00:00"}]}
    residents:
      - {id: r-other, name: 辛, household: h-alone, age: 85}
    devices:
      - {id: d-other-door, kind: door_sensor, model: MCCGQ11LM, grid: "110105001002001", household: h-alone}
      - {id: d-other-pair-door, kind: door_sensor, model: MCCGQ11LM, grid: "110105001002001", household: h-pair}
"""


def test_household_ids_repeated_in_another_community_are_that_community_s_own(tmp_path: Path) -> None:
    """A door is its own community's household's: its elder and its building are looked up there."""
    path = tmp_path / "communities.yaml"
    path.write_text(SHARED + OTHER, encoding="utf-8")
    registry = Registry.load(path)
    entries = register(registry)
    found = {d.id: elder_of_device(registry, d.id, entries) for d in registry.devices()}
    assert found == {i: _scanned_elder(entries, i) for i in found}
    assert found["d-alone-door"] is not None and found["d-alone-door"].elder.id == "r-alone"
    assert found["d-other-door"] is not None and found["d-other-door"].elder.id == "r-other"
    assert found["d-other-pair-door"] is None  # nobody lives there in this community
    for door, building, room in (("d-alone-door", "1号楼", "101"), ("d-other-door", "9号楼", "901")):
        location = registry.location(door)
        assert location is not None and location.building is not None and location.household is not None
        assert (location.building.name, location.household.room) == (building, room)
    assert registry.subject("d-other-door").fact("resident.id") == "r-other"
    assert registry.subject("d-other-pair-door").fact("resident.id") is None
