"""The five trigger types, one by one: semantics, hysteresis, renotify, first observations,
idempotent redelivery, late events and overrides."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from adapters.events import DeviceKind, Event, EventKind
from rules import Evaluator, MemoryState, Signal, SignalAction, Subject, load_packs
from rules.errors import RuleError
from rules.model import Rule
from rules.triggers.base import event_identity

T0 = 1_800_000_000.0
R, U, C = SignalAction.RAISE, SignalAction.UPDATE, SignalAction.CLEAR
GRID, COMMUNITY = "110105001001001", "110105001001"


def rules_from(tmp_path: Path, body: str) -> list[Rule]:
    path = tmp_path / "pack.yaml"
    path.write_text("pack: t\nrules:\n" + body)
    return load_packs([path])


def make(tmp_path: Path, body: str, **kwargs: object) -> Evaluator:
    return Evaluator(rules=rules_from(tmp_path, body), state=MemoryState(), **kwargs)  # type: ignore[arg-type]


def e(kind: EventKind, ts: float, value: object = None, device: str = "d1", **attrs: object) -> Event:
    return Event(device, kind, ts, "test", value, attrs)  # type: ignore[arg-type]


def acts(signals: list[Signal]) -> list[tuple[str, str, float]]:
    return [(s.action.value, s.subject, s.ts) for s in signals]


DOOR = Subject("d1", DeviceKind.DOOR_SENSOR, GRID, COMMUNITY, {"place.kind": "entrance", "resident.id": "r1"})

DURATION = """
  - id: t.held
    title: {zh: 门未关}
    category: door
    severity: minor
    trigger:
      type: duration
      when: {kinds: [door_open]}
      until: {kinds: [door_closed]}
      for: 5m
      renotify: 10m
"""


# -- event ------------------------------------------------------------------------------------

EVENT = """
  - id: t.tamper
    title: {zh: 拆动}
    category: maintenance
    severity: major
    trigger: {type: event, kinds: [tamper], value: true, merge_window: 60s}
"""


def test_event_merge_window_and_renotify(tmp_path: Path) -> None:
    ev = make(tmp_path, EVENT)
    assert acts(ev.on_event(e(EventKind.TAMPER, T0, True), DOOR)) == [("raise", "d1", T0)]
    assert acts(ev.on_event(e(EventKind.TAMPER, T0 + 30, True), DOOR)) == [("update", "d1", T0 + 30)]
    assert ev.on_event(e(EventKind.TAMPER, T0 + 40, False), DOOR) == []  # value must be true
    assert acts(ev.on_event(e(EventKind.TAMPER, T0 + 61, True), DOOR)) == [("raise", "d1", T0 + 61)]


def test_event_redelivery_is_silent_and_changes_nothing(tmp_path: Path) -> None:
    state = MemoryState()
    ev = Evaluator(rules=rules_from(tmp_path, EVENT), state=state)
    ev.on_event(e(EventKind.TAMPER, T0, True), DOOR)
    before = state.snapshot()
    state.drain_dirty()
    assert ev.on_event(e(EventKind.TAMPER, T0, True), DOOR) == []
    assert state.snapshot() == before
    assert state.drain_dirty() == set()


def test_event_late_event_is_an_update_and_does_not_move_state_back(tmp_path: Path) -> None:
    state = MemoryState()
    ev = Evaluator(rules=rules_from(tmp_path, EVENT), state=state)
    ev.on_event(e(EventKind.TAMPER, T0 + 100, True), DOOR)
    before = state.snapshot()
    (late,) = ev.on_event(e(EventKind.TAMPER, T0, True), DOOR)
    assert late.action is U and late.trace["late"] is True
    assert state.snapshot() == before
    # The merge window still counts from the newest notify.
    assert acts(ev.on_event(e(EventKind.TAMPER, T0 + 150, True), DOOR)) == [("update", "d1", T0 + 150)]


def test_event_trace_and_key(tmp_path: Path) -> None:
    ev = make(tmp_path, EVENT)
    (s,) = ev.on_event(e(EventKind.TAMPER, T0, True, code="x"), DOOR)
    assert s.trace["rule"] == "t.tamper" and s.trace["trigger"] == "event"
    assert s.trace["event"] == {
        "kind": "tamper",
        "family": "test",
        "ts": T0,
        "value": True,
        "attrs": {"code": "x"},
    }
    assert s.trace["params"] == {"merge_window": 60.0}
    assert s.key == s.trace["key"] and s.key.startswith("t.tamper|d1|event|tamper|")
    json.dumps(s.trace)


# -- duration ---------------------------------------------------------------------------------


def test_duration_raise_renotify_clear(tmp_path: Path) -> None:
    ev = make(tmp_path, DURATION)
    assert ev.on_event(e(EventKind.DOOR_OPEN, T0, True), DOOR) == []
    assert ev.next_due() == T0 + 300
    assert ev.due(T0 + 299) == []
    (first,) = ev.due(T0 + 300)
    assert (first.action, first.ts) == (R, T0 + 300)
    assert first.trace["due"] == T0 + 300 and first.trace["since"] == T0
    assert first.trace["params"] == {"for": 300.0, "renotify": 600.0}
    assert first.trace["events"][0]["kind"] == "door_open"  # type: ignore[index]
    assert ev.due(T0 + 300) == []  # exactly once
    assert ev.next_due() == T0 + 900
    (again,) = ev.due(T0 + 900)
    assert (again.action, again.ts, again.trace["renotify"]) == (R, T0 + 900, 1)
    assert again.key != first.key
    (clear,) = ev.on_event(e(EventKind.DOOR_CLOSED, T0 + 1000, False), DOOR)
    assert (clear.action, clear.ts, clear.trace["held_s"]) == (C, T0 + 1000, 1000)
    assert ev.next_due() is None
    assert ev.due(T0 + 10_000) == []


def test_duration_hysteresis_only_until_ends_it(tmp_path: Path) -> None:
    body = """
  - id: t.lane
    title: {zh: 占用}
    category: parking
    severity: major
    trigger:
      type: duration
      when: {kinds: [distance], condition: "value < 500"}
      until: {kinds: [distance], condition: "value > 1500"}
      for: 1m
