"""The state port: timers, dirty tracking, JSON snapshots, and the hub's restart semantics."""

from __future__ import annotations

import copy
import dataclasses
import json
import random
import sys
from collections.abc import Callable

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from adapters.events import DeviceKind, Event, EventKind
from rules import Evaluator, MemoryState, SignalAction, Slot, Subject, load_packs
from rules.state import NO_PARAMS, STORED_ORDER, Rare

T0 = 1_800_000_000.0
GRID, COMMUNITY = "110105001001001", "110105001001"
ENTRANCE = Subject(
    "door-1", DeviceKind.DOOR_SENSOR, GRID, COMMUNITY, {"place.kind": "entrance", "device.heartbeat_s": 3600}
)


def timer(state: MemoryState, subject: str, due: float | None) -> None:
    state.put(("r", subject), Slot("duration", due=due))


def test_timers_pop_once_in_order_and_honour_cancel_and_postpone() -> None:
    state = MemoryState()
    timer(state, "a", 30)
    timer(state, "b", 10)
    timer(state, "c", 20)
    timer(state, "c", None)  # cancelled
    timer(state, "b", 40)  # postponed (lazy: the old heap entry stays)
    timer(state, "a", 5)  # brought forward
    assert state.next_due() == 5
    assert state.pop_due(25) == [("r", "a")]
    assert state.pop_due(25) == []
    assert state.next_due() == 40
    assert state.pop_due(100) == [("r", "b")]
    assert state.next_due() is None


@given(
    st.lists(st.tuples(st.integers(0, 9), st.one_of(st.none(), st.integers(0, 100))), max_size=60),
    st.integers(0, 100),
)
@settings(max_examples=200, deadline=None)
def test_timer_heap_agrees_with_a_plain_dict(ops: list[tuple[int, int | None]], now: int) -> None:
    state = MemoryState()
    model: dict[str, float] = {}
    for subject, due in ops:
        timer(state, str(subject), None if due is None else float(due))
        if due is None:
            model.pop(str(subject), None)
        else:
            model[str(subject)] = float(due)
    expected_next = min(model.values()) if model else None
    assert state.next_due() == expected_next
    fired = state.pop_due(now)
    want = sorted((d, s) for s, d in model.items() if d <= now)
    assert [k[1] for k in fired] == [s for _, s in want]
    assert state.pop_due(now) == []


def test_dirty_tracking_and_partial_snapshots() -> None:
    state = MemoryState()
    state.put(("r", "a"), Slot("event", last_ts=1.0))
    state.put(("r", "b"), Slot("event", last_ts=2.0))
    assert state.drain_dirty() == {("r", "a"), ("r", "b")}
    assert state.drain_dirty() == set()
    state.put(("r", "a"), Slot("event", last_ts=3.0))
    state.delete(("r", "b"))
    dirty = state.drain_dirty()
    snap = state.snapshot(dirty)
    assert snap["slots"] == [{"rule": "r", "subject": "a", "state": {"trigger": "event", "last_ts": 3.0}}]
    assert snap["deleted"] == [["r", "b"]]


def test_dirty_keys_are_taken_in_pieces_each_once_durable_ones_first() -> None:
    state = MemoryState()
    for i in range(5):
        state.put(("r", f"d{i}"), Slot("absence", due=T0 + i), durable=False)
    state.put(("r", "d0"), Slot("absence", due=T0), durable=True)  # marked both ways
    state.put(("q", "x"), Slot("duration", due=T0), durable=True)
    assert state.dirty_count() == 7
    first = state.take_dirty(2)
    assert set(first) == {("r", "d0"), ("q", "x")}, "the alert-state changes first"
    taken = first + state.take_dirty(2) + state.take_dirty(10)
    assert sorted(taken) == sorted([("q", "x"), *[("r", f"d{i}") for i in range(5)]]), "each key once"
    assert state.take_dirty(10) == [] and state.dirty_count() == 0
    assert state.drain_dirty(include_routine=True) == set()


def test_slot_json_round_trip_keeps_zero_values() -> None:
    slot = Slot("threshold", last_ts=0.0, value=0.0, raised=True, seen="battery|None", params={"below": 2.6})
    assert Slot.from_json(json.loads(json.dumps(slot.to_json()))) == slot
    assert Slot.from_json({"trigger": "x"}) == Slot("x")


def test_seen_is_one_string_or_a_tuple_and_stored_as_a_list() -> None:
    # Nearly every slot has applied one event at its newest time: its identity is held as the
    # string itself (no list of its own per slot), and several as a tuple.
    assert Slot.from_json({"trigger": "threshold", "seen": ["battery|50.0"]}).seen == "battery|50.0"
    assert Slot.from_json({"trigger": "threshold", "seen": ["a", "b"]}).seen == ("a", "b")
    assert Slot.from_json({"trigger": "threshold", "seen": []}).seen == ()
    for held, stored in (("a|1", ["a|1"]), (("a", "b"), ["a", "b"])):
        slot = Slot("threshold", last_ts=T0, seen=held)
        assert slot.to_json()["seen"] == stored == slot.seen_idents()
        assert Slot.from_json(json.loads(json.dumps(slot.to_json()))) == slot
    assert "seen" not in Slot("threshold").to_json()
    for bad in (5, [1], ["a", None], {"a": 1}):
        with pytest.raises(ValueError, match="seen"):
            Slot.from_json({"trigger": "threshold", "seen": bad})


