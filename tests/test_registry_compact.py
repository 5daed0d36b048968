"""State at scale: the registry read back from the store shares equal strings and fields sets,
and series tags, holds its many records in slots, and nobody can tell (same values, same
dumps, copies apart).

Memory itself is measured by the ``scale`` bench (docs/benchmarks.md), never here.
"""

from __future__ import annotations

import dataclasses
import gc
import sys
from collections.abc import Iterator
from typing import Any

import pytest
import yaml
from pydantic import BaseModel

from hub.community.compact import KeySharing, collector_paused, share_strings
from hub.community.files import parse_yaml
from hub.community.model import Community, Contact, Device, Household, Resident
from hub.community.registry import Registry
from hub.community.trusted import community_from_store
from hub.storage.store import Store
from hub.timeseries.schema import SubjectInfo
from simulators.community import generate

T0 = 1_800_000_000.0


@pytest.fixture
def store(store_url: str) -> Iterator[Store]:
    opened = Store(url=store_url)
    yield opened
    opened.close()


def _generated() -> tuple[Community, ...]:
    sim = generate(seed=3, grids=2, buildings_per_grid=2, elders_per_building=3, parking_per_grid=2)
    return parse_yaml(yaml.safe_dump(sim.document, allow_unicode=True), file="generated")


def test_store_round_trip_is_equal_and_shares_what_is_equal(store: Store) -> None:
    original = _generated()
    store.save_communities(original, at=T0)
    [back] = store.communities()
    assert back == original[0]
    assert back.model_dump(mode="json") == original[0].model_dump(mode="json")
    # What the store answered before sharing: every field set (the stored document has them all).
    unshared = Community.model_validate(original[0].model_dump(mode="json"))
    assert back.model_dump(exclude_unset=True) == unshared.model_dump(exclude_unset=True)
    first, second = back.devices[0], back.devices[1]
    # One grid code for all of them, not one each; one fields set for the grids' models.
    assert first.grid == second.grid and first.grid is second.grid
    assert back.grids[0].__pydantic_fields_set__ is back.grids[1].__pydantic_fields_set__
    # Equal heartbeat intervals are one object too (a float of its own per device before).
    beats = {d.heartbeat_s: d.heartbeat_s for d in back.devices}
    assert all(d.heartbeat_s is beats[d.heartbeat_s] for d in back.devices)
    assert len(beats) < len(back.devices)
    # The models parsed from the file keep their own (nothing shared before the store).
    assert original[0].grids[0].__pydantic_fields_set__ is not original[0].grids[1].__pydantic_fields_set__


def test_a_copy_with_an_update_leaves_the_record_alone(store: Store) -> None:
    store.save_communities(_generated(), at=T0)
    [back] = store.communities()
    first, second = back.devices[0], back.devices[1]
    changed = dataclasses.replace(first, profile="custom")
    assert changed.profile == "custom" and first.profile != "custom" and second.profile != "custom"
    assert dataclasses.replace(changed, profile=first.profile) == first
    with pytest.raises(dataclasses.FrozenInstanceError):
        first.profile = "custom"  # type: ignore[misc]


@pytest.mark.parametrize("cls", [Device, Resident, Contact, Household])
def test_the_many_records_hold_their_fields_in_slots(cls: type[Any]) -> None:
    """No ``__dict__`` per device, resident, contact or household: a ``BaseModel``'s was 160–184
    bytes besides its 80 of object, ≈ 69 MB at 100 000 devices (docs/benchmarks.md,
    "Thirty-third pass"). Fails if a class goes back to a model or loses its slots."""
    names = tuple(cls.__pydantic_fields__)
    assert cls.__slots__ == names  # every field a slot, in declaration order (the dump's)
    [community] = _generated()
    records: list[Any] = {
        Device: community.devices,
        Resident: community.residents,
        Contact: [c for r in community.residents for c in r.emergency_contacts],
        Household: [h for g in community.grids for b in g.buildings for u in b.units for h in u.households],
    }[cls]
    assert records
    for record in records:
        assert not hasattr(record, "__dict__") and type(record) is cls


@pytest.mark.skipif(sys.implementation.name != "cpython", reason="key-sharing dicts are CPython's")
def test_models_from_the_store_hold_their_values_in_key_sharing_dicts(store: Store) -> None:
    store.save_communities(_generated(), at=T0)
    [back] = store.communities()
    models: list[BaseModel] = [back, *back.grids, *(b for g in back.grids for b in g.buildings)]
    models += [p for g in back.grids for p in g.places]
    for model in models:
        held = vars(model)
        assert list(held) == list(type(model).model_fields)  # field order, as a dump gives it
        # PEP 412: shared keys, only the values are the model's. Never larger than an ordinary
        # dict of the same items; smaller for the models of many fields (fails if sharing is lost).
        plain = sys.getsizeof(dict(held))
        assert sys.getsizeof(held) <= plain, type(model).__name__
        if len(held) >= 8:
            assert sys.getsizeof(held) < plain, type(model).__name__
    first, second = back.grids[0], back.grids[1]
    assert vars(first) is not vars(second) and first.code != second.code
    changed = first.model_copy(update={"name": "改名网格"})
    assert changed.name == "改名网格" and first.name != "改名网格" and second.name != "改名网格"


