"""The lease loop: this node's heartbeat, its fair share of communities, and their fencing.

One named task (``linli-cluster``) runs a round every ``lease_s / 3`` — so a lease is renewed
twice before it could expire, and one slow round (a busy database) costs nothing — and at
once when a session reports a fenced write. A round:

1. heartbeats the node (``cluster_nodes``);
2. renews every community it owns; one whose lease was lost (taken after a pause, or lapsed
   and re-taken at a new epoch) is dropped: its session closes, its epoch is forgotten;
3. reads the cluster's picture (database time), counts the live nodes (heartbeat within
   one ``lease_s``) and releases what is above its fair share — after closing the session,
   so the broker queues the community's presses for the node that takes it next;
4. claims free or expired communities up to the fair share, opening each one's session.

Between rounds, and whatever the event loop is doing, :mod:`hub.cluster.renewer` heartbeats
and renews the owned leases from a thread with its own connection (a burst that holds the
loop past ``lease_s`` no longer lapses them); a lease it finds lost is dropped here, at once.

A clean stop closes every session, releases every lease and removes the node's heartbeat,
so the others take over on their next round instead of after expiry.

Fencing: :meth:`ClusterRuntime.fence` is the store's fence (``Store.install_fence``): inside a
write for a community it refuses unless this node owns it at the epoch it acquired, checked
against the lease row in the same transaction (:meth:`~hub.storage.leases.LeaseStore.fence`).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import Counter
from collections.abc import Callable, Sequence
from typing import Protocol

from hub.cluster.balance import plan
from hub.cluster.events import ClusterEvents, Kind
from hub.cluster.renewer import LeaseRenewer
from hub.errors import FencedError
from hub.storage.engine import Tx
from hub.storage.leases import LeaseStore
from hub.storage.scope import WHOLE_HUB

log = logging.getLogger(__name__)

#: Rounds per lease period: renewals well inside the lease.
ROUNDS_PER_LEASE = 3
#: A node counts in the fair share while its heartbeat is younger than this many lease periods.
#: One: a live node beats every third of a lease, and a dead node's communities expire one
#: lease after its last beat — the survivors must count it out by then to have room for them,
#: or the takeover would wait for the dead node to fall out of the count.
LIVE_LEASES = 1.0


class Sessions(Protocol):
    async def open(self, community: str) -> None: ...

    async def close(self, community: str) -> None: ...

    async def close_all(self) -> None: ...


class ClusterRuntime:
    def __init__(
        self,
        *,
        leases: LeaseStore,
        communities: Callable[[], Sequence[str]],
        sessions: Sessions,
        on_gained: Callable[[str], None] = lambda _: None,
        on_lost: Callable[[str], None] = lambda _: None,
        renewer: LeaseRenewer | None = None,
        events: ClusterEvents | None = None,
    ) -> None:
        self._renewer = renewer
        self.events = events
        self._on_lost = on_lost
        self._leases = leases
        self._communities = communities
        self._sessions = sessions
        self._on_gained = on_gained
        #: community → the epoch this node acquired it at.
        self.owned: dict[str, int] = {}
        self._fenced: set[str] = set()
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self.rounds = 0
        self.node_id = leases.node_id
        self.period_s = leases.lease_s / ROUNDS_PER_LEASE

    # -- what the rest of the hub asks ----------------------------------------------------

    def scope(self) -> frozenset[str]:
        """The communities whose deadlines and alerts this node works now."""
        return frozenset(self.owned)

    def fence(self, tx: Tx, community: str) -> None:
        epoch = self.owned.get(community)
        if epoch is None:
            raise FencedError(community=community, node_id=self.node_id, epoch=-1, held="another node")
        self._leases.fence(tx, community, epoch)

    def fenced(self, community: str) -> None:
        """A write for ``community`` was refused: drop it at the next round, which runs now."""
        self._fenced.add(community)
        self._wake.set()

    def changed(self, kind: Kind, item_id: str | int, *, created: bool = False) -> None:
        """A committed alert or case change of this node's: tell the other nodes' live streams."""
        if self.events is not None:
            self.events.changed(kind, item_id, created=created)

    def _lost(self, community: str, epoch: int) -> None:
        """The renewer found the lease of ``community`` at ``epoch`` gone: drop it (if still held)."""
        if self.owned.get(community) == epoch:
            self.fenced(community)

    def _told(self) -> None:
        """Tell the renewer which leases (at which epochs) are ours after a change."""
        if self._renewer is not None:
            self._renewer.hold(self.owned)

    # -- the loop ---------------------------------------------------------------------------

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="linli-cluster")
        if self._renewer is not None:
            self._renewer.start(on_lost=self._lost)
        if self.events is not None:
            self.events.start()

    async def stop(self) -> None:
        """Cancel the loop, then close every session and release every lease (a clean hand-over)."""
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        if self._renewer is not None:
            await self._renewer.stop()
        # Each as a hand-over: session closed, rule state written while the lease is still
        # ours (on_lost), then the lease released for the others' next round.
        for community in sorted(self.owned):
            await self._drop(community, "stopping")
        await self._sessions.close_all()
        if self.events is not None:
            await self.events.stop()
        try:
            self._leases.leave()
        except Exception:
            log.exception("node %s: heartbeat not removed (it goes silent by itself)", self.node_id)

    async def _run(self) -> None:
        while True:
            self._wake.clear()
            try:
                await self.round()
            except Exception:
                # The database is down or refused: sessions stay open (their writes are fenced
                # in the database itself), the next round tries again.
                log.exception("cluster round failed; next round in %.1f s", self.period_s)
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(self.period_s):
                    await self._wake.wait()

    async def round(self) -> None:
        self.rounds += 1
        leases = self._leases
        leases.heartbeat()
        for community in sorted(self._fenced):
            await self._drop(community, "a write was fenced")
        self._fenced.clear()
        for community, epoch in sorted(self.owned.items()):
            lease = leases.acquire(community)
            if lease is None or lease.epoch != epoch:
                # Taken by another node, or ours again only after it lapsed: what this node
                # holds in memory for it may be stale, so start over from the store.
                await self._drop(community, "lease lost")
        status = leases.status()
        live = {
            n.node_id for n in status.nodes if status.now - n.heartbeat_at <= LIVE_LEASES * leases.lease_s
        }
        communities = sorted(c for c in self._communities() if c != WHOLE_HUB)
        expires = {lease.community: lease.expires_at for lease in status.leases}
        held = Counter(
            lease.owner
            for lease in status.leases
            if lease.expires_at > status.now and lease.community != WHOLE_HUB
        )
        decided = plan(
            communities=communities,
            owned=[c for c in self.owned if c != WHOLE_HUB],
            others=[held[node] for node in sorted(live - {self.node_id})],
            expires=expires,
            now=status.now,
        )
        for community in decided.give_up:
            await self._drop(community, f"above the fair share of {decided.share}")
        room = decided.room
        for community in decided.claim:
            if room <= 0:
                break
            if await self._claim(community):
                room -= 1
        # The hub-wide partition (unregistered devices, hub-wide roots) is nobody's share:
        # whoever finds it free takes it, so exactly one node works it.
        if WHOLE_HUB not in self.owned and expires.get(WHOLE_HUB, 0.0) <= status.now:
            await self._claim(WHOLE_HUB)

    async def _claim(self, community: str) -> bool:
        lease = self._leases.acquire(community)
        if lease is None:
            return False  # another node was faster
        # Owned before the session opens: the presses queued for it arrive right after SUBACK.
        self.owned[community] = lease.epoch
        self._told()
        try:
            await self._sessions.open(community)
        except Exception:
            log.exception("community %s: session not opened; lease released", community)
            del self.owned[community]
            self._told()
            self._leases.release(community)
            return False
        log.info("community %s: owned by %s at epoch %d", community, self.node_id, lease.epoch)
        try:
            self._on_gained(community)
        except Exception:
            log.exception("community %s: takeover work failed; given up again", community)
            await self._drop(community, "takeover failed")
            return False
        return True

    async def _drop(self, community: str, reason: str) -> None:
        """Stop working ``community``: session first (no message taken without a lease), then the lease.

        ``on_lost`` runs while the epoch is still known, so a clean hand-over writes the last
        rule state (fenced: refused if the lease is already someone else's).
        """
        if community not in self.owned:
            return
        await self._sessions.close(community)
        try:
            self._on_lost(community)
        except Exception:
            log.exception("community %s: hand-over work failed", community)
        del self.owned[community]
        self._told()
        try:
            self._leases.release(community)
        except Exception:
            log.exception("community %s: lease not released (it expires by itself)", community)
        log.warning("community %s: given up by %s (%s)", community, self.node_id, reason)
