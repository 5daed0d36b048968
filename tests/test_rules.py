"""The rule model and loader (errors naming file, rule and field) and the shipped SOS rule."""

from __future__ import annotations

from pathlib import Path

import pytest

from adapters.events import DeviceKind, Event, EventKind
from rules import Evaluator, MemoryState, SignalAction, Subject, load_packs
from rules.errors import RuleError
from rules.loader import BUILTIN_PACKS
from rules.model import parse_duration
from rules.overrides import compile_overrides

T0 = 1_800_000_000.0


def sos(device: str = "btn-1", ts: float = T0, press: str = "emergency") -> Event:
    return Event(device, EventKind.SOS_PRESS, ts, "zigbee2mqtt", press, {"press": press})


def test_builtin_packs_load_and_contain_the_sos_rule() -> None:
    rules = {r.id: r for r in load_packs()}
    assert rules["elderly.sos"].severity.value == "critical"
    assert rules["elderly.sos"].category == "sos"


def test_sos_raises_for_known_and_unknown_devices() -> None:
    evaluator = Evaluator(rules=load_packs(), state=MemoryState())
    known = Subject("btn-1", DeviceKind.SOS_BUTTON, "110105001001001", "110105001001")
    (signal,) = evaluator.on_event(sos(), known)
    assert (signal.action, signal.rule_id, signal.subject, signal.ts) == (
        SignalAction.RAISE,
        "elderly.sos",
        "btn-1",
        T0,
    )
    assert signal.trace["event"] == {
        "kind": "sos_press",
        "family": "zigbee2mqtt",
        "ts": T0,
        "value": "emergency",
        "attrs": {"press": "emergency"},
    }
    (unknown,) = evaluator.on_event(sos("stranger"), Subject("stranger"))
    assert unknown.action is SignalAction.RAISE


def test_repeat_within_merge_window_updates_and_after_it_renotifies() -> None:
    evaluator = Evaluator(rules=load_packs(), state=MemoryState())
    subject = Subject("btn-1")
    assert evaluator.on_event(sos(ts=T0), subject)[0].action is SignalAction.RAISE
    assert evaluator.on_event(sos(ts=T0 + 10), subject)[0].action is SignalAction.UPDATE
    assert evaluator.on_event(sos(ts=T0 + 59), subject)[0].action is SignalAction.UPDATE
    # The window counts from the last notifying press, so a press at +61 s re-notifies.
    assert evaluator.on_event(sos(ts=T0 + 61), subject)[0].action is SignalAction.RAISE
    # Another device is another subject.
    assert evaluator.on_event(sos("btn-2", ts=T0 + 62), Subject("btn-2"))[0].action is SignalAction.RAISE


def test_other_event_kinds_do_not_reach_the_sos_rule() -> None:
    evaluator = Evaluator(rules=load_packs(), state=MemoryState())
    door = Event("d1", EventKind.DOOR_OPEN, T0, "zigbee2mqtt", True)
    assert evaluator.on_event(door, Subject("d1")) == []


def write_pack(tmp_path: Path, body: str) -> Path:
    path = tmp_path / "pack.yaml"
    path.write_text(body)
    return path


def test_scope_and_where_filter(tmp_path: Path) -> None:
    pack = write_pack(
        tmp_path,
        """
pack: t
rules:
  - id: t.long_press
    title: {zh: 长按}
    category: sos
    severity: major
    scope: {device_kinds: [sos_button], attributes: {resident.living_alone: true}}
    trigger: {type: event, kinds: [sos_press], where: {press: long}}
""",
    )
    evaluator = Evaluator(rules=load_packs([pack]), state=MemoryState())
    alone = Subject("b", DeviceKind.SOS_BUTTON, attributes={"resident.living_alone": True})
    not_alone = Subject("c", DeviceKind.SOS_BUTTON, attributes={"resident.living_alone": False})
    assert evaluator.on_event(sos("b", press="long"), alone)
    assert not evaluator.on_event(sos("b", press="single"), alone)
    assert not evaluator.on_event(sos("c", press="long"), not_alone)


