"""The store's schema and its versioned migrations, one list for both engines.

Every table is created here, nowhere else. Step ``i`` of :data:`MIGRATIONS` takes a database
from version ``i`` to ``i + 1``; the engine runs each step in its own transaction and records
the version where that engine keeps it — SQLite in ``PRAGMA user_version`` (a header field,
read without a table), PostgreSQL in a one-row ``schema_version`` table — and refuses a
database written by a newer Linli (downgrading would silently drop what the newer version
keeps). A step is written once, in SQLite's DDL; :meth:`~hub.storage.engine.Tx.ddl` gives
PostgreSQL its types (``BYTEA``, ``DOUBLE PRECISION``, identity columns), and a step branches
on ``tx.dialect`` only where the engines really differ.

Version 1 is the schema as the first releases created it, table by table with ``IF NOT
EXISTS``, so a SQLite file written before versions existed (``user_version`` 0) is brought to
version 1 by the same step: missing tables are created, and the columns that were added to
``notifications`` later are added if absent.

A migration is appended, never edited: a released step has run on someone's data.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable

from hub.storage.case_rows import call_back_from, replay_rows
from hub.storage.engine import Dialect, Tx

#: The rule engine's slots: in the store (PostgreSQL, older SQLite stores) and in the SQLite
#: store's rule-state file (:mod:`hub.storage.rule_state_file`), the same table in both.
RULE_STATE_TABLE = """
    CREATE TABLE IF NOT EXISTS rule_state (
        rule    TEXT NOT NULL,
        subject TEXT NOT NULL,
        state   BLOB NOT NULL,
        PRIMARY KEY (rule, subject)
    ) WITHOUT ROWID;
"""

_V1 = (
    """
    CREATE TABLE IF NOT EXISTS alerts (
        id          INTEGER PRIMARY KEY,
        rule        TEXT NOT NULL,
        subject     TEXT NOT NULL,
        category    TEXT NOT NULL,
        severity    TEXT NOT NULL,
        status      TEXT NOT NULL CHECK (status IN ('active', 'resolved')),
        device_id   TEXT NOT NULL,
        grid        TEXT,
        community   TEXT,
        title_zh    TEXT NOT NULL,
        title_en    TEXT NOT NULL,
        raised_at   REAL NOT NULL,
        last_seen   REAL NOT NULL,
        count       INTEGER NOT NULL DEFAULT 1,
        resolved_at REAL,
        trace       BLOB NOT NULL
    );
    CREATE UNIQUE INDEX IF NOT EXISTS alerts_one_active ON alerts (rule, subject) WHERE status = 'active';
    CREATE INDEX IF NOT EXISTS alerts_raised ON alerts (raised_at);

    CREATE TABLE IF NOT EXISTS notifications (
        id           TEXT PRIMARY KEY,
        alert_id     INTEGER NOT NULL REFERENCES alerts (id),
        case_id      TEXT,
        recipient    TEXT NOT NULL,
        channel      TEXT NOT NULL,
        address      TEXT NOT NULL,
        payload      BLOB NOT NULL,
        created_at   REAL NOT NULL,
        attempts     INTEGER NOT NULL DEFAULT 0,
        next_attempt REAL NOT NULL,
        delivered_at REAL,
        abandoned_at REAL,
        last_error   TEXT
    );
    CREATE INDEX IF NOT EXISTS notifications_pending ON notifications (next_attempt)
        WHERE delivered_at IS NULL AND abandoned_at IS NULL;

    CREATE TABLE IF NOT EXISTS communities (
        code       TEXT PRIMARY KEY,
        doc        BLOB NOT NULL,
        updated_at REAL NOT NULL
    );

    CREATE TABLE IF NOT EXISTS unassigned_devices (
        id         TEXT PRIMARY KEY,
        family     TEXT NOT NULL,
        first_seen REAL NOT NULL
    );

    CREATE TABLE IF NOT EXISTS quarantine (
        topic      TEXT NOT NULL,
        reason     TEXT NOT NULL,
        detail     TEXT NOT NULL,
        excerpt    BLOB NOT NULL,
        first_seen REAL NOT NULL,
        last_seen  REAL NOT NULL,
        count      INTEGER NOT NULL,
        PRIMARY KEY (topic, reason)
    );

    CREATE TABLE IF NOT EXISTS cases (
        id         TEXT PRIMARY KEY,
        alert_id   INTEGER REFERENCES alerts (id),
        category   TEXT NOT NULL,
        severity   TEXT NOT NULL,
        grid       TEXT,
        community  TEXT,
        state      TEXT NOT NULL,
        assignee   TEXT,
        version    INTEGER NOT NULL,
        filed_at   REAL NOT NULL,
        updated_at REAL NOT NULL
    );
    CREATE UNIQUE INDEX IF NOT EXISTS cases_one_open_per_alert ON cases (alert_id) WHERE state NOT IN ('closed', 'void');
    CREATE INDEX IF NOT EXISTS cases_by_assignee ON cases (assignee, state);

    CREATE TABLE IF NOT EXISTS case_timeline (
        case_id    TEXT NOT NULL REFERENCES cases (id),
        seq        INTEGER NOT NULL,
        ts         REAL NOT NULL,
        entry      BLOB NOT NULL,
        PRIMARY KEY (case_id, seq)
    );

    CREATE TABLE IF NOT EXISTS case_deadlines (
        case_id TEXT PRIMARY KEY REFERENCES cases (id),
        next_at REAL NOT NULL
    );
    CREATE INDEX IF NOT EXISTS case_deadlines_next ON case_deadlines (next_at);

    CREATE TABLE IF NOT EXISTS case_steps_sent (
        key     TEXT PRIMARY KEY,
        case_id TEXT NOT NULL REFERENCES cases (id),
        sent_at REAL NOT NULL
    );

