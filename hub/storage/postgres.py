"""The PostgreSQL engine (psycopg 3): the store several hubs share.

One synchronous connection, used from the event loop like SQLite's: an alert is one short
transaction of a few statements on loopback or a LAN, and a thread hop per statement would
cost more than it hides (docs/scale.md has the measured cost per alert on each engine).

Isolation and locking, and why they are enough:

* Transactions run at PostgreSQL's default **Read Committed** level (PostgreSQL 15 manual,
  §13.2.1). A read-then-write (the active alert of a (rule, subject), then its update) reads
  with ``SELECT … FOR UPDATE`` (:attr:`Tx.for_update`), so a concurrent writer of the same row
  waits, and the ``UPDATE … WHERE version = ?`` of a case re-checks its condition on the newest
  row version after waiting (same section): a lost update is impossible, a stale one is a
  :class:`~hub.errors.StaleCaseError`.
* The invariants are in the schema, as in SQLite: two concurrent inserts of an active alert
  for the same (rule, subject) meet on the partial unique index — the second waits for the
  first to commit and then fails with a unique violation (§11.6, §13.2.1), its transaction
  rolls back whole, and the hub's retry of that message finds the alert and updates it.
* ``lock_timeout`` is SQLite's busy timeout: a write waits at most :data:`LOCK_TIMEOUT_S` for
  a row lock (§20.11, Client Connection Defaults), then fails and the message is held and
  retried, rather than freezing the event loop behind another session.
* Migrations take a transaction-level advisory lock (§13.3.5), so hubs started together
  migrate one after the other and the second finds the work done.

A connection that broke (server restart, failover) is replaced on the next use: the write
that found it broken fails and is retried by the hub like any refused write.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from functools import lru_cache
from typing import LiteralString, cast

import psycopg

from hub.errors import SchemaVersionError, StoreError
from hub.storage.engine import Cursor, Dialect, Engine, Tx, redact
from hub.storage.schema import MIGRATIONS, SCHEMA_VERSION

#: Longest wait for a row lock held by another session (SQLite's busy timeout, same reason).
LOCK_TIMEOUT_S = 0.2
#: Longest a single statement may run: the event loop waits for it.
STATEMENT_TIMEOUT_S = 10.0
CONNECT_TIMEOUT_S = 5
#: ``pg_advisory_xact_lock`` key serialising migrations ("linli" in ASCII).
MIGRATION_LOCK = 0x6C696E6C69
#: How long a hub waits for another hub's migration (and its own) before giving up.
MIGRATION_WAIT_S = 120.0
#: ``pg_advisory_xact_lock`` key serialising start-up imports ("linlii").
IMPORT_LOCK = 0x6C696E6C6969


@lru_cache(maxsize=512)
def _pg_sql(sql: str) -> LiteralString:
    """Our SQL (``?`` placeholders) in psycopg's paramstyle (``%s``; a literal ``%`` doubled).

    Our statements are constants of this package with no ``?`` inside string literals (mypy
    treats ``LiteralString`` as ``str``; psycopg's annotation asks for it).
    """
    return sql.replace("%", "%%").replace("?", "%s")


def _pg_params(params: Sequence[object]) -> Sequence[object]:
    """``params`` with NUL in any text replaced by U+FFFD: PostgreSQL's text cannot hold U+0000
    (psycopg raises ``DataError``), SQLite's can.

    Text reaches the store from outside (an MQTT topic's device id, a payload's strings, an
    HTTP path or note): found in review, a NUL in a case id answered 500, and one in a device
    id failed the unknown-devices write, leaving the message unhandled. Replaced, the value
    is still told apart from others and shown with a visible mark; a lookup by it finds
    nothing, as it should. The common case (no NUL) returns ``params`` as it is.
    """
    for value in params:
        if isinstance(value, str) and "\x00" in value:
            return [v.replace("\x00", "\ufffd") if isinstance(v, str) else v for v in params]
    return params


def _pg_rows(rows: Iterable[Sequence[object]]) -> Iterator[Sequence[object]]:
    for row in rows:
        yield _pg_params(row)


class PostgresTx(Tx):
    dialect = Dialect.POSTGRESQL
    for_update = " FOR UPDATE"
    for_share = " FOR SHARE"
    # clock_timestamp(), not now(): now() is the transaction's start, and a lease is judged now.
    now_sql = "EXTRACT(EPOCH FROM clock_timestamp())::DOUBLE PRECISION"

    def __init__(self, *, conn: psycopg.Connection[tuple[object, ...]]) -> None:
        self._conn = conn

    def execute(self, sql: str, params: Sequence[object] = ()) -> Cursor:
        return self._conn.execute(_pg_sql(sql), _pg_params(params))

    def executemany(self, sql: str, rows: Iterable[Sequence[object]]) -> None:
        with self._conn.cursor() as cursor:
            cursor.executemany(_pg_sql(sql), _pg_rows(rows))

    def insert_id(self, sql: str, params: Sequence[object]) -> int:
        row = self._conn.execute(_pg_sql(sql + " RETURNING id"), _pg_params(params)).fetchone()
        assert row is not None
        return int(cast("int", row[0]))


class PostgresEngine(Engine):
    dialect = Dialect.POSTGRESQL

    def __init__(self, *, url: str) -> None:
        self._url = url
        self.location = redact(url)
        self._conn = self._connect()
        self._tx = PostgresTx(conn=self._conn)

    def _connect(self) -> psycopg.Connection[tuple[object, ...]]:
        try:
            conn = psycopg.connect(
                self._url, autocommit=True, connect_timeout=CONNECT_TIMEOUT_S, application_name="linli-hub"
            )
            conn.execute(f"SET lock_timeout = {int(LOCK_TIMEOUT_S * 1000)}")
            conn.execute(f"SET statement_timeout = {int(STATEMENT_TIMEOUT_S * 1000)}")
        except psycopg.Error as exc:
            raise StoreError(f"cannot open store {self.location}: {exc}".strip()) from exc
        return conn

    def _live(self) -> psycopg.Connection[tuple[object, ...]]:
        """The connection, replaced first if the last one broke (autocommit: no transaction is lost)."""
        if self._conn.closed or self._conn.broken:
            self._conn.close()
            self._conn = self._connect()
            self._tx = PostgresTx(conn=self._conn)
        return self._conn

    def close(self) -> None:
        self._conn.close()

    def execute(self, sql: str, params: Sequence[object] = ()) -> Cursor:
        return self._live().execute(_pg_sql(sql), _pg_params(params))

    def executemany(self, sql: str, rows: Iterable[Sequence[object]]) -> None:
        with self._live().cursor() as cursor:
            cursor.executemany(_pg_sql(sql), _pg_rows(rows))

    @contextmanager
    def transaction(self) -> Iterator[Tx]:
        conn = self._live()
        # In autocommit mode, transaction() is BEGIN … COMMIT, ROLLBACK when the block raises.
        with conn.transaction():
            yield self._tx

    @contextmanager
    def serialized(self) -> Iterator[Tx]:
        with self.transaction() as tx:
            # Hubs started together on a fresh database import the same community file: the
            # second one's upserts waited on the first one's row locks and gave up after
            # LOCK_TIMEOUT_S (LockNotAvailable), stopping that hub. One at a time instead; the
            # second then finds every community unchanged and writes nothing.
            tx.execute(f"SET LOCAL lock_timeout = {int(MIGRATION_WAIT_S * 1000)}")
            tx.execute(f"SET LOCAL statement_timeout = {int(MIGRATION_WAIT_S * 1000)}")
            tx.execute("SELECT pg_advisory_xact_lock(?)", (IMPORT_LOCK,))
            yield tx

    def check_writable(self) -> None:
        try:
            row = self._live().execute("SELECT pg_is_in_recovery()").fetchone()
        except (psycopg.Error, StoreError) as exc:
            raise StoreError(f"database unavailable: {exc}") from exc
        if row is not None and row[0]:
            raise StoreError(f"{self.location} is a read-only standby (in recovery)")

    def schema_version(self) -> int:
        exists = self.execute("SELECT to_regclass('schema_version') IS NOT NULL").fetchone()[0]
        if not exists:
            return 0
        row = self.execute("SELECT version FROM schema_version").fetchone()
        return int(row[0]) if row else 0

    def migrate(self) -> int:
        found: int | None = None
        while True:
            with self.transaction() as tx:
                # Waiting for another hub's migration is the point of the lock: not the 200 ms a
                # write may wait (hubs started together failed to open the store before this).
                tx.execute(f"SET LOCAL lock_timeout = {int(MIGRATION_WAIT_S * 1000)}")
                tx.execute(f"SET LOCAL statement_timeout = {int(MIGRATION_WAIT_S * 1000)}")
                tx.execute("SELECT pg_advisory_xact_lock(?)", (MIGRATION_LOCK,))
                tx.execute("CREATE TABLE IF NOT EXISTS schema_version (version INTEGER NOT NULL)")
                row = tx.execute("SELECT version FROM schema_version").fetchone()
                version = int(row[0]) if row else 0
                if found is None:
                    found = version
                if version > SCHEMA_VERSION:
                    raise SchemaVersionError(path=self.location, found=version, supported=SCHEMA_VERSION)
                if version == SCHEMA_VERSION:
                    return found
                MIGRATIONS[version](tx)
                if row is None:
                    tx.execute("INSERT INTO schema_version (version) VALUES (?)", (version + 1,))
                else:
                    tx.execute("UPDATE schema_version SET version = ?", (version + 1,))
