"""The lease loop against a real PostgreSQL: fair shares, a joining node, a clean hand-over,
a lost lease dropped, and the fence refusing a write for a community this node lost.

The MQTT side of a session is recorded here (which communities are open at each moment);
tests/test_cluster_hubs.py runs whole hubs with real Mosquitto sessions."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest

from hub.clock import ManualClock
from hub.cluster.balance import fair_share, plan
from hub.cluster.runtime import ClusterRuntime
from hub.cluster.wiring import cluster_runtime
from hub.community.registry import Registry
from hub.config import Settings
from hub.errors import ConfigError, FencedError, StoreError
from hub.ingest.alerts import record_signal
from hub.ingest.retry import Redelivery
from hub.mqtt.client import Unhandled
from hub.storage.leases import LeaseStore
from hub.storage.postgres import MIGRATION_LOCK
from hub.storage.rule_state import RuleStateStore
from hub.storage.scope import WHOLE_HUB
from hub.storage.store import Store
from rules import MemoryState, Slot
from rules.signals import SignalAction
from rules.subject import Subject
from tests.test_store import T0, signal

COMMUNITIES = [f"11010500100{i}" for i in range(1, 7)]
LEASE_S = 0.9


class Recorded:
    """Sessions as the lease loop opens and closes them, with a check that no two nodes overlap."""

    def __init__(self, node: str, open_now: dict[str, str]) -> None:
        self.node = node
        self.open_now = open_now  # shared by all nodes: community → node with a session open
        self.opened: list[str] = []

    async def open(self, community: str) -> None:
        holder = self.open_now.get(community)
        assert holder is None, f"{community} opened on {self.node} while open on {holder}"
        self.open_now[community] = self.node
        self.opened.append(community)

    async def close(self, community: str) -> None:
        if self.open_now.get(community) == self.node:
            del self.open_now[community]

    async def close_all(self) -> None:
        for community in [c for c, n in self.open_now.items() if n == self.node]:
            await self.close(community)


@pytest.fixture
def stores(postgres_url: str) -> Iterator[list[Store]]:
    opened = [Store(url=postgres_url) for _ in range(4)]
    yield opened
    for store in opened:
        store.close()


def node(
    store: Store, name: str, open_now: dict[str, str], communities: list[str] = COMMUNITIES
) -> ClusterRuntime:
    return ClusterRuntime(
        leases=LeaseStore(store=store, node_id=name, lease_s=LEASE_S),
        communities=lambda: communities,
        sessions=Recorded(name, open_now),
    )


def mine(runtime: ClusterRuntime) -> set[str]:
    """The communities a node owns, without the hub-wide partition (claimed by whoever finds it free)."""
    return set(runtime.owned) - {WHOLE_HUB}


async def rounds(nodes: list[ClusterRuntime], n: int = 3) -> None:
    for _ in range(n):
        for runtime in nodes:
            await runtime.round()


def test_the_fair_share_and_the_plan() -> None:
    assert [fair_share(6, n) for n in (1, 2, 3, 4, 6, 7)] == [6, 3, 2, 2, 1, 1]
    decided = plan(communities=COMMUNITIES, owned=COMMUNITIES[:4], others=[2, 0], expires={}, now=10.0)
    assert decided.give_up == tuple(COMMUNITIES[2:4]) and decided.room == 0 and decided.claim == ()
    held = {c: 20.0 for c in COMMUNITIES[:3]} | {COMMUNITIES[3]: 5.0}  # the 4th expired at 5
    decided = plan(communities=COMMUNITIES, owned=[], others=[3], expires=held, now=10.0)
    assert decided.claim == tuple(COMMUNITIES[3:]) and decided.room == 3
    gone = plan(communities=COMMUNITIES[:2], owned=["999999999999"], others=[], expires={}, now=0.0)
    assert gone.give_up == ("999999999999",)
    # 7 over 3 nodes: 3 + 3 + 1 is not fair; a node at the ceiling gives one up to the one below
    # the floor, and 3 + 2 + 2 is left alone.
    seven = [*COMMUNITIES, "110105001007"]
    assert plan(communities=seven, owned=seven[:3], others=[3, 1], expires={}, now=0.0).give_up == (seven[2],)
    assert plan(communities=seven, owned=seven[:3], others=[2, 2], expires={}, now=0.0).give_up == ()


async def test_three_nodes_share_six_communities_two_each(stores: list[Store]) -> None:
    open_now: dict[str, str] = {}
    nodes = [node(stores[i], f"hub-{i}", open_now) for i in range(3)]
    # The first to run claims all six (it sees only itself); the next rounds balance them.
    await rounds(nodes)
    owned = [mine(r) for r in nodes]
    assert [len(o) for o in owned] == [2, 2, 2], owned
    assert set().union(*owned) == set(COMMUNITIES)
    assert [WHOLE_HUB in r.owned for r in nodes].count(True) == 1
    assert sorted(open_now) == sorted([*COMMUNITIES, WHOLE_HUB])
    status = LeaseStore(store=stores[3], node_id="x", lease_s=LEASE_S).status()
    assert {(lease.community, lease.owner) for lease in status.leases} == {
        (c, r.node_id) for r in nodes for c in r.owned
    }


async def test_a_joining_node_takes_a_fair_share_without_two_owners_at_once(stores: list[Store]) -> None:
    open_now: dict[str, str] = {}
    a, b = node(stores[0], "hub-a", open_now), node(stores[1], "hub-b", open_now)
    await rounds([a, b])
    assert (len(mine(a)), len(mine(b))) == (3, 3)
    before = {c: (r.node_id, e) for r in (a, b) for c, e in r.owned.items()}
    c = node(stores[2], "hub-c", open_now)
    started = time.monotonic()
    await rounds([c, a, b, c])  # the joiner is seen, the others give up one each, the joiner takes them
    taken = time.monotonic() - started
    assert (len(mine(a)), len(mine(b)), len(mine(c))) == (2, 2, 2)
    assert taken < LEASE_S, "handed over by release, not by waiting out a live lease"
    for community, epoch in c.owned.items():
        assert epoch == before[community][1] + 1  # changed hands: a new epoch fences the old owner
    # Recorded asserted that no community was open on two nodes at once.
    assert sorted(open_now) == sorted([*COMMUNITIES, WHOLE_HUB])


async def test_a_clean_stop_hands_over_at_once_and_a_lost_lease_is_dropped(stores: list[Store]) -> None:
    open_now: dict[str, str] = {}
    a, b = node(stores[0], "hub-a", open_now), node(stores[1], "hub-b", open_now)
    await rounds([a, b])
    mine = set(a.owned)
    await a.stop()
    assert not a.owned and not (set(open_now) & mine)
    await b.round()  # b's next round: a's communities are free now, no expiry to wait for
    assert set(b.owned) == {*COMMUNITIES, WHOLE_HUB}
    # b pauses past its lease; a comes back and takes over at new epochs.
    paused = dict(b.owned)
    await asyncio.sleep(LEASE_S * 1.2)
    a2 = node(stores[2], "hub-a2", open_now)
    # The broker would hand b's sessions to a2 (same client ids); the recorder only tracks opens.
    open_now.clear()
    await a2.round()
    assert set(a2.owned) == {*COMMUNITIES, WHOLE_HUB}
    community = COMMUNITIES[0]
    with pytest.raises(FencedError), stores[1].transaction() as tx:
        LeaseStore(store=stores[1], node_id="hub-b", lease_s=LEASE_S).fence(tx, community, paused[community])
    await b.round()  # b wakes up: every renewal finds another owner; it drops them all
    assert b.owned == {}


async def test_the_fence_refuses_a_community_this_node_does_not_own(stores: list[Store]) -> None:
    open_now: dict[str, str] = {}
    a = node(stores[0], "hub-a", open_now, communities=COMMUNITIES[:1])
    b = node(stores[1], "hub-b", open_now, communities=COMMUNITIES[:1])
    await a.round()
    stores[0].install_fence(a.fence)
    stores[1].install_fence(b.fence)
    with stores[0].transaction(community=COMMUNITIES[0]) as tx:
        tx.execute("INSERT INTO cluster_nodes (node_id, started_at, heartbeat_at) VALUES ('probe', 0, 0)")
    with pytest.raises(FencedError), stores[1].transaction(community=COMMUNITIES[0]) as tx:
        tx.execute("INSERT INTO cluster_nodes (node_id, started_at, heartbeat_at) VALUES ('landed', 0, 0)")
    names = {row[0] for row in stores[2].execute("SELECT node_id FROM cluster_nodes")}
    assert "probe" in names and "landed" not in names
    b.fenced(COMMUNITIES[0])  # a session reports the refusal: b owns nothing, the round is a no-op
    await b.round()
    assert b.owned == {} and a.owned.keys() == {COMMUNITIES[0], WHOLE_HUB}


async def test_a_node_without_the_hub_wide_lease_writes_no_unregistered_devices_alert(
    stores: list[Store],
) -> None:
    """Rows of no community (an unregistered device's press, its case, its rule state) are the
    hub-wide partition's. They were written unfenced: a node that had lost that lease (paused
    past it, say) still raised, filed and escalated them beside the new owner."""
    open_now: dict[str, str] = {}
    a = node(stores[0], "hub-a", open_now, communities=COMMUNITIES[:1])
    b = node(stores[1], "hub-b", open_now, communities=COMMUNITIES[:1])
    await a.round()
    assert WHOLE_HUB in a.owned and WHOLE_HUB not in b.owned
    stores[0].install_fence(a.fence)
    stores[1].install_fence(b.fence)
    stranger = Subject("0xdeadbeef", None, None, None)  # no grid, no community
    with pytest.raises(FencedError):
        record_signal(stores[1], signal(subject=stranger.device_id), stranger, [])
    with pytest.raises(FencedError):
        record_signal(stores[1], signal(SignalAction.CLEAR, subject=stranger.device_id), stranger, [])
    assert stores[2].execute("SELECT count(*) FROM alerts").fetchone()[0] == 0
    change = record_signal(stores[0], signal(subject=stranger.device_id), stranger, [])
    assert change is not None and change.created
    # A registered device's row is still fenced by its own community, not by the hub-wide lease.
    member = Subject("btn-1", None, f"{COMMUNITIES[0]}001", COMMUNITIES[0])
    assert record_signal(stores[0], signal(subject="btn-1"), member, []) is not None
    with pytest.raises(FencedError):
        record_signal(stores[1], signal(subject="btn-1", ts=T0 + 1), member, [])
    # Its rule state too: the node without the lease writes none of it, the owner does.
    for store, written in ((stores[1], 0), (stores[0], 1)):
        state = MemoryState()
        state.put(("devices.offline", stranger.device_id), Slot("absence", due=T0 + 7200, last_ts=T0))
        RuleStateStore(store=store).flush(state)
        assert stores[2].execute("SELECT count(*) FROM rule_state").fetchone()[0] == written


class RuleRuntimeStub:
    """Never reached: the settings are refused before any rule state is touched."""

    def adopt(self, subjects: object, *, owned: object) -> None:
        raise AssertionError("not reached")

    def forget(self, device_ids: object) -> None:
        raise AssertionError("not reached")

    def flush(self, *, include_routine: bool = False) -> int:
        raise AssertionError("not reached")


def test_a_node_id_needs_a_postgresql_store(tmp_path: Path) -> None:
    settings = Settings(data_dir=tmp_path, cluster={"node_id": "hub-a"})  # type: ignore[arg-type]
    store = Store(path=tmp_path / "s.sqlite3")
    try:
        with pytest.raises(ConfigError, match="PostgreSQL"):
            cluster_runtime(
                settings=settings,
                store=store,
                registry=Registry(),
                on_message=lambda *_: None,
                on_unhandled=lambda _: None,
                reply_subscription=lambda c: c,
                rules=RuleRuntimeStub(),
                wake_casework=lambda: None,
                on_remote=lambda _: None,
            )
    finally:
        store.close()


def test_held_messages_of_a_lost_community_are_dropped_unacknowledged() -> None:
    """A message the hub's own retry holds, whose community this node then loses: the retry
    stops (it would fail forever) and never acknowledges it — the broker gives it to the owner."""
    acked: list[str] = []
    lost = COMMUNITIES[0]

    def handle(topic: str, payload: bytes, qos: int, retain: bool, dup: bool) -> None:
        if topic.startswith(lost):
            raise FencedError(community=lost, node_id="hub-a", epoch=1, held="hub-b at epoch 2")

    retry = Redelivery(handle=handle, clock=ManualClock(start=0.0))
    for topic in (f"{lost}/sos-1", f"{lost}/sos-1", f"{COMMUNITIES[1]}/sos-1"):
        retry.hold(Unhandled(topic, b"{}", 1, False, lambda t=topic: acked.append(t), StoreError("locked")))
    assert retry.retry_now() == 1
    assert retry.depth == 0
    assert acked == [f"{COMMUNITIES[1]}/sos-1"]


def test_a_hub_waits_for_another_hubs_migration(postgres_url: str) -> None:
    """Hubs started together: one migrates under the advisory lock, the other waits for it —
    longer than the 200 ms a write may wait for a lock (it failed to open the store before)."""
    holding = threading.Event()

    def migrate_slowly() -> None:
        with psycopg.connect(postgres_url) as conn, conn.transaction():
            conn.execute("SELECT pg_advisory_xact_lock(%s)", (MIGRATION_LOCK,))
            holding.set()
            time.sleep(1.0)

    other = threading.Thread(target=migrate_slowly)
    other.start()
    assert holding.wait(10)
    try:
        Store(url=postgres_url).close()
    finally:
        other.join(10)
