"""A cluster node's share of the rows: ``AND community IN (…)`` for the communities it owns.

``None`` is every community (a single hub). The partition :data:`WHOLE_HUB` stands for the
rows of no community (alerts of unregistered devices, grouped by gateway): the node that holds
its lease works them, so they are worked by exactly one node too. Community codes are twelve
digits, so the name cannot collide with one.
"""

from __future__ import annotations

from collections.abc import Collection

#: The lease of the hub-wide partition: unassigned devices and the hub-wide topic roots.
WHOLE_HUB = "hub"


def partition(community: str | None) -> str:
    """The lease a write for ``community`` is fenced by: rows of no community are the hub-wide
    partition's (found in review: they were written unfenced, so a node that had lost
    :data:`WHOLE_HUB` still raised and escalated unregistered devices' alerts beside its owner)."""
    return community or WHOLE_HUB


def in_list(column: str, values: Collection[str], params: list[object]) -> str:
    """``column IN (?, …)`` for ``values``, their parameters appended to ``params``."""
    params.extend(sorted(values))
    return f"{column} IN ({','.join('?' * len(values))})"


def in_scope(column: str, communities: Collection[str] | None) -> tuple[str, tuple[str, ...]]:
    """`` AND (column IN (?, …) [OR column IS NULL])`` and its parameters; ``""`` for ``None``."""
    if communities is None:
        return "", ()
    codes = tuple(sorted(c for c in communities if c != WHOLE_HUB))
    parts = [f"{column} IN ({', '.join('?' * len(codes))})"] if codes else []
    if WHOLE_HUB in communities:
        parts.append(f"{column} IS NULL")
    return f" AND ({' OR '.join(parts) or '1 = 0'})", codes
