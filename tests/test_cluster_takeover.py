"""Takeover of rule state with a real PostgreSQL: a community's timers move with its lease and
resume at their original times; each fires on exactly one node.

Two nodes in one process (their own store connections, leases and rule runtimes, one manual
clock for the rules); the hubs-as-processes tests are tests/test_cluster_hubs.py."""

from __future__ import annotations

import logging
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, replace

import pytest

from adapters.events import Event, EventKind
from hub.clock import Clock, ManualClock, SteadyClock
from hub.cluster.runtime import ClusterRuntime
from hub.cluster.takeover import Takeover
from hub.community.model import CommunityFile
from hub.community.registry import Registry
from hub.ingest.rule_runtime import RuleRuntime
from hub.storage.leases import LeaseStore
from hub.storage.rule_state import RuleStateStore
from hub.storage.store import Store
from rules.signals import Signal
from tests.cluster_support import COMMUNITIES, NoSessions, door, registry

T0 = 1_795_371_180.0
HEARTBEAT_S = 3600.0  # the registry's default: device.offline fires after 2 × heartbeat


@dataclass
class Node:
    store: Store
    rules: RuleRuntime
    runtime: ClusterRuntime

    def fire(self) -> list[Signal]:
        fired: list[Signal] = []

        def keep(signals: Sequence[Signal]) -> None:
            fired.extend(signals)

        self.rules.run_due(keep)
        return fired


@pytest.fixture
def district() -> Registry:
    return Registry(communities=CommunityFile.model_validate(registry()).communities)


@pytest.fixture
def stores(postgres_url: str) -> Iterator[list[Store]]:
    opened = [Store(url=postgres_url) for _ in range(3)]
    yield opened
    for store in opened:
        store.close()


def node(store: Store, name: str, reg: Registry, clock: Clock) -> Node:
    rules = RuleRuntime(
        rule_paths=[],
        rules=None,
        overrides={},
        zone="Asia/Shanghai",
        registry=reg,
        state_store=RuleStateStore(store=store, community_of=lambda s: reg.subject(s).community),
        clock=clock,
    )
    runtime: ClusterRuntime
    takeover = Takeover(
        registry=reg,
        rules=rules,
        owned=lambda: runtime.scope(),  # noqa: PLW0108 - runtime is built below
        wake_casework=lambda: None,
    )
    runtime = ClusterRuntime(
        leases=LeaseStore(store=store, node_id=name, lease_s=30.0),
        communities=lambda: [c.code for c in reg.communities],
        sessions=NoSessions(),
        on_gained=takeover.gained,
        on_lost=takeover.lost,
    )
    store.install_fence(runtime.fence)
    return Node(store, rules, runtime)


async def test_timers_move_with_the_community_and_fire_once_at_their_original_time(
    stores: list[Store], district: Registry
) -> None:
    clock = ManualClock(start=T0)
    a = node(stores[0], "hub-a", district, clock)
    assert a.rules.evaluator.next_due() is None, (
        "a node owns nothing (and runs no timer) before its first lease"
    )
    await a.runtime.round()
    assert set(a.runtime.scope()) >= set(COMMUNITIES)
    assert a.rules.evaluator.next_due() == T0 + 2 * HEARTBEAT_S  # armed when taken
    a.rules.flush(include_routine=True)  # the deadlines armed when taken are routine writes
    devices = len(district.subjects())
    assert a.rules._state_store.count() == devices

    clock.set(T0 + HEARTBEAT_S)  # an hour later a second node joins
    b = node(stores[1], "hub-b", district, clock)
    await b.runtime.round()  # seen as live; everything is held
    await a.runtime.round()  # above its share of 3: hands three over (state written, then dropped)
    await b.runtime.round()  # takes them, reading their state from the store
    mine_a = {c for c in a.runtime.scope() if c in COMMUNITIES}
    mine_b = {c for c in b.runtime.scope() if c in COMMUNITIES}
    assert len(mine_a) == len(mine_b) == 3 and not mine_a & mine_b
    # Resumed at the original deadline, not re-armed from the takeover (that would be T0 + 3 h).
    assert b.rules.evaluator.next_due() == T0 + 2 * HEARTBEAT_S

    clock.set(T0 + 2 * HEARTBEAT_S + 1)
    fired_a, fired_b = a.fire(), b.fire()
    community_of = {s.device_id: s.community for s in district.subjects()}
    assert {community_of[s.subject] for s in fired_a} == mine_a
    assert {community_of[s.subject] for s in fired_b} == mine_b
    subjects = [s.subject for s in fired_a + fired_b]
    assert sorted(subjects) == sorted(community_of), "every device's offline timer fired once, on its owner"


