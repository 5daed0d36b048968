"""The recent-events ring behind ``GET /api/events``: the events it gives back, and what it holds."""

from __future__ import annotations

import gc
from collections.abc import Iterator

import pytest

from adapters.events import Event, EventKind
from hub.ingest.device_state import DeviceStates
from rules.subject import Subject
from tests.helpers import drained

T = 1_790_000_000.0


def stream(n: int) -> Iterator[Event]:
    kinds = [EventKind.DOOR_OPEN, EventKind.BATTERY, EventKind.SIGNAL, EventKind.SOS_PRESS]
    for i in range(n):
        kind = kinds[i % len(kinds)]
        value: float | bool | str | None = {
            EventKind.BATTERY: 50.0 + i,
            EventKind.SIGNAL: -70.5,
            EventKind.SOS_PRESS: None,
        }.get(kind, True)
        attrs = {"press": "single", "volts": 2.9, "held": False} if kind is EventKind.SOS_PRESS else None
        yield Event(f"d{i % 3}", kind, T + i, "z2m", value, attrs)


def test_events_come_back_equal_most_recent_first_filtered_and_paged() -> None:
    states = DeviceStates(recent=10)
    sent = list(stream(14))
    for event in sent:
        states.record(event)
    kept = sent[-10:]  # a ring: the oldest four fell out
    assert states.events(limit=100) == kept[::-1]
    assert states.events("d1", limit=100) == [e for e in kept[::-1] if e.device_id == "d1"]
    assert states.events(limit=3, offset=2) == kept[::-1][2:5]
    assert states.events(limit=100, include=lambda d: d != "d0") == [
        e for e in kept[::-1] if e.device_id != "d0"
    ]
    sos = next(e for e in states.events(limit=100) if e.kind is EventKind.SOS_PRESS)
    assert sos.attrs == {"press": "single", "volts": 2.9, "held": False}
    assert isinstance(sos.kind, EventKind)


def test_the_ring_keeps_no_event_object_alive() -> None:
    """What the ring holds leaves the cyclic collector's lists at its first pass: under load it
    turns over in seconds, and 50 000 young events were what young collections walked."""
    states = DeviceStates(recent=5_000)
    gc.collect()
    before = sum(1 for o in gc.get_objects() if type(o) is Event)
    for _ in map(states.record, stream(6_000)):  # no loop variable left holding the last event
        pass
    gc.collect()
    assert sum(1 for o in gc.get_objects() if type(o) is Event) == before
    assert len(states.events(limit=10_000)) == 5_000


def test_a_device_keeps_its_last_event_of_each_kind_in_columns() -> None:
    states = DeviceStates()
    for event in stream(14):
        states.record(event)
    # d0 saw events 0, 3, 6, 9, 12: door, sos, signal, battery, door — first reported first.
    d0 = states.get("d0")
    assert d0 is not None
    assert d0.last == {
        "door_open": (T + 12, True),
        "sos_press": (T + 3, None),
        "signal": (T + 6, -70.5),
        "battery": (T + 9, 59.0),
    }
    assert d0.last_ts("sos_press") == T + 3 and d0.last_ts("motion") is None
    # A value that spells a kind is a value, never taken for that kind.
    states.record(Event("d0", EventKind.DEVICE_ERROR, T + 20, "z2m", "battery"))
    assert d0.last_ts("battery") == T + 9 and d0.last["device_error"] == (T + 20, "battery")
    # Devices that reported the same kinds share one tuple of them: no dict per device.
    for device in ("e1", "e2"):
        states.record(Event(device, EventKind.DOOR_OPEN, T, "z2m", True))
        states.record(Event(device, EventKind.BATTERY, T, "z2m", 80.0))
    e1, e2 = states.get("e1"), states.get("e2")
    assert e1 is not None and e2 is not None and e1.kinds == ("door_open", "battery")
    assert e1.kinds is e2.kinds


def test_a_walk_in_steps_is_the_walk_in_one_go_and_lists_the_ring_as_asked() -> None:
    """``event_steps`` yields every few entries looked at (the web layer hands the loop over
    there). Events recorded while it waits are not in its page; once they have written over the
    entries it had still to look at, the page ends there instead of listing newer events as
    older ones."""
    states = DeviceStates(recent=100)
    sent = list(stream(100))
    for event in sent:
        states.record(event)
    steps = states.event_steps(limit=1000, entries_per_step=10)
    pauses, page = drained(steps)
    assert pauses == 9 and page == states.events(limit=1000) == sent[::-1]
    # A walk that waits after 30 entries while 35 more events arrive: those wrote over the
    # ring's oldest 35 (events 0–34), so it lists events 99 … 35 and stops there.
    steps = states.event_steps(limit=1000, entries_per_step=30)
    next(steps)
    for event in list(stream(135))[100:]:
        states.record(event)
    with pytest.raises(StopIteration) as done:
        while True:
            next(steps)
    assert done.value.value == sent[35:][::-1]
    assert states.events(limit=1000) == [*sent[35:], *list(stream(135))[100:]][::-1]


