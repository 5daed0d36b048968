"""The evaluator's per-subject steps (threshold rules grouped, absence periods bound) decide
exactly what the rules decide one by one: same signals in the same order, same slots, but for
a threshold group's followers, which keep a slot only while raised.

The reference below is the evaluator's loop before the steps were specialised: every candidate
rule, its own engine call with a fresh context, its period resolved per event.
"""

from __future__ import annotations

import gc
import random
import tracemalloc
from typing import Any

import pytest

from adapters.events import DeviceKind, Event, EventKind
from rules import Evaluator, MemoryState, Signal, Subject, load_packs
from rules.overrides import OverrideConfig
from rules.triggers import EventContext
from rules.triggers.base import Step, event_identity
from rules.triggers.threshold import _inline_field

GRID, COMMUNITY = "110105001001001", "110105001001"
T0 = 1_800_000_000.0


def _reference(evaluator: Evaluator, state: MemoryState, event: Event, subject: Subject) -> list[Signal]:
    signals: list[Signal] = []
    for c in evaluator.candidates(event.kind, subject):
        if c.condition is not None and not c.condition.test(event, subject):
            continue
        active = c.active is None or c.active.contains(event.ts)
        ctx = EventContext.of(event, subject, state)
        signals.extend(
            c.engine.on_event(c.rule, c.trigger_for(subject), ctx, active, (c.rule.id, subject.device_id))
        )
    return signals


def _stream(rng: random.Random, device: str, n: int) -> list[Event]:
    """Battery reports wandering across the four thresholds and their clear levels, with the
    other events of each report, redeliveries, same-time different values and late events."""
    events: list[Event] = []
    ts, pct, volts = T0, 50.0, 3.0
    for _ in range(n):
        roll = rng.random()
        if roll < 0.08 and events:
            events.extend(events[-rng.randrange(1, min(4, len(events)) + 1) :])  # redelivered
            continue
        if roll < 0.12:
            ts_now = ts - rng.uniform(1, 600)  # late
        elif roll < 0.16:
            ts_now = ts  # same time, another value
        else:
            ts = ts_now = ts + rng.choice([5.0, 60.0, 900.0, 5000.0])
        pct = min(100.0, max(0.0, pct + rng.uniform(-12, 12)))
        volts = min(3.3, max(2.0, volts + rng.uniform(-0.25, 0.25)))
        value: object = pct if rng.random() < 0.9 else int(pct)
        attrs: dict[str, object] = {"volts": volts} if rng.random() < 0.85 else {}
        if rng.random() < 0.05:
            attrs["volts"] = "n/a"  # not a number: ignored by the volts rules only
        events.append(
            Event(
                device,
                EventKind.DOOR_OPEN if rng.random() < 0.5 else EventKind.DOOR_CLOSED,
                ts_now,
                "test",
                None,
                {},
            )
        )
        events.append(Event(device, EventKind.BATTERY, ts_now, "test", value, attrs))  # type: ignore[arg-type]
        events.append(Event(device, EventKind.SIGNAL, ts_now, "test", float(rng.randrange(255)), {}))
    return events


SUBJECTS = [
    Subject(
        "door-1",
        DeviceKind.DOOR_SENSOR,
        GRID,
        COMMUNITY,
        {"device.heartbeat_s": 3600, "place.kind": "entrance"},
    ),
    # No heartbeat: the offline rule has no period for it and never acts.
    Subject("door-2", DeviceKind.DOOR_SENSOR, GRID, COMMUNITY, {"resident.id": "r1"}),
    Subject("stranger", None, None, None, {}),
]
OVERRIDES: OverrideConfig = {
    "device.battery_low_volts": {f"grid:{GRID}": {"below": 2.5, "clear_above": 2.9}},
    "device.offline": {f"community:{COMMUNITY}": {"for_heartbeats": 3}},
}