def test_the_redelivery_guard_with_seen_held_as_a_string() -> None:
    # A one-identity ``seen`` is a string: the guard must compare it whole, never test for a
    # substring (``"battery|5" in "battery|50.0"`` is true).
    state = MemoryState()
    ev = Evaluator(rules=load_packs(), state=state)
    door = Subject("door-1", DeviceKind.DOOR_SENSOR, GRID, COMMUNITY, {})
    # The battery rules' guard is the first one's slot (ThresholdGroup's leader), whose field
    # (attrs.volts) these events lack: an event of its kinds moves the guard on all the same.
    key = ("device.battery_low_volts", "door-1")

    def battery(value: float, ts: float) -> Event:
        return Event("door-1", EventKind.BATTERY, ts, "t", value, {})

    assert ev.on_event(battery(50.0, T0), door) == []
    assert state.get(key).seen == "battery|50.0"  # type: ignore[union-attr]
    # Same time, another value whose identity is a prefix of the first: new, and applied.
    raised = ev.on_event(battery(5.0, T0), door)
    assert {s.rule_id for s in raised} >= {"device.battery_low_percent", "device.battery_critical_percent"}
    assert state.get(key).seen == ("battery|50.0", "battery|5.0")  # type: ignore[union-attr]
    # Redelivered (either one): nothing. A later reading: one identity again.
    assert ev.on_event(battery(5.0, T0), door) == [] and ev.on_event(battery(50.0, T0), door) == []
    cleared = ev.on_event(battery(60.0, T0 + 1), door)
    assert {s.action for s in cleared} == {SignalAction.CLEAR}
    assert state.get(key).seen == "battery|60.0"  # type: ignore[union-attr]
    # Late: ignored.
    assert ev.on_event(battery(1.0, T0), door) == []


def test_an_eager_restore_drops_a_row_that_is_not_a_slot_and_keeps_the_rest(
    caplog: pytest.LogCaptureFixture,
) -> None:
    # The table path (PostgreSQL, a cluster node) decodes every row at start: one damaged row
    # must cost that subject's memory, not the hub's start (as the file's lazy path already did).
    rows: list[tuple[str, str, dict[str, object] | None]] = [
        ("r", "ok", {"trigger": "duration", "due": T0 + 1}),
        ("r", "torn", None),  # not JSON
        ("r", "alien", {"trigger": "duration", "due": "soon"}),
        ("r", "odd", {"trigger": "threshold", "seen": {"battery|1.0": 1}}),
        ("r", "list", [1, 2]),  # type: ignore[list-item]
    ]
    with caplog.at_level("WARNING", logger="rules.state"):
        state = MemoryState.restore_rows(rows, fresh=True)
    assert state.slot_keys() == [("r", "ok")] and state.pop_due(T0 + 5) == [("r", "ok")]
    damaged = {("r", "torn"), ("r", "alien"), ("r", "odd"), ("r", "list")}
    assert state.drain_dirty() == damaged, "deleted with the next flush"
    assert all(subject in caplog.text for _, subject in damaged)
    # A cluster node taking subjects over: the same.
    state.replace_subjects({"ok", "torn"}, [("r", "torn", None), ("r", "ok", {"trigger": "duration"})])
    assert state.slot_keys() == [("r", "ok")] and state.drain_dirty() == {("r", "torn")}


def test_a_fresh_document_is_taken_over_and_anything_else_copied() -> None:
    doc = {"trigger": "count", "times": [1.0, 2.0], "params": {"window": 60.0}, "evidence": [{"v": 1}]}
    taken = Slot.from_json(doc, fresh=True)
    assert taken.times is doc["times"] and taken.params is doc["params"]
    copied = Slot.from_json(doc)
    assert (
        copied == taken and copied.times is not doc["times"] and copied.evidence[0] is not doc["evidence"][0]
    )
    # Not the types JSON gives (a tuple): converted even when fresh, as before.
    odd = Slot.from_json({"trigger": "count", "times": (1.0,)}, fresh=True)
    assert odd.times == [1.0] and odd.times.__class__ is list
    with pytest.raises(ValueError, match="number"):
        Slot.from_json({"trigger": "absence", "due": "soon"}, fresh=True)


def test_rows_restore_like_a_snapshot() -> None:
    state = MemoryState()
    for i in range(20):
        timer(state, f"s{i}", T0 + i)
    snap = json.loads(json.dumps(state.snapshot()))
    rows = [(r["rule"], r["subject"], r["state"]) for r in snap["slots"]]
    restored = MemoryState.restore_rows(rows, fresh=True)
    assert restored.snapshot() == MemoryState.restore(json.loads(json.dumps(snap))).snapshot()
    assert restored.drain_dirty() == set() and restored.next_due() == T0


def test_restore_rebuilds_timers_and_nothing_is_dirty() -> None:
    state = MemoryState()
    for i in range(100):
        timer(state, f"s{i}", T0 + i)
    restored = MemoryState.restore(json.loads(json.dumps(state.snapshot())))
    assert restored.drain_dirty() == set()
    assert restored.next_due() == T0
    assert len(restored.pop_due(T0 + 49.5)) == 50


def test_restoring_100k_timers_keeps_every_deadline_in_order() -> None:
    """100 000 timers come back with the earliest first. How fast is the benchmark's business
    (``python -m bench.bench_rules`` reports the restore time against its 2 s target)."""
    rng = random.Random(1)
    snap = {
        "version": 1,
        "slots": [
            {
                "rule": "device.offline",
                "subject": f"dev-{i}",
                "state": {"trigger": "absence", "since": T0, "due": T0 + rng.random() * 86400},
            }
            for i in range(100_000)
        ],
    }
    state = MemoryState.restore(snap)
    assert len(state) == 100_000
    assert state.next_due() == min(slot["state"]["due"] for slot in snap["slots"])


# -- restart semantics through the evaluator ---------------------------------------------------


def restart(
    evaluator: Evaluator, state: MemoryState, subjects: list[Subject], now: float
) -> tuple[Evaluator, MemoryState]:
    """What the hub does: persist, stop, restore from JSON, start (seed absence), no due() yet."""
    saved = json.loads(json.dumps(state.snapshot()))
    new_state = MemoryState.restore(saved)
    new_eval = Evaluator(rules=list(evaluator.rules), state=new_state)
    new_eval.start(subjects, now)
    return new_eval, new_state


