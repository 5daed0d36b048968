"""Persistence of care visits (探访): tasks, their insert-only records, deadlines and steps sent.

The pure rules are :mod:`hub.cases.care`; this module only stores what they decided. One open
task per elder and kind is the schema's invariant (``visit_tasks_one_open``), so a task the
scheduler creates twice is kept once. Writes take the caller's transaction, so a record, the
task's completion, the case it filed and the next task commit together.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from hub.cases.care import Outcome, TaskKind, VisitRecord, VisitTask
from hub.storage.engine import Tx
from hub.storage.scope import in_list
from hub.storage.store import Store

_TASK_COLUMNS = (
    "key, elder, kind, community, grid, assignee, window_start, due_at, created_at, urgent_at, urgent_alert,"
    " superseded_by, done_at"
)
_RECORD_SELECT = (
    "SELECT r.id, r.task_key, t.elder, t.kind, r.outcome, r.by_person, r.at, r.note, r.channel, r.case_id,"
    " r.alert_id, r.recorded_by FROM visit_records r JOIN visit_tasks t ON t.key = r.task_key"
)


@dataclass(frozen=True, slots=True, kw_only=True)
class StoredTask:
    """A task as stored: the plan's occurrence plus what happened to it."""

    task: VisitTask
    created_at: float
    #: Raised to urgent (an inactivity alert of the elder) at this time, by this alert.
    urgent_at: float | None = None
    urgent_alert: int | None = None
    #: Replaced by a sooner urgent task (no longer due, not counted in 探访完成率).
    superseded_by: str | None = None
    done_at: float | None = None

    @property
    def open(self) -> bool:
        return self.done_at is None and self.superseded_by is None

    @property
    def key(self) -> str:
        return self.task.key

    @property
    def urgent(self) -> bool:
        return self.urgent_at is not None


@dataclass(frozen=True, slots=True, kw_only=True)
class StoredRecord:
    """A visit record with where it came from and what it led to."""

    id: str
    record: VisitRecord
    channel: str
    case_id: str | None = None
    alert_id: int | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class VisitFilter:
    """Which tasks a reader may see: in these grids or communities, or assigned to this person."""

    grids: frozenset[str] = frozenset()
    communities: frozenset[str] = frozenset()
    person: str | None = None


def _task(row: tuple[object, ...]) -> StoredTask:
    (
        key,
        elder,
        kind,
        community,
        grid,
        assignee,
        window_start,
        due_at,
        created,
        urgent_at,
        urgent_alert,
        superseded,
        done,
    ) = row
    task = VisitTask(
        elder=str(elder),
        kind=TaskKind(str(kind)),
        community=str(community),
        grid=str(grid),
        assignee=None if assignee is None else str(assignee),
        window_start=float(window_start),  # type: ignore[arg-type]
        due_at=float(due_at),  # type: ignore[arg-type]
    )
    if task.key != key:
        # The key is derived from the row; a hand-edited row must not pass as another task.
        raise ValueError(f"visit task {key!r} does not match its own fields ({task.key!r})")
    return StoredTask(
        task=task,
        created_at=float(created),  # type: ignore[arg-type]
        urgent_at=None if urgent_at is None else float(urgent_at),  # type: ignore[arg-type]
        urgent_alert=None if urgent_alert is None else int(urgent_alert),  # type: ignore[call-overload]
        superseded_by=None if superseded is None else str(superseded),
        done_at=None if done is None else float(done),  # type: ignore[arg-type]
    )