@pytest.mark.parametrize("overrides", [None, OVERRIDES], ids=["packs", "overrides"])
@pytest.mark.parametrize("seed", [1, 2, 3])
def test_grouped_and_bound_steps_decide_as_the_rules_one_by_one(
    seed: int, overrides: OverrideConfig | None
) -> None:
    rules = load_packs()
    rng = random.Random(seed)
    new_state, old_state = MemoryState(), MemoryState()
    evaluator = Evaluator(rules=rules, state=new_state, zone="Asia/Shanghai", overrides=overrides)
    reference = Evaluator(rules=rules, state=old_state, zone="Asia/Shanghai", overrides=overrides)
    now = T0
    evaluator.start(SUBJECTS, now)
    reference.start(SUBJECTS, now)
    raised = followers_raised = 0
    for subject in SUBJECTS:
        for event in _stream(rng, subject.device_id, 400):
            got = evaluator.on_event(event, subject)
            want = _reference(reference, old_state, event, subject)
            assert got == want, event
            raised += sum(1 for s in got if s.action.value == "raise")
            followers_raised += sum(1 for s in got if s.action.value == "raise" and s.rule_id in FOLLOWERS)
            if event.ts > now:
                now = event.ts
                assert evaluator.due(now) == reference.due(now)
            assert new_state.drain_dirty() == old_state.drain_dirty()
            assert _without_idle_followers(new_state.snapshot()) == _without_idle_followers(
                old_state.snapshot()
            )
    new, old = new_state.snapshot(), old_state.snapshot()
    assert _without_idle_followers(new)["slots"] == sorted(
        new["slots"], key=lambda row: (row["rule"], row["subject"])
    )
    assert len(new["slots"]) < len(old["slots"])  # the followers' idle slots are not kept
    assert raised > 0  # the walk did cross the thresholds
    assert followers_raised > 0  # ...with a follower's own slot, and its guard copied into it


#: The battery rules after the first (device.battery_low_volts), whose guard they share: followers.
FOLLOWERS = frozenset(
    {"device.battery_critical_volts", "device.battery_low_percent", "device.battery_critical_percent"}
)


def _without_idle_followers(snapshot: dict[str, Any]) -> dict[str, Any]:
    """The snapshot without the followers' slots that hold no raised alert."""
    slots = [row for row in snapshot["slots"] if row["rule"] not in FOLLOWERS or row["state"].get("raised")]
    return {**snapshot, "slots": sorted(slots, key=lambda row: (row["rule"], row["subject"]))}


def test_a_report_meets_one_grouped_threshold_step() -> None:
    evaluator = Evaluator(rules=load_packs(), state=MemoryState())
    steps = evaluator.plan(EventKind.BATTERY, SUBJECTS[0])
    names = [type(step[0]).__name__ for step in steps]
    assert names.count("ThresholdGroup") == 1
    assert "ThresholdEngine" not in names
    assert "AbsenceStep" in names
    # Without a heartbeat the offline rule is not a step at all.
    assert "AbsenceStep" not in [type(s[0]).__name__ for s in evaluator.plan(EventKind.BATTERY, SUBJECTS[1])]


def test_a_changed_period_moves_the_deadline_even_within_one_report() -> None:
    # A reload that changes the offline period between two events of one report: the second
    # event must move the deadline to the new period (the shortcut applies only when it stands).
    rules = load_packs()
    subject = SUBJECTS[0]
    states = MemoryState(), MemoryState()
    new, old = (Evaluator(rules=rules, state=s, zone="Asia/Shanghai") for s in states)
    first = Event(subject.device_id, EventKind.DOOR_OPEN, T0, "test", None, {})
    second = Event(subject.device_id, EventKind.SIGNAL, T0, "test", 80.0, {})
    assert new.on_event(first, subject) == _reference(old, states[1], first, subject)
    for evaluator in (new, old):
        evaluator.reload(rules, OVERRIDES)
    assert new.on_event(second, subject) == _reference(old, states[1], second, subject)
    assert states[0].drain_dirty() == states[1].drain_dirty()
    assert states[0].snapshot() == states[1].snapshot()
    assert states[0].get(("device.offline", subject.device_id)).due == T0 + 3 * 3600  # type: ignore[union-attr]