def test_restart_fires_an_overdue_alarm_once() -> None:
    state = MemoryState()
    ev = Evaluator(rules=load_packs(), state=state)
    ev.start([ENTRANCE], T0)
    ev.on_event(Event("door-1", EventKind.DOOR_OPEN, T0, "t", True), ENTRANCE)
    ev, state = restart(ev, state, [ENTRANCE], T0 + 1200)
    signals = ev.due(T0 + 1200)
    assert [(s.rule_id, s.action, s.ts) for s in signals] == [
        ("doors.entrance_held_open", SignalAction.RAISE, T0 + 300)
    ]
    assert ev.due(T0 + 1200) == []


def test_restart_condition_cleared_while_down_does_not_fire() -> None:
    state = MemoryState()
    ev = Evaluator(rules=load_packs(), state=state)
    ev.start([ENTRANCE], T0)
    ev.on_event(Event("door-1", EventKind.DOOR_OPEN, T0, "t", True), ENTRANCE)
    ev, state = restart(ev, state, [ENTRANCE], T0 + 1200)
    # Catch-up: the closing at +10 min (after the 5 min due time) arrives before due() is called.
    assert ev.on_event(Event("door-1", EventKind.DOOR_CLOSED, T0 + 600, "t", False), ENTRANCE) == []
    assert [s.rule_id for s in ev.due(T0 + 1200)] == []


def test_restart_redelivered_event_after_restore_is_idempotent() -> None:
    state = MemoryState()
    ev = Evaluator(rules=load_packs(), state=state)
    press = Event("btn", EventKind.SOS_PRESS, T0, "t", "emergency")
    assert [s.action for s in ev.on_event(press, Subject("btn"))] == [SignalAction.RAISE]
    ev, state = restart(ev, state, [], T0 + 5)
    assert ev.on_event(press, Subject("btn")) == []


def test_restart_absence_seeds_only_missing_subjects() -> None:
    other = Subject("door-2", DeviceKind.DOOR_SENSOR, GRID, COMMUNITY, {"device.heartbeat_s": 3600})
    state = MemoryState()
    ev = Evaluator(rules=load_packs(), state=state)
    ev.start([ENTRANCE], T0)
    ev, state = restart(ev, state, [ENTRANCE, other], T0 + 5 * 3600)
    fired = [(s.rule_id, s.subject, s.ts) for s in ev.due(T0 + 5 * 3600)]
    assert fired == [("device.offline", "door-1", T0 + 7200)]  # door-2 is new: deadline from now
    assert ev.next_due() == T0 + 7 * 3600


def test_state_snapshot_is_json_serialisable_after_every_trigger() -> None:
    state = MemoryState()
    ev = Evaluator(rules=load_packs(), state=state)
    lane = Subject(
        "lane",
        DeviceKind.PARKING_SENSOR,
        GRID,
        COMMUNITY,
        {"place.kind": "fire_lane", "device.heartbeat_s": 600},
    )
    ev.start([ENTRANCE, lane], T0)
    ev.on_event(Event("lane", EventKind.OCCUPANCY, T0, "t", True), lane)
    ev.on_event(Event("lane", EventKind.BATTERY, T0, "t", 5, {"volts": 2.2}), lane)
    ev.on_event(Event("door-1", EventKind.TAMPER, T0, "t", True), ENTRANCE)
    signals = ev.due(T0 + 3600)
    for s in signals:
        json.dumps(dict(s.trace))
    assert MemoryState.restore(json.loads(json.dumps(state.snapshot()))).snapshot() == state.snapshot()


def _by_fields(slot: Slot) -> dict[str, object]:
    """``to_json`` by its definition: every stored field unlike a fresh slot's, in the stored
    order; the read-only ones (times, params, evidence) when not empty, whatever their type."""
    out: dict[str, object] = {"trigger": slot.trigger}
    fresh = Slot(slot.trigger)
    for name in STORED_ORDER[1:]:
        if name == "seen":  # held as one string or a tuple; stored as a list
            if slot.seen:
                out["seen"] = [slot.seen] if isinstance(slot.seen, str) else list(slot.seen)
            continue
        if name in ("times", "params", "evidence"):
            shared = getattr(slot, name)
            if shared:
                out[name] = dict(shared) if name == "params" else list(shared)
            continue
        default = getattr(fresh, name)
        value = getattr(slot, name)
        if value != default or type(value) is not type(default):
            out[name] = value.copy() if isinstance(value, list | dict) else value
    return out


@pytest.mark.pure_only("sets 0 and 1 where Slot declares bool, 5 where it declares float")
def test_to_json_is_every_field_unlike_its_default_in_field_order() -> None:
    rng = random.Random(7)
    choices: dict[str, list[object]] = {
        "last_ts": [None, 0.0, 1.8e9, 5],
        "seen": [(), "battery|50.0", ("a", "b")],
        "raised": [False, True, 0, 1],
        "since": [None, 0.0, 1.8e9],
        "notified": [None, 1.8e9],
        "due": [None, 0.0, 1.8e9 + 300],
        "value": [None, 0.0, 2.5, 0],
        "times": [[], (), [1.0, 2.0], (1.0,)],
        "count": [0, 3, 0.0, False],
        "params": [{}, NO_PARAMS, {"for": 7200.0}],
        "evidence": [[], (), [{"kind": "battery"}]],
    }
    for _ in range(400):
        slot = Slot(rng.choice(["threshold", "absence", "count"]))
        for name, values in choices.items():
            setattr(slot, name, rng.choice(values))
        got = slot.to_json()
        assert got == _by_fields(slot)
        assert list(got) == list(_by_fields(slot))  # the stored JSON's key order too
        for name in ("seen", "times", "params", "evidence"):
            if name in got:
                assert got[name] is not getattr(slot, name)  # a copy, never shared


# -- lazy restore (the hub's restart from its rule-state file) ---------------------------------


