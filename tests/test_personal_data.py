"""Residents' personal data is held packed by the registry and whole only where it is asked for."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from hub.casework.elders import register
from hub.community.files import parse_yaml
from hub.community.model import Community, Contact, Resident, dump_record
from hub.community.personal import PERSONAL_FIELDS, PersonalData
from hub.community.registry import Registry
from hub.storage import community_pack
from hub.storage.community_copies import make_copies
from hub.storage.store import Store
from tests.helpers import COMMUNITY, REGISTRY, SOS_BUTTON

T0 = 1_780_000_000.0


@pytest.fixture
def community() -> Community:
    (parsed,) = parse_yaml(REGISTRY, file="helpers")
    return parsed


def _elsewhere(community: Community, resident: Resident) -> Community:
    """Another community (no grids, devices nor people) registering ``resident``'s id too."""
    return community.model_copy(
        update={"code": "110105001002", "grids": (), "devices": (), "people": (), "residents": (resident,)}
    )


def _odd(resident: Resident) -> Resident:
    """Personal data that JSON must carry exactly: quotes, control characters, emoji, ``None`` ids."""
    return dataclasses.replace(
        resident,
        address='3号楼 "东"\n2单元\\401 \u2028🏠',
        phone="+86 138-1234-5678",
        medical_notes="高血压; 青霉素过敏\x00?",
        emergency_contacts=(
            Contact(id="g-son", name="李明", relation="儿子", phone="13987654321"),
            Contact(name="邻居 老张"),
        ),
    )


def test_the_registry_holds_no_personal_data_and_gives_it_whole_on_request(community: Community) -> None:
    whole = _odd(community.residents[0])
    community = community.model_copy(update={"residents": (whole,)})
    registry = Registry(communities=[community])

    (held,) = registry.communities[0].residents
    assert all(getattr(held, name) == empty for name, empty in PERSONAL_FIELDS.items())
    assert (held.name, held.age, held.living_alone, held.household) == ("王秀英", 83, True, "b3-u2-401")
    # The caller's model is not changed: the registry holds a copy.
    assert community.residents[0] is whole
    # Whole again, field for field, by id, by the held record and by the device.
    assert registry.resident("r1") == whole
    assert dump_record(registry.resident("r1")) == dump_record(whole)
    assert registry.whole(held) == whole
    assert registry.resident_of_device(SOS_BUTTON) == whole
    assert registry.resident("nobody") is None
    # The elder register holds the record without it too; the rule facts are unchanged.
    (entry,) = register(registry)
    assert entry.resident.phone == "" and registry.whole(entry.resident) == whole
    assert registry.subject(SOS_BUTTON).fact("resident.id") == "r1"
    assert registry.subject("door-1").attributes["resident.living_alone"] is True


def test_a_resident_without_personal_data_is_held_as_it_is(community: Community) -> None:
    bare = dataclasses.replace(community.residents[0], address="", phone="", emergency_contacts=())
    community = community.model_copy(update={"residents": (bare,)})
    registry = Registry(communities=[community])
    assert registry.communities[0] is community  # nothing to keep apart: not even a copy
    assert registry.communities[0].residents[0] is bare
    assert registry.resident("r1") is bare


def test_an_id_two_communities_register_keeps_each_its_own_data(community: Community) -> None:
    """``strict=False`` tolerates a resident id two communities register: kept by id, one's data
    would be the other's, so both are held whole."""
    other = _elsewhere(
        community, dataclasses.replace(community.residents[0], household=None, phone="13700000000")
    )
    registry = Registry(communities=[community, other], strict=False)
    assert registry.shared  # the clash is reported
    first, second = (c.residents[0] for c in registry.communities)
    assert (first.phone, second.phone) == ("13812345678", "13700000000")
    assert registry.whole(first).phone == "13812345678"
    assert registry.whole(second).phone == "13700000000"
    assert [c.code for c in registry.communities] == [COMMUNITY, "110105001002"]


