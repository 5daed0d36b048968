"""Rule state on disk: every (rule, subject) slot of the evaluator, timers included.

The evaluator keeps its state in memory (:class:`rules.state.MemoryState`) and marks what
changed; the hub writes the changed slots here at the end of every event-loop turn in which
something changed, in one transaction, and reads them all back at start. So after a crash
(``kill -9``) at most the last loop turn's changes are missing, and a restart resumes every
duration, absence deadline, count window and last value from where it was.

With a SQLite store the slots live in a file of their own beside it, written by a thread
(:mod:`hub.storage.rule_state_file`): the event loop only serialises them, and a ``kill -9``
may also lose what the thread had not written yet (at most ≈ 0.1 s of changes). A store of an
older version hands its ``rule_state`` rows over to that file at the first start. From the file a
restart reads the slots back as text with their timers (a column SQLite computes from the JSON
when the row is written) and the rules decode each one when they first use it
(:meth:`rules.state.MemoryState.restore_lazy`).

Clustered (a fence installed on the store), the slots are written one community at a time,
each transaction fenced by that community's lease: a node that lost a community writes none
of its slots, the others still go. A node taking a community over reads that community's
slots with :meth:`RuleStateStore.load_subjects`.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Collection
from typing import Any

import orjson

from hub.errors import FencedError
from hub.storage.rule_state_file import RuleStateFile, slot_row
from hub.storage.scope import partition
from hub.storage.store import Store
from rules.state import Key, MemoryState

log = logging.getLogger(__name__)

#: Subjects per ``IN (…)`` when reading a community's slots (well under any engine's limit), and
#: slots per ``executemany`` when writing them.
_CHUNK = 500


def _parsed(text: str | bytes) -> Any:
    """A stored state's JSON, or ``None`` if it is not JSON (the rules drop it, with a warning)."""
    try:
        return orjson.loads(text)
    except orjson.JSONDecodeError:
        return None