"""
    ev = make(tmp_path, body)
    subject = Subject("d1")
    ev.on_event(e(EventKind.DISTANCE, T0, 400.0), subject)
    ev.on_event(e(EventKind.DISTANCE, T0 + 20, 900.0), subject)  # between levels: still held
    assert acts(ev.due(T0 + 60)) == [("raise", "d1", T0 + 60)]
    assert ev.on_event(e(EventKind.DISTANCE, T0 + 70, 1200.0), subject) == []
    assert acts(ev.on_event(e(EventKind.DISTANCE, T0 + 80, 1600.0), subject)) == [("clear", "d1", T0 + 80)]


def test_duration_ended_before_due_never_raises_and_first_until_does_nothing(tmp_path: Path) -> None:
    ev = make(tmp_path, DURATION)
    assert ev.on_event(e(EventKind.DOOR_CLOSED, T0, False), DOOR) == []  # first seen closed
    ev.on_event(e(EventKind.DOOR_OPEN, T0 + 10, True), DOOR)
    assert ev.on_event(e(EventKind.DOOR_CLOSED, T0 + 100, False), DOOR) == []
    assert ev.due(T0 + 10_000) == []


def test_duration_until_cancels_an_overdue_timer_without_raising(tmp_path: Path) -> None:
    ev = make(tmp_path, DURATION)
    ev.on_event(e(EventKind.DOOR_OPEN, T0, True), DOOR)
    # The hub was down; the closing happened after the due time but is fed before due().
    assert ev.on_event(e(EventKind.DOOR_CLOSED, T0 + 400, False), DOOR) == []
    assert ev.due(T0 + 1000) == []


def test_duration_repeated_when_does_not_restart_the_clock(tmp_path: Path) -> None:
    ev = make(tmp_path, DURATION)
    ev.on_event(e(EventKind.DOOR_OPEN, T0, True), DOOR)
    ev.on_event(e(EventKind.DOOR_OPEN, T0 + 200, True), DOOR)
    assert acts(ev.due(T0 + 300)) == [("raise", "d1", T0 + 300)]


def test_duration_late_until_does_not_undo_newer_state(tmp_path: Path) -> None:
    ev = make(tmp_path, DURATION)
    ev.on_event(e(EventKind.DOOR_CLOSED, T0, False), DOOR)
    ev.on_event(e(EventKind.DOOR_OPEN, T0 + 100, True), DOOR)
    assert ev.on_event(e(EventKind.DOOR_CLOSED, T0 + 50, False), DOOR) == []  # older: ignored
    assert acts(ev.due(T0 + 400)) == [("raise", "d1", T0 + 400)]


def test_duration_renotify_after_long_downtime_fires_once_on_cadence(tmp_path: Path) -> None:
    ev = make(tmp_path, DURATION)
    ev.on_event(e(EventKind.DOOR_OPEN, T0, True), DOOR)
    assert acts(ev.due(T0 + 3600)) == [("raise", "d1", T0 + 300)]
    assert ev.due(T0 + 3600) == []
    assert ev.next_due() == T0 + 300 + 600 * 6  # 3900: the first cadence point after now


def test_duration_active_window_gates_the_start_only(tmp_path: Path) -> None:
    body = DURATION.replace("    trigger:", '    active: [{from: "22:00", to: "06:00"}]\n    trigger:')
    ev = make(tmp_path, body)  # Asia/Shanghai
    day = T0  # 2027-01-15 16:00 +08:00 — outside
    assert ev.on_event(e(EventKind.DOOR_OPEN, day, True), DOOR) == []
    assert ev.next_due() is None
    night = T0 + 7 * 3600  # 23:00 — inside
    ev.on_event(e(EventKind.DOOR_OPEN, night, True), DOOR)
    # The timer fires at 23:05 and the closing is honoured whatever the time.
    assert ev.next_due() == night + 300
    ev.on_event(e(EventKind.DOOR_CLOSED, night + 60, False), DOOR)
    assert ev.next_due() is None


# -- absence ----------------------------------------------------------------------------------

ABSENCE = """
  - id: t.quiet
    title: {zh: 无活动}
    category: care
    severity: major
    scope: {device_kinds: [door_sensor], attributes: {resident.living_alone: true}}
    trigger: {type: absence, kinds: [door_open], for: 24h}