def test_personal_data_is_kept_once_per_id_and_a_whole_record_is_left_alone(community: Community) -> None:
    kept = PersonalData()
    whole = _odd(community.residents[0])
    held = kept.keep(whole)
    assert len(kept) == 1 and held != whole and kept.whole(held) == whole
    # Another record of a kept id (another community's, strict=False) is handed back whole.
    other = dataclasses.replace(whole, phone="13600000000")
    assert kept.keep(other) is other and kept.whole(other) is other and len(kept) == 1
    # Released: whole again, and no longer kept (the registry holds those ids' records whole).
    assert kept.release(held) == whole and len(kept) == 0 and kept.whole(held) is held
    # What a build that failed midway kept is dropped, the last kept first.
    kept.keep(whole)
    kept.keep(dataclasses.replace(whole, id="r2"))
    kept.forget_since(1)
    assert len(kept) == 1 and kept.whole(held) == whole


def test_the_store_read_keeps_personal_data_as_it_builds_residents_from_a_copy(
    community: Community, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The start-up copy's columns become residents without personal data: no contact record or
    phone string is made for them, and the registry gives each one whole as a registry built
    from the whole records does."""
    monkeypatch.setattr(community_pack, "WORTH_BYTES", 0)  # the test community is small
    residents = [
        _odd(community.residents[0]),
        dataclasses.replace(community.residents[0], id="r2", phone="", address="", emergency_contacts=()),
        dataclasses.replace(community.residents[0], id="r3", emergency_contacts=()),
    ]
    community = community.model_copy(update={"residents": tuple(residents)})
    store = Store(url=f"sqlite:///{tmp_path / 'store.db'}")
    try:
        store.save_communities([community], at=T0)
        assert make_copies(store) == 1
        personal = PersonalData()
        (read,) = store.communities(personal=personal)
        assert len(personal) == 2  # r2 has none
        assert [r.phone for r in read.residents] == ["", "", ""]
        assert all(r.emergency_contacts == () for r in read.residents)
        registry = Registry(communities=[read], personal=personal)
        assert [registry.resident(r.id) for r in residents] == residents
    finally:
        store.close()


@pytest.mark.parametrize("copied", ["none", "first", "both"])
@pytest.mark.parametrize(("first_has", "second_has"), [(False, True), (True, False), (True, True)])
def test_an_id_two_stored_communities_register_keeps_each_its_own_data(
    community: Community,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    copied: str,
    first_has: bool,
    second_has: bool,
) -> None:
    """The store's read keeps personal data as it builds a copy's residents; an id that a later
    community registers too must then give each community's record its own data back, never
    the other's, whichever has data and whichever was read from a copy (a store written before
    ids were checked across communities: the hub starts on it with ``strict=False``)."""
    monkeypatch.setattr(community_pack, "WORTH_BYTES", 0)
    monkeypatch.setattr(Store, "_refuse_shared_ids", staticmethod(lambda *_, **__: None))
    base = community.residents[0]
    none = dataclasses.replace(base, address="", phone="", emergency_contacts=(), medical_notes="")
    first = community.model_copy(update={"residents": (base if first_has else none,)})
    theirs = dataclasses.replace(
        base,
        household=None,
        phone="13700000000",
        address="另一社区",
        emergency_contacts=(Contact(id="g2", name="另一家", phone="13911112222"),),
    )
    second = _elsewhere(community, theirs if second_has else dataclasses.replace(none, household=None))
    store = Store(url=f"sqlite:///{tmp_path / 'store.db'}")
    try:
        store.save_communities([first], at=T0)
        if copied != "none":
            make_copies(store)
        store.save_communities([second], at=T0 + 1)
        if copied == "both":
            make_copies(store)
        personal = PersonalData()
        registry = Registry(communities=store.communities(personal=personal), strict=False, personal=personal)
    finally:
        store.close()
    assert registry.shared
    held = [c.residents[0] for c in registry.communities]
    assert [registry.whole(r) for r in held] == [first.residents[0], second.residents[0]]
    # The later community keeps the id (Registry): its resident is the one the cases see.
    assert registry.resident(base.id) == second.residents[0]
    originals = {first.code: first.residents[0], second.code: second.residents[0]}
    entries = register(registry)
    assert entries  # the first community's elder (the second's has no household and no device)
    assert all(registry.whole(e.resident) == originals[e.elder.community] for e in entries)