class CountingDecode:
    """``json.loads`` that counts its calls: a slot is decoded when it is first read, never before."""

    def __init__(self) -> None:
        self.calls = 0

    def __call__(self, text: str | bytes) -> object:
        self.calls += 1
        return json.loads(text)


def by_key(state: MemoryState) -> dict[tuple[str, str], object]:
    """Every slot as JSON, keyed (a lazy state lists slots in the order they were read)."""
    return {(r["rule"], r["subject"]): r["state"] for r in state.snapshot()["slots"]}


def lazy_rows(state: MemoryState) -> list[tuple[str, str, str, object]]:
    """The rows a rule-state file hands over: the JSON text and the ``due`` read out of it."""
    return [
        (r["rule"], r["subject"], json.dumps(r["state"]), r["state"].get("due"))
        for r in state.snapshot()["slots"]
    ]


def test_a_lazy_restore_reads_a_slot_only_when_it_is_used() -> None:
    state = MemoryState()
    for i in range(10):
        timer(state, f"s{i}", T0 + i)
    state.put(("r", "plain"), Slot("threshold", value=2.5))
    decode = CountingDecode()
    lazy = MemoryState.restore_lazy(lazy_rows(state), decode=decode)
    assert decode.calls == 0
    assert len(lazy) == 11 and set(lazy.slot_keys()) == set(state.slot_keys())
    assert lazy.has(("r", "plain")) and not lazy.has(("r", "nobody"))
    assert lazy.drain_dirty(include_routine=True) == set()
    assert decode.calls == 0, "counting, listing and asking are not reading"

    assert lazy.get(("r", "plain")) == Slot("threshold", value=2.5)
    assert decode.calls == 1
    assert lazy.get(("r", "plain")) is lazy.get(("r", "plain")), "decoded once, then kept"
    assert decode.calls == 1

    # Timers come due from the handed-over dues, earliest first, each read as it fires.
    assert lazy.next_due() == T0
    assert decode.calls == 2
    assert lazy.pop_due(T0 + 3.5) == [("r", "s0"), ("r", "s1"), ("r", "s2"), ("r", "s3")]
    assert decode.calls == 5
    assert lazy.pop_due(T0 + 3.5) == []
    assert by_key(lazy) == by_key(state)
    assert decode.calls == 11


def test_a_lazy_slot_replaced_or_deleted_unread_is_gone_with_its_timer() -> None:
    state = MemoryState()
    timer(state, "a", T0)
    timer(state, "b", T0 + 1)
    timer(state, "c", T0 + 2)
    lazy = MemoryState.restore_lazy(lazy_rows(state), decode=json.loads)
    lazy.put(("r", "a"), Slot("duration", due=T0 + 50))  # a newer value, the stored one unread
    lazy.delete(("r", "b"))
    assert lazy.drain_dirty() == {("r", "a"), ("r", "b")}
    assert lazy.pop_due(T0 + 10) == [("r", "c")]
    assert lazy.pop_due(T0 + 100) == [("r", "a")]
    assert sorted(lazy.slot_keys()) == [("r", "a"), ("r", "c")]


def test_a_lazy_slot_keeps_its_timer_through_a_heap_rebuild() -> None:
    state = MemoryState()
    timer(state, "stored", T0 + 5000)
    lazy = MemoryState.restore_lazy(lazy_rows(state), decode=json.loads)
    # Postponing one timer many times grows the heap until it is rebuilt (lazy deletion).
    for i in range(5000):
        lazy.put(("r", "busy"), Slot("duration", due=T0 + 10_000 - i))
    assert lazy.has(("r", "stored"))
    assert lazy.pop_due(T0 + 5000) == [("r", "stored")]
    assert lazy.pop_due(T0 + 10_000) == [("r", "busy")]


def test_a_stored_text_that_is_not_a_slot_is_dropped_and_deleted_not_raised(
    caplog: pytest.LogCaptureFixture,
) -> None:
    rows: list[tuple[str, str, str, object]] = [
        ("r", "torn", '{"trigger":"dura', T0),
        ("r", "alien", '{"trigger":"duration","due":"soon"}', "soon"),
        ("r", "odd", '{"trigger":"duration","params":5,"due":%r}' % (T0 + 2), T0 + 2),
        ("r", "ok", '{"trigger":"duration","due":%r}' % (T0 + 1), T0 + 1),
    ]
    lazy = MemoryState.restore_lazy(rows, decode=json.loads)
    with caplog.at_level("WARNING", logger="rules.state"):
        assert lazy.pop_due(T0 + 5) == [("r", "ok")]
        assert lazy.get(("r", "alien")) is None
    assert lazy.drain_dirty() == {("r", "torn"), ("r", "alien"), ("r", "odd")}, "deleted with the next flush"
    assert "torn" in caplog.text and "alien" in caplog.text and "odd" in caplog.text
    assert lazy.slot_keys() == [("r", "ok")]


def test_the_slot_s_own_due_wins_over_the_one_handed_over() -> None:
    lazy = MemoryState.restore_lazy(
        [("r", "x", json.dumps({"trigger": "duration", "due": T0 + 60}), T0)], decode=json.loads
    )
    assert lazy.pop_due(T0 + 1) == []
    assert lazy.pop_due(T0 + 60) == [("r", "x")]


def test_a_restored_timer_read_keeps_its_one_heap_entry() -> None:
    """Reading a restored slot takes its restored entry as its own: one entry per timer.

    The hub reads every device's slots as they report after a restart; a second entry per
    timer was ≈ 94 000 stale tuples at 100 000 devices (docs/benchmarks.md, "Thirty-sixth pass").
    """
    state = MemoryState()
    for i in range(20):
        timer(state, f"s{i}", T0 + i)
    state.put(("r", "plain"), Slot("threshold", value=2.5))
    lazy = MemoryState.restore_lazy(lazy_rows(state), decode=json.loads)
    assert lazy.queued_count() == 20
    for i in range(20):
        assert lazy.get(("r", f"s{i}")) is not None
    assert lazy.queued_count() == 20, "no second entry per timer read"
    # Postponing a read timer queues nothing either (its entry is re-queued when it comes up).
    postponed = lazy.get(("r", "s0"))
    assert postponed is not None
    postponed.due = T0 + 100  # as the absence trigger moves its deadline: in place
    lazy.put(("r", "s0"), postponed)
    assert lazy.queued_count() == 20
    assert lazy.pop_due(T0 + 19) == [("r", f"s{i}") for i in range(1, 20)]
    assert lazy.pop_due(T0 + 99) == []
    assert lazy.pop_due(T0 + 100) == [("r", "s0")]
    assert lazy.pop_due(T0 + 10_000) == []


