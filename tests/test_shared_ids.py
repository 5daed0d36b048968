"""A device or resident id belongs to one community, wherever communities are loaded.

The registry answers an id with one subject: with ``lnl-sos-0001`` in communities A and B,
the later one kept it and A's own press on ``linli/<A>/devices/lnl-sos-0001/events`` was
quarantined as ``community_mismatch`` — A's SOS lost. The community file, an import next to
communities the store already holds (YAML, CSV, the CLI) and the registry itself refuse it;
the hub's start on a store written before these checks still starts, and says so.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson
import pytest
from click.testing import CliRunner

from hub.app import registry_from_store
from hub.cli import main
from hub.community.files import parse_yaml
from hub.community.model import Community
from hub.community.registry import Registry
from hub.config import Settings
from hub.errors import RegistryError
from hub.storage.store import Store
from simulators.district import generate_district

A, B = "110105001001", "110105001002"
SOS = "lnl-sos-0001"


def community(code: str, *, devices: list[str], residents: tuple[str, ...] = ()) -> dict[str, Any]:
    grid = f"{code}001"
    return {
        "code": code,
        "name": f"社区{code[-1]}",
        "grids": [{"code": grid, "name": "第一网格"}],
        "residents": [{"id": r, "name": "王奶奶"} for r in residents],
        "devices": [{"id": d, "kind": "sos_button", "grid": grid} for d in devices],
    }


def document(*communities: dict[str, Any]) -> str:
    return json.dumps({"communities": list(communities)})


def load(*communities: dict[str, Any]) -> tuple[Community, ...]:
    return parse_yaml(document(*communities), file="district.yaml")


@pytest.fixture
def store(store_url: str) -> Iterator[Store]:
    opened = Store(url=store_url)
    yield opened
    opened.close()


def test_a_file_with_one_device_id_in_two_communities_is_refused() -> None:
    with pytest.raises(RegistryError) as raised:
        load(community(A, devices=[SOS]), community(B, devices=["lnl-sos-0002", SOS]))
    message = str(raised.value)
    assert "district.yaml" in message and f"device id {SOS}" in message
    assert A in message and B in message


def test_a_file_with_one_resident_id_in_two_communities_is_refused() -> None:
    with pytest.raises(RegistryError, match=f"resident id r1 is registered in communities {A} and {B}"):
        load(community(A, devices=[], residents=("r1",)), community(B, devices=[], residents=("r1",)))


def test_a_long_list_of_shared_ids_is_summed_up() -> None:
    ids = [f"d{i}" for i in range(40)]
    with pytest.raises(RegistryError) as raised:
        load(community(A, devices=ids), community(B, devices=ids))
    assert "and 35 more" in str(raised.value) and len(str(raised.value)) < 1_000


def test_generated_districts_have_district_wide_ids() -> None:
    district = generate_district(communities=3, seed=7)
    communities = parse_yaml(json.dumps(district.document), file="generated")
    assert len(communities) == 3
    Registry(communities=communities)  # strict: would raise on a shared id


def test_an_import_next_to_a_held_community_is_refused(store: Store) -> None:
    """The file holds B alone: only the store knows A has the id; nothing of B is saved."""
    store.save_communities(load(community(A, devices=[SOS])), at=1.0)
    with pytest.raises(RegistryError) as raised:
        store.save_communities(load(community(B, devices=[SOS])), at=2.0, source="b.yaml")
    message = str(raised.value)
    assert message.startswith("b.yaml") and f"device id {SOS}" in message
    assert f"{A} and {B} ({A} is already in the store)" in message
    assert [c.code for c in store.communities()] == [A]

    with pytest.raises(RegistryError, match=f"resident id r1 is registered in communities {A} and {B}"):
        store.save_communities(load(community(A, devices=[SOS], residents=("r1",))), at=3.0)
        store.save_communities(load(community(B, devices=[], residents=("r1",))), at=4.0)


def test_an_import_that_replaces_the_holder_may_move_the_id(store: Store) -> None:
    """A community's own old ids go with it: re-importing A, or moving the id from A to B in one
    import of both, is no clash."""
    store.save_communities(load(community(A, devices=[SOS])), at=1.0)
    assert store.save_communities(load(community(A, devices=[SOS, "lnl-door-1"])), at=2.0) == 1
    moved = load(community(A, devices=["lnl-door-1"]), community(B, devices=[SOS]))
    assert store.save_communities(moved, at=3.0) == 2
    held = {c.code: [d.id for d in c.devices] for c in store.communities()}
    assert held == {A: ["lnl-door-1"], B: [SOS]}


def test_the_cli_import_refuses_a_shared_id(tmp_path: Path) -> None:
    a_file, b_file = tmp_path / "a.yaml", tmp_path / "b.yaml"
    a_file.write_text(document(community(A, devices=[SOS])), encoding="utf-8")
    b_file.write_text(document(community(B, devices=[SOS])), encoding="utf-8")
    data = ["--data-dir", str(tmp_path / "data")]
    runner = CliRunner()
    assert runner.invoke(main, ["community", "import", str(a_file), *data]).exit_code == 0
    result = runner.invoke(main, ["community", "import", str(b_file), *data])
    assert result.exit_code == 1
    assert (
        str(b_file) in result.output
        and f"device id {SOS} is registered in communities {A} and {B}" in result.output
    )
    # The CSV path merges rows into the held communities: the same check applies.
    rows = tmp_path / "b.csv"
    rows.write_text(f"community,id,kind,grid\n{B},{SOS},sos_button,{B}001\n", encoding="utf-8")
    b_only = tmp_path / "b-only.yaml"
    b_only.write_text(document(community(B, devices=[])), encoding="utf-8")
    assert runner.invoke(main, ["community", "import", str(b_only), *data]).exit_code == 0
    result = runner.invoke(main, ["community", "import", str(rows), *data])
    assert result.exit_code == 1 and f"device id {SOS}" in result.output


def test_the_registry_refuses_rather_than_overwrites() -> None:
    a = load(community(A, devices=[SOS]))
    b = load(community(B, devices=[SOS]))
    with pytest.raises(RegistryError, match=f"device id {SOS} is registered in communities {A} and {B}"):
        Registry(communities=[*a, *b])


def test_a_hub_starts_on_a_store_that_already_holds_a_shared_id(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """Written before the checks: refusing to start would lose every community's SOS, so the hub
    starts as before (the later community keeps the id) and logs the clash by name."""
    store = Store(path=tmp_path / "linli.sqlite3")
    for code, at in ((A, 1.0), (B, 2.0)):
        (parsed,) = load(community(code, devices=[SOS, f"other-{code}"]))
        with store.transaction() as db:  # as an older Linli saved them: no check across communities
            db.execute(
                "INSERT INTO communities (code, doc, updated_at) VALUES (?, ?, ?)",
                (code, orjson.dumps(parsed.model_dump(mode="json")), at),
            )
    with caplog.at_level(logging.ERROR, logger="hub.app"):
        registry, refused = registry_from_store(store, Settings(data_dir=tmp_path), at=3.0)
    store.close()
    assert refused is None  # no community file: nothing refused
    assert registry.subject(SOS).community == B
    device = registry.device(SOS)  # the device record is B's too, and listed once
    assert device is not None and device.grid.startswith(B) and device is registry.subject(SOS).record
    assert [d.id for d in registry.devices()].count(SOS) == 1
    assert registry.subject(f"other-{A}").community == A  # the rest of A is served
    assert registry.shared == [f"device id {SOS} is registered in communities {A} and {B}"]
    assert any(f"device id {SOS}" in r.getMessage() and A in r.getMessage() for r in caplog.records)