def _door(device: str, *, heartbeat: float = 3600, resident: str | None = None) -> Subject:
    attributes: dict[str, object] = {"device.heartbeat_s": heartbeat, "place.kind": "entrance"}
    if resident is not None:
        attributes["resident.id"] = resident
    return Subject(device, DeviceKind.DOOR_SENSOR, GRID, COMMUNITY, attributes)  # type: ignore[arg-type]


def test_devices_of_one_shape_share_one_plan_and_keep_their_own_state() -> None:
    # 10⁵ devices must not hold a plan each (memory); sharing must not share their slots.
    overrides: OverrideConfig = {
        "device.battery_low_percent": {"resident:r9": {"below": 40, "clear_above": 45}}
    }
    evaluator = Evaluator(rules=load_packs(), state=MemoryState(), zone="Asia/Shanghai", overrides=overrides)
    a, b = _door("door-a"), _door("door-b")
    slower = _door("door-c", heartbeat=7200)
    own_override = _door("door-d", resident="r9")
    plan = evaluator.plan(EventKind.BATTERY, a)
    assert evaluator.plan(EventKind.BATTERY, b) is plan
    assert evaluator.plan(EventKind.BATTERY, slower) is not plan  # another offline period
    assert evaluator.plan(EventKind.BATTERY, own_override) is not plan  # another trigger
    assert evaluator.plan(EventKind.BATTERY, _door("door-e", resident="r1")) is plan  # no override for r1
    assert evaluator.plan(EventKind.DOOR_OPEN, a) is not plan


def test_a_new_subject_object_for_a_device_is_planned_anew_for_every_kind() -> None:
    # A new registry hands out new subjects: each kind's plan must follow the new one, also the
    # kinds planned after another kind already saw it (the memo keeps one subject per device).
    evaluator = Evaluator(rules=load_packs(), state=MemoryState(), zone="Asia/Shanghai")
    kinds = (EventKind.BATTERY, EventKind.DOOR_OPEN, EventKind.HEARTBEAT)
    hourly = {kind: evaluator.plan(kind, _door("door-a")) for kind in kinds}
    twice_an_hour = {kind: evaluator.plan(kind, _door("door-b", heartbeat=1800)) for kind in kinds}
    assert all(hourly[kind] is not twice_an_hour[kind] for kind in kinds)  # another offline period
    moved = _door("door-a", heartbeat=1800)
    for kind in kinds:
        assert evaluator.plan(kind, moved) is twice_an_hour[kind], kind
    back = _door("door-a")
    assert evaluator.plan(EventKind.HEARTBEAT, back) is hourly[EventKind.HEARTBEAT]
    assert evaluator.plan(EventKind.BATTERY, back) is hourly[EventKind.BATTERY]
    assert evaluator.plan(EventKind.DOOR_OPEN, back) is hourly[EventKind.DOOR_OPEN]


def test_the_plan_memo_keeps_no_collector_tracked_object_per_device() -> None:
    # A full collection walks every tracked object: at 10⁵ reporting devices a (subject, steps)
    # pair per device and kind was 3 × 10⁵ of them (docs/benchmarks.md, "Twentieth pass").
    evaluator = Evaluator(rules=load_packs(), state=MemoryState(), zone="Asia/Shanghai")
    kinds = (EventKind.BATTERY, EventKind.SIGNAL, EventKind.DOOR_OPEN)
    evaluator.plan(EventKind.BATTERY, _door("door-warm"))  # the shapes, built once
    subjects = [_door(f"door-{i}") for i in range(3_000)]
    gc.collect()
    before = len(gc.get_objects())
    for subject in subjects:
        for kind in kinds:
            evaluator.plan(kind, subject)
    gc.collect()
    grown = len(gc.get_objects()) - before
    assert grown < 1_000, f"{grown} tracked objects more for {len(subjects)} devices' plans"
    assert all(
        evaluator.plan(kind, s) is evaluator.plan(kind, subjects[0]) for s in subjects for kind in kinds
    )