"""
    + RULE_STATE_TABLE
)

#: Columns that pre-versioning SQLite files may lack: (table, column, declaration).
_V1_ADDED_COLUMNS = (
    ("notifications", "case_id", "TEXT"),
    ("notifications", "abandoned_at", "REAL"),
)


def _v1(tx: Tx) -> None:
    if tx.dialect is Dialect.SQLITE:
        for table, column, declaration in _V1_ADDED_COLUMNS:
            columns = {row[1] for row in tx.execute(f"PRAGMA table_info({table})")}
            if columns and column not in columns:
                tx.execute(f"ALTER TABLE {table} ADD COLUMN {column} {declaration}")
    tx.ddl(_V1)
    if tx.dialect is Dialect.POSTGRESQL:
        # SQLite's implicit rowid orders the outbox log by insertion when several notifications
        # share a created_at (a manual clock, one alert to many recipients); PostgreSQL has no
        # rowid, so it gets the same order from an explicit identity column.
        tx.execute(
            "ALTER TABLE notifications ADD COLUMN IF NOT EXISTS seq BIGINT GENERATED ALWAYS AS IDENTITY"
        )


_V2 = """
    CREATE TABLE IF NOT EXISTS cluster_nodes (
        node_id      TEXT PRIMARY KEY,
        started_at   REAL NOT NULL,
        heartbeat_at REAL NOT NULL
    );

    CREATE TABLE IF NOT EXISTS community_leases (
        community  TEXT PRIMARY KEY,
        owner      TEXT,
        epoch      INTEGER NOT NULL,
        since      REAL NOT NULL,
        expires_at REAL NOT NULL
    );
"""


def _v2(tx: Tx) -> None:
    """Cluster membership and community leases (hub/storage/leases.py)."""
    tx.ddl(_V2)


_V3 = """
    CREATE TABLE IF NOT EXISTS reply_nonces (
        person  TEXT NOT NULL,
        nonce   TEXT NOT NULL,
        ts      REAL NOT NULL,
        PRIMARY KEY (person, nonce)
    );
    CREATE INDEX IF NOT EXISTS reply_nonces_ts ON reply_nonces (ts);