async def test_a_node_that_lost_its_community_writes_none_of_its_rule_state(
    stores: list[Store], district: Registry
) -> None:
    clock = ManualClock(start=T0)
    a = node(stores[0], "hub-a", district, clock)
    await a.runtime.round()
    a.rules.flush(include_routine=True)
    # Another node takes every lease from under a (as after a pause past the lease).
    stores[2].execute("UPDATE community_leases SET owner = 'hub-x', epoch = epoch + 1")
    before = {
        (r, s): bytes(st)
        for r, s, st in stores[2].execute("SELECT rule, subject, state FROM rule_state").fetchall()
    }
    clock.set(T0 + 2 * HEARTBEAT_S + 1)
    assert a.fire(), "a's timers fire in memory: it does not know yet"
    a.rules.flush()  # every community's write is refused by the fence
    after = {
        (r, s): bytes(st)
        for r, s, st in stores[2].execute("SELECT rule, subject, state FROM rule_state").fetchall()
    }
    assert after == before


async def test_a_clean_stop_writes_the_routine_rule_state_before_letting_go(
    stores: list[Store], district: Registry
) -> None:
    """Routine updates (a reading moving an absence deadline on) are written every few seconds
    and at stop; the stop's hand-over must write them while the leases are still this node's."""
    clock = ManualClock(start=T0)
    a = node(stores[0], "hub-a", district, clock)
    await a.runtime.round()
    a.rules.flush(include_routine=True)
    state = a.rules._state
    key = sorted(state.slot_keys())[0]
    slot = state.get(key)
    assert slot is not None and slot.due == T0 + 2 * HEARTBEAT_S
    # A reading an hour in moves the deadline on, as the evaluator does: a routine update.
    state.put(key, replace(slot, last_ts=T0 + HEARTBEAT_S, due=T0 + 3 * HEARTBEAT_S), durable=False)
    await a.runtime.stop()
    b = node(stores[1], "hub-b", district, clock)
    await b.runtime.round()
    moved = b.rules._state.get(key)
    assert moved is not None and moved.due == T0 + 3 * HEARTBEAT_S


async def test_a_node_whose_clock_is_behind_runs_the_taken_rules_from_the_last_owners_newest_event(
    stores: list[Store], district: Registry, caplog: pytest.LogCaptureFixture
) -> None:
    """Clock skew between nodes is a step back at the takeover: node B's clock 60 s behind A's
    made every event B stamped older than the last one A applied — "late", so a door that
    closed after the takeover still counted as held open, and a car in the fire lane got no
    alert, until B's clock passed A's. B's rules' clock now runs on from A's newest event."""
    mono = [0.0]
    wall_a, wall_b = ManualClock(start=T0), ManualClock(start=T0 - 60)
    clock_a = SteadyClock(wall=wall_a, monotonic=lambda: mono[0])
    clock_b = SteadyClock(wall=wall_b, monotonic=lambda: mono[0])
    a = node(stores[0], "hub-a", district, clock_a)
    await a.runtime.round()
    taken = {c for c in a.runtime.scope() if c in COMMUNITIES}
    mono[0] += 100
    wall_a.advance(100)
    wall_b.advance(100)
    opened = {
        community: Event(door(community), EventKind.DOOR_OPEN, clock_a.now(), "zigbee2mqtt")
        for community in taken
    }
    for community, event in opened.items():
        a.rules.evaluator.on_event(event, district.subject(door(community)))
    a.rules.flush(include_routine=True)

    b = node(stores[1], "hub-b", district, clock_b)
    await b.runtime.round()
    await a.runtime.round()  # hands three communities over
    with caplog.at_level(logging.WARNING, logger="hub.ingest.rule_runtime"):
        await b.runtime.round()
    moved = {c for c in b.runtime.scope() if c in COMMUNITIES}
    assert len(moved) == 3
    newest = max(opened[c].ts for c in moved)
    assert clock_b.now() >= newest and clock_b.ahead == pytest.approx(newest - wall_b.now())
    assert any("behind the last owner" in r.getMessage() for r in caplog.records)
    # The door closes on B a second later, stamped on B's rules' clock: applied, not late.
    mono[0] += 1
    wall_b.advance(1)
    community = sorted(moved)[0]
    closed = Event(door(community), EventKind.DOOR_CLOSED, clock_b.now(), "zigbee2mqtt")
    b.rules.evaluator.on_event(closed, district.subject(door(community)))
    state = b.rules._state
    times = [
        slot.last_ts for key in state.slot_keys() if key[1] == door(community) and (slot := state.get(key))
    ]
    assert closed.ts in times, (closed.ts, times)