def test_devices_of_one_profile_share_one_plan_table_and_the_memo_keeps_nothing_per_device() -> None:
    # The memo per device and event kind was ≈ 15 MB at 10⁵ reporting devices (≈ 0.3 KB a
    # device here before): a subject now points at the table of its profile, and planning more
    # devices of a known profile allocates nothing that stays.
    evaluator = Evaluator(rules=load_packs(), state=MemoryState(), zone="Asia/Shanghai")
    kinds = (EventKind.BATTERY, EventKind.SIGNAL, EventKind.DOOR_OPEN, EventKind.HEARTBEAT)
    warm = _door("door-warm")
    for kind in kinds:
        evaluator.plan(kind, warm)
    subjects = [_door(f"door-{i}") for i in range(3_000)]
    gc.collect()
    tracemalloc.start()
    try:
        for subject in subjects:
            for kind in kinds:
                evaluator.plan(kind, subject)
        kept, _ = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert kept < 16_000, f"{kept} bytes kept for {len(subjects)} devices' plans"
    assert warm.plans is not None
    assert all(s.plans is warm.plans for s in subjects)


def test_a_subject_s_plan_table_serves_only_the_rule_set_that_made_it() -> None:
    # Subjects are the registry's and outlive a reload; another evaluator may plan them too.
    overrides: OverrideConfig = {
        "device.battery_low_percent": {"resident:r9": {"below": 40, "clear_above": 45}}
    }
    plain = Evaluator(rules=load_packs(), state=MemoryState(), zone="Asia/Shanghai")
    other = Evaluator(rules=load_packs(), state=MemoryState(), zone="Asia/Shanghai", overrides=overrides)
    subject = _door("door-d", resident="r9")
    mine = plain.plan(EventKind.BATTERY, subject)
    theirs = other.plan(EventKind.BATTERY, subject)
    assert theirs is not mine  # another trigger
    assert plain.plan(EventKind.BATTERY, subject) is mine
    plain.reload(load_packs(), overrides)
    assert plain.plan(EventKind.BATTERY, subject) is not mine
    assert [s[2] for s in plain.plan(EventKind.BATTERY, subject)] == [s[2] for s in theirs]


@pytest.mark.parametrize("seed", [4, 5])
def test_interleaved_devices_sharing_a_plan_decide_as_the_rules_one_by_one(seed: int) -> None:
    rules = load_packs()
    rng = random.Random(seed)
    subjects = [_door(f"door-{i}") for i in range(4)] + [_door("door-slow", heartbeat=600)]
    new_state, old_state = MemoryState(), MemoryState()
    evaluator = Evaluator(rules=rules, state=new_state, zone="Asia/Shanghai", overrides=OVERRIDES)
    reference = Evaluator(rules=rules, state=old_state, zone="Asia/Shanghai", overrides=OVERRIDES)
    evaluator.start(subjects, T0)
    reference.start(subjects, T0)
    streams = [(s, _stream(rng, s.device_id, 150)) for s in subjects]
    merged = sorted(
        (
            (event.ts, i, n, subject, event)
            for i, (subject, events) in enumerate(streams)
            for n, event in enumerate(events)
        ),
        key=lambda item: (item[0], item[1], item[2]),
    )
    raised = 0
    now = T0
    for ts, _, _, subject, event in merged:
        got = evaluator.on_event(event, subject)
        assert got == _reference(reference, old_state, event, subject), event
        raised += sum(1 for s in got if s.action.value == "raise")
        if ts > now:
            now = ts
            assert evaluator.due(now) == reference.due(now)
    assert _without_idle_followers(new_state.snapshot()) == _without_idle_followers(old_state.snapshot())
    assert raised > 0
    # Each device kept its own slots (one offline slot each, with its own deadline).
    offline = {key[1] for key in new_state.slot_keys() if key[0] == "device.offline"}
    assert offline == {s.device_id for s in subjects}


