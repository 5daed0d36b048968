"""Persistence of cases: the append-only timeline is the record, the ``cases`` row an index.

Lives in the store's database beside alerts and the notification outbox, so a case change,
the escalation steps it sends and their notifications commit in **one transaction**: after
``kill -9`` either all of them happened or none did. A case is rebuilt by replaying its
timeline (:func:`hub.cases.workflow.replay`).
"""

from __future__ import annotations

from collections.abc import Collection, Iterable, Sequence
from dataclasses import dataclass

import orjson

from hub.cases.model import OPEN, Case, CaseState, TimelineEntry
from hub.cases.workflow import replay, replay_onto
from hub.errors import StaleCaseError
from hub.steps import Steps
from hub.storage.case_rows import call_back_from
from hub.storage.engine import Tx
from hub.storage.scope import in_list, in_scope
from hub.storage.store import Store


@dataclass(frozen=True, slots=True)
class CaseFilter:
    """Which cases a reader may see: in these grids or communities, or given to this person.

    ``None`` for the whole filter means every case (the command centre).
    """

    grids: frozenset[str] = frozenset()
    communities: frozenset[str] = frozenset()
    #: The assignee, or anybody a notification of the case went to (dispatched, escalated).
    person: str | None = None


#: Open cases read per step of :meth:`CaseStore.open_per_subject` (≈ 6 ms of a slow machine's loop each).
SUBJECT_ROWS_PER_STEP = 1024

#: The open states' stored values (``cases.state``).
_OPEN = frozenset(state.value for state in OPEN)


def _visible(visible: CaseFilter, params: list[object]) -> str:
    """The SQL condition for the cases ``visible`` reaches (its parameters appended to ``params``)."""
    either = ["FALSE"]
    if visible.grids:
        either.append(in_list("grid", visible.grids, params))
    if visible.communities:
        either.append(in_list("community", visible.communities, params))
    if visible.person is not None:
        either.append(
            "assignee = ? OR id IN (SELECT case_id FROM notifications WHERE recipient = ? AND case_id IS NOT NULL)"
        )
        params.extend((visible.person, visible.person))
    return "(" + " OR ".join(either) + ")"


