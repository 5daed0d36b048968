"""Loading device profiles: the shipped files are valid, bad files fail naming file and field."""

from __future__ import annotations

from pathlib import Path

import pytest

from adapters.events import EventKind, NoHints
from adapters.profiles import BUILTIN_PROFILES, ProfileError, load_profiles


def test_builtin_profiles_load_and_are_found_by_name() -> None:
    profiles = load_profiles()
    assert len(profiles) == len(list(BUILTIN_PROFILES.glob("*.yaml")))
    ws301 = profiles.get("milesight-ws301")
    assert ws301 is not None
    assert profiles.get("Milesight WS301") is ws301
    assert profiles.get("ws301") is ws301
    assert profiles.for_tts("Milesight-IoT", "WS301") is ws301
    assert profiles.get("acme-x1") is None


def write(tmp_path: Path, text: str, name: str = "p.yaml") -> Path:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


GOOD = """
version: 1
id: acme-door
vendor: Acme
model: D1
fields:
  - {field: door, type: string, action: door, values: {open: true, shut: false}}
"""


@pytest.mark.parametrize(
    ("text", "needle"),
    [
        (GOOD.replace("action: door", "action: explode"), "fields.0.action"),
        (GOOD.replace("type: string", "type: text"), "fields.0.type"),
        (GOOD + "colour: red\n", "colour"),
        (GOOD.replace("{open: true, shut: false}", "{ON: true, OFF: false}"), "quote YAML keys"),
        (GOOD.replace("{open: true, shut: false}", "{open: maybe}"), "true or false"),
        (GOOD.replace(", values: {open: true, shut: false}", ""), "needs `values`"),
        (GOOD.replace("id: acme-door", "id: Acme Door"), "id"),
        ("version: 1\nid: x\nvendor: A\nmodel: B\nfields: []\n", "fields"),
        ("fields: [1, 2", "cannot read profile"),
        (
            "version: 1\nid: b\nvendor: A\nmodel: B\nfields:\n  - {field: battery, type: number, action: battery}\n",
            "unit",
        ),
        (
            "version: 1\nid: b\nvendor: A\nmodel: B\nfields:\n  - {field: s, type: string, action: press, values: {x: triple}}\n",
            "must be one of",
        ),
    ],
)
def test_invalid_profile_names_file_and_field(tmp_path: Path, text: str, needle: str) -> None:
    path = write(tmp_path, text)
    with pytest.raises(ProfileError) as info:
        load_profiles([path])
    assert str(path) in str(info.value)
    assert needle in str(info.value)


def test_duplicate_ids_and_names_are_rejected(tmp_path: Path) -> None:
    write(tmp_path, GOOD, "a.yaml")
    write(tmp_path, GOOD, "b.yaml")
    with pytest.raises(ProfileError, match="defined twice"):
        load_profiles([tmp_path])
    (tmp_path / "b.yaml").write_text(GOOD.replace("id: acme-door", "id: acme-door-2"), encoding="utf-8")
    with pytest.raises(ProfileError, match="already used"):
        load_profiles([tmp_path])


def test_a_directory_and_a_file_load_together(tmp_path: Path) -> None:
    extra = write(tmp_path, GOOD)
    profiles = load_profiles([BUILTIN_PROFILES, extra])
    assert profiles.get("Acme D1") is not None
    assert profiles.get("milesight-ws101") is not None


@pytest.mark.parametrize(
    ("profile", "decoded", "kept"),
    [
        ("milesight-em300-mld", {"battery": -1}, {}),
        ("milesight-em300-mld", {"battery": 1e300}, {}),
        ("browan-tbdw100", {"status": 1, "battery": -5.0}, {}),
        ("browan-tbdw100", {"status": 1, "battery": 3.6}, {"volts": 3.6}),
    ],
)
def test_impossible_battery_readings_are_dropped_and_named(
    profile: str, decoded: dict[str, object], kept: dict[str, float]
) -> None:
    # A codec's -1 (unknown) used to be a 0 % battery to the rules, 1e300 cleared the alert.
    profiles = load_profiles()
    found = profiles.get(profile)
    assert found is not None
    events = found.apply(
        decoded, device_id="d", ts=1.0, family="ttn_v3", hints=NoHints(), common={}, topic="t"
    )
    (battery,) = [e for e in events if e.kind is EventKind.BATTERY]
    assert battery.value is None
    assert {k: v for k, v in battery.attrs.items() if k == "volts"} == kept
    assert ("implausible" in battery.attrs) is not bool(kept)
