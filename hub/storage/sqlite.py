"""The embedded engine: one SQLite file, in WAL mode, written from the event loop.

Each write is ``BEGIN IMMEDIATE`` … ``COMMIT``: the database-wide write lock is taken at the
start, so a transaction never fails half-way on a lock and reads inside it need no row locks.
With ``synchronous=NORMAL`` in WAL mode a committed transaction survives a process crash
(``kill -9``); only an OS crash or power loss may roll back the last commits.

The busy timeout is :data:`BUSY_TIMEOUT_S`, not Python's default of 5 s: the store is used
from the event loop, so a lock held by another process (a backup, an operator's ``sqlite3``
shell with ``BEGIN EXCLUSIVE``) would freeze MQTT, HTTP and every loop for 5 s per write.
A failed write is not lost: the message is held and retried by the hub (not acknowledged),
casework and dispatch back off. A transaction that fails (disk full, locked) is rolled back
if SQLite did not already do so, and the cause is what is raised — never a "cannot rollback".
"""

from __future__ import annotations

import os
import sqlite3
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

from hub.errors import SchemaVersionError, StoreError
from hub.files import touch_private
from hub.storage.engine import Cursor, Dialect, Engine, Tx
from hub.storage.schema import MIGRATIONS, SCHEMA_VERSION

#: How long a write waits for another process's lock: the longest the event loop may stall on
#: one write. Our own commits take well under a millisecond, WAL readers never block a writer,
#: so only another writer can make us wait; 0.2 s covers the brief ones (an online backup step,
#: a checkpoint), anything longer is the hub's retry queue's job, with the loop free meanwhile.
BUSY_TIMEOUT_S = 0.2
#: Bytes a WAL file keeps when it starts over (SQLite's default keeps whatever it grew to).
JOURNAL_SIZE_LIMIT = 32 * 1024 * 1024


class SqliteTx(Tx):
    dialect = Dialect.SQLITE
    # BEGIN IMMEDIATE already holds the only write lock: what a transaction read stays current.
    for_update = ""
    for_share = ""
    now_sql = "((julianday('now') - 2440587.5) * 86400.0)"

    def __init__(self, *, db: sqlite3.Connection) -> None:
        self._db = db

    def execute(self, sql: str, params: Sequence[object] = ()) -> Cursor:
        return self._db.execute(sql, params)

    def executemany(self, sql: str, rows: Iterable[Sequence[object]]) -> None:
        self._db.executemany(sql, rows)

    def insert_id(self, sql: str, params: Sequence[object]) -> int:
        # lastrowid rather than RETURNING: RETURNING needs SQLite 3.35, older Pythons ship older.
        row_id = self._db.execute(sql, params).lastrowid
        assert row_id is not None
        return row_id


def _identity(path: Path) -> tuple[int, int]:
    found = os.stat(path)
    return found.st_dev, found.st_ino


class SqliteEngine(Engine):
    dialect = Dialect.SQLITE

    def __init__(self, *, path: Path) -> None:
        self.path = path
        self.location = str(path)
        try:
            # 0600 before SQLite opens it: its -wal/-shm files take the same mode (hub.files).
            touch_private(path)
            self._db = sqlite3.connect(
                path, isolation_level=None, check_same_thread=True, timeout=BUSY_TIMEOUT_S
            )
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=NORMAL")
            # A log a burst made large is trimmed to this when it starts over (hub.storage.checkpoints).
            self._db.execute(f"PRAGMA journal_size_limit = {JOURNAL_SIZE_LIMIT}")
            self._db.execute("PRAGMA foreign_keys=ON")
            self._locked_out = False
            self._tx = SqliteTx(db=self._db)
            self._identity = _identity(path)
        except (OSError, sqlite3.Error) as exc:
            raise StoreError(f"cannot open store {path}: {exc}") from exc

    def _still_there(self) -> None:
        """Raise unless the file at ``path`` is still the one open.

        SQLite goes on writing into a file deleted (or replaced) under it, and nothing reads
        those writes again: found in review, a store deleted while the hub ran stayed "ready"
        and every press after that was acknowledged and lost at the next start. So every transaction
        and the readiness check look first (one ``stat``); refused, a press is held and retried.
        """
        try:
            now = _identity(self.path)
        except OSError:
            raise StoreError(f"store file {self.path} was removed while the hub ran: restore it") from None
        if now != self._identity:
            raise StoreError(f"store file {self.path} was replaced while the hub ran: restart the hub")

    @property
    def db(self) -> sqlite3.Connection:
        return self._db

    def close(self) -> None:
        self._db.close()

    def execute(self, sql: str, params: Sequence[object] = ()) -> Cursor:
        return self._db.execute(sql, params)

    def executemany(self, sql: str, rows: Iterable[Sequence[object]]) -> None:
        self._db.executemany(sql, rows)

    def autocheckpoint(self, pages: int | None = None) -> int:
        """SQLite's automatic checkpoint threshold in WAL pages (0: off), set if ``pages`` is given.

        :class:`hub.storage.checkpoints.WalCheckpointer` turns it off while it checkpoints.
        """
        if pages is not None:
            # PRAGMA takes no parameters; the value is our own integer.
            self._db.execute(f"PRAGMA wal_autocheckpoint = {int(pages)}")
        return int(self._db.execute("PRAGMA wal_autocheckpoint").fetchone()[0])

    @contextmanager
    def transaction(self) -> Iterator[Tx]:
        self._still_there()
        try:
            self._db.execute("BEGIN IMMEDIATE")
        except sqlite3.OperationalError as exc:
            self._contended(exc)
            raise
        try:
            yield self._tx
            self._db.execute("COMMIT")
        except BaseException:
            # SQLite has already rolled back after SQLITE_FULL and some I/O errors; a second
            # ROLLBACK would raise "no transaction is active" and hide the cause.
            if self._db.in_transaction:
                self._db.execute("ROLLBACK")
            raise
        if self._locked_out:
            self._locked_out = False
            self._db.execute(f"PRAGMA busy_timeout = {int(BUSY_TIMEOUT_S * 1000)}")

    def _contended(self, exc: sqlite3.OperationalError) -> None:
        """Another process holds the lock: fail the next writes at once until one gets through.

        Every SOS press of another button tries its own write; each waiting the busy timeout
        would add up to seconds of a frozen event loop under a burst. They are held and retried
        by the hub either way; the first write that succeeds restores the timeout.
        """
        if not self._locked_out and ("locked" in str(exc) or "busy" in str(exc)):
            self._locked_out = True
            self._db.execute("PRAGMA busy_timeout = 0")

    def check_writable(self) -> None:
        self._still_there()
        try:
            # Takes the write lock without writing: fails at once if another process holds it.
            self._db.execute("BEGIN IMMEDIATE")
            self._db.execute("ROLLBACK")
        except sqlite3.Error as exc:
            raise StoreError(f"write lock unavailable: {exc}") from exc

    def schema_version(self) -> int:
        return int(self._db.execute("PRAGMA user_version").fetchone()[0])

    def migrate(self) -> int:
        found = self.schema_version()
        if found > SCHEMA_VERSION:
            raise SchemaVersionError(path=self.location, found=found, supported=SCHEMA_VERSION)
        for version in range(found, SCHEMA_VERSION):
            self._db.execute("BEGIN IMMEDIATE")
            try:
                MIGRATIONS[version](self._tx)
                # PRAGMA takes no parameters; the value is our own integer.
                self._db.execute(f"PRAGMA user_version = {version + 1}")
            except BaseException:
                if self._db.in_transaction:
                    self._db.execute("ROLLBACK")
                raise
            self._db.execute("COMMIT")
        return found