class RuleStateStore:
    """``file``: the rule state's own file (SQLite stores); ``None``: the store's table."""

    def __init__(
        self,
        *,
        store: Store,
        community_of: Callable[[str], str | None] = lambda _: None,
        file: RuleStateFile | None = None,
    ) -> None:
        if file is not None and store.fenced:
            raise ValueError("a fenced store writes rule state per community lease: no file of its own")
        self._store = store
        self._community_of = community_of
        self.file = file
        #: Why the last write to the store failed (``None`` once one succeeds).
        self.failing: str | None = None

    def load(self, *, names: dict[str, str] | None = None) -> MemoryState:
        """Every stored slot; with a file of its own, its writer starts here.

        From the file, slots are restored unread (:meth:`MemoryState.restore_lazy`): each is
        decoded when the rules first use it. From the store's table (PostgreSQL, a cluster
        node) they are decoded now. ``names``: the subject ids already held, each mapped to
        itself, for the slots' keys to share (:meth:`MemoryState.restore_lazy`).
        """
        if self.file is None:
            rows = self._store.execute("SELECT rule, subject, state FROM rule_state").fetchall()
            return MemoryState.restore_rows(
                ((rule, subject, _parsed(state)) for rule, subject, state in rows), fresh=True, names=names
            )
        self._take_over()
        state = MemoryState.restore_lazy(self.file.rows(), decode=orjson.loads, names=names)
        self.file.start()
        return state

    def _take_over(self) -> None:
        """A store of an older version (its table holds slots) hands them over to the file.

        The file is written first, the table emptied after: a crash in between leaves both, and
        the next start keeps the file's and empties the table again.
        """
        assert self.file is not None
        if self._store.execute("SELECT 1 FROM rule_state LIMIT 1").fetchone() is None:
            return
        if self.file.empty():
            rows = self._store.execute("SELECT rule, subject, state FROM rule_state").fetchall()
            self.file.replace_all(rows)
            log.info("rule state moved from the store to %s: %d slots", self.file.path, len(rows))
        with self._store.transaction() as db:
            db.execute("DELETE FROM rule_state")

    @property
    def ok(self) -> bool:
        """Whether the slots are being written: by the file's writer, or to the store (readiness)."""
        return self.failing is None and (self.file is None or self.file.failing is None)

    def close(self) -> None:
        """Wait for the file's writer to write everything handed over (a clean stop)."""
        if self.file is not None:
            self.file.close()

    def load_subjects(self, subjects: Collection[str]) -> list[tuple[str, str, dict[str, Any] | None]]:
        """The stored slots of ``subjects`` (a community taken over), as ``(rule, subject, state)``.

        ``state`` is ``None`` for a row that is not JSON: the rules drop it as not a slot.
        """
        ordered = sorted(subjects)
        rows: list[tuple[str, str, dict[str, Any] | None]] = []
        for start in range(0, len(ordered), _CHUNK):
            chunk = ordered[start : start + _CHUNK]
            rows.extend(
                (str(rule), str(subject), _parsed(state))
                for rule, subject, state in self._store.execute(
                    f"SELECT rule, subject, state FROM rule_state WHERE subject IN ({', '.join('?' * len(chunk))})",  # noqa: S608
                    chunk,
                )
            )
        return rows

    def flush(self, state: MemoryState, *, include_routine: bool = False) -> int:
        """Write the slots changed since the last flush; returns how many rows changed.

        Routine updates (deadlines moved on by readings, last values) are written only with
        ``include_routine`` — every few seconds and at shutdown — not after every loop turn.
        """
        keys = state.drain_dirty(include_routine=include_routine)
        try:
            return self.write(state, keys)
        except Exception:
            # Not written: marked again, so the next flush takes them (found in review: a
            # failed flush lost every slot of its loop turn, and readiness still said ok).
            state.mark_dirty(keys)
            raise

    @property
    def backlog(self) -> int:
        """Rows handed to the file's writer and not written yet (0 without a file: the store's
        table is written before :meth:`write` returns)."""
        return 0 if self.file is None else self.file.backlog

    def write(self, state: MemoryState, keys: Collection[Key]) -> int:
        """Write ``keys``' slots as ``state`` holds them now (deleted if it holds none)."""
        if not keys:
            return 0
        if self.file is not None:
            upserts: dict[Key, str] = {}
            deletes: list[Key] = []
            for key in keys:
                slot = state.get(key)
                if slot is None:
                    deletes.append(key)
                else:
                    upserts[key] = slot_row(key[0], key[1], slot.to_json())
            self.file.put(upserts, deletes)
            return len(keys)
        snapshot = state.snapshot(keys)
        try:
            written = self._write_snapshot(snapshot)
        except Exception as exc:
            self.failing = f"{type(exc).__name__}: {exc}"[:300]
            raise
        self.failing = None
        return len(keys) if written is None else written

    def _write_snapshot(self, snapshot: dict[str, Any]) -> int | None:
        """Write a snapshot to the store: all at once, or per community lease when fenced."""
        if not self._store.fenced:
            self._write(None, snapshot["slots"], snapshot.get("deleted", ()))
            return None
        groups: dict[str | None, tuple[list[Any], list[Any]]] = {}
        for row in snapshot["slots"]:
            groups.setdefault(partition(self._community_of(row["subject"])), ([], []))[0].append(row)
        for key in snapshot.get("deleted", ()):
            groups.setdefault(partition(self._community_of(key[1])), ([], []))[1].append(key)
        written = 0
        for community, (slots, deleted) in groups.items():
            try:
                self._write(community, slots, deleted)
            except FencedError as exc:
                # Not ours any more: the new owner keeps these subjects' state now.
                log.warning("rule state of community %s not written: %s", community, exc)
                continue
            written += len(slots) + len(deleted)
        return written

    def _write(self, community: str | None, slots: list[Any], deleted: Collection[Any]) -> None:
        with self._store.transaction(community=community) as db:
            # In chunks: each bytes object orjson.dumps returns keeps its ~4 KB write buffer, so the
            # 10⁵ slots of a first flush serialised at once held ≈ 500 MB (rule_state_file.slot_row).
            for at in range(0, len(slots), _CHUNK):
                db.executemany(
                    "INSERT INTO rule_state (rule, subject, state) VALUES (?, ?, ?)"
                    " ON CONFLICT (rule, subject) DO UPDATE SET state = excluded.state",
                    [
                        (row["rule"], row["subject"], orjson.dumps(row["state"]))
                        for row in slots[at : at + _CHUNK]
                    ],
                )
            db.executemany(
                "DELETE FROM rule_state WHERE rule = ? AND subject = ?", [tuple(k) for k in deleted]
            )

    def count(self) -> int:
        """Slots on disk (with a file of its own: once its writer has written what it was handed)."""
        if self.file is not None:
            self.file.wait()
            return self.file.stored()
        found = self._store.execute("SELECT count(*) FROM rule_state").fetchone()
        return int(found[0])
