"""Community leases on both engines: one owner at a time, epochs that go up on every change of
hands, and a fence that refuses a write from an old epoch inside the same transaction."""

from __future__ import annotations

import contextlib
import json
import os
import signal as signals
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest
from click.testing import CliRunner

from hub.cli import main
from hub.errors import FencedError, StoreError
from hub.storage.leases import LeaseStore
from hub.storage.postgres import IDLE_IN_TRANSACTION_S
from hub.storage.store import Store
from tests.test_store import SUBJECT, signal

LEASE_S = 0.4


@pytest.fixture
def stores(store_url: str) -> Iterator[tuple[Store, Store]]:
    """Two hub nodes' stores on one database (on SQLite: two connections to one file)."""
    first, second = Store(url=store_url), Store(url=store_url)
    yield first, second
    first.close()
    second.close()


def nodes(stores: tuple[Store, Store]) -> tuple[LeaseStore, LeaseStore]:
    a, b = stores
    return LeaseStore(store=a, node_id="hub-a", lease_s=LEASE_S), LeaseStore(
        store=b, node_id="hub-b", lease_s=LEASE_S
    )


def test_one_owner_at_a_time_and_renewal_keeps_the_epoch(stores: tuple[Store, Store]) -> None:
    a, b = nodes(stores)
    first = a.acquire("c1")
    assert first is not None and (first.owner, first.epoch) == ("hub-a", 1)
    assert b.acquire("c1") is None
    renewed = a.acquire("c1")
    assert renewed is not None and renewed.epoch == 1 and renewed.since == first.since
    assert renewed.expires_at >= first.expires_at
    other = b.acquire("c2")
    assert other is not None and (other.owner, other.epoch) == ("hub-b", 1)


def test_an_expired_lease_is_taken_over_with_a_new_epoch_and_the_old_one_is_fenced(
    stores: tuple[Store, Store],
) -> None:
    a, b = nodes(stores)
    store_a, store_b = stores
    old = a.acquire("c1")
    assert old is not None
    with store_a.transaction() as tx:  # the owner writes, fenced: accepted
        a.fence(tx, "c1", old.epoch)
        store_a.upsert_alert(tx, signal(subject="btn-before"), SUBJECT)
    time.sleep(LEASE_S + 0.1)  # hub-a is paused (GC, SIGSTOP) past its lease
    with pytest.raises(FencedError, match="expired"), store_a.transaction() as tx:
        a.fence(tx, "c1", old.epoch)
    new = b.acquire("c1")
    assert new is not None and (new.owner, new.epoch) == ("hub-b", 2)
    # hub-a wakes up and tries to write what it was doing: refused, and nothing of it lands.
    with pytest.raises(FencedError, match="hub-b at epoch 2"), store_a.transaction() as tx:
        a.fence(tx, "c1", old.epoch)
        store_a.upsert_alert(tx, signal(subject="btn-zombie"), SUBJECT)
    assert [x.subject for x in store_b.alerts()] == ["btn-before"]
    with store_b.transaction() as tx:
        b.fence(tx, "c1", new.epoch)
    assert a.acquire("c1") is None


def test_a_lapsed_owner_coming_back_gets_a_new_epoch(stores: tuple[Store, Store]) -> None:
    a, _ = nodes(stores)
    first = a.acquire("c1")
    time.sleep(LEASE_S + 0.1)
    again = a.acquire("c1")
    assert first is not None and again is not None and again.epoch == first.epoch + 1
    with pytest.raises(FencedError), stores[0].transaction() as tx:
        a.fence(tx, "c1", first.epoch)


def test_release_hands_over_at_once_and_status_shows_nodes_and_owners(stores: tuple[Store, Store]) -> None:
    a, b = nodes(stores)
    a.heartbeat()
    b.heartbeat()
    assert a.acquire("c1") is not None
    a.release("c1")
    taken = b.acquire("c1")
    assert taken is not None and taken.epoch == 2
    status = a.status()
    assert [n.node_id for n in status.nodes] == ["hub-a", "hub-b"]
    assert [(lease.community, lease.owner, lease.epoch) for lease in status.leases] == [("c1", "hub-b", 2)]
    assert all(lease.expires_at > status.now for lease in status.leases)
    with pytest.raises(FencedError, match="nobody"), stores[0].transaction() as tx:
        a.fence(tx, "unknown", 1)