def _battery(subject: Subject, ts: float, percent: float) -> Event:
    return Event(subject.device_id, EventKind.BATTERY, ts, "test", percent, {})


def _actions(signals: list[Signal]) -> list[tuple[str, str]]:
    return [(s.rule_id, s.action.value) for s in signals]


def test_a_follower_raised_takes_its_leader_s_guard_and_leaves_no_slot_once_cleared() -> None:
    subject = SUBJECTS[0]
    state = MemoryState()
    evaluator = Evaluator(rules=load_packs(), state=state, zone="Asia/Shanghai")
    critical = ("device.battery_critical_percent", subject.device_id)
    low = ("device.battery_low_percent", subject.device_id)
    assert evaluator.on_event(_battery(subject, T0, 50.0), subject) == []
    # The leader reads another field (attrs.volts), which this event lacks: its guard moves on.
    leader = state.get(("device.battery_low_volts", subject.device_id))
    assert leader is not None and leader.last_ts == T0 and leader.value is None
    assert not state.has(critical) and not state.has(low)  # a routine reading: followers keep nothing
    # Another value at the same time: new for both rules, and both raise.
    assert _actions(evaluator.on_event(_battery(subject, T0, 5.0), subject)) == [
        ("device.battery_low_percent", "raise"),
        ("device.battery_critical_percent", "raise"),
    ]
    slot = state.get(critical)
    assert slot is not None and slot.raised and slot.last_ts == T0
    assert slot.seen == ("battery|50.0", "battery|5.0")  # the leader's guard, then this reading
    # The first reading redelivered is the same event for the follower too: no clear at 50 %.
    assert evaluator.on_event(_battery(subject, T0, 50.0), subject) == []
    assert _actions(evaluator.on_event(_battery(subject, T0 + 60, 40.0), subject)) == [
        ("device.battery_low_percent", "clear"),
        ("device.battery_critical_percent", "clear"),
    ]
    assert not state.has(critical) and not state.has(low)
    assert {critical, low} <= state.drain_dirty()  # the store forgets them too
    # A late reading is late for the follower as for its leader, slot or not.
    assert evaluator.on_event(_battery(subject, T0 + 30, 5.0), subject) == []
    assert not state.has(critical) and not state.has(low)


def test_an_event_without_the_leader_s_field_still_makes_an_older_one_late() -> None:
    # The guard is per kinds, not per field: a reading of another field is the newest battery
    # event all the same. One rule alone (no group) decides the same way.
    subject = SUBJECTS[0]
    for rules in (load_packs(), [r for r in load_packs() if r.id == "device.battery_low_volts"]):
        state = MemoryState()
        evaluator = Evaluator(rules=rules, state=state, zone="Asia/Shanghai")
        volts = Event(subject.device_id, EventKind.BATTERY, T0, "test", 50.0, {"volts": 2.9})
        assert evaluator.on_event(volts, subject) == []
        assert evaluator.on_event(_battery(subject, T0 + 60, 50.0), subject) == []  # no volts
        late_low = Event(subject.device_id, EventKind.BATTERY, T0 + 30, "test", 50.0, {"volts": 2.2})
        assert evaluator.on_event(late_low, subject) == [], "older than the newest battery event"
        newer_low = Event(subject.device_id, EventKind.BATTERY, T0 + 90, "test", 50.0, {"volts": 2.2})
        assert ("device.battery_low_volts", "raise") in _actions(evaluator.on_event(newer_low, subject))


