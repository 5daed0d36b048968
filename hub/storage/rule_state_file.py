"""Rule state in a SQLite file of its own, written by a thread of its own (SQLite stores only).

Why: the rule engine rewrites a slot for nearly every reading (an absence deadline moves on),
and the routine flush writes thousands of them every few seconds. In the store's file those
writes shared one WAL with alerts and cases, so their commits — and the checkpoints they
triggered, an ``fsync`` of 25–35 ms on the bench machine about every fifth 256-slot commit —
ran on the event loop. The SOS split's stall watch put 60–65 % of the loop stalls a press
waited behind in those writes (docs/benchmarks.md, "Rule state off the event loop").

Here the event loop only serialises the changed slots (``orjson``, as before) and hands the
text over; the thread writes them to ``<store>-rule-state.sqlite3`` beside the store. Two
files, so the thread never holds the lock an alert's transaction needs (SQLite has one writer
per database, and a waiting writer sleeps in steps of milliseconds).

* **Coalesced**: a slot changed again before the writer took it is written once, with its
  newest value; what waits is bounded by the number of slots, whatever the disk does.
* **One statement per batch**: each batch is one ``INSERT … SELECT … FROM json_each(?)``, so
  the thread needs the GIL a handful of times per batch. With ``executemany`` every row went
  back to Python for its parameters and waited out the busy event loop's switch interval
  (5 ms, CPython's GIL): 256 rows took 0.6–2.8 s instead of 2 ms.
* **At most ten batches a second** (``pause_s``): after a batch the writer waits 0.1 s before
  taking the next, so it coalesces more and takes the GIL from the event loop a few dozen
  times a second, not once per loop turn. That is the longest a change waits before its batch.
* **Failures** keep the slots: a batch that cannot be written goes back under whatever newer
  values arrived meanwhile, and is retried every ``retry_s``; :attr:`RuleStateFile.failing`
  says why meanwhile (readiness reports it).
* **Durability**: what a ``kill -9`` loses is what was handed over but not yet committed —
  at most ``pause_s`` plus one write of changes, the same kind the per-turn flush always left
  after the PUBACK (the alert of an SOS is committed to the store before it, never here). A
  clean stop waits for the writer (:meth:`RuleStateFile.close`).

The file has one table, the store's ``rule_state`` (:data:`hub.storage.schema.RULE_STATE_TABLE`),
with the state stored as JSON text, plus ``due``: the slot's timer, a column SQLite computes from
the JSON whenever a row is written (:data:`FILE_TABLE`). PostgreSQL stores (and clusters, which need
PostgreSQL) keep the store's table.

Must not import: ``hub.web``, ``hub.ingest``, ``hub.app``, ``hub.cli``.
"""

from __future__ import annotations

import logging
import sqlite3
import threading
import time
from collections.abc import Iterable, Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from urllib.parse import quote

import orjson

from hub.errors import StoreError
from hub.files import touch_private
from hub.storage.schema import RULE_STATE_TABLE

log = logging.getLogger(__name__)

#: An unreadable rule-state file is moved to its name plus this, and a new one is made.
UNREADABLE_SUFFIX = ".unreadable"

#: (rule id, subject id): rules.state.Key (a tuple of any length there; see why).
Key = tuple[str, ...]

# "WHERE true": an upsert's SELECT needs a WHERE clause to parse (SQLite's INSERT docs, "parsing
# ambiguity"). json_extract of an object gives its minified JSON text.
_UPSERT = (
    "INSERT INTO rule_state (rule, subject, state)"
    " SELECT json_extract(value, '$[0]'), json_extract(value, '$[1]'), json_extract(value, '$[2]')"
    " FROM json_each(?) WHERE true"
    " ON CONFLICT (rule, subject) DO UPDATE SET state = excluded.state"
)
_DELETE = (
    "DELETE FROM rule_state WHERE (rule, subject) IN"
    " (SELECT json_extract(value, '$[0]'), json_extract(value, '$[1]') FROM json_each(?))"
)
#: A row's timer read out of its JSON: ``NULL`` for a row that is not JSON (SQLite's JSON
#: functions raise on malformed text, hence ``json_valid`` first).
_DUE_FROM_JSON = (
    "CASE WHEN json_valid(CAST(state AS TEXT)) THEN json_extract(CAST(state AS TEXT), '$.due') END"
)
#: The store's ``rule_state`` (:data:`hub.storage.schema.RULE_STATE_TABLE`) plus ``due``, a stored
#: generated column: SQLite reads the timer out of the JSON when the writer thread writes a row,
#: not when a restart reads 10⁵ of them (≈ 0.6 s of a 338 240-row restart; docs/benchmarks.md,
#: "Eighteenth pass"). Generated, it can never disagree with the state, hand edits included; a
#: row that is not JSON has none. Stored generated columns need SQLite 3.31 (2020-01); with an
#: older one, or a file whose move to this table failed, SQLite parses each row's JSON at a
#: restart as before (:data:`_ROWS_PARSING`).
FILE_TABLE = f"""
    CREATE TABLE IF NOT EXISTS rule_state (
        rule    TEXT NOT NULL,
        subject TEXT NOT NULL,
        state   BLOB NOT NULL,
        due     REAL GENERATED ALWAYS AS ({_DUE_FROM_JSON}) STORED,
        PRIMARY KEY (rule, subject)
    ) WITHOUT ROWID
"""
#: Generated columns arrived in SQLite 3.31.0.
GENERATED_COLUMNS = (3, 31, 0)
_ROWS = "SELECT rule, subject, state, due FROM rule_state"
_ROWS_PARSING = f"SELECT rule, subject, state, {_DUE_FROM_JSON} FROM rule_state"  # noqa: S608
#: Rows per statement: bounds SQLite's parse of one batch (10⁵ slots at a stop are a few of them).
BATCH_ROWS = 10_000
#: How often a resting writer looks whether close() was called.
_REST_STEP_S = 0.02
#: The suffix beside the store's file: ``linli.sqlite3`` → ``linli-rule-state.sqlite3``.
SUFFIX = "-rule-state"


