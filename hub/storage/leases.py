"""Community leases: which hub node owns which community, with an epoch that fences writes.

Several hubs share one PostgreSQL store; each community has at most one owner at a time,
the node holding its lease. A lease lasts ``lease_s`` from its last renewal, judged by the
**database's** clock (one clock for all nodes, so a node with a skewed clock cannot extend
or steal a lease). Every time a community changes hands — or its owner comes back after
letting the lease expire — the **epoch** goes up.

The epoch is a fencing token: a write on behalf of a community runs in a transaction that
starts with :meth:`LeaseStore.fence`, which reads the lease row ``FOR SHARE`` and refuses
(:class:`~hub.errors.FencedError`) unless this node still holds that epoch, unexpired. The
share lock makes a takeover (an ``UPDATE`` of that row, which needs a conflicting lock:
PostgreSQL 15 manual §13.3.2, row-level locks) wait until the fenced write commits, and a
write that starts after the takeover sees the new owner: a node paused past its lease (GC,
SIGSTOP, a VM migration) that wakes up cannot land a single write. On SQLite one process
writes at a time (``BEGIN IMMEDIATE``), which gives the same order.
"""

from __future__ import annotations

from dataclasses import dataclass

from hub.errors import FencedError
from hub.storage.engine import Tx
from hub.storage.store import Store


@dataclass(frozen=True, slots=True)
class Lease:
    community: str
    owner: str
    epoch: int
    since: float
    expires_at: float


@dataclass(frozen=True, slots=True)
class NodeRow:
    node_id: str
    started_at: float
    heartbeat_at: float


@dataclass(frozen=True, slots=True)
class ClusterStatus:
    now: float
    nodes: tuple[NodeRow, ...]
    leases: tuple[Lease, ...]


class LeaseStore:
    def __init__(self, *, store: Store, node_id: str, lease_s: float) -> None:
        if lease_s <= 0:
            raise ValueError("lease_s must be positive")
        self._store = store
        self.node_id = node_id
        self.lease_s = lease_s

    def heartbeat(self) -> float:
        """Record this node as alive; returns the database's time."""
        with self._store.transaction() as tx:
            now = self._now(tx)
            tx.execute(
                "INSERT INTO cluster_nodes (node_id, started_at, heartbeat_at) VALUES (?, ?, ?)"
                " ON CONFLICT (node_id) DO UPDATE SET heartbeat_at = excluded.heartbeat_at",
                (self.node_id, now, now),
            )
        return now

    def acquire(self, community: str) -> Lease | None:
        """Take or renew the lease of ``community``; ``None`` while another node holds it unexpired."""
        with self._store.transaction() as tx:
            # Make the row exist, so two first claims meet on one row lock, not a unique violation.
            tx.execute(
                "INSERT INTO community_leases (community, owner, epoch, since, expires_at) VALUES (?, NULL, 0, 0, 0)"
                " ON CONFLICT (community) DO NOTHING",
                (community,),
            )
            owner, epoch, since, expires_at = tx.execute(
                "SELECT owner, epoch, since, expires_at FROM community_leases WHERE community = ?"  # noqa: S608
                + tx.for_update,
                (community,),
            ).fetchone()
            now = self._now(tx)
            live = expires_at > now
            if live and owner != self.node_id:
                return None
            if not (live and owner == self.node_id):
                # A new holder, or ours again after it lapsed: writes fenced by the old epoch
                # (ours from before a pause included) must not land any more.
                epoch, since = epoch + 1, now
            tx.execute(
                "UPDATE community_leases SET owner = ?, epoch = ?, since = ?, expires_at = ? WHERE community = ?",
                (self.node_id, epoch, since, now + self.lease_s, community),
            )
        return Lease(community, self.node_id, int(epoch), float(since), now + self.lease_s)

    def renew(self, community: str, epoch: int) -> bool:
        """Extend the lease of ``community`` held at ``epoch``; ``False`` once it is not ours at it.

        Unlike :meth:`acquire` it never takes a lease nor starts a new epoch: a lease that
        lapsed, was released or was taken stays so (the owner's loop drops the community). The
        ``UPDATE`` waits for a fenced write of the same row (``FOR SHARE``) to commit, so a write
        never sees the lease change under it.
        """
        with self._store.transaction() as tx:
            renewed = tx.execute(
                f"UPDATE community_leases SET expires_at = {tx.now_sql} + ?"  # noqa: S608 - engine constant
                f" WHERE community = ? AND owner = ? AND epoch = ? AND expires_at > {tx.now_sql}",
                (self.lease_s, community, self.node_id, epoch),
            ).rowcount
        return renewed == 1

    def release(self, community: str) -> None:
        """Give the community up now (a clean shutdown), so another node need not wait for expiry."""
        with self._store.transaction() as tx:
            tx.execute(
                "UPDATE community_leases SET expires_at = 0 WHERE community = ? AND owner = ?",
                (community, self.node_id),
            )

    def leave(self) -> None:
        """Forget this node's heartbeat (a clean stop), so the others' fair share counts it out now."""
        with self._store.transaction() as tx:
            tx.execute("DELETE FROM cluster_nodes WHERE node_id = ?", (self.node_id,))

    def fence(self, tx: Tx, community: str, epoch: int) -> None:
        """Inside a write transaction: refuse it unless this node holds ``community`` at ``epoch``."""
        row = tx.execute(
            f"SELECT owner, epoch, expires_at > {tx.now_sql} FROM community_leases WHERE community = ?"  # noqa: S608 - engine constant
            + tx.for_share,
            (community,),
        ).fetchone()
        if row is None or row[0] != self.node_id or int(row[1]) != epoch or not row[2]:
            held = (
                "nobody" if row is None else f"{row[0]} at epoch {row[1]}" + ("" if row[2] else " (expired)")
            )
            raise FencedError(community=community, node_id=self.node_id, epoch=epoch, held=held)

    def status(self) -> ClusterStatus:
        """Nodes and leases as one consistent picture, with the database's time to judge them by."""
        with self._store.transaction() as tx:
            now = self._now(tx)
            nodes = tuple(
                NodeRow(str(n), float(s), float(h))
                for n, s, h in tx.execute(
                    "SELECT node_id, started_at, heartbeat_at FROM cluster_nodes ORDER BY node_id"
                )
            )
            leases = tuple(
                Lease(str(c), str(o), int(e), float(s), float(x))
                for c, o, e, s, x in tx.execute(
                    "SELECT community, owner, epoch, since, expires_at FROM community_leases"
                    " WHERE owner IS NOT NULL ORDER BY community"
                )
            )
        return ClusterStatus(now, nodes, leases)

    @staticmethod
    def _now(tx: Tx) -> float:
        return float(tx.execute(f"SELECT {tx.now_sql}").fetchone()[0])
