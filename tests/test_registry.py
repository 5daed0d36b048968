"""The community registry: validation with precise errors, YAML/CSV import and export, idempotence."""

from __future__ import annotations

import dataclasses
from collections import Counter
from pathlib import Path

import orjson
import pytest
import yaml

from hub.community.files import CsvKind, dump_csv, dump_yaml, load_yaml, merge_rows, parse_csv, parse_yaml
from hub.community.model import Community
from hub.community.registry import Registry, spot_beyond
from hub.errors import RegistryError
from hub.records import UnassignedDevice
from hub.storage.store import Store
from simulators.community import generate
from tests.helpers import COMMUNITY, GRID, REGISTRY, SOS_BUTTON


@pytest.fixture
def communities() -> tuple[Community, ...]:
    return parse_yaml(REGISTRY, file="helpers")


def test_registry_resolves_subjects_and_locations(communities: tuple[Community, ...]) -> None:
    registry = Registry(communities=communities)
    subject = registry.subject(SOS_BUTTON)
    assert (subject.grid, subject.community, subject.kind.value if subject.kind else None) == (
        GRID,
        COMMUNITY,
        "sos_button",
    )
    assert (
        subject.attributes["resident.living_alone"] is True
        and subject.attributes["resident.aged_80_plus"] is True
    )
    location = registry.location(SOS_BUTTON)
    assert location is not None and location.building is not None and location.household is not None
    assert (location.building.name, location.household.room) == ("3号楼", "401")
    assert registry.subject("lane-b-1").attributes["place.kind"] == "fire_lane"
    assert registry.device_profile(SOS_BUTTON) == "TS0215A"
    assert not registry.subject("nobody").known


def test_every_lookup_by_device_id_answers_from_the_one_table(communities: tuple[Community, ...]) -> None:
    """Devices, kinds, profiles, series tags and subjects agree: the device record is held by
    its subject (``Subject.record``), the series tags too once asked for (``Subject.memo``)."""
    registry = Registry(communities=communities)
    devices = [d for c in communities for d in c.devices]
    assert registry.devices() == devices, "every device, in the file's order"
    for device in devices:
        subject = registry.subject(device.id)
        assert registry.device(device.id) is device is subject.record
        assert registry.device_kind(device.id) is device.kind
        assert subject.memo is None, "tags are made on first use"
        tags = registry.series_info(device.id)
        assert tags.grid == device.grid and tags.device_kind == device.kind.value
        assert registry.series_info(device.id) is tags is subject.memo is registry.series_of(subject)
    assert registry.devices_per_grid() == Counter(d.grid for d in devices)
    assert registry.device("nobody") is None and registry.device_kind("nobody") is None
    assert registry.series_info("nobody").grid == "" and registry.subject("nobody").record is None
    assert registry.series_of(registry.subject("nobody")) is registry.series_info("nobody")
    assert registry.subject(SOS_BUTTON) == dataclasses.replace(registry.subject(SOS_BUTTON), record=None), (
        "the record is not a fact rules compare"
    )


def test_unassigned_devices_are_noted_once(communities: tuple[Community, ...]) -> None:
    registry = Registry(communities=communities, unassigned=[UnassignedDevice("old", "zigbee2mqtt", 1.0)])
    assert registry.note_unassigned("old", "zigbee2mqtt", 5.0) is None
    assert registry.note_unassigned(SOS_BUTTON, "zigbee2mqtt", 5.0) is None
    first = registry.note_unassigned("new", "zigbee2mqtt", 5.0)
    assert first == UnassignedDevice("new", "zigbee2mqtt", 5.0)
    assert registry.note_unassigned("new", "zigbee2mqtt", 6.0) is None


@pytest.mark.parametrize(
    ("change", "field", "message"),
    [
        (
            ("110105001001001", "11010500100100"),
            "communities[110105001001].grids[11010500100100].code",
            "15-digit DB11",
        ),
        (
            (
                'grid: "110105001001001", household: b3-u2-401',
                'grid: "110105001001009", household: b3-u2-401',
            ),
            "communities[110105001001]",
            "unknown grid 110105001001009",
        ),
        (
            ("kind: sos_button, model: HS1EB", "kind: panic_button, model: HS1EB"),
            "communities[110105001001].devices[heiman-1].kind",
            "Input should be",
        ),
        (("age: 83", "age: 200"), "communities[110105001001].residents[r1].age", "less than or equal"),
        # An unknown field of a record reads as a model's did (pydantic words it otherwise).
        (
            ("kind: sos_button, model: HS1EB", "kind: sos_button, colour: red, model: HS1EB"),
            "communities[110105001001].devices[heiman-1].colour",
            "Extra inputs are not permitted",
        ),
        (
            ("age: 83", "age: 83\n        hobby: chess"),
            "communities[110105001001].residents[r1].hobby",
            "Extra inputs",
        ),
        (('code: "110105001"', 'code: "110106001"'), "communities[110105001001]", "not inside street"),
    ],
)
def test_yaml_errors_name_file_and_field(
    tmp_path: Path, change: tuple[str, str], field: str, message: str
) -> None:
    path = tmp_path / "community.yaml"
    text = REGISTRY.replace(*change, 1)
    assert text != REGISTRY, change
    path.write_text(text, encoding="utf-8")
    with pytest.raises(RegistryError) as info:
        load_yaml(path)
    assert info.value.file == str(path)
    assert info.value.field == field
    assert message in str(info.value)