"""


def _v3(tx: Tx) -> None:
    """Nonces of accepted worker replies (issue 11): a replayed reply is refused after a restart too.

    Rows are pruned once their signed timestamp has left the acceptance window, after which
    the timestamp check alone refuses the replay.
    """
    tx.ddl(_V3)


_V4 = """
    CREATE TABLE IF NOT EXISTS visit_tasks (
        key           TEXT PRIMARY KEY,
        elder         TEXT NOT NULL,
        kind          TEXT NOT NULL CHECK (kind IN ('sign_of_life', 'visit', 'call')),
        community     TEXT NOT NULL,
        grid          TEXT NOT NULL,
        assignee      TEXT,
        window_start  REAL NOT NULL,
        due_at        REAL NOT NULL,
        created_at    REAL NOT NULL,
        urgent_at     REAL,
        urgent_alert  INTEGER REFERENCES alerts (id),
        superseded_by TEXT,
        done_at       REAL
    );
    CREATE UNIQUE INDEX IF NOT EXISTS visit_tasks_one_open ON visit_tasks (elder, kind)
        WHERE done_at IS NULL AND superseded_by IS NULL;
    CREATE INDEX IF NOT EXISTS visit_tasks_by_grid ON visit_tasks (grid, due_at);
    CREATE INDEX IF NOT EXISTS visit_tasks_by_elder ON visit_tasks (elder, due_at);

    CREATE TABLE IF NOT EXISTS visit_records (
        id        TEXT PRIMARY KEY,
        task_key  TEXT NOT NULL REFERENCES visit_tasks (key),
        outcome   TEXT NOT NULL CHECK (outcome IN ('visited_well', 'needs_help', 'not_at_home')),
        by_person TEXT NOT NULL,
        at        REAL NOT NULL,
        note      TEXT NOT NULL,
        channel   TEXT NOT NULL,
        case_id   TEXT REFERENCES cases (id),
        alert_id  INTEGER REFERENCES alerts (id)
    );
    CREATE INDEX IF NOT EXISTS visit_records_by_task ON visit_records (task_key, at);

    CREATE TABLE IF NOT EXISTS visit_deadlines (
        task_key TEXT PRIMARY KEY REFERENCES visit_tasks (key),
        next_at  REAL NOT NULL
    );
    CREATE INDEX IF NOT EXISTS visit_deadlines_next ON visit_deadlines (next_at);

    CREATE TABLE IF NOT EXISTS visit_steps_sent (
        key      TEXT PRIMARY KEY,
        task_key TEXT NOT NULL REFERENCES visit_tasks (key),
        target   TEXT NOT NULL,
        sent_at  REAL NOT NULL
    );

    CREATE TABLE IF NOT EXISTS evaluation_links (
        nonce      TEXT PRIMARY KEY,
        case_id    TEXT NOT NULL REFERENCES cases (id),
        guardian   TEXT NOT NULL,
        issued_at  REAL NOT NULL,
        expires_at REAL NOT NULL,
        used_at    REAL
    );
    CREATE INDEX IF NOT EXISTS evaluation_links_case ON evaluation_links (case_id);
