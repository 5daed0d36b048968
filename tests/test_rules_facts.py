"""A subject's attributes as shared facts plus its own ids: the same facts as a dict, less memory.

Memory itself is measured by ``bench.memory_split`` (docs/benchmarks.md), never here: these
tests hold that rules cannot tell a registry subject (a shared ``attributes`` dict, its own ids
in ``Subject.own``) from a subject made with one dict, and that what repeats is one object.
"""

from __future__ import annotations

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from adapters.events import DeviceKind, Event, EventKind
from hub.community.files import parse_yaml
from hub.community.registry import Registry
from rules.evaluator import Evaluator
from rules.facts import PLACE_ID, RESIDENT_ID, FactsMemo
from rules.loader import load_packs
from rules.model import Rule
from rules.state import MemoryState
from rules.subject import Subject, own_ids
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


# Run alone in a fresh checkout, the first text drawn builds Hypothesis's character table
# (> 1 s), which its too_slow check blames on this strategy.
@settings(suppress_health_check=[HealthCheck.too_slow])
@given(_attributes)
def test_split_facts_read_as_the_dict_they_were_made_from(attributes: dict[str, object]) -> None:
    shared, own = FactsMemo().split(attributes)  # type: ignore[arg-type]
    assert RESIDENT_ID not in shared and PLACE_ID not in shared
    split = Subject("d1", attributes=shared, own=own)
    whole = Subject("d1", attributes=attributes)  # type: ignore[arg-type]
    for subject in (split, whole):
        assert subject.facts() == attributes
        for key, value in attributes.items():
            assert subject.fact(key) == value and type(subject.fact(key)) is type(value)
        for missing in ("nope", PLACE_ID, RESIDENT_ID, "place.kind"):
            if missing not in attributes:
                assert subject.fact(missing) is None


def test_own_ids_take_one_field_and_answer_by_name() -> None:
    assert own_ids(None, None) is None
    assert own_ids("r1", None) == "r1"  # the common case: the string itself, no tuple
    assert own_ids(None, "p1") == (None, "p1")
    assert own_ids("r1", "p1") == ("r1", "p1")
    for resident, place in (("r1", None), (None, "p1"), ("r1", "p1"), (None, None)):
        subject = Subject("d1", attributes={"place.kind": "entrance"}, own=own_ids(resident, place))
        assert (subject.fact(RESIDENT_ID), subject.fact(PLACE_ID)) == (resident, place)
        assert subject.fact("place.kind") == "entrance"
    # The own field speaks for the device; attributes answer only what it does not hold.
    subject = Subject("d1", attributes={RESIDENT_ID: "r0", PLACE_ID: "p0"}, own=own_ids("r1", None))
    assert (subject.fact(RESIDENT_ID), subject.fact(PLACE_ID)) == ("r1", "p0")


def test_equal_shared_facts_are_one_dict() -> None:
    memo = FactsMemo()
    common = {"device.model": "HS1EB", "device.heartbeat_s": 3600.0, "resident.living_alone": True}
    first, first_own = memo.split({**common, RESIDENT_ID: "r1"})
    second, second_own = memo.split({**common, RESIDENT_ID: "r2"})
    assert first is second  # one dict for what the two share
    assert (first_own, second_own) == ("r1", "r2")
    # A fact's type is part of what is equal: True, 1 and 1.0 are three facts, not one.
    flags = [memo.split({"f": value})[0] for value in (True, 1, 1.0)]
    assert [type(f["f"]) for f in flags] == [bool, int, float]
    assert len({id(f) for f in flags}) == 3


def test_own_ids_must_be_text_and_never_shared() -> None:
    with pytest.raises(ValueError, match=r"resident\.id must be text"):
        FactsMemo().split({RESIDENT_ID: 7})
    with pytest.raises(ValueError, match="own ids"):
        FactsMemo().keep(("k",), {PLACE_ID: "p1"})


def _registry() -> Registry:
    sim = generate(seed=5, grids=2, buildings_per_grid=2, elders_per_building=3, parking_per_grid=3)
    # The second resident with the first one's facts: their devices are twins (``_twins``), as
    # most are at 10⁵ devices, where a handful of ages and flags repeat.
    first, second = sim.document["communities"][0]["residents"][:2]
    for fact in ("age", "living_alone", "disabled", "cognitive_impairment"):
        second[fact] = first[fact]
    return Registry(
        communities=parse_yaml(yaml.safe_dump(sim.document, allow_unicode=True), file="generated")
    )


def _twins(registry: Registry) -> tuple[Subject, Subject]:
    """Two registry subjects with one shared ``attributes`` object and two residents."""
    by_shared: dict[int, dict[object, Subject]] = {}
    for subject in registry.subjects():
        if subject.fact(RESIDENT_ID) is not None:
            by_shared.setdefault(id(subject.attributes), {})[subject.fact(RESIDENT_ID)] = subject
    pairs = [list(group.values())[:2] for group in by_shared.values() if len(group) > 1]
    assert pairs, "the generated community has two residents with the same shared facts"
    first, second = pairs[0]
    return first, second