def test_key_sharing_copies_hold_the_same_items_and_never_more_memory() -> None:
    sharing = KeySharing()
    wide = {f"field_{i}": i for i in range(12)}
    packed = sharing.packed(dict(wide))
    assert packed == wide and list(packed) == list(wide) and type(packed) is dict
    other = sharing.packed({k: -v for k, v in wide.items()})
    assert other is not packed and packed == wide  # values are each copy's own
    other["field_0"] = 99
    assert packed["field_0"] == 0
    if sys.implementation.name == "cpython":
        assert sys.getsizeof(packed) < sys.getsizeof(dict(wide))
    # A few keys: an ordinary dict is as small, so it is handed back as it is.
    narrow = {"a": 1, "b": 2}
    assert sharing.packed(narrow) is narrow
    # Another order is another shape, never a mix-up of values.
    reordered = dict(reversed(list(wide.items())))
    assert list(sharing.packed(dict(reordered))) == list(reordered) == list(reversed(list(wide)))

    class Slotted:
        __slots__ = ("x",)

    # An owner whose instances have no dict is skipped, not an error.
    assert KeySharing().packed(dict(wide), Slotted) == wide


def test_share_strings_joins_repeated_values_of_the_listed_fields_only() -> None:
    memo: dict[str, str] = {}
    code = "".join(["110105001", "001001"])
    same = "".join(["1101050010", "01001"])
    id_a, id_b = "".join(["btn", "-1"]), "".join(["bt", "n-1"])
    doc: dict[str, Any] = {
        "devices": [{"id": id_a, "grid": code, "heartbeat_s": 60.0}, {"id": id_b, "grid": same}],
        "residents": [{"id": "r1", "name": "王秀英", "emergency_contacts": ["女儿 138", {"name": "x"}]}],
    }
    before = {"devices": [dict(d) for d in doc["devices"]], "residents": [dict(r) for r in doc["residents"]]}
    assert share_strings(doc, memo) is doc and doc == before
    assert doc["devices"][1]["grid"] is code
    assert doc["devices"][1]["id"] is id_b  # ids are not among the shared fields


def test_fields_sets_are_shared_only_for_models_with_every_field_set() -> None:
    [generated] = _generated()
    classes: dict[type[Any], set[str]] = {}
    # A row as an older version wrote it (only the fields the file gave): validated, not shared.
    parsed = community_from_store(generated.model_dump(mode="json", exclude_unset=True), classes)
    full = community_from_store(generated.model_dump(mode="json"), classes)
    grids = parsed.grids
    assert grids[0].model_fields_set is not grids[1].model_fields_set
    assert full.grids[0].model_fields_set is full.grids[1].model_fields_set
    first_building = full.grids[0].buildings[0]
    assert first_building.model_fields_set is full.grids[1].buildings[0].model_fields_set
    assert full.grids[0].model_fields_set is not first_building.model_fields_set
    # Records have no fields set: built or validated, they are the same.
    assert full.devices == parsed.devices and full.residents == parsed.residents


def test_collector_paused_restores_the_collector_even_on_error() -> None:
    assert gc.isenabled()
    with pytest.raises(RuntimeError), collector_paused():
        assert not gc.isenabled()
        raise RuntimeError("boom")
    assert gc.isenabled()
    gc.disable()
    try:
        with collector_paused():
            pass
        assert not gc.isenabled()  # it was off before: it stays off
    finally:
        gc.enable()


def _in_a_generation(objects: list[list[int]]) -> int:
    """How many of ``objects`` a collection of any generation would walk (frozen ones: none)."""
    ids = {id(o) for o in objects}
    return sum(1 for gen in (0, 1, 2) for o in gc.get_objects(generation=gen) if id(o) in ids)


def test_collector_paused_with_freeze_leaves_what_was_built_out_of_later_collections() -> None:
    """Start-up's objects go to the permanent generation: the next collections do not walk them."""
    assert gc.isenabled()
    with collector_paused(freeze=True):
        built = [[i] for i in range(1_000)]  # lists: always tracked by the collector
    assert gc.isenabled()
    assert _in_a_generation(built) == 0
    # Without freeze they stay where collections walk them.
    with collector_paused():
        more = [[i] for i in range(1_000)]
    assert _in_a_generation(more) == len(more)


def test_series_tags_are_built_on_first_use_equal_to_the_device_facts() -> None:
    communities = _generated()
    registry = Registry(communities=communities)
    community = communities[0]
    devices = {d.kind.value: d for d in community.devices}
    door = devices["door_sensor"]
    info = registry.series_info(door.id)
    assert isinstance(info, SubjectInfo)
    assert (info.community, info.grid, info.device_kind, info.model) == (
        community.code,
        door.grid,
        "door_sensor",
        door.model,
    )
    assert registry.series_info(door.id) is info
    assert registry.series_info("nobody") == SubjectInfo()
    # Devices with equal tags answer with one object.
    by_value: dict[SubjectInfo, set[int]] = {}
    for device in community.devices:
        tags = registry.series_info(device.id)
        by_value.setdefault(tags, set()).add(id(tags))
    assert all(len(ids) == 1 for ids in by_value.values())
    assert len(by_value) < len(community.devices)