@pytest.mark.parametrize(
    ("written", "refused"),
    [
        (r'"heiman\0-1"', "'\\x00'"),
        (r'"heiman\t1"', "'\\t'"),
        (r'"heiman\x851"', "'\\x85'"),
        ('"heiman+1"', "'+'"),
        ('"heiman/#"', "'#'"),
    ],
)
def test_a_device_id_no_topic_can_carry_is_refused(tmp_path: Path, written: str, refused: str) -> None:
    """U+0000, controls and MQTT's wildcards: no message can name such a device [MQTT-1.5.3-2],
    [MQTT-4.7.1-1], and U+0000 would be cut short in the rule state's keys (SQLite JSON)."""
    path = tmp_path / "community.yaml"
    text = REGISTRY.replace("id: heiman-1,", f"id: {written},", 1)
    assert text != REGISTRY
    path.write_text(text, encoding="utf-8")
    with pytest.raises(RegistryError) as info:
        load_yaml(path)
    assert info.value.field is not None and info.value.field.endswith(".id")
    assert f"holds {refused}" in str(info.value)


def test_a_device_id_as_gateways_name_devices_is_kept(tmp_path: Path) -> None:
    """Zigbee2MQTT friendly names may have spaces, ``/`` and Chinese: all publishable, all kept."""
    name = "3号楼 2单元/401 一键通"
    path = tmp_path / "community.yaml"
    path.write_text(REGISTRY.replace("id: heiman-1,", f'id: "{name}",', 1), encoding="utf-8")
    registry = Registry(communities=load_yaml(path))
    device = registry.device(name)
    assert device is not None and device.kind.value == "sos_button"
    assert registry.device("heiman-1") is None


def test_yaml_round_trip(communities: tuple[Community, ...]) -> None:
    assert parse_yaml(dump_yaml(communities), file="export") == communities


def test_import_is_idempotent_and_updates_in_place(
    tmp_path: Path, communities: tuple[Community, ...]
) -> None:
    store = Store(path=tmp_path / "s.sqlite3")
    assert store.save_communities(communities, at=1.0) == 1
    assert store.save_communities(communities, at=2.0) == 0
    renamed = parse_yaml(REGISTRY.replace("幸福里社区", "幸福里社区(新)"), file="v2")
    assert store.save_communities(renamed, at=3.0) == 1
    (stored,) = store.communities()
    assert stored.name == "幸福里社区(新)" and stored.devices == communities[0].devices


def test_registering_a_device_removes_it_from_unassigned(
    tmp_path: Path, communities: tuple[Community, ...]
) -> None:
    store = Store(path=tmp_path / "s.sqlite3")
    store.add_unassigned(UnassignedDevice(SOS_BUTTON, "zigbee2mqtt", 1.0))
    store.add_unassigned(UnassignedDevice("stranger", "zigbee2mqtt", 2.0))
    store.save_communities(communities, at=3.0)
    assert [d.id for d in store.unassigned()] == ["stranger"]


DEVICES_CSV = """community,id,kind,model,grid,location,heartbeat_s,installed
110105001001,door-1,door_sensor,MCCGQ11LM,110105001001001,3号楼2单元401 入户门,1800,2026-03-01
110105001001,new-door,door_sensor,MCCGQ11LM,110105001001002,5号楼单元门,3600,
"""


def test_csv_devices_update_in_place_and_append(communities: tuple[Community, ...]) -> None:
    kind, rows = parse_csv(DEVICES_CSV, file="devices.csv")
    assert kind is CsvKind.DEVICES and [n for n, _, _ in rows] == [2, 3]
    merged = merge_rows({c.code: c for c in communities}, kind, rows, file="devices.csv")[COMMUNITY]
    devices = {d.id: d for d in merged.devices}
    assert devices["door-1"].heartbeat_s == 1800 and devices["door-1"].installed is not None
    assert devices["new-door"].grid == "110105001001002"
    assert len(merged.devices) == len(communities[0].devices) + 1
    again = merge_rows({COMMUNITY: merged}, kind, rows, file="devices.csv")[COMMUNITY]
    assert again == merged


