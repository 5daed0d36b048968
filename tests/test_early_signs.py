"""Early signs of life as columns: the same signs, in the same order, as the dict they replace."""

from __future__ import annotations

import random
import tracemalloc

import pytest

from adapters.events import Event, EventKind
from hub.casework.early_signs import EarlySigns
from hub.casework.signs import ANY_SIGN

_KINDS = sorted(ANY_SIGN)
_VALUES: tuple[object, ...] = (None, True, False, 0.0, 1.0, "open")


class _Reference:
    """The dict the visits service held before (per (device, day, first) its newest sign)."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.signs: dict[tuple[str, int, bool], tuple[Event, float]] = {}
        self.dropped = 0

    def keep(self, event: Event, day: int, at: float) -> None:
        first = (event.device_id, day, True)
        key = first if first not in self.signs else (event.device_id, day, False)
        self.signs.pop(key, None)
        self.signs[key] = (event, at)
        if len(self.signs) > self.limit:
            del self.signs[next(iter(self.signs))]
            self.dropped += 1


def _class(value: object) -> object:
    # What is_sign tells apart of a value: None, True, anything else.
    return value if value is None or value is True else False


@pytest.mark.parametrize("seed", range(40))
def test_the_columns_hold_what_the_dict_held_in_its_order(seed: int) -> None:
    rng = random.Random(seed)
    limit = rng.choice([3, 10, 50, 10_000])
    devices = [f"dev-{i}" for i in range(rng.randint(1, 12))]
    early, reference = EarlySigns(limit=limit), _Reference(limit)
    at = 1.8e9
    for _ in range(rng.randint(1, 600)):
        at += rng.random() * 600
        day = rng.choice([738_000, 738_000, 738_001, 738_002])  # mostly one day, some out of order
        event = Event(rng.choice(devices), rng.choice(_KINDS), at, "test", rng.choice(_VALUES))
        early.keep(event, day, at)
        reference.keep(event, day, at)
        assert len(early) == len(reference.signs)
        assert early.dropped == reference.dropped
    wanted = [(e.device_id, e.kind, _class(e.value), a) for e, a in reference.signs.values()]
    taken = early.take()
    assert [(e.device_id, e.kind, e.value, a) for e, a in taken] == wanted
    assert all(e.ts == a for e, a in taken)
    assert len(early) == 0 and early.take() == []


def test_a_busy_door_keeps_two_rows_not_one_per_event() -> None:
    early = EarlySigns(limit=1_000)
    for i in range(10_000):
        early.keep(Event("door", EventKind.DOOR_OPEN, 1.8e9 + i, "test", True), 738_000, 1.8e9 + i)
    assert len(early) == 2
    assert len(early._devices) == 1  # one pair of rows, the newest sign replaced in place
    assert [a for _, a in early.take()] == [1.8e9, 1.8e9 + 9_999]


def test_a_held_sign_keeps_no_object_of_its_own_but_its_device_s_entry() -> None:
    # The dict of (device, day, first) → (event, at) kept ≈ 0.25 KB a device, the event alive
    # included; a device's pair of rows and its dict entry are ≈ 0.12 KB.
    devices = [f"door-{i}" for i in range(5_000)]
    events = [Event(d, EventKind.DOOR_OPEN, 1.8e9, "test", True) for d in devices]
    early = EarlySigns(limit=200_000)
    early.keep(events[0], 738_000, 1.8e9)
    tracemalloc.start()
    try:
        for event in events[1:]:
            early.keep(event, 738_000, 1.8e9)
        del events
        kept, _ = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert kept < 150 * len(devices), f"{kept / len(devices):.0f} B a held sign"