def test_a_device_s_state_holds_one_object_of_a_report_s_time_and_reads_its_readings() -> None:
    # Compiled, each store of the event's time into a device's values boxed it anew: three
    # float objects a reporting device where one does, and battery and signal were two more
    # (docs/benchmarks.md, "Twenty-ninth pass").
    states = DeviceStates(recent=8)
    ts = T + 0.25
    for kind, value in ((EventKind.BATTERY, 81.0), (EventKind.SIGNAL, -67.5), (EventKind.HEARTBEAT, None)):
        state = states.record(Event("d", kind, ts, "z2m", value, None))
    times = state.values[0::2]
    assert times == [ts, ts, ts]
    assert len({id(t) for t in times}) == 1
    assert (state.battery, state.signal, state.online) == (81.0, -67.5, True)
    states.record(Event("d", EventKind.BATTERY, ts + 1, "z2m", "low", None))  # not a number
    assert state.battery is None
    states.record(Event("d", EventKind.OFFLINE, ts + 2, "z2m", None, None))
    assert state.online is False
    assert DeviceStates().record(Event("e", EventKind.DOOR_OPEN, ts, "z2m", True, None)).battery is None


def test_whole_readings_are_one_object_across_devices_and_others_the_event_s_own() -> None:
    # Each event brings its own float object; the devices' states kept one each per reading
    # (≈ 5 MB at 100 000 reporting devices). Whole numbers 1–255 (battery %, link quality)
    # are one shared object; any other value is the event's own, exactly.
    states = DeviceStates(recent=8)
    kept = []
    for n, value in enumerate([float(80), float(80), 100.0, 100.0, 255.0, 3.1, 256.0, 0.0, -0.0, 12.5]):
        event = Event(f"d{n}", EventKind.BATTERY, T, "z2m", float(str(value)), None)  # a fresh object
        kept.append((event.value, states.record(event).values[1]))
    assert all(held == sent and str(held) == str(sent) for sent, held in kept)
    assert kept[0][1] is kept[1][1] and kept[2][1] is kept[3][1], "whole readings shared"
    assert kept[4][1] is not kept[4][0]
    for sent, held in kept[5:]:  # not whole, out of range, or zero (whose sign must stay)
        assert held is sent


def test_a_registered_device_s_state_is_held_on_its_subject_and_a_stranger_s_in_the_table() -> None:
    # A table keyed by device id beside the registry's own was 3.8 MB at 10⁵ reporting devices
    # (docs/benchmarks.md, "Thirty-eighth pass"): a registered device's state is its subject's.
    known = Subject("door-1", record=object())
    registry = {"door-1": known}
    states = DeviceStates(recent=8, subjects=registry.get)
    first = states.record(Event("door-1", EventKind.DOOR_OPEN, T, "z2m", True), known)
    assert known.state is first and states.get("door-1") is first
    assert states._states == {}, "no table entry for a registered device"
    again = states.record(Event("door-1", EventKind.BATTERY, T + 1, "z2m", 80.0), known)
    assert again is first and first.last_seen == T + 1 and first.battery == 80.0
    # A device the registry does not know: a subject of its own per event, the state in the table.
    stranger = states.record(Event("x-9", EventKind.DOOR_OPEN, T, "z2m", True), Subject("x-9"))
    assert states.get("x-9") is stranger and states._states == {"x-9": stranger}
    assert states.record(Event("x-9", EventKind.DOOR_CLOSED, T + 2, "z2m", False), Subject("x-9")) is stranger
    assert states.get("nobody") is None
    assert len(states) == 2


