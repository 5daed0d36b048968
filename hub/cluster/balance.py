"""Which communities a node claims and which it gives up: a fair share of the live nodes.

Pure: the lease loop passes what the database said this round. A node holds at most
``ceil(communities / live nodes)``; above that it releases (so a node that joins finds free
communities on its next round, without waiting for a live lease to expire), below it claims
communities nobody holds or whose lease expired. Giving up is deterministic (the highest
codes first), so two rounds never shuffle the same communities back and forth.
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
    live_nodes: int,
    expires: Mapping[str, float],
    now: float,
) -> Plan:
    """``expires``: each held community's lease expiry (database time); missing = never held."""
    share = fair_share(len(communities), live_nodes)
    known = set(communities)
    gone = sorted(c for c in owned if c not in known)
    mine = sorted(c for c in owned if c in known)
    give_up = (*gone, *mine[share:])
    free = [c for c in communities if c not in owned and expires.get(c, 0.0) <= now]
    room = max(0, share - len(mine))
    return Plan(claim=tuple(free) if room else (), room=room, give_up=give_up, share=share)
