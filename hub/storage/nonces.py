"""Nonces of authenticated worker replies, so a captured reply cannot be replayed.

A reply is accepted only inside a time window around the hub's clock, so a nonce needs to
be remembered only for as long as its reply's signed timestamp is inside that window; older
rows are pruned. The table outlives restarts (schema version 3): replaying a reply while the
hub restarts does not reopen it.
"""

from __future__ import annotations

from hub.storage.store import Store


class ReplyNonces:
    def __init__(self, *, store: Store) -> None:
        self._store = store

    def seen(self, person: str, nonce: str) -> bool:
        row = self._store.execute(
            "SELECT 1 FROM reply_nonces WHERE person = ? AND nonce = ?", (person, nonce)
        ).fetchone()
        return row is not None

    def remember(self, person: str, nonce: str, *, ts: float, prune_before: float) -> None:
        """Record a used nonce (with its reply's signed time) and forget those older than ``prune_before``."""
        with self._store.transaction() as db:
            db.execute(
                "INSERT INTO reply_nonces (person, nonce, ts) VALUES (?, ?, ?)"
                " ON CONFLICT (person, nonce) DO NOTHING",
                (person, nonce, ts),
            )
            db.execute("DELETE FROM reply_nonces WHERE ts < ?", (prune_before,))

    def count(self) -> int:
        row = self._store.execute("SELECT count(*) FROM reply_nonces").fetchone()
        return int(row[0]) if row is not None else 0