def test_a_follower_s_idle_slot_of_before_is_deleted_at_its_next_reading() -> None:
    # State written before followers kept no idle slot: a non-raised slot per rule.
    subject = SUBJECTS[0]
    critical = ("device.battery_critical_percent", subject.device_id)
    low = ("device.battery_low_percent", subject.device_id)
    old = {"trigger": "threshold", "last_ts": T0, "seen": ["battery|50.0"], "value": 50.0}
    state = MemoryState.restore_rows([(*low, dict(old)), (*critical, dict(old))])
    evaluator = Evaluator(rules=load_packs(), state=state, zone="Asia/Shanghai")
    assert evaluator.on_event(_battery(subject, T0 - 5, 5.0), subject) == []  # late for both
    assert evaluator.on_event(_battery(subject, T0 + 60, 45.0), subject) == []
    assert not state.has(critical) and not state.has(low)  # followers of the volts rule now
    assert {critical, low} <= state.drain_dirty()
    slot = state.get(("device.battery_low_volts", subject.device_id))
    assert slot is not None and slot.last_ts == T0 + 60


def test_a_late_reading_stays_late_for_followers_whose_leader_has_no_slot_yet() -> None:
    # Rule state of the version before: the percent rule led the percent followers, and the
    # volts rule (the leader now) never had a slot for a device that reports no volts. A late
    # low reading must not raise the critical rule through a fresh, unguarded slot.
    subject = SUBJECTS[0]
    low = ("device.battery_low_percent", subject.device_id)
    old = {"trigger": "threshold", "last_ts": T0 + 60, "seen": ["battery|90.0"], "value": 90.0}
    state = MemoryState.restore_rows([(*low, dict(old))])
    evaluator = Evaluator(rules=load_packs(), state=state, zone="Asia/Shanghai")
    assert evaluator.on_event(_battery(subject, T0, 4.0), subject) == []
    assert not state.has(("device.battery_critical_percent", subject.device_id))
    # The old slot is gone now, its guard handed to the leader: still late, for every rule.
    assert not state.has(low)
    assert evaluator.on_event(_battery(subject, T0 + 30, 4.0), subject) == []
    later = _actions(evaluator.on_event(_battery(subject, T0 + 120, 4.0), subject))
    assert later == [("device.battery_low_percent", "raise"), ("device.battery_critical_percent", "raise")]


def test_a_remembered_identity_is_the_event_s_own() -> None:
    # The evaluator remembers identities per (kind, value type, value). Equal values of other
    # types (1, 1.0, True) or of another sign (0.0, -0.0) must keep identities of their own, as
    # the redelivery guard compares them; each is the interned string event_identity gives.
    state = MemoryState()
    evaluator = Evaluator(rules=load_packs(), state=state, zone="Asia/Shanghai")
    subject = SUBJECTS[0]
    key = ("device.offline", subject.device_id)  # every kind moves it: its slot keeps the identity
    values: list[object] = [1, 1.0, True, 1, 0.0, -0.0, 0.0, -0.0, 0, False, None, float("nan"), "1", 1.0]
    for i, value in enumerate(values):
        event = Event(subject.device_id, EventKind.BATTERY, T0 + i, "test", value, {})  # type: ignore[arg-type]
        evaluator.on_event(event, subject)
        slot = state.get(key)
        assert slot is not None
        assert slot.seen == event_identity(event), value
        assert slot.seen is event_identity(event), value