"""
ALONE = Subject(
    "d1", DeviceKind.DOOR_SENSOR, GRID, COMMUNITY, {"resident.living_alone": True, "resident.id": "r1"}
)
FAMILY = Subject("d2", DeviceKind.DOOR_SENSOR, GRID, COMMUNITY, {"resident.living_alone": False})


def test_absence_start_seeds_expected_subjects_in_scope(tmp_path: Path) -> None:
    ev = make(tmp_path, ABSENCE)
    assert ev.start([ALONE, FAMILY], T0) == []
    assert ev.next_due() == T0 + 86400
    (s,) = ev.due(T0 + 86400)
    assert (s.action, s.subject, s.ts) == (R, "d1", T0 + 86400)
    assert s.trace["never_seen"] is True and s.trace["params"] == {"for": 86400.0}
    assert ev.due(T0 + 10 * 86400) == []  # raises once, no renotify


def test_absence_event_moves_deadline_clears_and_rearms(tmp_path: Path) -> None:
    ev = make(tmp_path, ABSENCE)
    ev.start([ALONE], T0)
    ev.on_event(e(EventKind.DOOR_OPEN, T0 + 3600, True), ALONE)
    assert ev.due(T0 + 86400) == []
    assert ev.next_due() == T0 + 3600 + 86400
    assert acts(ev.due(T0 + 3600 + 86400)) == [("raise", "d1", T0 + 3600 + 86400)]
    assert acts(ev.on_event(e(EventKind.DOOR_OPEN, T0 + 200_000, True), ALONE)) == [
        ("clear", "d1", T0 + 200_000)
    ]
    assert ev.next_due() == T0 + 200_000 + 86400
    # Other kinds are not activity for this rule.
    ev.on_event(e(EventKind.DOOR_CLOSED, T0 + 250_000, False), ALONE)
    assert ev.next_due() == T0 + 200_000 + 86400


def test_absence_start_keeps_restored_state_and_drops_unexpected_subjects(tmp_path: Path) -> None:
    state = MemoryState()
    ev = Evaluator(rules=rules_from(tmp_path, ABSENCE), state=state)
    ev.start([ALONE], T0)
    ev.start([ALONE], T0 + 1000)  # a second start does not postpone the deadline
    assert ev.next_due() == T0 + 86400
    ev.start([], T0 + 2000)  # the device left the registry
    assert ev.next_due() is None and len(state) == 0


def test_absence_for_heartbeats_reads_the_subject(tmp_path: Path) -> None:
    body = """
  - id: t.offline
    title: {zh: 离线}
    category: maintenance
    severity: minor
    trigger: {type: absence, for_heartbeats: 2}