@pytest.mark.parametrize(
    ("body", "rule", "field"),
    [
        (
            "pack: t\nrules:\n  - {id: t.a, title: {zh: x}, category: sos, severity: urgent, trigger: {type: event, kinds: [sos_press]}}\n",
            "t.a",
            "severity",
        ),
        (
            "pack: t\nrules:\n  - {id: t.a, title: {zh: x}, category: sos, severity: info, trigger: {type: event, kinds: [sos_pres]}}\n",
            "t.a",
            "trigger.kinds.0",
        ),
        (
            "pack: t\nrules:\n  - {id: t.a, title: {zh: x}, category: sos, severity: info, trigger: {type: event, kinds: [sos_press], merge_window: soon}}\n",
            "t.a",
            "trigger.merge_window",
        ),
        (
            "pack: t\nrules:\n  - {id: t.a, title: {zh: x}, category: sos, severity: info, colour: red, trigger: {type: event, kinds: [sos_press]}}\n",
            "t.a",
            "colour",
        ),
        (
            "pack: t\nrules:\n  - {id: t.a, title: {zh: x}, category: door, severity: info, trigger: {type: duration, when: {kinds: [door_open]}, until: {kinds: [door_closed]}, for: soon}}\n",
            "t.a",
            "trigger.for",
        ),
        (
            "pack: t\nrules:\n  - {id: t.a, title: {zh: x}, category: door, severity: info, trigger: {type: duration, when: {kinds: [door_opn]}, until: {kinds: [door_closed]}, for: 5m}}\n",
            "t.a",
            "trigger.when.kinds.0",
        ),
        (
            "pack: t\nrules:\n  - {id: t.a, title: {zh: x}, category: door, severity: info, trigger: {type: duration, when: {kinds: [door_open], condition: 'value >'}, until: {kinds: [door_closed]}, for: 5m}}\n",
            "t.a",
            "trigger.when.condition",
        ),
        (
            "pack: t\nrules:\n  - {id: t.a, title: {zh: x}, category: door, severity: info, trigger: {type: sometimes, kinds: [door_open]}}\n",
            "t.a",
            "trigger.type",
        ),
        (
            "pack: t\nrules:\n  - {id: t.a, title: {zh: x}, category: door, severity: info, trigger: {kinds: [door_open]}}\n",
            "t.a",
            "trigger.type",
        ),
        (
            "pack: t\nrules:\n  - {id: t.a, title: {zh: x}, category: door, severity: info, condition: \"__import__('os')\", trigger: {type: event, kinds: [door_open]}}\n",
            "t.a",
            "condition",
        ),
        (
            "pack: t\nrules:\n  - {id: t.a, title: {zh: x}, category: door, severity: info, active: [{from: '22:00', to: '26:00'}], trigger: {type: event, kinds: [door_open]}}\n",
            "t.a",
            "active.0.to",
        ),
        (
            "pack: t\nrules:\n  - {id: t.a, title: {zh: x}, category: door, severity: info, trigger: {type: threshold, kinds: [battery], field: attrs.volts, below: 2.6, above: 3}}\n",
            "t.a",
            "trigger",
        ),
        (
            "pack: t\nrules:\n  - {id: t.a, title: {zh: x}, category: door, severity: info, trigger: {type: threshold, kinds: [battery], field: subject.x, below: 2.6}}\n",
            "t.a",
            "trigger.field",
        ),
        (
            "pack: t\nrules:\n  - {id: t.a, title: {zh: x}, category: door, severity: info, trigger: {type: count, kinds: [door_open], count: 0, window: 1h}}\n",
            "t.a",
            "trigger.count",
        ),
        (
            "pack: t\nrules:\n  - {id: t.a, title: {zh: x}, category: door, severity: info, trigger: {type: absence}}\n",
            "t.a",
            "trigger",
        ),
        (
            "pack: t\nrules:\n  - {id: t.ok, title: {zh: x}, category: sos, severity: info, trigger: {type: event, kinds: [sos_press]}}\n  - {title: {zh: x}, category: sos, severity: info, trigger: {type: event, kinds: [sos_press]}}\n",
            "#1",
            "id",
        ),
    ],
)
def test_invalid_pack_errors_name_file_rule_and_field(
    tmp_path: Path, body: str, rule: str, field: str
) -> None:
    path = write_pack(tmp_path, body)
    with pytest.raises(RuleError) as info:
        load_packs([path])
    assert info.value.file == str(path)
    assert info.value.rule == rule
    assert info.value.field == field
    assert str(path) in str(info.value)


def test_duplicate_rule_ids_are_refused(tmp_path: Path) -> None:
    path = write_pack(tmp_path, (BUILTIN_PACKS / "elderly.yaml").read_text())
    with pytest.raises(RuleError, match="duplicate rule id"):
        load_packs([BUILTIN_PACKS, path])


def test_yaml_syntax_error_names_file(tmp_path: Path) -> None:
    path = write_pack(tmp_path, "pack: [unclosed\n")
    with pytest.raises(RuleError, match="not valid YAML") as info:
        load_packs([path])
    assert info.value.file == str(path)


@pytest.mark.parametrize(
    ("text", "seconds"),
    [("90s", 90.0), ("5m", 300.0), ("24h", 86400.0), ("2d", 172800.0), ("250ms", 0.25), (30, 30.0)],
)
def test_durations(text: object, seconds: float) -> None:
    assert parse_duration(text) == seconds


