"""The generated community: deterministic, valid for the registry, staffed around the clock."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
import yaml

from adapters.profiles import load_profiles
from hub.community.files import load_yaml, parse_yaml
from hub.community.roster import coverage_gaps
from hub.records import Role
from simulators.community import generate, load, parse_mix
from simulators.types import Family

SH = ZoneInfo("Asia/Shanghai")


def test_same_seed_same_community_other_seed_other_community() -> None:
    assert generate(seed=7).document == generate(seed=7).document
    assert generate(seed=7).devices == generate(seed=7).devices
    assert generate(seed=7).document != generate(seed=8).document


@pytest.mark.parametrize("kwargs", [{}, {"grids": 5, "buildings_per_grid": 3, "elders_per_building": 30}])
def test_the_registry_accepts_what_the_generator_writes(kwargs: dict[str, int], tmp_path: Path) -> None:
    community = generate(seed=2, **kwargs)
    path = tmp_path / "community.yaml"
    community.write(path)
    (parsed,) = parse_yaml(path.read_text(encoding="utf-8"), file=str(path))
    assert {d.id for d in parsed.devices} == {d.id for d in community.devices}
    households = {h.id for g in parsed.grids for b in g.buildings for u in b.units for h in u.households}
    assert all(r.household in households for r in parsed.residents)
    assert all(r.emergency_contacts and r.emergency_contacts[0].phone for r in parsed.residents)
    places = {p.id: p.kind.value for g in parsed.grids for p in g.places}
    for device in parsed.devices:
        if device.kind.value == "sos_button":
            assert device.resident and device.household
        if device.kind.value == "parking_sensor":
            assert places[device.place or ""] in ("parking_space", "fire_lane")
        if device.kind.value == "door_sensor":
            assert device.household or places[device.place or ""] in ("entrance", "fire_exit")
    assert {"entrance", "fire_exit", "parking_lot", "parking_space", "fire_lane"} <= set(places.values())


def test_legacy_keyword_arguments_still_work() -> None:
    community = generate(
        seed=1,
        county="110105",
        street="001",
        community_seq="002",
        grids=2,
        buildings_per_grid=1,
        elders_per_building=2,
        parking_per_grid=3,
    )
    assert community.code == "110105001002"
    kinds = [d.kind for d in community.devices]
    assert kinds.count("sos_button") == 4
    assert kinds.count("parking_sensor") == 2 * (3 + 1)  # spaces + the fire lane


def test_living_alone_share_is_configurable() -> None:
    alone = [
        r["living_alone"]
        for r in generate(seed=1, elders_per_building=20, living_alone_share=1.0).residents()
    ]
    nobody = [
        r["living_alone"]
        for r in generate(seed=1, elders_per_building=20, living_alone_share=0.0).residents()
    ]
    assert all(alone) and not any(nobody)


def test_roster_covers_every_hour_and_has_a_supervisor() -> None:
    (parsed,) = parse_yaml(yaml.safe_dump(generate(seed=4, grids=4).document), file="x")
    start = datetime(2026, 3, 2, tzinfo=SH)
    assert coverage_gaps(parsed.people, grids=[g.code for g in parsed.grids], start=start, zone=SH) == []
    assert (
        coverage_gaps(
            parsed.people,
            grids=[g.code for g in parsed.grids],
            start=start,
            zone=SH,
            roles=(Role.GRID_WORKER,),
        )
        == []
    )
    assert any(p.role is Role.COMMAND_SUPERVISOR for p in parsed.people)


def test_family_mix_is_followed_and_models_have_profiles() -> None:
    profiles = load_profiles()
    community = generate(seed=5, grids=6, elders_per_building=10, mix="z2m=0.5,ttn=0.5")
    families = {d.family for d in community.devices}
    assert families == {Family.ZIGBEE2MQTT, Family.TTN_V3}
    for device in community.devices:
        if device.family in (Family.TTN_V3, Family.CHIRPSTACK_V4, Family.TASMOTA):
            assert profiles.get(device.model) is not None, device.model
    with pytest.raises(ValueError, match="unknown family"):
        parse_mix("zwave=1")


def test_load_reads_back_the_devices_with_their_families(tmp_path: Path) -> None:
    community = generate(seed=3, mix="z2m=1,ttn=1,chirpstack=1,tasmota=1,native=1")
    community.write(tmp_path / "c.yaml")
    loaded = load(tmp_path / "c.yaml")
    assert [(d.id, d.family, d.kind, d.place_kind, d.resident, d.living_alone) for d in loaded.devices] == [
        (d.id, d.family, d.kind, d.place_kind, d.resident, d.living_alone) for d in community.devices
    ]
    with pytest.raises(ValueError, match="not a community file"):
        (tmp_path / "bad.yaml").write_text("version: 1\n", encoding="utf-8")
        load(tmp_path / "bad.yaml")


def test_written_as_json_or_yaml_the_file_is_the_same_registry(tmp_path: Path) -> None:
    sim = generate(seed=4, grids=2, buildings_per_grid=1, elders_per_building=2, parking_per_grid=1)
    sim.write(tmp_path / "c.yaml")
    sim.write(tmp_path / "c.json.yaml", as_json=True)
    assert (tmp_path / "c.json.yaml").read_text(encoding="utf-8").splitlines()[1] == "{"
    assert load(tmp_path / "c.json.yaml").document == load(tmp_path / "c.yaml").document == sim.document
    assert load_yaml(tmp_path / "c.json.yaml") == load_yaml(tmp_path / "c.yaml")