def path_beside(store_path: Path) -> Path:
    """Where the rule state of the SQLite store at ``store_path`` lives."""
    return store_path.with_name(f"{store_path.stem}{SUFFIX}{store_path.suffix}")


def slot_row(rule: str, subject: str, state: Mapping[str, object]) -> str:
    """One slot as the writer takes it: its JSON array ``[rule, subject, state]``, as text.

    Text, not orjson's bytes: each bytes object ``orjson.dumps`` returns keeps the ~4 KB buffer
    it was written into (the resize to its length does not give it back), so the 131 258 slots
    of a first flush at 100 000 devices held ≈ 500 MB until written. The decoded copy is
    exactly its length (≈ 30 MB for the same slots) and faster to make.
    """
    return orjson.dumps([rule, subject, state]).decode()


class RuleStateFile:
    """The rule-state file and its writer thread (``linli-rule-state``)."""

    def __init__(self, *, path: Path, retry_s: float = 1.0, pause_s: float = 0.1) -> None:
        self.path = path
        self._retry_s = retry_s
        self._pause_s = pause_s
        #: Where an unreadable file was moved before this one was made (``None``: it was not).
        self.set_aside: Path | None = None
        try:
            try:
                self._open()
            except sqlite3.DatabaseError as exc:
                if exc.sqlite_errorcode not in (sqlite3.SQLITE_NOTADB, sqlite3.SQLITE_CORRUPT):
                    raise
                # Derived state (a new install starts without it): refusing to start over it
                # left every press unhandled until someone deleted it by hand.
                self.set_aside = path.with_name(path.name + UNREADABLE_SUFFIX)
                for part in ("", "-wal", "-shm"):
                    source = Path(f"{path}{part}")
                    if source.exists():
                        source.replace(f"{self.set_aside}{part}")
                log.critical(
                    "rule-state file %s is unreadable (%s): moved to %s; rule timers (absences,"
                    " durations, windows) start afresh",
                    path,
                    exc,
                    self.set_aside,
                )
                self._open()
        except (OSError, sqlite3.Error) as exc:
            raise StoreError(f"cannot open rule-state file {path}: {exc}") from exc
        self._cond = threading.Condition()
        self._upserts: dict[Key, str] = {}
        self._deletes: set[Key] = set()
        self._busy = False
        #: Rows the writer took and is writing now (back in ``_upserts`` if that fails).
        self._writing = 0
        self._closing = False
        self._closed = False
        self._thread: threading.Thread | None = None
        #: Why the last write failed (``None``: it did not), for readiness and logs.
        self.failing: str | None = None

    # -- before the thread runs --------------------------------------------------------------

    def _open(self) -> None:
        touch_private(self.path)  # 0600 before SQLite opens it (its -wal/-shm follow: hub.files)
        # Used by the caller's thread until start(), by the writer thread after: never both.
        self._db = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
        try:
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=NORMAL")
            self._rows_sql = self._table()
        except BaseException:
            self._db.close()  # closed before the file may be moved aside
            raise

    def _table(self) -> str:
        """The table made or brought up to date; returns the query :meth:`rows` reads it with.

        A file of an older version (no ``due`` column) gets one, rows kept, in one
        transaction. SQLite cannot add a stored generated column to a table (``ALTER TABLE ADD
        COLUMN`` takes virtual ones only, computed at every read), so the table is made anew
        and the rows copied over: once, ≈ 3 s at 10⁵ devices on the bench machine. If that
        fails (a full disk, say), nothing changes and the hub starts all the same: its rows are
        read by parsing their JSON, and the next start tries again.
        """
        if sqlite3.sqlite_version_info < GENERATED_COLUMNS:
            self._db.execute(RULE_STATE_TABLE)
            return _ROWS_PARSING
        self._db.execute(FILE_TABLE)
        columns = {row[1] for row in self._db.execute("PRAGMA table_xinfo(rule_state)")}
        if "due" in columns:
            return _ROWS
        try:
            with self._transaction() as db:
                db.execute("ALTER TABLE rule_state RENAME TO rule_state_before_due")
                db.execute(FILE_TABLE)
                db.execute(
                    "INSERT INTO rule_state (rule, subject, state)"
                    " SELECT rule, subject, state FROM rule_state_before_due"
                )
                db.execute("DROP TABLE rule_state_before_due")
        except sqlite3.Error as exc:
            log.warning(
                "rule-state file %s: timers not moved to a column of their own (%s);"
                " read from each slot's JSON until a start manages it",
                self.path,
                exc,
            )
            return _ROWS_PARSING
        log.info("rule-state file %s: timers now kept in a column of their own", self.path)
        return _ROWS

    def rows(self) -> Iterator[tuple[str, str, str | bytes, object]]:
        """Every stored slot as ``(rule, subject, state JSON, its due)`` (``due``: ``None`` if none).

        The timer is the ``due`` column SQLite wrote from the JSON (:data:`FILE_TABLE`; parsed
        here where the file has no such column: :meth:`_table`), so the slots themselves can
        stay text until used (:meth:`rules.state.MemoryState.restore_lazy`).
        Rows an older version wrote as bytes are read as text; a row that is not JSON has no
        timer here and is dropped with a warning when first read.

        Row by row, to be read to the end before :meth:`start`: a row's strings that the
        caller does not keep (a subject id it already holds) are freed before the next row is
        made, and the next row's reuse their memory. ``fetchall`` made all 10⁵ rows first, and
        what was freed afterwards stayed as holes among the texts that were kept.
        """
        self._not_running()
        yield from self._db.execute(self._rows_sql)

    def empty(self) -> bool:
        """Whether the file holds no slot."""
        self._not_running()
        return self._db.execute("SELECT 1 FROM rule_state LIMIT 1").fetchone() is None

    def replace_all(self, rows: Iterable[tuple[str, str, str | bytes]]) -> None:
        """Take over ``rows`` (the store's table of an older version) in one transaction."""
        self._not_running()
        with self._transaction() as db:
            db.execute("DELETE FROM rule_state")
            db.executemany("INSERT INTO rule_state (rule, subject, state) VALUES (?, ?, ?)", rows)

    def start(self) -> None:
        self._not_running()
        self._thread = threading.Thread(target=self._run, name="linli-rule-state", daemon=True)
        self._thread.start()

    def _not_running(self) -> None:
        if self._thread is not None:
            raise RuntimeError("the rule-state writer is running: its connection is the thread's")

    # -- from the event loop -----------------------------------------------------------------

    def put(self, upserts: Mapping[Key, str], deletes: Iterable[Key] = ()) -> None:
        """Hand slots over (:func:`slot_row` text by key) and keys to delete; the newest call wins."""
        with self._cond:
            pending_up, pending_del = self._upserts, self._deletes
            for key in deletes:
                pending_up.pop(key, None)
                pending_del.add(key)
            if pending_del:
                pending_del.difference_update(upserts)
            pending_up.update(upserts)
            self._cond.notify()

    def stored(self) -> int:
        """Slots in the file now (a connection of its own: the writer's is the thread's)."""
        reader = sqlite3.connect(f"file:{quote(str(self.path))}?mode=ro", uri=True)
        try:
            return int(reader.execute("SELECT count(*) FROM rule_state").fetchone()[0])
        finally:
            reader.close()

    @property
    def pending(self) -> int:
        """Slots handed over and not yet written."""
        with self._cond:
            return len(self._upserts) + len(self._deletes)

    @property
    def backlog(self) -> int:
        """Rows handed over and not yet written, those being written now included: what the
        rows' text costs in memory until the writer is done with them."""
        with self._cond:
            return len(self._upserts) + len(self._deletes) + self._writing

    def wait(self, timeout: float | None = None) -> bool:
        """Block until everything handed over so far is written (or failed); False on timeout."""
        with self._cond:
            return self._cond.wait_for(
                lambda: (
                    (not self._busy and not self._upserts and not self._deletes)
                    or (self.failing is not None and not self._busy)
                ),
                timeout,
            )

    def close(self, timeout: float = 30.0) -> None:
        """Write what is pending, stop the thread and close the file.

        Raises :class:`StoreError` if slots stay unwritten (the disk refuses them): the next
        start restores the state as it was last written.
        """
        if self._closed:
            return
        self._closed = True
        thread = self._thread
        with self._cond:
            self._closing = True
            self._cond.notify()
        if thread is not None:
            thread.join(timeout)
            if thread.is_alive():
                raise StoreError(f"rule-state writer did not finish within {timeout:.0f} s")
        else:
            self._drain_once()
        left = self.pending
        self._db.close()
        if left:
            raise StoreError(f"{left} rule-state slots not written: {self.failing}")

    # -- the writer thread -------------------------------------------------------------------

    def _run(self) -> None:
        """The writer's loop; should it ever end on an error, readiness says so (``failing``).

        A writer thread that died silently would leave ``failing`` unset: the hub would call
        itself ready while no rule state reached the disk, and a restart would lose every
        absence deadline set since.
        """
        try:
            self._loop()
        except BaseException as exc:
            with self._cond:
                self.failing = f"the rule-state writer stopped: {type(exc).__name__}: {exc}"
                self._busy = False
                # ``_writing`` stays: the routine flush keeps waiting (marks pile up, not rows'
                # text) while readiness reports the writer stopped.
                self._cond.notify_all()
            log.critical(
                "%s; rule state is no longer written until the hub restarts", self.failing, exc_info=True
            )

    def _loop(self) -> None:
        while True:
            with self._cond:
                while not self._upserts and not self._deletes and not self._closing:
                    self._cond.wait()
                if self._closing and not self._upserts and not self._deletes:
                    return
            if not self._drain_once():
                if self._closing:
                    return  # close() reports what is left
                self._rest(self._retry_s)
            elif self._pause_s:
                self._rest(self._pause_s)

    def _rest(self, seconds: float) -> None:
        """Sleep ``seconds``, or less once :meth:`close` was called.

        In short ``time.sleep`` steps rather than a timed ``Condition.wait``: a timed wait on a
        threading lock sleeps until an absolute ``CLOCK_MONOTONIC`` deadline, and under
        libfaketime (CI runs the suite a year ahead) the deadline it computes is a year away
        while the sleep itself runs on the real clock, so the writer never woke up.
        """
        end = time.monotonic() + seconds
        while not self._closing:
            left = end - time.monotonic()
            if left <= 0:
                return
            try:
                time.sleep(min(left, _REST_STEP_S))
            except OSError:
                # A sleep the system refused (EINVAL, seen under libfaketime after a clock step):
                # writing again sooner is harmless; the writer stopping would not be.
                return

    def _drain_once(self) -> bool:
        with self._cond:
            upserts, self._upserts = self._upserts, {}
            deletes, self._deletes = self._deletes, set()
            self._busy = True
            self._writing = len(upserts) + len(deletes)
        try:
            self._write(upserts, deletes)
        except Exception as exc:
            with self._cond:
                self._writing = 0
                # Newer values handed over meanwhile win over the batch that failed.
                for key, value in upserts.items():
                    if key not in self._upserts and key not in self._deletes:
                        self._upserts[key] = value
                for key in deletes:
                    if key not in self._upserts:
                        self._deletes.add(key)
                first = self.failing is None
                self.failing = f"{type(exc).__name__}: {exc}"
                self._busy = False
                self._cond.notify_all()
            if first:
                log.error("rule state not written (%s); retrying every %.0f s", self.failing, self._retry_s)
            return False
        with self._cond:
            if self.failing is not None:
                log.warning("rule state written again after: %s", self.failing)
            self.failing = None
            self._busy = False
            self._writing = 0
            self._cond.notify_all()
        return True

    def _write(self, upserts: Mapping[Key, str], deletes: Iterable[Key]) -> None:
        rows = list(upserts.values())
        gone = [list(key) for key in deletes]
        with self._transaction() as db:
            for at in range(0, len(gone), BATCH_ROWS):
                # As text: SQLite before 3.45 refuses a BLOB argument to its JSON functions.
                db.execute(_DELETE, (orjson.dumps(gone[at : at + BATCH_ROWS]).decode(),))
            for at in range(0, len(rows), BATCH_ROWS):
                db.execute(_UPSERT, ("[" + ",".join(rows[at : at + BATCH_ROWS]) + "]",))

    @contextmanager
    def _transaction(self) -> Iterator[sqlite3.Connection]:
        """``BEGIN IMMEDIATE`` … ``COMMIT``, rolled back on any error (as ``SqliteEngine.transaction``)."""
        db = self._db
        db.execute("BEGIN IMMEDIATE")
        try:
            yield db
            db.execute("COMMIT")
        except BaseException:
            # SQLite may have rolled back already (SQLITE_FULL): a second ROLLBACK would hide why.
            if db.in_transaction:
                db.execute("ROLLBACK")
            raise