"""
    ev = make(tmp_path, body)
    beating = Subject("d1", DeviceKind.DOOR_SENSOR, GRID, COMMUNITY, {"device.heartbeat_s": 300})
    unknown = Subject("x")
    ev.start([beating, unknown], T0)
    assert ev.next_due() == T0 + 600
    ev.on_event(e(EventKind.SIGNAL, T0 + 100, -80), beating)  # any kind counts
    ev.on_event(e(EventKind.HEARTBEAT, T0 + 100, device="x"), unknown)  # no heartbeat known: not watched
    assert acts(ev.due(T0 + 10_000)) == [("raise", "d1", T0 + 700)]


def test_absence_overridden_per_resident(tmp_path: Path) -> None:
    ev = make(
        tmp_path,
        ABSENCE,
        overrides={"t.quiet": {"resident:r1": {"for": "12h"}, "community:" + COMMUNITY: {"for": "48h"}}},
    )
    other = Subject(
        "d3", DeviceKind.DOOR_SENSOR, GRID, COMMUNITY, {"resident.living_alone": True, "resident.id": "r9"}
    )
    ev.start([ALONE, other], T0)
    assert acts(ev.due(T0 + 48 * 3600)) == [("raise", "d1", T0 + 12 * 3600), ("raise", "d3", T0 + 48 * 3600)]


# -- count ------------------------------------------------------------------------------------

COUNT = """
  - id: t.night
    title: {zh: 夜间开门}
    category: care
    severity: minor
    active: [{from: "00:00", to: "05:00"}]
    trigger: {type: count, kinds: [door_open], count: 3, window: 1h, clear: true}
"""
MIDNIGHT = 1_800_028_800.0  # 2027-01-16 00:00 +08:00


def test_count_reaches_n_in_window_raises_once_then_updates_then_clears(tmp_path: Path) -> None:
    ev = make(tmp_path, COUNT)
    out = [ev.on_event(e(EventKind.DOOR_OPEN, MIDNIGHT + 60 * i, True), DOOR) for i in (1, 2, 3, 4)]
    assert [acts(o) for o in out] == [
        [],
        [],
        [("raise", "d1", MIDNIGHT + 180)],
        [("update", "d1", MIDNIGHT + 240)],
    ]
    assert out[2][0].trace["count"] == 3 and len(out[2][0].trace["events"]) == 3  # type: ignore[arg-type]
    assert acts(ev.due(MIDNIGHT + 180 + 3600)) == [("clear", "d1", MIDNIGHT + 3780)]
    # Re-armed: needs three fresh events.
    assert ev.on_event(e(EventKind.DOOR_OPEN, MIDNIGHT + 3800, True), DOOR) == []


def test_count_window_slides(tmp_path: Path) -> None:
    ev = make(tmp_path, COUNT)
    for ts in (0, 1800, 3700, 5400):  # never three within one hour
        assert ev.on_event(e(EventKind.DOOR_OPEN, MIDNIGHT + ts, True), DOOR) == []
    assert acts(ev.on_event(e(EventKind.DOOR_OPEN, MIDNIGHT + 5500, True), DOOR)) == [
        ("raise", "d1", MIDNIGHT + 5500)
    ]


def test_count_ignores_events_outside_active_and_redeliveries(tmp_path: Path) -> None:
    ev = make(tmp_path, COUNT)
    before = MIDNIGHT - 120
    assert ev.on_event(e(EventKind.DOOR_OPEN, before, True), DOOR) == []
    assert ev.on_event(e(EventKind.DOOR_OPEN, before + 60, True), DOOR) == []
    assert ev.on_event(e(EventKind.DOOR_OPEN, MIDNIGHT + 1, True), DOOR) == []
    assert ev.on_event(e(EventKind.DOOR_OPEN, MIDNIGHT + 2, True), DOOR) == []
    assert ev.on_event(e(EventKind.DOOR_OPEN, MIDNIGHT + 2, True), DOOR) == []  # redelivered: not counted
    assert acts(ev.on_event(e(EventKind.DOOR_OPEN, MIDNIGHT + 3, True), DOOR)) == [
        ("raise", "d1", MIDNIGHT + 3)
    ]


# -- threshold --------------------------------------------------------------------------------

VOLTS = """
  - id: t.low
    title: {zh: 电压低}
    category: maintenance
    severity: minor
    trigger: {type: threshold, kinds: [battery], field: attrs.volts, below: 2.6, clear_above: 2.8}
  - id: t.hot
    title: {zh: 高}
    category: maintenance
    severity: minor
    trigger: {type: threshold, kinds: [signal], above: 90}
