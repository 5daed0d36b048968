"""Which communities a node claims and which it gives up: a fair share of the live nodes.

Pure: the lease loop passes what the database said this round. With ``n`` communities over
``k`` live nodes every node should hold ``floor(n / k)`` or ``ceil(n / k)``. A node holds at
most the ceiling; above it, it releases — so a node that joins finds free communities on
its next round, without waiting for a live lease to expire. A node at the ceiling releases
one more while some live node is below the floor (3 + 3 + 1 becomes 3 + 2 + 2). Below the
ceiling it claims communities nobody holds or whose lease expired. Giving up is
deterministic (the highest codes first), so rounds never shuffle communities back and forth.
"""

from __future__ import annotations

import math
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Plan:
    #: Free or expired communities, in order: try them until ``room`` were acquired (another
    #: node may take one between this picture and the claim).
    claim: tuple[str, ...]
    room: int
    #: Owned communities to release: above the fair share, or gone from the registry.
    give_up: tuple[str, ...]
    share: int


def fair_share(communities: int, live_nodes: int) -> int:
    return math.ceil(communities / max(1, live_nodes))


def plan(
    *,
    communities: Sequence[str],
    owned: Collection[str],
    others: Sequence[int],
    expires: Mapping[str, float],
    now: float,
) -> Plan:
    """``others``: how many of ``communities`` each other live node holds; ``expires``: each
    held community's lease expiry (database time), missing = never held."""
    live_nodes = len(others) + 1
    share = fair_share(len(communities), live_nodes)
    floor = len(communities) // live_nodes
    known = set(communities)
    gone = sorted(c for c in owned if c not in known)
    mine = sorted(c for c in owned if c in known)
    keep = share
    if len(mine) >= share > floor and others and min(others) < floor:
        keep = share - 1
    give_up = (*gone, *mine[keep:])
    free = [c for c in communities if c not in owned and expires.get(c, 0.0) <= now]
    room = max(0, share - len(mine))
    return Plan(claim=tuple(free) if room else (), room=room, give_up=give_up, share=share)