@pytest.mark.parametrize(
    "text", ["5 minutes", "-5m", True, None, float("inf"), float("nan"), 10**400, "9" * 400 + "d", "367d"]
)
def test_bad_durations(text: object) -> None:
    """Found in review: ``.inf`` (or a duration of 400 digits) loaded, and a timer due at inf
    never fires; a 400-digit integer raised OverflowError out of the loader."""
    with pytest.raises(ValueError):
        parse_duration(text)


HOSTILE_HEAD = (
    "pack: p\nrules:\n  - id: a.b\n    title: {zh: x}\n    category: door\n    severity: minor\n"
    "    trigger:\n      type: duration\n      when: {kinds: [door_open]}\n      until: {kinds: [door_closed]}\n"
)


@pytest.mark.parametrize(
    ("text", "says"),
    [
        (HOSTILE_HEAD + "      for: " + "9" * 400 + "\n", "at most 366 days"),
        (HOSTILE_HEAD + "      for: .inf\n", "at most 366 days"),
        ("pack: p\nrules: " + "[" * 5000 + "]" * 5000 + "\n", "nested too deeply"),
        (
            "pack: t\nrules:\n  - {id: t.a, title: {zh: x}, category: door, severity: info,"
            " trigger: {type: threshold, kinds: [battery], field: attrs.volts, below: .nan}}\n",
            "finite",
        ),
        ("pack: t\n" + "#" * 1_000_001 + "\n", "larger than"),
    ],
    ids=["huge-int", "inf", "deep-nesting", "nan-level", "huge-file"],
)
def test_hostile_packs_are_refused_with_a_rule_error(tmp_path: Path, text: str, says: str) -> None:
    path = write_pack(tmp_path, text)
    with pytest.raises(RuleError, match=says) as info:
        load_packs([path])
    assert info.value.file == str(path)


def test_expression_error_message_reaches_the_user(tmp_path: Path) -> None:
    path = write_pack(
        tmp_path,
        "pack: t\nrules:\n  - {id: t.a, title: {zh: x}, category: sos, severity: info,"
        " condition: 'value.__class__ == 1', trigger: {type: event, kinds: [sos_press]}}\n",
    )
    with pytest.raises(RuleError) as info:
        load_packs([path])
    text = str(info.value)
    assert "rule 't.a'" in text and "field 'condition'" in text and "unknown name 'value.__class__'" in text


def test_absence_rules_refuse_active_windows(tmp_path: Path) -> None:
    path = write_pack(
        tmp_path,
        "pack: t\nrules:\n  - {id: t.a, title: {zh: x}, category: care, severity: info,"
        " active: [{from: '00:00', to: '05:00'}], trigger: {type: absence, for: 1h}}\n",
    )
    with pytest.raises(RuleError, match="not supported on absence") as info:
        load_packs([path])
    assert info.value.rule == "t.a"


def test_several_errors_are_counted(tmp_path: Path) -> None:
    path = write_pack(
        tmp_path,
        "pack: t\nrules:\n  - {id: t.a, title: {zh: x}, category: SOS, severity: urgent, trigger: {type: event, kinds: [sos_press]}}\n",
    )
    with pytest.raises(RuleError, match=r"and 1 more error"):
        load_packs([path])


def test_every_builtin_pack_loads_with_unique_ids() -> None:
    rules = load_packs()
    ids = {r.id for r in rules}
    assert len(ids) == len(rules)
    assert {
        "elderly.sos",
        "elderly.service_request",
        "elderly.living_alone_inactive",
        "elderly.night_activity",
        "doors.entrance_held_open",
        "doors.fire_exit_open",
        "parking.fire_lane_occupied",
        "parking.overstay",
        "device.offline",
        "device.battery_low_volts",
        "device.battery_critical_volts",
        "device.battery_low_percent",
        "device.battery_critical_percent",
        "device.tamper",
    } <= ids


@pytest.mark.parametrize(
    ("rule", "fields"),
    [
        ("device.battery_critical_percent", {"below": -5}),  # a percentage below 0 never trips
        ("device.battery_critical_percent", {"clear_above": 150}),  # never clears
        ("device.battery_low_volts", {"below": 0}),  # 0 V never trips (such readings are dropped)
        ("elderly.living_alone_inactive", {"for": "1ms"}),  # an alert after every door event
        ("doors.entrance_held_open", {"renotify": 0.1}),
    ],
)
def test_an_override_that_would_silence_or_flood_its_rule_is_refused(
    rule: str, fields: dict[str, object]
) -> None:
    """Found in review: these were taken as given, for a grid, without a word."""
    rules = {r.id: r for r in load_packs([BUILTIN_PACKS])}
    assert rule in rules
    with pytest.raises(RuleError):
        compile_overrides(rules, {rule: {"grid:110105001001001": fields}})
