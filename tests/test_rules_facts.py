"""A subject's attributes as shared facts plus its own ids: the same mapping as a dict, less memory.

Memory itself is measured by ``bench.memory_split`` (docs/benchmarks.md), never here: these
tests hold that nobody can tell :class:`Facts` from the dict it replaced, and that what repeats
is one object.
"""

from __future__ import annotations

import pytest
import yaml
from hypothesis import given
from hypothesis import strategies as st

from adapters.events import DeviceKind, Event, EventKind
from hub.community.files import parse_yaml
from hub.community.registry import Registry
from rules.evaluator import Evaluator
from rules.facts import PLACE_ID, RESIDENT_ID, Facts, FactsMemo
from rules.loader import load_packs
from rules.state import MemoryState
from rules.subject import Subject
from simulators.community import generate

T0 = 1_800_000_000.0
#: 01:00 in Asia/Shanghai (T0 is 16:00 there): inside elderly.night_activity's 00:00–05:00.
NIGHT = T0 + 9 * 3600

_values = st.one_of(st.booleans(), st.integers(-5, 200), st.floats(allow_nan=False), st.text(max_size=8))
_attributes = st.dictionaries(
    st.sampled_from(
        ["device.model", "device.heartbeat_s", "place.kind", "resident.age", "x", PLACE_ID, RESIDENT_ID]
    ),
    _values,
).map(lambda d: {k: (str(v) if k in (PLACE_ID, RESIDENT_ID) else v) for k, v in d.items()})


@given(_attributes)
def test_facts_read_as_the_dict_they_were_made_from(attributes: dict[str, object]) -> None:
    facts = FactsMemo().facts(attributes)  # type: ignore[arg-type]
    assert dict(facts) == attributes
    assert facts == attributes and attributes == facts
    assert len(facts) == len(attributes)
    assert set(facts) == set(attributes)
    for key, value in attributes.items():
        assert key in facts
        assert facts[key] == value and type(facts[key]) is type(value)
        assert facts.get(key) == value
    for missing in ("nope", PLACE_ID, RESIDENT_ID, "place.kind"):
        if missing not in attributes:
            assert missing not in facts
            assert facts.get(missing) is None and facts.get(missing, 7) == 7
            with pytest.raises(KeyError):
                facts[missing]
    assert 3 not in facts  # not a key of a str mapping: no error, just absent


def test_equal_shared_facts_are_one_dict_and_devices_without_ids_one_object() -> None:
    memo = FactsMemo()
    common = {"device.model": "HS1EB", "device.heartbeat_s": 3600.0, "resident.living_alone": True}
    first = memo.facts({**common, RESIDENT_ID: "r1"})
    second = memo.facts({**common, RESIDENT_ID: "r2"})
    assert first._shared is second._shared  # one dict for what the two share
    assert first[RESIDENT_ID] == "r1" and second[RESIDENT_ID] == "r2"
    assert memo.facts(common) is memo.facts(dict(common))  # no own ids: one object
    # A fact's type is part of what is equal: True, 1 and 1.0 are three facts, not one.
    flags = [memo.facts({"f": value}) for value in (True, 1, 1.0)]
    assert [type(f["f"]) for f in flags] == [bool, int, float]
    assert len({id(f) for f in flags}) == 3


def test_own_ids_must_be_text_and_never_shared() -> None:
    with pytest.raises(ValueError, match=r"resident\.id must be text"):
        FactsMemo().facts({RESIDENT_ID: 7})
    with pytest.raises(ValueError, match="own ids"):
        Facts({PLACE_ID: "p1"})


def _registry() -> Registry:
    sim = generate(seed=5, grids=2, buildings_per_grid=2, elders_per_building=3, parking_per_grid=3)
    return Registry(
        communities=parse_yaml(yaml.safe_dump(sim.document, allow_unicode=True), file="generated")
    )


def test_registry_subjects_share_their_facts_and_keep_their_own_ids() -> None:
    registry = _registry()
    subjects = registry.subjects()
    with_resident = [s for s in subjects if RESIDENT_ID in s.attributes]
    with_place = [s for s in subjects if PLACE_ID in s.attributes]
    assert with_resident and with_place
    for subject in with_resident:
        device = registry.device(subject.device_id)
        assert device is not None
        resident_id = device.resident or subject.attributes[RESIDENT_ID]
        resident = registry.resident(str(resident_id))
        assert resident is not None and subject.attributes[RESIDENT_ID] == resident.id
        assert subject.attributes["resident.living_alone"] is resident.living_alone
    for subject in with_place:
        device = registry.device(subject.device_id)
        assert device is not None and subject.attributes[PLACE_ID] == device.place
    # Equal shared parts are one object: one id per distinct content, and some are shared.
    by_content: dict[tuple[tuple[str, type, object], ...], set[int]] = {}
    for subject in subjects:
        facts = subject.attributes
        assert isinstance(facts, Facts)
        shared = facts._shared
        by_content.setdefault(tuple((k, type(v), v) for k, v in shared.items()), set()).add(id(shared))
    assert all(len(ids) == 1 for ids in by_content.values())
    assert len(by_content) < len(subjects)


def test_rules_read_facts_as_they_read_a_dict() -> None:
    """The same events, one subject with :class:`Facts` and one with the dict: the same signals."""
    registry = _registry()
    elders = [
        s
        for s in registry.subjects()
        if s.kind is DeviceKind.DOOR_SENSOR and s.attributes.get(RESIDENT_ID) is not None
    ]
    assert elders
    made = []
    for as_dict in (False, True):
        evaluator = Evaluator(rules=load_packs(), state=MemoryState(), zone="Asia/Shanghai")
        subjects = [
            Subject(s.device_id, s.kind, s.grid, s.community, dict(s.attributes)) if as_dict else s
            for s in elders
        ]
        signals = evaluator.start(subjects, NIGHT)
        for subject in subjects:
            for n in range(
                8
            ):  # night-time door openings: elderly.night_activity's condition reads resident.id
                event = Event(subject.device_id, EventKind.DOOR_OPEN, NIGHT + 60 * n, "native", True)
                signals += evaluator.on_event(event, subject)
        signals += evaluator.due(NIGHT + 30 * 86_400)  # absence: living alone, the door not opened since
        made.append(sorted((s.rule_id, s.subject, s.action.value) for s in signals))
    assert made[0] == made[1]
    assert {"elderly.night_activity"} <= {rule for rule, _, _ in made[0]}  # the condition was read


def test_keys_find_kept_facts_and_equal_facts_under_two_keys_are_one() -> None:
    memo = FactsMemo()
    assert memo.shared(("HS1EB", 3600.0)) is None
    kept = memo.keep(("HS1EB", 3600.0), {"device.model": "HS1EB", "device.heartbeat_s": 3600.0})
    assert memo.shared(("HS1EB", 3600.0)) is kept
    again = memo.keep(("other key",), {"device.model": "HS1EB", "device.heartbeat_s": 3600.0})
    assert again is kept
    assert memo.keep(("int beat",), {"device.model": "HS1EB", "device.heartbeat_s": 3600}) is not kept
    assert memo.of(kept) is memo.of(kept)  # no own ids: one object
    own = memo.of(kept, resident="r1")
    assert own is not memo.of(kept, resident="r1") and own == memo.of(kept, resident="r1")
    assert dict(own) == {"device.model": "HS1EB", "device.heartbeat_s": 3600.0, RESIDENT_ID: "r1"}
