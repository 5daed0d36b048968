"""Leases renewed off the event loop, against a real PostgreSQL.

A burst that holds the loop past ``lease_s`` keeps the node's leases at their epochs (before
the renewer thread, another node took them); a loop stuck past ``max_stall_s`` lets them go;
a lease taken away is reported to the loop, which drops the community. That a SIGSTOPped
process — renewer thread included — loses its leases is tests/test_cluster_hubs.py's paused
node."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Callable, Iterator

import pytest

from hub.cluster.renewer import LeaseRenewer
from hub.cluster.runtime import ROUNDS_PER_LEASE, ClusterRuntime
from hub.storage.leases import LeaseStore
from hub.storage.store import Store
from tests.cluster_support import NoSessions

COMMUNITIES = ["110105001001", "110105001002", "110105001003"]
LEASE_S = 0.9
PERIOD_S = LEASE_S / ROUNDS_PER_LEASE


@pytest.fixture
def stores(postgres_url: str) -> Iterator[list[Store]]:
    opened = [Store(url=postgres_url) for _ in range(3)]
    yield opened
    for store in opened:
        store.close()


def runtime(store: Store, url: str, *, renew: bool, max_stall_s: float | None = None) -> ClusterRuntime:
    return ClusterRuntime(
        leases=LeaseStore(store=store, node_id="hub-a", lease_s=LEASE_S),
        communities=lambda: COMMUNITIES,
        sessions=NoSessions(),
        renewer=LeaseRenewer(
            url=url, node_id="hub-a", lease_s=LEASE_S, period_s=PERIOD_S, max_stall_s=max_stall_s
        )
        if renew
        else None,
    )


async def until(condition: Callable[[], bool], *, within: float, what: str) -> None:
    deadline = time.monotonic() + within
    while not condition():
        assert time.monotonic() < deadline, f"not within {within} s: {what}"
        await asyncio.sleep(0.05)


def block_the_loop_while_another_node_claims(
    store: Store, communities: list[str], seconds: float
) -> set[str]:
    """Hold the calling event loop for ``seconds`` (``time.sleep`` inside a coroutine, as a long
    synchronous handler would) while hub-b tries, from a thread, to acquire ``communities``."""
    thief = LeaseStore(store=store, node_id="hub-b", lease_s=LEASE_S)
    taken: set[str] = set()
    done = threading.Event()

    def claim() -> None:
        while not done.is_set():
            taken.update(c for c in communities if c not in taken and thief.acquire(c) is not None)
            done.wait(0.05)

    claimer = threading.Thread(target=claim, name="test-hub-b")
    claimer.start()
    try:
        time.sleep(seconds)  # the event loop runs nothing meanwhile
    finally:
        done.set()
        claimer.join()
    return taken


def epochs(store: Store) -> dict[str, tuple[str, int]]:
    status = LeaseStore(store=store, node_id="probe", lease_s=LEASE_S).status()
    return {lease.community: (lease.owner, lease.epoch) for lease in status.leases}


@pytest.mark.parametrize("renew", [True, False], ids=["renewer", "loop-only"])
async def test_a_loop_blocked_past_the_lease_keeps_its_leases_at_their_epochs(
    stores: list[Store], postgres_url: str, renew: bool
) -> None:
    a = runtime(stores[0], postgres_url, renew=renew)
    a.start()
    try:
        await until(lambda: set(COMMUNITIES) <= set(a.owned), within=5, what="hub-a owning every community")
        before = dict(a.owned)
        taken = block_the_loop_while_another_node_claims(stores[1], COMMUNITIES, 3 * LEASE_S)
        await asyncio.sleep(3 * PERIOD_S)  # a few rounds of hub-a's loop after the block
        if renew:
            assert taken == set(), "hub-b took a lease of a busy (not dead) hub-a"
            assert a.owned == before
            assert {c: epochs(stores[2])[c] for c in before} == {c: ("hub-a", e) for c, e in before.items()}
        else:
            # The case the renewer is for: without it the leases lapse and hub-b takes them,
            # and hub-a's loop drops them (it may take them again later, at a new epoch).
            assert taken == set(COMMUNITIES)
            assert all(a.owned.get(c) != before[c] for c in COMMUNITIES)
    finally:
        await a.stop()


async def test_a_loop_stuck_past_max_stall_lets_its_leases_lapse(
    stores: list[Store], postgres_url: str
) -> None:
    a = runtime(stores[0], postgres_url, renew=True, max_stall_s=2 * LEASE_S)
    a.start()
    try:
        await until(lambda: set(COMMUNITIES) <= set(a.owned), within=5, what="hub-a owning every community")
        before = dict(a.owned)
        taken = block_the_loop_while_another_node_claims(stores[1], COMMUNITIES, 2 * LEASE_S + 3 * LEASE_S)
        assert taken == set(COMMUNITIES), "a stuck loop must not hold its communities forever"
        held = epochs(stores[2])  # before hub-a's loop runs again
        assert {c: held[c] for c in COMMUNITIES} == {c: ("hub-b", before[c] + 1) for c in COMMUNITIES}
        # hub-a's loop drops them (it may take them again once hub-b's leases lapse: a new epoch).
        await until(
            lambda: all(a.owned.get(c) != before[c] for c in COMMUNITIES),
            within=3,
            what="hub-a dropping what it lost",
        )
        renewer = a._renewer
        assert renewer is not None
        await until(lambda: not renewer.stalled, within=3, what="the renewer renewing again")
    finally:
        await a.stop()


async def test_a_lease_taken_away_is_reported_to_the_loop(stores: list[Store], postgres_url: str) -> None:
    leases = LeaseStore(store=stores[0], node_id="hub-a", lease_s=LEASE_S)
    kept, lost = COMMUNITIES[0], COMMUNITIES[1]
    held = {c: lease.epoch for c in (kept, lost) if (lease := leases.acquire(c)) is not None}
    renewer = LeaseRenewer(url=postgres_url, node_id="hub-a", lease_s=LEASE_S, period_s=PERIOD_S)
    renewer.hold(held)
    reported: list[tuple[str, int]] = []
    renewer.start(on_lost=lambda community, epoch: reported.append((community, epoch)))
    try:
        await until(lambda: renewer.renewals >= 2, within=5, what="two rounds of renewals")
        # Another node's takeover of one lease (as acquire does it after expiry: new owner, new epoch).
        stores[1].execute(
            "UPDATE community_leases SET owner = 'hub-b', epoch = epoch + 1 WHERE community = ?", (lost,)
        )
        await until(lambda: bool(reported), within=5, what="the lost lease reported")
        await asyncio.sleep(3 * PERIOD_S)
        assert reported == [(lost, held[lost])], "reported once, and only the lost one"
        status = {c: (o, e) for c, (o, e) in epochs(stores[2]).items()}
        assert status[kept] == ("hub-a", held[kept])
        assert status[lost] == ("hub-b", held[lost] + 1), "a renewal never takes a lease back"
        # Still renewed: the kept lease outlives several lease periods.
        await asyncio.sleep(2 * LEASE_S)
        assert leases.renew(kept, held[kept])
    finally:
        await renewer.stop()