def test_a_restored_entry_later_than_the_slot_s_due_does_not_hold_the_timer_back() -> None:
    """A row whose stored due says later than its JSON (edited by hand, or the last digit of a
    text-to-double parse): the slot's own, earlier due fires, once."""
    due = T0 + 60
    lazy = MemoryState.restore_lazy(
        [("r", "x", json.dumps({"trigger": "duration", "due": due}), due + 1e-6)], decode=json.loads
    )
    assert lazy.get(("r", "x")) is not None
    assert lazy.pop_due(due) == [("r", "x")]
    assert lazy.pop_due(due + 10) == []


def test_a_restored_entry_later_than_the_slot_s_due_keeps_the_timer_through_next_due() -> None:
    """The hub asks ``next_due`` after every run of timers: reading the slot there queues its
    earlier due in front of the restored entry, and that entry must not be what is popped."""
    due = T0 + 60
    lazy = MemoryState.restore_lazy(
        [("r", "x", json.dumps({"trigger": "duration", "due": due}), due + 1e-6)], decode=json.loads
    )
    assert lazy.next_due() == due
    assert lazy.next_due() == due, "asking again changes nothing"
    assert lazy.pop_due(due) == [("r", "x")]
    assert lazy.next_due() is None and lazy.pop_due(due + 3600) == []


def test_a_restored_timer_holds_the_row_s_own_float() -> None:
    """The restored entry, the dues' table and the read slot's ``queued_due`` share the float
    the store handed over: one object per restored timer, compiled too (a C double boxed at each
    store was one more float per timer)."""
    dues = [T0 + 0.25 + i for i in range(3)]
    lazy = MemoryState.restore_lazy(
        [("r", f"s{i}", json.dumps({"trigger": "duration", "due": d}), d) for i, d in enumerate(dues)],
        decode=json.loads,
    )
    for i, d in enumerate(dues):
        slot = lazy.get(("r", f"s{i}"))
        assert slot is not None and slot.queued_due is d
        assert slot.due is d, "the slot's due is the row's float too, not an equal one of its own"
    assert lazy.pop_due(T0 + 10) == [("r", "s0"), ("r", "s1"), ("r", "s2")]


def test_a_restored_entry_for_a_slot_without_a_due_never_fires() -> None:
    lazy = MemoryState.restore_lazy(
        [("r", "x", json.dumps({"trigger": "duration", "raised": True}), T0)], decode=json.loads
    )
    assert lazy.get(("r", "x")) is not None
    assert lazy.pop_due(T0 + 10) == []
    assert lazy.next_due() is None


def test_a_restored_timer_fires_once_whether_read_first_or_by_its_entry() -> None:
    state = MemoryState()
    timer(state, "read", T0 + 1)
    timer(state, "unread", T0 + 2)
    lazy = MemoryState.restore_lazy(lazy_rows(state), decode=json.loads)
    assert lazy.get(("r", "read")) is not None
    assert lazy.next_due() == T0 + 1
    assert lazy.pop_due(T0 + 5) == [("r", "read"), ("r", "unread")]
    assert lazy.pop_due(T0 + 5) == [] and lazy.next_due() is None


def test_a_lazy_restart_behaves_like_an_eager_one() -> None:
    """The restart scenarios above, through restore_lazy: the same alerts at the same times."""
    other = Subject("door-2", DeviceKind.DOOR_SENSOR, GRID, COMMUNITY, {"device.heartbeat_s": 3600})
    state = MemoryState()
    ev = Evaluator(rules=load_packs(), state=state)
    ev.start([ENTRANCE, other], T0)
    ev.on_event(Event("door-1", EventKind.DOOR_OPEN, T0, "t", True), ENTRANCE)
    ev.on_event(Event("door-2", EventKind.DOOR_OPEN, T0, "t", True), other)
    results = []
    for restored in (
        MemoryState.restore(json.loads(json.dumps(state.snapshot()))),
        MemoryState.restore_lazy(lazy_rows(state), decode=json.loads),
    ):
        again = Evaluator(rules=list(ev.rules), state=restored)
        again.start([ENTRANCE, other], T0 + 20_000)
        closed = again.on_event(Event("door-2", EventKind.DOOR_CLOSED, T0 + 100, "t", False), other)
        fired = again.due(T0 + 20_000)
        results.append(
            (
                [(s.rule_id, s.subject, s.action) for s in closed],
                [(s.rule_id, s.subject, s.action, s.ts) for s in fired],
                by_key(restored),
            )
        )
    assert results[0] == results[1]
    assert ("doors.entrance_held_open", "door-1", SignalAction.RAISE, T0 + 300) in results[1][1]


def test_a_reload_keeps_unread_slots_unread_and_drops_a_removed_rule_s() -> None:
    state = MemoryState()
    ev = Evaluator(rules=load_packs(), state=state)
    ev.start([ENTRANCE], T0)
    ev.on_event(Event("door-1", EventKind.DOOR_OPEN, T0, "t", True), ENTRANCE)
    held = ("doors.entrance_held_open", "door-1")
    assert state.has(held) and state.has(("device.offline", "door-1"))
    decode = CountingDecode()
    lazy = MemoryState.restore_lazy(lazy_rows(state), decode=decode)
    again = Evaluator(rules=list(ev.rules), state=lazy)
    again.reload([r for r in ev.rules if r.id != "device.offline"])
    assert decode.calls == 0, "a rule kept with the same trigger type keeps its slots unread"
    assert not lazy.has(("device.offline", "door-1"))
    assert lazy.has(held)
    assert [s.rule_id for s in again.due(T0 + 300)] == ["doors.entrance_held_open"]