def test_registry_subjects_share_their_facts_and_keep_their_own_ids() -> None:
    registry = _registry()
    subjects = registry.subjects()
    with_resident = [s for s in subjects if s.fact(RESIDENT_ID) is not None]
    with_place = [s for s in subjects if s.fact(PLACE_ID) is not None]
    assert with_resident and with_place
    for subject in with_resident:
        device = registry.device(subject.device_id)
        assert device is not None
        resident_id = device.resident or subject.fact(RESIDENT_ID)
        resident = registry.resident(str(resident_id))
        assert resident is not None and subject.fact(RESIDENT_ID) == resident.id
        assert subject.fact("resident.living_alone") is resident.living_alone
    for subject in with_place:
        device = registry.device(subject.device_id)
        assert device is not None and subject.fact(PLACE_ID) == device.place
    # No mapping per device: ``attributes`` is the shared dict itself, equal ones one object,
    # and it never holds a device's own ids.
    by_content: dict[tuple[tuple[str, type, object], ...], set[int]] = {}
    for subject in subjects:
        shared = subject.attributes
        assert type(shared) is dict
        assert RESIDENT_ID not in shared and PLACE_ID not in shared
        by_content.setdefault(tuple((k, type(v), v) for k, v in shared.items()), set()).add(id(shared))
    assert all(len(ids) == 1 for ids in by_content.values())
    assert len(by_content) < len(subjects)
    first, second = _twins(registry)
    assert first.attributes is second.attributes
    assert first.fact(RESIDENT_ID) != second.fact(RESIDENT_ID)
    assert first.facts()[RESIDENT_ID] == first.fact(RESIDENT_ID)


def test_rules_read_registry_subjects_as_they_read_a_dict() -> None:
    """The same events, one registry subject and one made with its facts as one dict: the same signals."""
    registry = _registry()
    elders = [
        s for s in registry.subjects() if s.kind is DeviceKind.DOOR_SENSOR and s.fact(RESIDENT_ID) is not None
    ]
    assert elders
    made = []
    for as_dict in (False, True):
        evaluator = Evaluator(rules=load_packs(), state=MemoryState(), zone="Asia/Shanghai")
        subjects = [
            Subject(s.device_id, s.kind, s.grid, s.community, s.facts()) if as_dict else s for s in elders
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


def _battery_of(resident: str) -> Rule:
    """The pack's low-battery rule at 50 %, scoped to one resident (``t.battery_of_one``)."""
    battery = next(r for r in load_packs() if r.id == "device.battery_low_percent")
    doc = battery.model_dump(by_alias=True, exclude_none=True)
    doc["id"] = "t.battery_of_one"
    doc["scope"] = {"attributes": {RESIDENT_ID: resident}}
    doc["trigger"] = {**doc["trigger"], "below": 50, "clear_above": 60}
    return Rule.model_validate(doc)


def test_resident_overrides_and_scopes_tell_registry_twins_apart() -> None:
    """Two devices sharing one ``attributes`` dict, two residents: an override or a scope that
    names one resident is that device's only, also through the plans shared by profile."""
    registry = _registry()
    first, second = _twins(registry)
    rules = [*load_packs(), _battery_of(str(first.fact(RESIDENT_ID)))]
    overrides = {
        "device.battery_low_percent": {
            f"resident:{first.fact(RESIDENT_ID)}": {"below": 40, "clear_above": 45}
        }
    }
    evaluator = Evaluator(rules=rules, state=MemoryState(), zone="Asia/Shanghai", overrides=overrides)
    assert evaluator.plan(EventKind.BATTERY, first) is not evaluator.plan(EventKind.BATTERY, second)
    fired = {}
    for subject in (first, second):
        event = Event(subject.device_id, EventKind.BATTERY, T0, "native", 35)
        fired[subject.device_id] = {s.rule_id for s in evaluator.on_event(event, subject)}
    # 35 %: below the overridden 40 and the scoped rule's 50 for the first resident's device; the
    # other is neither in the scope nor overridden (the pack's 20).
    assert fired[first.device_id] == {"device.battery_low_percent", "t.battery_of_one"}
    assert fired[second.device_id] == set()


def test_keys_find_kept_facts_and_equal_facts_under_two_keys_are_one() -> None:
    memo = FactsMemo()
    assert memo.shared(("HS1EB", 3600.0)) is None
    kept = memo.keep(("HS1EB", 3600.0), {"device.model": "HS1EB", "device.heartbeat_s": 3600.0})
    assert memo.shared(("HS1EB", 3600.0)) is kept
    again = memo.keep(("other key",), {"device.model": "HS1EB", "device.heartbeat_s": 3600}.copy())
    assert again is not kept  # 3600 is not 3600.0
    assert memo.keep(("other key",), {"device.model": "HS1EB", "device.heartbeat_s": 3600.0}) is kept


def test_a_resident_scope_alone_tells_registry_twins_apart() -> None:
    """Without an override to set them apart, the plans shared by profile must still keep a rule
    scoped to one resident off the other's device (the profile reads the scope's facts)."""
    registry = _registry()
    first, second = _twins(registry)
    rules = [*load_packs(), _battery_of(str(first.fact(RESIDENT_ID)))]
    evaluator = Evaluator(rules=rules, state=MemoryState(), zone="Asia/Shanghai")
    fired = {}
    for subject in (second, first):  # the other one first: its plan must not be the first's
        event = Event(subject.device_id, EventKind.BATTERY, T0, "native", 35)
        fired[subject.device_id] = {s.rule_id for s in evaluator.on_event(event, subject)}
    assert fired[first.device_id] == {"t.battery_of_one"}
    assert fired[second.device_id] == set()
