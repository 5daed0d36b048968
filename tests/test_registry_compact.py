"""State at scale: the registry read back from the store shares equal strings and fields sets,
and series tags, and nobody can tell (same values, same dumps, copies apart).

Memory itself is measured by the ``scale`` bench (docs/benchmarks.md), never here.
"""

from __future__ import annotations

import gc
from collections.abc import Iterator

import pytest
import yaml

from hub.community.compact import collector_paused, share_field_sets, share_strings
from hub.community.files import parse_yaml
from hub.community.model import Community, Device
from hub.community.registry import Registry
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
    # One grid code and one fields set for all of them, not one each.
    assert first.grid == second.grid and first.grid is second.grid
    assert first.__pydantic_fields_set__ is second.__pydantic_fields_set__
    # The models parsed from the file keep their own (nothing shared before the store).
    assert (
        original[0].devices[0].__pydantic_fields_set__ is not original[0].devices[1].__pydantic_fields_set__
    )


def test_a_copy_with_an_update_leaves_the_shared_fields_set_alone(store: Store) -> None:
    store.save_communities(_generated(), at=T0)
    [back] = store.communities()
    first, second = back.devices[0], back.devices[1]
    shared = set(first.model_fields_set)
    changed = first.model_copy(update={"profile": "custom"})
    assert changed.profile == "custom" and "profile" in changed.model_fields_set
    assert first.model_fields_set == shared and second.model_fields_set == shared
    assert changed.model_fields_set is not first.model_fields_set


def test_share_strings_keeps_long_text_and_structure() -> None:
    memo: dict[str, str] = {}
    code = "".join(["110105001", "001001"])
    same = "".join(["1101050010", "01001"])
    long_note = "x" * 200
    doc = share_strings({"a": [code, {"b": same, "n": 3, "t": True, "note": long_note}]}, memo)
    assert doc == {"a": [code, {"b": same, "n": 3, "t": True, "note": long_note}]}
    assert doc["a"][1]["b"] is code
    assert long_note not in memo


def test_share_field_sets_only_joins_equal_sets_of_one_class() -> None:
    shared: dict[tuple[type, frozenset[str]], set[str]] = {}
    a = Device.model_validate({"id": "a", "kind": "sos_button", "grid": "110105001001001"})
    b = Device.model_validate({"id": "b", "kind": "door_sensor", "grid": "110105001001001"})
    c = Device.model_validate({"id": "c", "kind": "door_sensor", "grid": "110105001001001", "model": "m"})
    for model in (a, b, c):
        share_field_sets(model, shared)
    assert a.model_fields_set is b.model_fields_set
    assert c.model_fields_set == {"id", "kind", "grid", "model"}
    assert c.model_fields_set is not a.model_fields_set


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