class CaseStore:
    def __init__(self, *, store: Store) -> None:
        self._store = store

    # -- writes (inside the caller's transaction) ------------------------------------------

    def add(self, db: Tx, case: Case, entry: TimelineEntry) -> None:
        db.execute(
            "INSERT INTO cases (id, alert_id, category, severity, grid, community, state, assignee, version, filed_at,"
            " updated_at, call_back_from) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (
                case.id,
                case.alert_id,
                case.category,
                case.severity,
                case.grid,
                case.community,
                case.state.value,
                case.assignee,
                case.version,
                case.filed_at,
                case.updated_at,
                call_back_from(case),
            ),
        )
        self._insert_entry(db, entry)

    def append(self, db: Tx, case: Case, entry: TimelineEntry) -> None:
        """Record ``entry`` that turned the stored case into ``case`` (version check included)."""
        cursor = db.execute(
            "UPDATE cases SET state = ?, assignee = ?, version = ?, updated_at = ?, call_back_from = ?"
            " WHERE id = ? AND version = ?",
            (
                case.state.value,
                case.assignee,
                case.version,
                case.updated_at,
                call_back_from(case),
                case.id,
                entry.seq,
            ),
        )
        if cursor.rowcount != 1:
            raise StaleCaseError(case.id)
        self._insert_entry(db, entry)

    @staticmethod
    def _insert_entry(db: Tx, entry: TimelineEntry) -> None:
        db.execute(
            "INSERT INTO case_timeline (case_id, seq, ts, entry) VALUES (?, ?, ?, ?)",
            (entry.case_id, entry.seq, entry.ts, orjson.dumps(entry.to_dict())),
        )

    @staticmethod
    def set_deadline(db: Tx, case_id: str, next_at: float | None) -> None:
        if next_at is None:
            db.execute("DELETE FROM case_deadlines WHERE case_id = ?", (case_id,))
        else:
            db.execute(
                "INSERT INTO case_deadlines (case_id, next_at) VALUES (?, ?)"
                " ON CONFLICT (case_id) DO UPDATE SET next_at = excluded.next_at",
                (case_id, next_at),
            )

    @staticmethod
    def mark_sent(db: Tx, key: str, case_id: str, at: float) -> bool:
        """Record an escalation step as sent; ``False`` if it already was (then send nothing)."""
        cursor = db.execute(
            "INSERT INTO case_steps_sent (key, case_id, sent_at) VALUES (?, ?, ?) ON CONFLICT (key) DO NOTHING",
            (key, case_id, at),
        )
        return cursor.rowcount == 1

    # -- reads ---------------------------------------------------------------------------

    def timeline(self, case_id: str) -> list[TimelineEntry]:
        rows = self._store.execute(
            "SELECT entry FROM case_timeline WHERE case_id = ? ORDER BY seq", (case_id,)
        ).fetchall()
        return [TimelineEntry.from_dict(orjson.loads(row[0])) for row in rows]

    def timeline_from(self, case_id: str, seq: int) -> list[TimelineEntry]:
        """The entries from sequence number ``seq`` on: what a case read at version ``seq`` misses."""
        rows = self._store.execute(
            "SELECT entry FROM case_timeline WHERE case_id = ? AND seq >= ? ORDER BY seq", (case_id, seq)
        ).fetchall()
        return [TimelineEntry.from_dict(orjson.loads(row[0])) for row in rows]

    def load(self, case_id: str) -> Case | None:
        entries = self.timeline(case_id)
        return replay(entries) if entries else None

    def refresh(self, case: Case) -> Case | None:
        """``case`` brought up to date by the entries written since it was read (``None``: gone).

        A timeline only grows (entry ``seq`` is the case's version before it), so the entries
        from ``case.version`` on, applied in order, give what a full :meth:`load` would; any gap
        in them is read as the whole timeline instead.
        """
        entries = self.timeline_from(case.id, case.version)
        if any(entry.seq != case.version + i for i, entry in enumerate(entries)):
            return self.load(case.id)
        return replay_onto(case, entries)

    def open_for_alert(self, alert_id: int) -> Case | None:
        row = self._store.execute(
            "SELECT id FROM cases WHERE alert_id = ? AND state NOT IN ('closed', 'void')", (alert_id,)
        ).fetchone()
        return self.load(row[0]) if row else None

    def open_versions(self, *, limit: int = 100_000) -> list[tuple[str, int]]:
        """``(id, version)`` of the open cases: what a reader keeping cases needs to see a change."""
        wanted = [s.value for s in OPEN]
        query = f"SELECT id, version FROM cases WHERE state IN ({','.join('?' * len(wanted))})"  # noqa: S608 - placeholders only
        query += " ORDER BY filed_at DESC, id LIMIT ?"
        return [(row[0], int(row[1])) for row in self._store.execute(query, (*wanted, limit))]

    def case_ids(
        self,
        *,
        assignee: str | None = None,
        grid: str | None = None,
        states: Iterable[CaseState] = OPEN,
        limit: int = 200,
        offset: int = 0,
        visible: CaseFilter | None = None,
    ) -> list[str]:
        wanted = [s.value for s in states]
        query = f"SELECT id FROM cases WHERE state IN ({','.join('?' * len(wanted))})"  # noqa: S608 - placeholders only
        params: list[object] = [*wanted]
        if assignee is not None:
            query += " AND assignee = ?"
            params.append(assignee)
        if grid is not None:
            query += " AND grid = ?"
            params.append(grid)
        if visible is not None:
            query += " AND " + _visible(visible, params)
        query += " ORDER BY filed_at DESC, id LIMIT ? OFFSET ?"
        params.extend((limit, offset))
        return [row[0] for row in self._store.execute(query, params)]

    def open_index(
        self, *, limit: int, visible: CaseFilter | None = None
    ) -> list[tuple[str, str, str | None]]:
        """``(id, category, grid)`` of the open cases, newest filed first, at most ``limit``, in
        one read: a list made in turns pages through this snapshot, not through OFFSETs that
        cases filed or closed meanwhile would shift (an old SOS skipped, a row listed twice)."""
        params: list[object] = []
        query = f"SELECT id, category, grid FROM cases WHERE {in_list('state', _OPEN, params)}"  # noqa: S608
        if visible is not None:
            query += " AND " + _visible(visible, params)
        query += " ORDER BY filed_at DESC, id LIMIT ?"
        params.append(limit)
        return [(str(row[0]), str(row[1]), row[2]) for row in self._store.execute(query, params)]

    def open_per_subject(self, *, rows_per_step: int = SUBJECT_ROWS_PER_STEP) -> Steps[dict[str, int]]:
        """Open cases per subject (a device, or an elder's care subject), read from each case's
        first timeline entry (立案, which holds the header), ``rows_per_step`` cases a step.

        The elder register shows each elder's open cases; it loaded every open case once per row
        (a page of 200 elders with 1 000 cases open: 200 000 loads, seconds of the loop). In one
        query the count was still ≈ 30 ms of the loop with 10 000 cases open and 135 ms with
        50 000 (a storm, when presses must not wait): the cases are read in pages by id
        (keyset, not OFFSET: a case filed or closed between two steps shifts nothing else).
        A case filed or closed meanwhile may or may not be counted, as if read a moment earlier
        or later. An entry that does not decode is left out of the count: the case lists report
        that case.
        """
        counts: dict[str, int] = {}
        step = max(1, rows_per_step)
        states: list[object] = []
        query = (
            "SELECT c.id, t.entry FROM cases c JOIN case_timeline t ON t.case_id = c.id AND t.seq = 0"  # noqa: S608
            f" WHERE {in_list('c.state', _OPEN, states)}"
        )
        first, following = query + " ORDER BY c.id LIMIT ?", query + " AND c.id > ? ORDER BY c.id LIMIT ?"
        after: str | None = None
        while True:
            if after is None:
                rows = self._store.execute(first, [*states, step]).fetchall()
            else:
                rows = self._store.execute(following, [*states, after, step]).fetchall()
            for _, entry in rows:
                try:
                    subject = orjson.loads(entry)["data"]["subject"]
                except (orjson.JSONDecodeError, KeyError, TypeError):
                    continue
                if isinstance(subject, str):
                    counts[subject] = counts.get(subject, 0) + 1
            if len(rows) < step:
                return counts
            after = str(rows[-1][0])
            yield

    def open_per_grid(self, *, visible: CaseFilter | None = None) -> dict[str | None, tuple[int, int]]:
        """Open cases per grid (``None``: filed without one) as ``(all, SOS)``, counted by the store.

        The map's tiles need only these counts; they were the first 1 000 open cases made into
        full views and counted (a quarter to half a second on the event loop, and short in a
        storm of more).
        """
        params: list[object] = []
        query = (
            "SELECT grid, COUNT(*), SUM(CASE WHEN category = 'sos' THEN 1 ELSE 0 END) FROM cases"  # noqa: S608
            f" WHERE {in_list('state', _OPEN, params)}"
        )
        if visible is not None:
            query += " AND " + _visible(visible, params)
        query += " GROUP BY grid"
        return {row[0]: (int(row[1]), int(row[2] or 0)) for row in self._store.execute(query, params)}

    def call_backs(
        self, *, until: float, visible: CaseFilter | None = None, limit: int = 200, offset: int = 0
    ) -> list[tuple[str, float]]:
        """(case id, 结案 time) of the cases on the 回访 list closed by ``until``, oldest first."""
        query = (
            "SELECT id, call_back_from FROM cases WHERE call_back_from IS NOT NULL AND call_back_from <= ?"
        )
        params: list[object] = [until]
        if visible is not None:
            query += " AND " + _visible(visible, params)
        query += " ORDER BY call_back_from, id LIMIT ? OFFSET ?"
        params.extend((limit, offset))
        return [(str(row[0]), float(row[1])) for row in self._store.execute(query, params)]

    def told(self, case_id: str) -> frozenset[str]:
        """Everybody a notification of this case went to (dispatch, escalation, reminders)."""
        rows = self._store.execute(
            "SELECT DISTINCT recipient FROM notifications WHERE case_id = ?", (case_id,)
        )
        return frozenset(row[0] for row in rows)

    def due(self, now: float, *, communities: frozenset[str] | None = None) -> list[str]:
        """Cases with a deadline at or before ``now``; ``communities``: only theirs (a cluster node's share)."""
        where, params = in_scope("c.community", communities)
        rows = self._store.execute(
            "SELECT d.case_id FROM case_deadlines d JOIN cases c ON c.id = d.case_id"  # noqa: S608 - placeholders only
            f" WHERE d.next_at <= ?{where} ORDER BY d.next_at",
            (now, *params),
        )
        return [row[0] for row in rows]

    def deadlines(
        self, *, case_ids: Collection[str] | None = None, communities: frozenset[str] | None = None
    ) -> dict[str, float]:
        """Case → its stored deadline: of ``case_ids`` (``None``: every case) in ``communities``' share."""
        where, params = in_scope("c.community", communities)
        ids: tuple[str, ...] = ()
        if case_ids is not None:
            if not case_ids:
                return {}
            ids = tuple(case_ids)
            where += f" AND d.case_id IN ({', '.join('?' * len(ids))})"
        rows = self._store.execute(
            "SELECT d.case_id, d.next_at FROM case_deadlines d JOIN cases c ON c.id = d.case_id"  # noqa: S608 - placeholders only
            f" WHERE 1 = 1{where}",
            (*params, *ids),
        )
        return {row[0]: float(row[1]) for row in rows}

    def next_deadline(self, *, communities: frozenset[str] | None = None) -> float | None:
        if communities is None:
            row = self._store.execute("SELECT min(next_at) FROM case_deadlines").fetchone()
        else:
            where, params = in_scope("c.community", communities)
            row = self._store.execute(
                "SELECT min(d.next_at) FROM case_deadlines d JOIN cases c ON c.id = d.case_id"  # noqa: S608
                f" WHERE 1 = 1{where}",
                params,
            ).fetchone()
        return float(row[0]) if row and row[0] is not None else None

    def sent_keys(self, case_id: str) -> frozenset[str]:
        rows = self._store.execute("SELECT key FROM case_steps_sent WHERE case_id = ?", (case_id,))
        return frozenset(row[0] for row in rows)

    def touching(self, start: float, end: float) -> list[str]:
        """Ids of every case filed before ``end`` that was open at some point after ``start``."""
        rows = self._store.execute(
            "SELECT id FROM cases WHERE filed_at < ? AND (state NOT IN ('closed', 'void') OR updated_at >= ?)"
            " ORDER BY filed_at, id",
            (end, start),
        )
        return [row[0] for row in rows]

    def timelines_of(self, case_ids: Sequence[str]) -> list[list[TimelineEntry]]:
        """The timelines of ``case_ids`` (in that order; a case without entries is left out),
        in one query: a period's KPIs read thousands, and a query each was most of their time."""
        if not case_ids:
            return []
        params: list[object] = []
        where = in_list("case_id", case_ids, params)
        rows = self._store.execute(
            f"SELECT case_id, entry FROM case_timeline WHERE {where} ORDER BY case_id, seq",  # noqa: S608
            params,
        )
        by_case: dict[str, list[TimelineEntry]] = {}
        for case_id, entry in rows:
            by_case.setdefault(case_id, []).append(TimelineEntry.from_dict(orjson.loads(entry)))
        return [by_case[c] for c in case_ids if c in by_case]

    def told_of(self, case_ids: Sequence[str]) -> dict[str, frozenset[str]]:
        """:meth:`told` for many cases in one query."""
        if not case_ids:
            return {}
        params: list[object] = []
        where = in_list("case_id", case_ids, params)
        rows = self._store.execute(
            f"SELECT DISTINCT case_id, recipient FROM notifications WHERE {where}",  # noqa: S608
            params,
        )
        told: dict[str, set[str]] = {}
        for case_id, recipient in rows:
            told.setdefault(case_id, set()).add(recipient)
        return {c: frozenset(told.get(c, ())) for c in case_ids}

    def alerts_without_case(self, *, communities: frozenset[str] | None = None) -> list[int]:
        """Active alerts with no case (a crash between the alert's and the case's commit)."""
        where, params = in_scope("a.community", communities)
        rows = self._store.execute(
            "SELECT a.id FROM alerts a WHERE a.status = 'active' AND a.severity != 'info'"  # noqa: S608
            f" AND NOT EXISTS (SELECT 1 FROM cases c WHERE c.alert_id = a.id){where}",
            params,
        )
        return [row[0] for row in rows]