def test_postgres_a_takeover_waits_for_a_fenced_write_in_flight(postgres_url: str) -> None:
    """The fence's FOR SHARE lock orders a takeover after the old owner's last write, never between."""
    store_a, store_b = Store(url=postgres_url), Store(url=postgres_url)
    try:
        a = LeaseStore(store=store_a, node_id="hub-a", lease_s=LEASE_S)
        b = LeaseStore(store=store_b, node_id="hub-b", lease_s=LEASE_S)
        lease = a.acquire("c1")
        assert lease is not None
        with store_a.transaction() as tx:
            a.fence(tx, "c1", lease.epoch)
            time.sleep(LEASE_S + 0.1)  # the lease runs out while the write is in flight
            with pytest.raises(psycopg.errors.LockNotAvailable):
                b.acquire("c1")  # must wait for hub-a's transaction: gives up after lock_timeout
            store_a.upsert_alert(tx, signal(subject="btn-last"), SUBJECT)
        taken = b.acquire("c1")
        assert taken is not None and taken.epoch == lease.epoch + 1
        assert [x.subject for x in store_b.alerts()] == ["btn-last"]
    finally:
        store_a.close()
        store_b.close()


def test_cluster_status_command_shows_nodes_and_owners(postgres_url: str, tmp_path: Path) -> None:
    store = Store(url=postgres_url)
    leases = LeaseStore(store=store, node_id="hub-a", lease_s=10)
    leases.heartbeat()
    assert leases.acquire("110105001001") is not None
    store.close()
    config = tmp_path / "linli.yaml"
    config.write_text(f"data_dir: {tmp_path}\ncluster: {{node_id: hub-a, lease_s: 10}}\n")
    env = {"LINLI_STORE__URL": postgres_url}
    result = CliRunner().invoke(main, ["cluster", "status", "--config", str(config), "--json"], env=env)
    assert result.exit_code == 0, result.output
    doc = json.loads(result.output)
    assert [n["node_id"] for n in doc["nodes"]] == ["hub-a"] and doc["nodes"][0]["alive"]
    (row,) = doc["communities"]
    assert (row["community"], row["owner"], row["epoch"], row["expired"]) == (
        "110105001001",
        "hub-a",
        1,
        False,
    )
    table = CliRunner().invoke(main, ["cluster", "status", "--config", str(config)], env=env)
    assert table.exit_code == 0 and "hub-a" in table.output and "s left" in table.output


_FROZEN = textwrap.dedent(
    """
    import os, signal, sys
    from hub.storage.leases import LeaseStore
    from hub.storage.store import Store
    store = Store(url=sys.argv[1])
    node = LeaseStore(store=store, node_id="hub-a", lease_s=float(sys.argv[2]))
    lease = node.acquire("c1")
    with store.transaction() as tx:
        node.fence(tx, "c1", lease.epoch)  # a fenced write has begun (an SOS alert, a step)
        if sys.argv[3] == "executemany":  # a rule-state flush's rows went in (psycopg's pipeline)
            tx.executemany("INSERT INTO rule_state (rule, subject, state) VALUES (?, ?, ?)", [("r", "s", "{}")])
        print("in-tx", flush=True)
        os.kill(os.getpid(), signal.SIGSTOP)  # the VM is frozen, the process stopped, here
    """
)


@pytest.mark.parametrize("frozen_after", ["fence", "executemany"])
def test_a_node_frozen_inside_a_fenced_write_lets_go_of_its_community(
    postgres_url: str, frozen_after: str
) -> None:
    """Found in review: the frozen transaction held the lease row FOR SHARE, and no other node
    could take the community over while it stayed frozen (its kernel answers keepalives). The
    server ends a transaction idle for IDLE_IN_TRANSACTION_S.

    Frozen right after an ``executemany`` the server never did: psycopg ends its pipeline with
    a Flush request, after which PostgreSQL does not arm that timeout again."""
    lease_s = 0.5
    child = subprocess.Popen(
        [sys.executable, "-c", _FROZEN, postgres_url, str(lease_s), frozen_after], stdout=subprocess.PIPE
    )
    store = Store(url=postgres_url)
    try:
        assert child.stdout is not None and child.stdout.readline().strip() == b"in-tx"
        other = LeaseStore(store=store, node_id="hub-b", lease_s=lease_s)
        deadline = time.monotonic() + IDLE_IN_TRANSACTION_S + 4
        taken = None
        while taken is None and time.monotonic() < deadline:
            with contextlib.suppress(psycopg.errors.LockNotAvailable, StoreError):
                taken = other.acquire("c1")
            time.sleep(lease_s / 3)
        assert taken is not None and taken.owner == "hub-b"
    finally:
        os.kill(child.pid, signals.SIGCONT)
        child.kill()
        child.wait()
        store.close()