"""


def volts(ts: float, v: float) -> Event:
    return e(EventKind.BATTERY, ts, None, volts=v)


def test_threshold_first_reading_only_raises_when_past(tmp_path: Path) -> None:
    ev = make(tmp_path, VOLTS)
    assert ev.on_event(volts(T0, 3.0), DOOR) == []
    low = Subject("d9")
    (s,) = ev.on_event(Event("d9", EventKind.BATTERY, T0, "t", None, {"volts": 2.3}), low)
    assert s.action is R and s.trace["value"] == 2.3
    assert s.trace["params"] == {"below": 2.6, "clear_above": 2.8}


def test_threshold_hysteresis(tmp_path: Path) -> None:
    ev = make(tmp_path, VOLTS)
    seq = [
        (2.7, []),
        (2.5, ["raise"]),
        (2.4, []),
        (2.7, []),
        (2.59, []),
        (2.8, ["clear"]),
        (2.7, []),
        (2.5, ["raise"]),
    ]
    for i, (v, want) in enumerate(seq):
        assert [s.action.value for s in ev.on_event(volts(T0 + i, v), DOOR)] == want, (i, v)


def test_threshold_above_and_default_clear_level(tmp_path: Path) -> None:
    ev = make(tmp_path, VOLTS)
    sig = [
        [s.action.value for s in ev.on_event(e(EventKind.SIGNAL, T0 + i, v), DOOR)]
        for i, v in enumerate([80, 95, 91, 90, 95])
    ]
    assert sig == [[], ["raise"], [], ["clear"], ["raise"]]


def test_threshold_ignores_missing_and_non_numeric_fields_and_late_readings(tmp_path: Path) -> None:
    ev = make(tmp_path, VOLTS)
    assert ev.on_event(e(EventKind.BATTERY, T0, 50), DOOR) == []  # percent only: no volts
    assert ev.on_event(e(EventKind.SIGNAL, T0, True), DOOR) == []  # a bool is not a number
    ev.on_event(volts(T0 + 10, 2.9), DOOR)
    assert ev.on_event(volts(T0 + 5, 2.0), DOOR) == []  # older than the newest reading


def test_threshold_override_per_grid(tmp_path: Path) -> None:
    ev = make(tmp_path, VOLTS, overrides={"t.low": {f"grid:{GRID}": {"below": 2.4, "clear_above": 2.5}}})
    assert ev.on_event(volts(T0, 2.5), DOOR) == []
    assert [s.trace["params"] for s in ev.on_event(volts(T0 + 1, 2.3), DOOR)] == [
        {"below": 2.4, "clear_above": 2.5}
    ]


def test_a_device_moved_to_another_grid_is_evaluated_with_that_grids_override(tmp_path: Path) -> None:
    # Rule steps are resolved once per (device, kind) and reused while the registry hands out
    # the same Subject; a reloaded registry hands out a new one, which must be resolved anew.
    ev = make(tmp_path, VOLTS, overrides={"t.low": {f"grid:{GRID}": {"below": 2.4, "clear_above": 2.5}}})
    elsewhere = Subject("d1", DeviceKind.DOOR_SENSOR, "other-grid", COMMUNITY, {})
    assert ev.on_event(volts(T0, 2.5), DOOR) == []  # 2.4 in GRID
    assert ev.on_event(volts(T0 + 1, 2.5), DOOR) == []  # the same Subject again: same steps
    raised = ev.on_event(volts(T0 + 2, 2.5), elsewhere)  # the pack's 2.6 applies there
    assert [(s.action, s.trace["params"]) for s in raised] == [(R, {"below": 2.6, "clear_above": 2.8})]


@pytest.mark.parametrize(
    ("overrides", "field"),
    [
        ({"nope": {"grid:1": {"below": 1}}}, ""),
        ({"t.low": {"street:1": {"below": 1}}}, ""),
        ({"t.low": {"grid:1": {"kinds": ["sos_press"]}}}, "grid:1.kinds"),
        ({"t.low": {"grid:1": {"for": "5m"}}}, "grid:1.for"),
        ({"t.low": {"grid:1": {"clear_above": 1.0}}}, "grid:1"),
        ({"t.low": {"grid:1": {"below": "low"}}}, "grid:1.below"),
    ],
)
def test_bad_overrides_are_rule_errors(tmp_path: Path, overrides: dict[str, object], field: str) -> None:
    with pytest.raises(RuleError) as info:
        make(tmp_path, VOLTS, overrides=overrides)
    assert info.value.file == "overrides"
    assert info.value.field == field


# -- reload -----------------------------------------------------------------------------------


def test_reload_keeps_state_of_surviving_rules_and_drops_the_rest(tmp_path: Path) -> None:
    state = MemoryState()
    ev = Evaluator(rules=rules_from(tmp_path, DURATION + EVENT), state=state)
    ev.on_event(e(EventKind.DOOR_OPEN, T0, True), DOOR)
    ev.on_event(e(EventKind.TAMPER, T0, True), DOOR)
    assert {k[0] for k in state.slot_keys()} == {"t.held", "t.tamper"}
    # t.held keeps its id and type (with a new `for`); t.tamper is gone.
    ev.reload(rules_from(tmp_path, DURATION.replace("for: 5m", "for: 1m")))
    assert {k[0] for k in state.slot_keys()} == {"t.held"}
    assert acts(ev.due(T0 + 300)) == [("raise", "d1", T0 + 300)]  # a running timer keeps its start value
    # Same id, different trigger type: state dropped.
    ev.reload(rules_from(tmp_path, EVENT.replace("t.tamper", "t.held")))
    assert state.slot_keys() == [] and ev.next_due() is None


def test_reload_with_bad_overrides_keeps_old_rules(tmp_path: Path) -> None:
    ev = make(tmp_path, EVENT)
    with pytest.raises(RuleError):
        ev.reload(rules_from(tmp_path, EVENT), overrides={"t.missing": {}})
    assert [r.id for r in ev.rules] == ["t.tamper"]
    assert ev.on_event(e(EventKind.TAMPER, T0, True), DOOR)


# -- scope and indexing -----------------------------------------------------------------------


def test_scope_by_device_kind_grid_community_and_attributes(tmp_path: Path) -> None:
    body = EVENT.replace(
        "    trigger:",
        f"    scope: {{device_kinds: [door_sensor], grids: ['{GRID}'], communities: ['{COMMUNITY}'], attributes: {{place.kind: entrance}}}}\n    trigger:",
    )
    ev = make(tmp_path, body)
    tamper = e(EventKind.TAMPER, T0, True)
    assert ev.on_event(tamper, DOOR)
    for other in (
        Subject("d1", DeviceKind.SOS_BUTTON, GRID, COMMUNITY, {"place.kind": "entrance"}),
        Subject("d1", DeviceKind.DOOR_SENSOR, "110105001001002", COMMUNITY, {"place.kind": "entrance"}),
        Subject("d1", DeviceKind.DOOR_SENSOR, GRID, COMMUNITY, {"place.kind": "fire_exit"}),
        Subject("d1"),
    ):
        assert ev.on_event(e(EventKind.TAMPER, T0 + 100, True), other) == []


def test_rule_condition_filters_events(tmp_path: Path) -> None:
    body = EVENT.replace(
        "    trigger:",
        "    condition: \"subject.resident.id != null and attrs.code != 'test'\"\n    trigger:",
    )
    ev = make(tmp_path, body)
    assert ev.on_event(e(EventKind.TAMPER, T0, True, code="test"), DOOR) == []
    assert ev.on_event(e(EventKind.TAMPER, T0 + 1, True, code="real"), DOOR)
    assert ev.on_event(e(EventKind.TAMPER, T0 + 2, True), Subject("d1")) == []


def test_candidates_are_only_rules_that_can_match(tmp_path: Path) -> None:
    ev = Evaluator(rules=load_packs(), state=MemoryState())
    sos = ev.candidates(EventKind.SOS_PRESS, Subject("b"))
    assert {c.rule.id for c in sos} == {"elderly.sos", "device.offline"}
    door = Subject("d", DeviceKind.DOOR_SENSOR, GRID, COMMUNITY)
    assert "parking.fire_lane_occupied" not in {c.rule.id for c in ev.candidates(EventKind.OCCUPANCY, door)}


def test_disabled_rules_are_not_evaluated(tmp_path: Path) -> None:
    ev = make(tmp_path, EVENT.replace("    trigger:", "    enabled: false\n    trigger:"))
    assert ev.on_event(e(EventKind.TAMPER, T0, True), DOOR) == []
    assert ev.rules == ()


def test_equal_event_identities_are_one_object() -> None:
    # Slots keep their last event's identity: at 10⁵ devices equal ones must not be a string each.
    first = event_identity(Event("d1", EventKind.BATTERY, 1.0, "zigbee2mqtt", float("80")))
    again = event_identity(Event("d2", EventKind.BATTERY, 2.0, "zigbee2mqtt", float("80")))
    assert first == "battery|80.0" and first is again
    assert event_identity(Event("d1", EventKind.BATTERY, 1.0, "zigbee2mqtt", 80)) == "battery|80"
