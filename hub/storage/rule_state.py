"""Rule state on disk: every (rule, subject) slot of the evaluator, timers included.

The evaluator keeps its state in memory (:class:`rules.state.MemoryState`) and marks what
changed; the hub writes the changed slots here at the end of every event-loop turn in which
something changed, in one transaction, and reads them all back at start. So after a crash
(``kill -9``) at most the last loop turn's changes are missing, and a restart resumes every
duration, absence deadline, count window and last value from where it was.
"""

from __future__ import annotations

import orjson

from hub.storage.store import Store
from rules.state import MemoryState


class RuleStateStore:
    def __init__(self, *, store: Store) -> None:
        self._store = store

    def load(self) -> MemoryState:
        rows = self._store.execute("SELECT rule, subject, state FROM rule_state").fetchall()
        return MemoryState.restore_rows((rule, subject, orjson.loads(state)) for rule, subject, state in rows)

    def flush(self, state: MemoryState, *, include_routine: bool = False) -> int:
        """Write the slots changed since the last flush; returns how many rows changed.

        Routine updates (deadlines moved on by readings, last values) are written only with
        ``include_routine`` — every few seconds and at shutdown — not after every loop turn.
        """
        dirty = state.drain_dirty(include_routine=include_routine)
        if not dirty:
            return 0
        snapshot = state.snapshot(dirty)
        with self._store.transaction() as db:
            db.executemany(
                "INSERT INTO rule_state (rule, subject, state) VALUES (?, ?, ?)"
                " ON CONFLICT (rule, subject) DO UPDATE SET state = excluded.state",
                [(row["rule"], row["subject"], orjson.dumps(row["state"])) for row in snapshot["slots"]],
            )
            db.executemany(
                "DELETE FROM rule_state WHERE rule = ? AND subject = ?",
                [tuple(k) for k in snapshot.get("deleted", ())],
            )
        return len(dirty)

    def count(self) -> int:
        row = self._store.execute("SELECT count(*) FROM rule_state").fetchone()
        return int(row[0])