def test_each_event_s_steps_see_that_event_also_after_a_step_raised() -> None:
    # The evaluator hands its steps one context, set anew for each event: a step must see the
    # event it is called for, whatever the previous event did (here: a step that raised).
    evaluator = Evaluator(rules=load_packs(), state=MemoryState(), zone="Asia/Shanghai")
    a, b = SUBJECTS[0], _door("door-b")
    seen: list[tuple[Event, Subject, float, str]] = []

    class Recorder(Step):  # a pure-Python step, also on the compiled build (its base admits one)
        def on_event(
            self, rule: Any, trigger: Any, ctx: EventContext, active: bool, key: Any
        ) -> list[Signal]:
            seen.append((ctx.event, ctx.subject, ctx.ts, ctx.ident))
            if ctx.event.value == 13.0:
                raise RuntimeError("a step that failed")
            return []

    recorder = Recorder()

    for subject in (a, b):
        (_, rule, trigger, condition, active, rule_id), *rest = evaluator.plan(EventKind.BATTERY, subject)
        table = subject.plans  # the plan table of the subject's profile, as plan() left it
        assert table is not None
        table.steps[EventKind.BATTERY] = ((recorder, rule, trigger, condition, active, rule_id), *rest)
    first = Event(a.device_id, EventKind.BATTERY, T0, "test", 13.0, {})
    second = Event(b.device_id, EventKind.BATTERY, T0 + 1, "test", 80.0, {"volts": 3.0})
    with pytest.raises(RuntimeError):
        evaluator.on_event(first, a)
    evaluator.on_event(second, b)
    assert seen == [
        (first, a, T0, event_identity(first)),
        (second, b, T0 + 1, event_identity(second)),
    ]


def test_a_group_reads_value_and_attrs_fields_inline_and_others_through_their_getter() -> None:
    # ThresholdGroup reads ``value`` and ``attrs.<key>`` itself (the rules' field pattern allows
    # only those); anything else would still go through the field's getter.
    assert _inline_field("value") == (None, None)
    assert _inline_field("attrs.volts") == ("volts", None)
    key, getter = _inline_field("subject.grid")
    assert key is None and getter is not None
    assert getter(None, SUBJECTS[0]) == GRID


def test_a_report_s_slots_hold_one_object_of_its_time_and_the_event_s_own_values() -> None:
    # Compiled, a time or a reading stored from a C double was a new float object per slot:
    # 32 bytes each, ≈ 7 a reporting device (docs/benchmarks.md, "Twenty-ninth pass"). The
    # rules read them by value; this holds the identity, which is what memory is made of.
    state = MemoryState()
    evaluator = Evaluator(rules=load_packs(), state=state, zone="Asia/Shanghai")
    subject = SUBJECTS[0]
    ts = T0 + 61.5
    percent, volts = 47.5, 3.05
    report = [
        Event("door-1", EventKind.BATTERY, ts, "test", percent, {"volts": volts}),
        Event("door-1", EventKind.SIGNAL, ts, "test", 120.0, {}),
        Event("door-1", EventKind.HEARTBEAT, ts, "test", None, {}),
    ]
    # The caller's object of the report's time (the device state's): the slots keep that one.
    stamp = float(f"{ts}")
    for event in report:
        evaluator.on_event(event, subject, stamp)
    slots = {rule: state.get((rule, "door-1")) for rule, _ in state.slot_keys()}
    assert {"device.offline", "device.battery_low_volts"} <= slots.keys()
    assert "device.battery_low_percent" not in slots  # a follower of the volts rule: no idle slot
    times = [slot.last_ts for slot in slots.values() if slot is not None]
    assert all(t == ts for t in times)
    assert len({id(t) for t in times}) == 1, "every slot of the report holds the same time object"
    assert times[0] is stamp, "the caller's, not one of the rules' own"
    offline = slots["device.offline"]
    assert offline is not None
    assert offline.since is times[0]
    assert offline.queued_due is offline.due
    low_volts = slots["device.battery_low_volts"]
    assert low_volts is not None
    assert low_volts.value is report[0].attrs["volts"]
    # The next report, routine for every slot (the grouped step's inline path): the same again.
    later = [Event("door-1", EventKind.BATTERY, ts + 60.0, "test", 46.5, {"volts": 3.04})]
    evaluator.on_event(later[0], subject)
    again = [state.get(("device.battery_low_volts", "door-1")), state.get(("device.offline", "door-1"))]
    assert again[0] is not None and again[1] is not None
    assert again[0].last_ts is again[1].last_ts == ts + 60.0
    assert again[0].value is later[0].attrs["volts"]
