"""The rule model, loader and the event trigger of the evaluator."""

from __future__ import annotations

from pathlib import Path

import pytest

from adapters.events import DeviceKind, Event, EventKind
from rules import Evaluator, MemoryState, SignalAction, Subject, load_packs
from rules.errors import RuleError
from rules.loader import BUILTIN_PACKS
from rules.model import parse_duration

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


@pytest.mark.parametrize("text", ["5 minutes", "-5m", True, None])
def test_bad_durations(text: object) -> None:
    with pytest.raises(ValueError):
        parse_duration(text)