@pytest.mark.parametrize(
    ("csv_text", "field", "message"),
    [
        (
            "community,id,kind,grid\n110105001001,x,door_sensor,110105001001001\n110105001001,y,lamp,110105001001001\n",
            "row 3: kind",
            "Input should be",
        ),
        ("community,id,kind,grid,colour\n", "colour", "unknown column"),
        ("community,id,kind,grid\n110105001001,y,door_sensor,110105001001009\n", "row 2", "unknown grid"),
        (
            "community,id,kind,grid\n999999999999,y,door_sensor,110105001001001\n",
            "row 2: community",
            "unknown community",
        ),
        (
            "community,id,name,living_alone\n110105001001,r9,张三,perhaps\n",
            "row 2: living_alone",
            "true/false",
        ),
    ],
)
def test_csv_errors_name_file_row_and_field(
    communities: tuple[Community, ...], csv_text: str, field: str, message: str
) -> None:
    with pytest.raises(RegistryError) as info:
        kind, rows = parse_csv(csv_text, file="in.csv")
        merge_rows({c.code: c for c in communities}, kind, rows, file="in.csv")
    assert info.value.file == "in.csv" and info.value.field == field and message in str(info.value)


@pytest.mark.parametrize("kind", list(CsvKind))
def test_csv_round_trip(communities: tuple[Community, ...], kind: CsvKind) -> None:
    parsed_kind, rows = parse_csv(dump_csv(communities, kind), file="export.csv")
    assert parsed_kind is kind
    merged = merge_rows({c.code: c for c in communities}, kind, rows, file="export.csv")
    assert merged[COMMUNITY] == communities[0]


def test_place_label_says_each_part_once() -> None:
    # The simulator writes each elder's device location as "1号楼1单元401 入户门" (the household
    # spelt again plus the spot): the label must not repeat building, unit and room.
    community = generate(seed=1)
    registry = Registry(communities=parse_yaml(yaml.safe_dump(community.document), file="generated"))
    door = next(d for d in community.devices if d.kind == "door_sensor" and d.household is not None)
    location = registry.location(door.id)
    assert location is not None and location.building and location.unit and location.household
    room = location.household.room
    label = registry.place_label(door.id)
    assert label == f"{location.grid.name} {location.building.name} {location.unit.name} {room} 入户门"
    assert label.count(room) == 1 and label.count(location.building.name) == 1
    sos = next(d for d in community.devices if d.kind == "sos_button" and d.household == door.household)
    assert registry.place_label(sos.id).endswith(f" {room}"), "a location that only repeats adds nothing"
    space = next(d for d in community.devices if d.place_kind == "parking_space")
    assert registry.place_label(space.id).split().count(str(space.location)) == 1


def test_spot_beyond_keeps_what_the_parts_do_not_say() -> None:
    assert spot_beyond("3号楼2单元401 卧室", ["第1网格", "3号楼", "2单元", "401"]) == "卧室"
    assert spot_beyond("卧室床头", ["第1网格", "3号楼", "2单元", "401"]) == "卧室床头"
    # Room 40 is not the start of room 401.
    assert spot_beyond("401 卧室", ["40"]) == "401 卧室"
    assert spot_beyond("", ["第1网格"]) == ""


def test_a_registry_file_in_json_reads_as_the_same_yaml(communities: tuple[Community, ...]) -> None:
    """JSON is YAML: a large generated file comes as JSON and is read by a JSON parser; flow
    YAML that is not strict JSON, and broken input, still go through the YAML loader."""
    yaml_text = dump_yaml(communities)
    doc = yaml.safe_load(yaml_text)
    as_json = "# generated\n\n" + orjson.dumps(doc, option=orjson.OPT_INDENT_2).decode()
    assert parse_yaml(as_json, file="big.yaml") == communities
    flow = yaml.safe_dump(doc, default_flow_style=True, allow_unicode=True)
    assert flow.startswith("{communities:")  # unquoted keys: not JSON
    assert parse_yaml(flow, file="flow.yaml") == communities
    doc["communities"][0]["grids"][0]["code"] = "12345"
    with pytest.raises(RegistryError) as bad:
        parse_yaml(orjson.dumps(doc).decode(), file="big.yaml")
    assert "15-digit" in str(bad.value) and "grids" in str(bad.value)
    with pytest.raises(RegistryError, match="not valid YAML"):
        parse_yaml('{"communities": [', file="big.yaml")