def test_deadlines_armed_at_start_are_routine_writes_not_alert_state_changes() -> None:
    """A first start arms 10⁵ deadlines: they go out with the sliced routine flush, not all at once
    in the per-turn flush of the first message (which an SOS press would wait behind)."""
    other = Subject("door-2", DeviceKind.DOOR_SENSOR, GRID, COMMUNITY, {"device.heartbeat_s": 3600})
    state = MemoryState()
    ev = Evaluator(rules=load_packs(), state=state)
    ev.start([ENTRANCE, other], T0)
    assert state.drain_dirty() == set()
    assert state.drain_dirty(include_routine=True) == {
        ("device.offline", "door-1"),
        ("device.offline", "door-2"),
    }
    assert ev.next_due() == T0 + 7200


def test_empty_times_params_and_evidence_are_one_shared_read_only_value() -> None:
    # 5 × 10⁵ slots at 10⁵ devices: an empty list or dict each was ≈ 200 B a slot.
    a, b = Slot("absence"), Slot.from_json({"trigger": "count", "times": [], "params": {}, "evidence": []})
    assert a.params is b.params is NO_PARAMS and a.times == b.times == () and a.evidence == b.evidence == ()
    with pytest.raises(TypeError):
        NO_PARAMS["for"] = 1.0  # type: ignore[index]
    assert Slot.from_json(a.to_json()) == a and a.to_json() == {"trigger": "absence"}


def test_absence_slots_share_their_parameters_per_period() -> None:
    state = MemoryState()
    ev = Evaluator(rules=load_packs(), state=state, zone="Asia/Shanghai")
    subjects = [
        Subject(f"d{i}", DeviceKind.DOOR_SENSOR, "g1", "c1", {"device.heartbeat_s": 600 if i % 2 else 900})
        for i in range(10)
    ]
    ev.start(subjects, T0)
    offline = [state.get(("device.offline", s.device_id)) for s in subjects]
    assert len({id(slot.params) for slot in offline if slot is not None}) == 2  # two periods
    # A restored slot (its own parameters, from its JSON) takes the shared ones when an event
    # moves it on, without becoming a durable change: the values are the same.
    restored = MemoryState.restore(json.loads(json.dumps(state.snapshot())))
    state.drain_dirty()
    ev2 = Evaluator(rules=load_packs(), state=restored, zone="Asia/Shanghai")
    for subject in subjects[:4]:
        ev2.on_event(Event(subject.device_id, EventKind.SIGNAL, T0 + 60, "test", 80.0, {}), subject)
    moved = [restored.get(("device.offline", s.device_id)) for s in subjects[:4]]
    assert all(slot is not None and slot.due == T0 + 60 + slot.params["for"] for slot in moved)
    assert len({id(slot.params) for slot in moved if slot is not None}) == 2
    assert restored.drain_dirty(include_routine=False) == set()
    # Traces carry plain dicts (JSON), never the shared read-only mapping.
    for signal in ev2.due(T0 + 10 * 3600):
        json.dumps(dict(signal.trace))


@pytest.mark.parametrize("decode", [json.loads, __import__("orjson").loads], ids=["json", "orjson"])
def test_restored_slots_share_one_copy_of_their_trigger_name(decode: object) -> None:
    """10⁵ restored slots, a few trigger types: each name is held once, not once per row."""
    rows = [
        ("r", f"d{i}", json.dumps({"trigger": "threshold", "last_ts": T0, "value": 80.0}), None)
        for i in range(3)
    ]
    lazy = MemoryState.restore_lazy(rows, decode=decode)  # type: ignore[arg-type]
    eager = MemoryState.restore_rows(
        [("r", f"d{i}", json.loads('{"trigger": "threshold"}')) for i in (3, 4)], fresh=True
    )
    slots = [lazy.get(("r", f"d{i}")) for i in range(3)] + [eager.get(("r", f"d{i}")) for i in (3, 4)]
    assert all(slot is not None and slot.trigger == "threshold" for slot in slots)
    assert len({id(slot.trigger) for slot in slots if slot is not None}) == 1


def test_reading_the_restored_slots_gives_their_table_back() -> None:
    """A dict never shrinks on deletion: the unread rows move to a smaller table as they are read."""
    rows = [("r", f"d{i}", json.dumps({"trigger": "absence", "due": T0 + i}), T0 + i) for i in range(40_000)]
    lazy = MemoryState.restore_lazy(rows, decode=json.loads)
    restored_table = sys.getsizeof(lazy._raw["r"])
    for i in range(39_000):  # every device but 1 000 reports: its slots are read
        slot = lazy.get(("r", f"d{i}"))
        assert slot is not None and slot.due == T0 + i
    assert sys.getsizeof(lazy._raw["r"]) < restored_table / 8
    # The rows not read yet are all still there, with their timers.
    assert len(lazy) == 40_000 and lazy.has(("r", "d39999"))
    assert lazy.pop_due(T0 + 39_000) == [("r", f"d{i}") for i in range(39_001)]
    assert lazy.get(("r", "d39500")) is not None
    assert lazy.pop_due(T0 + 50_000) == [("r", f"d{i}") for i in range(39_001, 40_000)]