def test_the_first_four_kinds_are_held_in_fields_and_the_rest_in_a_list_of_their_own_size() -> None:
    # A list and its array were 128 bytes a reporting device beside its state; four kinds in
    # fields cover a door (open, closed, battery, signal) (docs/benchmarks.md, "Thirty-eighth pass").
    states = DeviceStates(recent=8)
    kinds = [
        (EventKind.DOOR_OPEN, True),
        (EventKind.BATTERY, 80.0),
        (EventKind.SIGNAL, -70.5),
        (EventKind.DOOR_CLOSED, False),
        (EventKind.TAMPER, True),
        (EventKind.HEARTBEAT, None),
    ]
    sent: dict[str, tuple[float, object]] = {}
    for n, (kind, value) in enumerate(kinds):
        state = states.record(Event("d", kind, T + n, "z2m", value, None))
        sent[kind.value] = (T + n, value)
        assert state.last == sent
        # Four kinds or fewer: nothing beside the fields; past them exactly two items a kind.
        assert state.more is None if n < 4 else state.more is not None and len(state.more) == 2 * (n - 3)
    # Each kind updated in place, whichever way it is held; the others keep theirs.
    for n, (kind, value) in enumerate(reversed(kinds)):
        states.record(Event("d", kind, T + 100 + n, "z2m", value, None))
        sent[kind.value] = (T + 100 + n, value)
        assert state.last == sent
        assert state.last_ts(kind.value) == T + 100 + n
    assert state.values == [item for pair in sent.values() for item in pair]
    assert state.kinds == tuple(sent) and len(state.more or ()) == 4
    assert (state.battery, state.signal) == (80.0, -70.5)
    assert state.last_ts("sos_press") is None


def test_one_attribute_dicts_are_shared_by_the_value_s_identity_and_never_mistaken() -> None:
    states = DeviceStates(recent=64)
    volts = 3.1  # one object, as the adapters share a common reading
    first = Event("d1", EventKind.BATTERY, T, "z2m", 80.0, {"volts": volts})
    second = Event("d2", EventKind.BATTERY, T + 1, "z2m", 80.0, {"volts": volts})
    for event in (first, second):
        states.record(event)
    # Equal values of other types or signs, and equal values that are other objects, are kept
    # as their events had them: a shared dict must never change what a reader sees.
    others = [{"x": 1.0}, {"x": True}, {"x": 1}, {"x": 0.0}, {"x": -0.0}, {"volts": float("3.1")}]
    for i, attrs in enumerate(others):
        states.record(Event(f"e{i}", EventKind.SIGNAL, T + 2 + i, "z2m", 1.0, attrs))
    several = {"volts": volts, "press": "single"}
    states.record(Event("d3", EventKind.SOS_PRESS, T + 9, "z2m", True, several))
    newest_first = states.events(limit=64)
    by_device = {e.device_id: e.attrs for e in newest_first}
    assert by_device["d1"] is by_device["d2"] is first.attrs
    for i, attrs in enumerate(others):
        kept = by_device[f"e{i}"]
        assert kept == attrs
        assert [type(v) for v in kept.values()] == [type(v) for v in attrs.values()]
        assert str(kept) == str(attrs)  # -0.0 stays -0.0
    assert by_device["d3"] is several  # more than one attribute: the event's own
    assert by_device["e5"] is not first.attrs  # an equal float of its own is not the shared one
    # A value that cannot be a key (no adapter makes one) is the event's own, not an error.
    odd = {"x": [1.0]}
    states.record(Event("f", EventKind.SIGNAL, T + 20, "z2m", 1.0, odd))  # type: ignore[dict-item]
    assert states.events(limit=1)[0].attrs is odd


def test_the_shared_attribute_dicts_are_bounded() -> None:
    from hub.ingest import device_state  # noqa: PLC0415

    states = DeviceStates(recent=8)
    values = [float(i) + 0.5 for i in range(device_state._ATTRS_LIMIT + 10)]
    for i, value in enumerate(values):
        states.record(Event("d", EventKind.SIGNAL, T + i, "z2m", 1.0, {"x": value}))
    assert 0 < states._attrs_held <= device_state._ATTRS_LIMIT
    assert sum(len(by) for by in states._attrs_seen.values()) == states._attrs_held
    kept = states.events(limit=8)
    assert [e.attrs["x"] for e in kept] == values[::-1][:8]


def test_a_shared_attribute_dict_is_one_of_the_same_attribute_name() -> None:
    states = DeviceStates(recent=8)
    flag = True  # one object under two names
    states.record(Event("a", EventKind.BATTERY, T, "z2m", 80.0, {"battery_low": flag}))
    states.record(Event("b", EventKind.DOOR_OPEN, T + 1, "z2m", True, {"ts_clamped": flag}))
    states.record(Event("c", EventKind.BATTERY, T + 2, "z2m", 70.0, {"battery_low": flag}))
    shown = {e.device_id: e.attrs for e in states.events()}
    assert shown == {"a": {"battery_low": True}, "b": {"ts_clamped": True}, "c": {"battery_low": True}}
    assert shown["a"] is shown["c"]
