"""The one-time links guardians evaluate a closed case with (评价 by 一次性链接, schema version 4).

The link's signature (:mod:`hub.casework.eval_links`) proves the hub issued it; this table makes
it single use: a link is spent in the same transaction as the evaluation it carried, so a
forwarded or replayed link evaluates nothing, even after a restart.
"""

from __future__ import annotations

from dataclasses import dataclass

from hub.storage.engine import Tx
from hub.storage.store import Store


@dataclass(frozen=True, slots=True, kw_only=True)
class IssuedLink:
    nonce: str
    case_id: str
    guardian: str
    issued_at: float
    expires_at: float
    used_at: float | None = None


class EvaluationLinks:
    def __init__(self, *, store: Store) -> None:
        self._store = store

    @staticmethod
    def issue(db: Tx, link: IssuedLink) -> None:
        db.execute(
            "INSERT INTO evaluation_links (nonce, case_id, guardian, issued_at, expires_at, used_at)"
            " VALUES (?, ?, ?, ?, ?, NULL)",
            (link.nonce, link.case_id, link.guardian, link.issued_at, link.expires_at),
        )

    @staticmethod
    def spend(db: Tx, nonce: str, *, at: float) -> bool:
        """Mark the link used; ``False`` if it is unknown, spent or expired (then nothing happens)."""
        cursor = db.execute(
            "UPDATE evaluation_links SET used_at = ? WHERE nonce = ? AND used_at IS NULL AND expires_at > ?",
            (at, nonce, at),
        )
        return cursor.rowcount == 1

    def get(self, nonce: str) -> IssuedLink | None:
        row = self._store.execute(
            "SELECT nonce, case_id, guardian, issued_at, expires_at, used_at FROM evaluation_links WHERE nonce = ?",
            (nonce,),
        ).fetchone()
        if row is None:
            return None
        return IssuedLink(
            nonce=row[0],
            case_id=row[1],
            guardian=row[2],
            issued_at=float(row[3]),
            expires_at=float(row[4]),
            used_at=None if row[5] is None else float(row[5]),
        )

    def issued_to(self, case_id: str, guardian: str, *, since: float) -> bool:
        """Whether ``guardian`` was given a link for this case at or after ``since`` (its last 结案)."""
        row = self._store.execute(
            "SELECT 1 FROM evaluation_links WHERE case_id = ? AND guardian = ? AND issued_at >= ? LIMIT 1",
            (case_id, guardian, since),
        ).fetchone()
        return row is not None

    def for_case(self, case_id: str) -> list[IssuedLink]:
        rows = self._store.execute(
            "SELECT nonce FROM evaluation_links WHERE case_id = ? ORDER BY issued_at", (case_id,)
        )
        found = [self.get(row[0]) for row in rows]
        return [link for link in found if link is not None]