@pytest.mark.parametrize("restore", ["lazy", "eager"])
def test_restored_keys_share_the_callers_copy_of_each_subject_id(restore: str) -> None:
    """A database hands every row a string of its own: a device's three or four keys, and the
    registry's id, would be as many copies. The keys take the caller's copy instead, and a
    subject the caller does not know is held once across its rows."""
    registry_id = "".join(("door", "-1"))
    names = {registry_id: registry_id}
    subjects = [
        "".join(("door", "-1")),
        "".join(("door", "-1")),
        "".join(("stray", "-9")),
        "".join(("stray", "-9")),
    ]
    rules = ["device.offline", "doors.held_open", "device.offline", "doors.held_open"]
    doc = {"trigger": "absence", "due": T0}
    if restore == "lazy":
        state = MemoryState.restore_lazy(
            [(r, s, json.dumps(doc), T0) for r, s in zip(rules, subjects, strict=True)],
            decode=json.loads,
            names=names,
        )
    else:
        state = MemoryState.restore_rows(
            [(r, s, dict(doc)) for r, s in zip(rules, subjects, strict=True)], fresh=True, names=names
        )
    keys = state.slot_keys()
    assert sorted(keys) == sorted(zip(rules, subjects, strict=True))
    assert all(subject is registry_id for _, subject in keys if subject == "door-1")
    strays = {id(subject) for _, subject in keys if subject == "stray-9"}
    assert len(strays) == 1 and names["stray-9"] == "stray-9"
    # The timers carry the same keys: popped, a slot is found under its shared id.
    assert [subject is registry_id or subject == "stray-9" for _, subject in state.pop_due(T0)] == [True] * 4


def test_a_stored_slot_is_checked_and_typed_before_it_is_built() -> None:
    # JSON gives lists for tuples and may hold ints where floats are declared: the compiled build
    # (hub/ingest/hot_path.py) refuses a value of the wrong type on the way into a slot, so a
    # restart there dropped every slot with a `seen` list (an overdue alarm then never fired).
    slot = Slot.from_json(
        {"trigger": "threshold", "last_ts": 1_800_000_000, "seen": ["a", "b"], "raised": 1, "count": 2.0}
    )
    assert slot.last_ts == 1_800_000_000.0 and slot.last_ts.__class__ is float
    assert slot.seen == ("a", "b") and slot.raised is True and slot.count == 2 and slot.count.__class__ is int
    assert Slot.from_json({"trigger": "absence", "seen": ["door_open|True"]}).seen == "door_open|True"
    for doc, message in (
        ({"trigger": "absence", "extra": 1}, "unexpected field"),
        ({"trigger": "absence", "raised": "yes"}, "raised"),
        ({"trigger": "absence", "raised": 2}, "raised"),
        ({"trigger": "count", "count": 1.5}, "count"),
        ({"trigger": "count", "count": float("inf")}, "count"),
        ({"trigger": "count", "count": True}, "count"),
        ({"trigger": "absence", "due": True}, "number"),
        ({"trigger": "absence", "seen": [1]}, "seen"),
        ({"last_ts": 1.0}, "trigger"),
    ):
        with pytest.raises(ValueError, match=message):
            Slot.from_json(doc)


def test_a_slot_and_its_timer_keep_no_key_tuple_of_their_own() -> None:
    """Slots live in a table per rule keyed by subject, timers as ``(due, rule, subject)`` and
    dirty marks per rule: the caller's key tuple is not held (56 bytes a slot at 10⁵ devices)."""
    state = MemoryState()
    rule, subject = "device.offline", "dev-1"
    key = (rule, subject)
    before = sys.getrefcount(key)
    state.put(key, Slot("absence", due=T0 + 60), durable=False)
    state.put(("elderly.inactive", subject), Slot("absence", due=T0 + 30))
    assert sys.getrefcount(key) == before
    assert state.drain_dirty() == {("elderly.inactive", subject)}
    assert state.drain_dirty(include_routine=True) == {key}
    assert sys.getrefcount(key) == before
    assert state.next_due() == T0 + 30
    assert state.pop_due(T0 + 60) == [("elderly.inactive", subject), key]
    assert sorted(state.slot_keys()) == sorted([key, ("elderly.inactive", subject)])


@pytest.mark.pure_only("the compiled restore_lazy refuses a row whose text is not str or bytes")
def test_a_restored_row_without_text_is_gone_once_asked_for() -> None:
    """Counted like any unread row: ``len`` drops when it is read (and it reads as no slot)."""
    state = MemoryState.restore_lazy(
        [("r", "a", None, None), ("r", "b", '{"trigger": "absence"}', None)], decode=json.loads
    )  # type: ignore[list-item]
    assert len(state) == 2
    assert state.get(("r", "a")) is None
    assert len(state) == 1 and not state.has(("r", "a"))
    assert state.get(("r", "b")) is not None and len(state) == 1


def _entries(state: MemoryState) -> dict[tuple[str, str], list[object]]:
    """The timer heap's entries per key: each one's due, the object itself."""
    out: dict[tuple[str, str], list[object]] = {}
    for due, rule, subject in state._heap:
        out.setdefault((rule, subject), []).append(due)
    return out


def test_a_timer_s_heap_entry_holds_the_slot_s_own_due() -> None:
    """Queued by ``put``, re-queued when postponed (by ``pop_due`` or ``next_due``) and rebuilt:
    the entry's due and ``queued_due`` are the slot's ``due`` object. Compiled, a due narrowed
    by a test for ``None`` was a C double boxed anew at each store: a float per timer beside
    the slot's own (≈ 131 000 at 100 000 devices; docs/benchmarks.md, "Thirty-eighth pass")."""
    state = MemoryState()
    dues = [T0 + 0.5 + i for i in range(4)]
    slots = [Slot("absence", due=d) for d in dues]
    for i, slot in enumerate(slots):
        state.put(("r", f"s{i}"), slot)
    for i, slot in enumerate(slots):
        assert slot.queued_due is slot.due
        (entry,) = _entries(state)[("r", f"s{i}")]
        assert entry is slot.due
    # Postponed: s0's entry comes up in pop_due, s1's at the top in next_due.
    slots[0].due = T0 + 100.25
    state.put(("r", "s0"), slots[0])
    assert state.pop_due(dues[0]) == []
    assert [d for d in _entries(state)[("r", "s0")] if d == slots[0].due] == [slots[0].due]
    assert any(d is slots[0].due for d in _entries(state)[("r", "s0")])
    assert slots[0].queued_due is slots[0].due
    slots[1].due = T0 + 200.75
    state.put(("r", "s1"), slots[1])
    assert state.next_due() == dues[2]
    assert any(d is slots[1].due for d in _entries(state)[("r", "s1")])
    assert slots[1].queued_due is slots[1].due
    # Rebuilt (the heap's stale entries outgrew its slots): still the slots' own objects.
    state._rebuild()
    for i, slot in enumerate(slots):
        (entry,) = _entries(state)[("r", f"s{i}")]
        assert entry is slot.due and slot.queued_due is slot.due
    assert state.pop_due(T0 + 1000) == [("r", "s2"), ("r", "s3"), ("r", "s0"), ("r", "s1")]