def test_a_door_speaks_for_its_household_s_resident_only_when_one_lives_there(
    communities: tuple[Community, ...],
) -> None:
    """A door sensor names a household, not a person: the living-alone rules may read its sole
    resident's facts. With two or three residents the door is nobody's in particular."""
    assert Registry(communities=communities).subject("door-1").fact("resident.id") == "r1"
    [community] = communities
    spouse = dataclasses.replace(community.residents[0], id="r2", name="张建国", living_alone=False)
    for residents in ((spouse,), (spouse, dataclasses.replace(spouse, id="r3"))):
        shared = community.model_copy(update={"residents": (*community.residents, *residents)})
        registry = Registry(communities=[shared])
        door = registry.subject("door-1")
        assert door.known and door.fact("resident.id") is None, len(residents)
        assert "resident.living_alone" not in door.attributes
        assert registry.subject(SOS_BUTTON).fact("resident.id") == "r1"  # named, not inferred
        location = registry.location("door-1")
        assert (
            location is not None
            and location.community is registry.communities[0]
            and location.household is not None
        )


def test_every_device_is_located_in_the_building_unit_and_household_that_list_it() -> None:
    """The household's unit and building are looked up, not kept as a tuple per household
    (3.2 MB at 50 000 households): each device's location is still where the grids list its
    household, its own or its resident's."""
    (community,) = generate(
        seed=2, grids=2, buildings_per_grid=3, elders_per_building=4, parking_per_grid=1
    ).communities
    model = Community.model_validate(community)
    registry = Registry(communities=[model])
    where = {h.id: (b, u, h) for g in model.grids for b in g.buildings for u in b.units for h in u.households}
    residents = {r.id: r for r in model.residents}
    located = 0
    for device in model.devices:
        location = registry.location(device.id)
        assert location is not None
        home = device.household
        if home is None and device.resident is not None:
            home = residents[device.resident].household
        if home is None:
            assert (location.building, location.unit, location.household) == (None, None, None)
            continue
        building, unit, household = where[home]
        assert location.building is building and location.unit is unit and location.household is household
        located += 1
    assert located > len(model.devices) // 2


def test_a_resident_id_two_communities_register_never_fails_a_location() -> None:
    """Started with ``strict=False`` (the hub does, and reports the clash), a device may resolve
    its resident to the other community's, whose household its own community does not have:
    its location then has no household, and its series tags and label are still made."""
    first = """
version: 1
communities:
  - code: "110105001001"
    name: 甲社区
    grids:
      - code: "110105001001001"
        name: 第一网格
        buildings: [{id: b1, name: 1号楼, units: [{id: b1-u1, name: 1单元, households: [{id: h-a, room: "101"}]}]}]
    residents: [{id: r-x, name: 甲, household: h-a, age: 80}]
    devices: [{id: d-a, kind: sos_button, model: TS0215A, grid: "110105001001001", resident: r-x}]
"""
    second = """
version: 1
communities:
  - code: "110105001002"
    name: 乙社区
    grids:
      - code: "110105001002001"
        name: 第一网格
        buildings: [{id: b2, name: 2号楼, units: [{id: b2-u1, name: 1单元, households: [{id: h-b, room: "201"}]}]}]
    residents: [{id: r-x, name: 乙, household: h-b, age: 70}]
    devices: [{id: d-b, kind: sos_button, model: TS0215A, grid: "110105001002001", resident: r-x}]
"""
    # Two files, each valid alone: one file with both is refused before the registry is built.
    communities = (*parse_yaml(first, file="first"), *parse_yaml(second, file="second"))
    registry = Registry(communities=communities, strict=False)
    assert registry.shared, "the clash is reported"
    for device, community in (("d-a", "110105001001"), ("d-b", "110105001002")):
        location = registry.location(device)
        assert location is not None and location.community.code == community
        assert registry.series_info(device).community == community
        assert registry.place_label(device).startswith("第一网格")
    located = registry.location("d-b")
    assert located is not None and located.household is not None and located.household.room == "201"
    assert registry.location("d-a") is not None and registry.location("d-a").household is None  # type: ignore[union-attr]


def test_a_device_s_page_shows_its_location_as_text(communities: tuple[Community, ...]) -> None:
    from hub.ingest.device_state import DeviceStates  # noqa: PLC0415
    from hub.web.views import device_json  # noqa: PLC0415

    registry = Registry(communities=communities)
    device = registry.device(SOS_BUTTON)
    assert device is not None and device.location  # held packed
    shown = device_json(registry, DeviceStates(), SOS_BUTTON, now=0.0)
    assert shown is not None and shown["location"] == device.location_text
    assert type(shown["location"]) is str and shown["location"] == device.location.decode()
    hidden = device_json(registry, DeviceStates(), SOS_BUTTON, now=0.0, locations=False)
    assert hidden is not None and hidden["location"] is None