"""


def _v4(tx: Tx) -> None:
    """Care visits and guardians' evaluation links (issue 18).

    ``visit_tasks`` holds one row per task occurrence (key ``{elder}/{kind}/{due_ms}`` from
    :func:`hub.cases.care.next_task`), at most one open per elder and kind — the scheduler
    creating the same task twice (two hubs, a restart) is refused by the index, not by luck.
    ``visit_records`` is insert-only (the record of what the visitor found), as the case
    timeline is. ``visit_deadlines`` and ``visit_steps_sent`` do for visits what
    ``case_deadlines`` and ``case_steps_sent`` do for cases: after ``kill -9`` a missed visit
    escalates at its original time, once. An urgent visit (an inactivity alert) that must come
    sooner than the planned one replaces it: the planned row is kept, ``superseded_by`` the new. ``evaluation_links`` remembers each signed one-time
    link a guardian was sent: a link is spent when used, so a forwarded or replayed link cannot
    evaluate twice. Evaluations themselves are ``evaluate`` entries of ``case_timeline`` (the
    timeline is the case's record; a table beside it could disagree with it).
    """
    tx.ddl(_V4)


def _v5(tx: Tx) -> None:
    """The 回访 list as a query (issue 18): ``cases.call_back_from`` is the 结案 time of a case
    closed as resolved and still waiting for its 评价 (else NULL), kept by every case write, so
    the list is an indexed range query with pagination instead of replaying every closed case.
    Cases closed before this version are filled in here from their timelines (replayed once).
    """
    tx.ddl("ALTER TABLE cases ADD COLUMN call_back_from REAL;")
    tx.ddl(
        "CREATE INDEX IF NOT EXISTS cases_call_back ON cases (call_back_from) WHERE call_back_from IS NOT NULL;"
    )
    closed = [row[0] for row in tx.execute("SELECT id FROM cases WHERE state = 'closed'").fetchall()]
    for case_id in closed:
        rows = tx.execute(
            "SELECT entry FROM case_timeline WHERE case_id = ? ORDER BY seq", (case_id,)
        ).fetchall()
        case = replay_rows(rows)
        if case is not None:
            tx.execute("UPDATE cases SET call_back_from = ? WHERE id = ?", (call_back_from(case), case_id))


def _v6(tx: Tx) -> None:
    """Cases by alert, whatever their state (issue 14): casework's reconcile round asks, every few
    seconds, which active alerts have no case at all. The only index on ``cases.alert_id`` is
    partial (open cases), which that question cannot use, so each active alert scanned every
    case ever filed: active alerts × all cases per round, on the event loop — the largest stall
    left in the SOS latency runs once rule state moved off the loop, and growing with history.
    """
    tx.ddl("CREATE INDEX IF NOT EXISTS cases_by_alert ON cases (alert_id);")


def _v7(tx: Tx) -> None:
    """A community's start-up copy (issue 14): its parsed document in ``marshal`` form
    (:mod:`hub.storage.community_pack`), made by a child process after a start that had to
    read the JSON (:mod:`hub.storage.community_copies`) and deleted whenever ``doc`` changes.
    Rows of older versions are read from the JSON until their copy is made.
    """
    # A table of its own: an UPDATE rewrites the whole row, so a column beside ``doc`` had
    # each copy write the 44 MB doc again too (WAL and checkpoint).
    tx.ddl(
        """
        CREATE TABLE IF NOT EXISTS community_copies (
            code   TEXT PRIMARY KEY,
            packed BLOB NOT NULL
        );
        """
    )


def _v8(tx: Tx) -> None:
    """Who typed a visit record (review): the command centre records a visit ``on_behalf_of`` the
    worker who reported it by phone, and ``by_person`` names the worker, so the desk that typed
    it was in the log only. ``recorded_by`` keeps it with the record, as a case entry's
    ``data.recorded_by`` does; NULL for a visitor's own record. Older rows stay NULL: who typed
    them was never stored, and no other table knows it.
    """
    tx.ddl("ALTER TABLE visit_records ADD COLUMN recorded_by TEXT;")


#: Step ``i`` takes a database from version ``i`` to ``i + 1``.
MIGRATIONS: tuple[Callable[[Tx], None], ...] = (_v1, _v2, _v3, _v4, _v5, _v6, _v7, _v8)
SCHEMA_VERSION = len(MIGRATIONS)


def schema_version(db: sqlite3.Connection) -> int:
    """The version of a SQLite file opened without the store (backups, tests)."""
    return int(db.execute("PRAGMA user_version").fetchone()[0])