def test_deadlines_armed_at_one_instant_share_their_times_through_a_restart() -> None:
    """A first start arms every expected device's deadline at once: equal dues and starts,
    one object each per period (a float per slot was ≈ 4 MB at 100 000 devices), and the
    restored rows of those timers share their due again (the store hands each row its own)."""
    state = MemoryState()
    ev = Evaluator(rules=load_packs(), state=state, zone="Asia/Shanghai")
    beat = {"device.heartbeat_s": 3600.0}
    doors = [Subject(f"door-{i}", DeviceKind.DOOR_SENSOR, GRID, COMMUNITY, beat) for i in range(5)]
    ev.start(doors, T0 + 0.5)
    offline = [state.get(("device.offline", d.device_id)) for d in doors]
    assert all(slot is not None and slot.due is not None for slot in offline)
    dues = [slot.due for slot in offline if slot is not None]
    starts = [slot.since for slot in offline if slot is not None]
    assert dues[0] == T0 + 0.5 + 7200.0 and starts[0] == T0 + 0.5
    assert all(d is dues[0] for d in dues) and all(s is starts[0] for s in starts)
    # Restored: each row's due a float of its own, as a database row hands it over.
    rows = [
        ("device.offline", f"door-{i}", json.dumps(slot.to_json()), float(repr(slot.due)))
        for i, slot in enumerate(offline)
        if slot is not None and slot.due is not None
    ]
    assert len({id(row[3]) for row in rows}) == len(rows)
    lazy = MemoryState.restore_lazy(rows, decode=json.loads)
    entries = [due for due, _, _ in lazy._heap]
    assert len(entries) == len(rows) and all(e is entries[0] for e in entries)
    assert lazy.pop_due(T0 + 0.5 + 7200.0) == [("device.offline", f"door-{i}") for i in range(5)]


def test_marks_are_taken_oldest_first_so_none_waits_behind_newer_ones() -> None:
    """The flush takes marks a slice at a time while events keep marking more: taken newest
    first, the oldest could wait behind them for as long as new ones came (a crash then
    restores their old state)."""
    state = MemoryState()
    for i in range(6):
        state.put(("r", f"s{i}"), Slot("absence", due=T0 + i), durable=i % 2 == 0)
    assert state.take_dirty(2) == [("r", "s0"), ("r", "s2")]  # durable marks first, in order
    state.put(("r", "s9"), Slot("absence", due=T0 + 9))
    state.put(("r", "s4"), Slot("absence", due=T0 + 4))  # marked again: keeps its place
    assert state.take_dirty(2) == [("r", "s4"), ("r", "s9")]
    assert state.take_dirty(10) == [("r", "s1"), ("r", "s3"), ("r", "s5")]
    assert state.take_dirty(10) == [] and state.dirty_count() == 0


def test_the_rare_fields_are_held_apart_only_while_one_is_set() -> None:
    slot = Slot("duration", since=T0, due=T0 + 60)
    assert slot.rare is None
    assert (slot.notified, slot.count, slot.times, slot.evidence) == (None, 0, (), ())
    slot.notified = None  # a default set again makes nothing
    slot.evidence = ()
    assert slot.rare is None
    due = T0 + 60.5
    slot.notified = due
    slot.count = 2
    slot.evidence = [{"kind": "door_open"}]
    assert slot.rare == Rare(due, 2, (), [{"kind": "door_open"}])
    assert slot.notified is due  # the caller's object, not a copy
    stored = slot.to_json()
    assert list(stored) == ["trigger", "since", "notified", "due", "count", "evidence"]
    assert Slot.from_json(stored) == slot
    # Cleared the way a trigger clears them: back to a slot like one never raised.
    slot.notified, slot.count, slot.evidence = None, 0, ()
    assert slot.rare is None
    assert slot == Slot("duration", since=T0, due=T0 + 60)
    assert Slot.from_json({"trigger": "count", "times": [], "count": 0, "evidence": []}).rare is None


def test_two_slots_never_share_their_rare_fields() -> None:
    a = Slot.from_json({"trigger": "count", "times": [T0], "count": 1})
    b = Slot.from_json(a.to_json())
    assert a == b and a.rare is not b.rare
    b.count = 5
    assert a.count == 1


@pytest.mark.parametrize("duplicate", [copy.copy, dataclasses.replace])
def test_a_copied_slot_changes_apart_from_its_original(duplicate: Callable[[Slot], Slot]) -> None:
    # A copy shares the original's Rare object (copy.copy, dataclasses.replace): a setter must
    # not change it in place, or the original would change with its copy.
    original = Slot.from_json({"trigger": "event", "notified": T0, "count": 1, "times": [T0]})
    twin = duplicate(original)
    twin.count += 1
    twin.notified = T0 + 5
    twin.times = (T0, T0 + 5)
    twin.evidence = [{"kind": "sos_press"}]
    assert (original.count, original.notified, original.times, original.evidence) == (1, T0, [T0], ())
    assert (twin.count, twin.notified) == (2, T0 + 5)
