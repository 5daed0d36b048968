"""Heartbeat and lease renewal on a thread of their own, with their own PostgreSQL connection.

Why a thread: ingest, rules and the lease loop share one event loop. A burst that holds the
loop longer than ``lease_s`` (a slow rule, a big batch, a long synchronous write) used to let
the node's own leases lapse: the next round found them at a new epoch, dropped every
community and claimed them again — churn under exactly the load that needs the node most.
The renewer does not wait for the loop: every ``lease_s / 3`` it heartbeats the node and
renews each lease it was told about, at the epoch it was told.

What it never does is take a lease: claiming, releasing and balancing stay in the loop's
rounds (:mod:`hub.cluster.runtime`). A renewal is an ``UPDATE`` that matches only while the
lease is still this node's, at that epoch and unexpired (:meth:`LeaseStore.renew`), so the
fencing stays exact: a lease that lapsed anyway (the database unreachable, the whole process
stopped) or was taken is never revived; the renewer reports it and the loop drops the
community (session closed, epoch forgotten). A write fenced by the old epoch is refused in
the database whatever the loop believes meanwhile.

A loop that is not merely busy but stuck must not hold communities forever: the renewer
posts a no-op to the loop every round, and once ``max_stall_s`` passes without one being run
it stops renewing and heartbeating, so the other nodes take the communities over.
"""

from __future__ import annotations

import asyncio
import logging
import math
import threading
from collections.abc import Callable, Mapping

from hub.storage.leases import LeaseStore
from hub.storage.store import Store

log = logging.getLogger(__name__)

#: A loop that ran nothing for this many lease periods is stuck, not busy: let go.
MAX_STALL_LEASES = 6.0
#: How long :meth:`LeaseRenewer.stop` waits for the thread (a statement times out before).
JOIN_TIMEOUT_S = 15.0


class LeaseRenewer:
    def __init__(
        self,
        *,
        url: str,
        node_id: str,
        lease_s: float,
        period_s: float,
        max_stall_s: float | None = None,
    ) -> None:
        self._url = url
        self.node_id = node_id
        self._lease_s = lease_s
        self._period_s = period_s
        stall_s = MAX_STALL_LEASES * lease_s if max_stall_s is None else max_stall_s
        self._max_unanswered = max(1, math.ceil(stall_s / period_s))
        self._held: dict[str, int] = {}
        self._lock = threading.Lock()
        self._stopping = threading.Event()
        self._answered = threading.Event()
        self._thread: threading.Thread | None = None
        #: Rounds in which every lease told was renewed (read by tests and the bench).
        self.renewals = 0
        #: Whether the last round let go because the loop ran nothing for ``max_stall_s``.
        self.stalled = False

    def hold(self, owned: Mapping[str, int]) -> None:
        """The leases to renew from now on: community → the epoch this node acquired it at."""
        with self._lock:
            self._held = dict(owned)

    def start(self, *, on_lost: Callable[[str, int], None]) -> None:
        """Start the thread; ``on_lost(community, epoch)`` is called on the running loop."""
        loop = asyncio.get_running_loop()
        self._stopping.clear()
        self._answered.set()
        self._thread = threading.Thread(
            target=self._run, args=(loop, on_lost), name=f"linli-lease-renewer-{self.node_id}", daemon=True
        )
        self._thread.start()

    async def stop(self) -> None:
        thread, self._thread = self._thread, None
        if thread is None:
            return
        self._stopping.set()
        await asyncio.to_thread(thread.join, JOIN_TIMEOUT_S)
        if thread.is_alive():
            log.error("node %s: lease renewer did not stop within %.0f s", self.node_id, JOIN_TIMEOUT_S)

    def _run(self, loop: asyncio.AbstractEventLoop, on_lost: Callable[[str, int], None]) -> None:
        store: Store | None = None
        unanswered = 0
        try:
            while not self._stopping.is_set():
                unanswered = 0 if self._answered.is_set() else unanswered + 1
                self._answered.clear()
                try:
                    loop.call_soon_threadsafe(self._answered.set)
                except RuntimeError:
                    return  # the loop is closed: the hub is gone
                stalled = unanswered >= self._max_unanswered
                if stalled and not self.stalled:
                    log.error(
                        "node %s: the event loop ran nothing for %d rounds; leases left to lapse",
                        self.node_id,
                        unanswered,
                    )
                self.stalled = stalled
                if not stalled:
                    try:
                        if store is None:
                            store = Store(url=self._url)
                        self._round(
                            LeaseStore(store=store, node_id=self.node_id, lease_s=self._lease_s),
                            loop,
                            on_lost,
                        )
                    except Exception:
                        # The database is unreachable or a row lock was busy: try again next
                        # round (a broken connection is replaced by the engine on next use).
                        log.exception(
                            "node %s: lease renewal failed; next try in %.1f s", self.node_id, self._period_s
                        )
                self._stopping.wait(self._period_s)
        finally:
            if store is not None:
                store.close()

    def _round(
        self, leases: LeaseStore, loop: asyncio.AbstractEventLoop, on_lost: Callable[[str, int], None]
    ) -> None:
        leases.heartbeat()
        with self._lock:
            held = sorted(self._held.items())
        lost = [(community, epoch) for community, epoch in held if not leases.renew(community, epoch)]
        for community, epoch in lost:
            with self._lock:
                if self._held.get(community) == epoch:
                    del self._held[community]
            log.warning("node %s: lease of %s at epoch %d lost", self.node_id, community, epoch)
            loop.call_soon_threadsafe(on_lost, community, epoch)
        if not lost:
            self.renewals += 1