class VisitStore:
    def __init__(self, *, store: Store) -> None:
        self._store = store

    # -- writes (inside the caller's transaction) ------------------------------------------

    @staticmethod
    def add_task(db: Tx, task: VisitTask, *, at: float) -> bool:
        """Store a new task; ``False`` if it exists or the elder already has one of that kind open."""
        cursor = db.execute(
            f"INSERT INTO visit_tasks ({_TASK_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, NULL, NULL, NULL, NULL)"  # noqa: S608 - constant columns
            " ON CONFLICT DO NOTHING",
            (
                task.key,
                task.elder,
                task.kind.value,
                task.community,
                task.grid,
                task.assignee,
                task.window_start,
                task.due_at,
                at,
            ),
        )
        return cursor.rowcount == 1

    @staticmethod
    def add_record(
        db: Tx,
        record: VisitRecord,
        *,
        record_id: str,
        channel: str,
        case_id: str | None = None,
        alert_id: int | None = None,
    ) -> bool:
        """Insert a record; a completing outcome marks the task done. ``False``: it was done already."""
        db.execute(
            "INSERT INTO visit_records"
            " (id, task_key, outcome, by_person, at, note, channel, case_id, alert_id, recorded_by)"
            " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (
                record_id,
                record.task_key,
                record.outcome.value,
                record.by,
                record.at,
                record.note,
                channel,
                case_id,
                alert_id,
                record.recorded_by,
            ),
        )
        if not record.outcome.completes:
            return True
        cursor = db.execute(
            "UPDATE visit_tasks SET done_at = ? WHERE key = ? AND done_at IS NULL AND superseded_by IS NULL",
            (record.at, record.task_key),
        )
        return cursor.rowcount == 1

    @staticmethod
    def complete(db: Tx, key: str, *, at: float) -> bool:
        """Mark an open task done without a visit record (a sensor's sign of life completed it)."""
        cursor = db.execute(
            "UPDATE visit_tasks SET done_at = ? WHERE key = ? AND done_at IS NULL AND superseded_by IS NULL",
            (at, key),
        )
        return cursor.rowcount == 1

    @staticmethod
    def mark_urgent(db: Tx, key: str, *, at: float, alert_id: int) -> bool:
        """Raise an open task to urgent for ``alert_id`` (once: the first alert's time stands)."""
        cursor = db.execute(
            "UPDATE visit_tasks SET urgent_at = ?, urgent_alert = ? WHERE key = ? AND done_at IS NULL"
            " AND superseded_by IS NULL"
            " AND urgent_at IS NULL",
            (at, alert_id, key),
        )
        return cursor.rowcount == 1

    @staticmethod
    def supersede(db: Tx, old: str, new: str) -> bool:
        """Replace the open task ``old`` by ``new`` (store ``new`` after this, in the same transaction)."""
        cursor = db.execute(
            "UPDATE visit_tasks SET superseded_by = ? WHERE key = ? AND done_at IS NULL AND superseded_by IS NULL",
            (new, old),
        )
        db.execute("DELETE FROM visit_deadlines WHERE task_key = ?", (old,))
        return cursor.rowcount == 1

    @staticmethod
    def set_deadline(db: Tx, key: str, next_at: float | None) -> None:
        if next_at is None:
            db.execute("DELETE FROM visit_deadlines WHERE task_key = ?", (key,))
        else:
            db.execute(
                "INSERT INTO visit_deadlines (task_key, next_at) VALUES (?, ?)"
                " ON CONFLICT (task_key) DO UPDATE SET next_at = excluded.next_at",
                (key, next_at),
            )

    @staticmethod
    def mark_sent(db: Tx, key: str, task_key: str, *, target: str, at: float) -> bool:
        """Record an escalation step as sent; ``False`` if it already was (then send nothing)."""
        cursor = db.execute(
            "INSERT INTO visit_steps_sent (key, task_key, target, sent_at) VALUES (?, ?, ?, ?)"
            " ON CONFLICT (key) DO NOTHING",
            (key, task_key, target, at),
        )
        return cursor.rowcount == 1

    # -- reads ---------------------------------------------------------------------------

    def task(self, key: str) -> StoredTask | None:
        row = self._store.execute(
            f"SELECT {_TASK_COLUMNS} FROM visit_tasks WHERE key = ?",  # noqa: S608 - constant columns
            (key,),
        ).fetchone()
        return _task(tuple(row)) if row else None

    def open_kinds(self) -> set[tuple[str, TaskKind]]:
        """(elder, kind) of every open task: the scheduler's one query per round."""
        rows = self._store.execute(
            "SELECT elder, kind FROM visit_tasks WHERE done_at IS NULL AND superseded_by IS NULL"
        )
        kinds = {kind.value: kind for kind in TaskKind}  # a dict lookup: the enum's call costs µs per row
        return {(row[0], kinds[row[1]]) for row in rows}

    def open_task(self, elder: str, kind: TaskKind) -> StoredTask | None:
        row = self._store.execute(
            f"SELECT {_TASK_COLUMNS} FROM visit_tasks WHERE elder = ? AND kind = ? AND done_at IS NULL"  # noqa: S608
            " AND superseded_by IS NULL",
            (elder, kind.value),
        ).fetchone()
        return _task(tuple(row)) if row else None

    def tasks(
        self,
        *,
        visible: VisitFilter | None = None,
        elder: str | None = None,
        open_only: bool = True,
        limit: int = 200,
        offset: int = 0,
        signs_due_by: float | None = None,
    ) -> list[StoredTask]:
        """Tasks by due time (urgent first), as far as ``visible`` reaches (``None``: every task).

        With ``signs_due_by``, sign-of-life tasks only once due by then: the sensors do that
        work every day, a person is asked only when a day passed without a sign.
        """
        query = f"SELECT {_TASK_COLUMNS} FROM visit_tasks WHERE TRUE"  # noqa: S608 - constant columns
        params: list[object] = []
        if signs_due_by is not None:
            query += " AND (kind != ? OR due_at <= ?)"
            params.extend((TaskKind.SIGN_OF_LIFE.value, signs_due_by))
        if open_only:
            query += " AND done_at IS NULL AND superseded_by IS NULL"
        if elder is not None:
            query += " AND elder = ?"
            params.append(elder)
        if visible is not None:
            either = ["FALSE"]
            if visible.grids:
                either.append(in_list("grid", visible.grids, params))
            if visible.communities:
                either.append(in_list("community", visible.communities, params))
            if visible.person is not None:
                either.append("assignee = ?")
                params.append(visible.person)
            query += " AND (" + " OR ".join(either) + ")"
        query += " ORDER BY (urgent_at IS NULL), due_at, key LIMIT ? OFFSET ?"
        params.extend((limit, offset))
        return [_task(tuple(row)) for row in self._store.execute(query, params)]

    def tasks_due_between(self, start: float, end: float) -> list[StoredTask]:
        """Tasks due in ``[start, end)`` (探访完成率's denominator)."""
        rows = self._store.execute(
            f"SELECT {_TASK_COLUMNS} FROM visit_tasks WHERE due_at >= ? AND due_at < ?"  # noqa: S608
            " AND superseded_by IS NULL ORDER BY due_at, key",
            (start, end),
        )
        return [_task(tuple(row)) for row in rows]

    def claimed(self, alert_id: int) -> bool:
        """Whether a visit answers this alert (an inactivity alert raised a visit to urgent)."""
        row = self._store.execute(
            "SELECT 1 FROM visit_tasks WHERE urgent_alert = ? LIMIT 1", (alert_id,)
        ).fetchone()
        return row is not None

    def records(self, task_key: str) -> list[StoredRecord]:
        rows = self._store.execute(f"{_RECORD_SELECT} WHERE r.task_key = ? ORDER BY r.at, r.id", (task_key,))
        return [_record(tuple(row)) for row in rows]

    def records_of(self, task_keys: Sequence[str]) -> dict[str, list[StoredRecord]]:
        """:meth:`records` of many tasks in one query (a period's 探访完成率 reads thousands)."""
        if not task_keys:
            return {}
        params: list[object] = []
        where = in_list("r.task_key", task_keys, params)
        rows = self._store.execute(f"{_RECORD_SELECT} WHERE {where} ORDER BY r.at, r.id", params)
        found: dict[str, list[StoredRecord]] = {}
        for row in rows:
            record = _record(tuple(row))
            found.setdefault(record.record.task_key, []).append(record)
        return found

    def last_record(self, elder: str, *, completing: bool = True) -> StoredRecord | None:
        """The elder's latest visit record (by default one that saw the elder: not 不在家)."""
        skipped = Outcome.NOT_AT_HOME.value if completing else ""
        row = self._store.execute(
            f"{_RECORD_SELECT} WHERE t.elder = ? AND r.outcome != ? ORDER BY r.at DESC, r.id DESC LIMIT 1",
            (elder, skipped),
        ).fetchone()
        return _record(tuple(row)) if row else None

    def last_done(self, elder: str, kind: TaskKind) -> float | None:
        row = self._store.execute(
            "SELECT max(done_at) FROM visit_tasks WHERE elder = ? AND kind = ?", (elder, kind.value)
        ).fetchone()
        return float(row[0]) if row and row[0] is not None else None

    def last_due(self, elder: str, kind: TaskKind) -> float | None:
        """The latest due time of the elder's tasks of ``kind`` that were done (the plan goes on after it)."""
        row = self._store.execute(
            "SELECT max(due_at) FROM visit_tasks WHERE elder = ? AND kind = ? AND done_at IS NOT NULL",
            (elder, kind.value),
        ).fetchone()
        return float(row[0]) if row and row[0] is not None else None

    def due(self, now: float) -> list[str]:
        rows = self._store.execute(
            "SELECT task_key FROM visit_deadlines WHERE next_at <= ? ORDER BY next_at, task_key", (now,)
        )
        return [row[0] for row in rows]

    def next_deadline(self) -> float | None:
        row = self._store.execute("SELECT min(next_at) FROM visit_deadlines").fetchone()
        return float(row[0]) if row and row[0] is not None else None

    def sent_keys(self, task_key: str) -> frozenset[str]:
        rows = self._store.execute("SELECT key FROM visit_steps_sent WHERE task_key = ?", (task_key,))
        return frozenset(row[0] for row in rows)


def _record(row: tuple[object, ...]) -> StoredRecord:
    record_id, task_key, elder, kind, outcome, by, at, note, channel, case_id, alert_id, recorded_by = row
    return StoredRecord(
        id=str(record_id),
        record=VisitRecord(
            task_key=str(task_key),
            elder=str(elder),
            kind=TaskKind(str(kind)),
            outcome=Outcome(str(outcome)),
            by=str(by),
            at=float(at),  # type: ignore[arg-type]
            note=str(note),
            recorded_by=None if recorded_by is None else str(recorded_by),
        ),
        channel=str(channel),
        case_id=None if case_id is None else str(case_id),
        alert_id=None if alert_id is None else int(alert_id),  # type: ignore[call-overload]
    )
