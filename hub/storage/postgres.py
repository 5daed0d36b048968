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

**A server that stops answering** must not stop the hub. ``statement_timeout`` is enforced by
the server, so it cannot end a wait for a server that is partitioned away, stopped or hung: the
event loop waited as long as the partition lasted (found in review: 40 s, and /healthz, MQTT
keepalives and every escalation with it). Two client-side bounds:

* libpq's TCP keepalives and ``tcp_user_timeout`` (:data:`KEEPALIVE`): a dropped network is
  noticed within seconds, as the kernel gives up on the socket;
* a watchdog thread (:class:`_Watchdog`) that shuts the socket of a call that has waited past
  :data:`CALL_LIMIT_S` (the statement timeout and a margin): a server whose kernel still
  answers but which does not (stopped, hung, a stalled proxy) is cut off too. The call fails,
  the connection is broken and replaced at the next use, and the hub holds and retries the
  message, as for any refused write.
"""

from __future__ import annotations

import contextlib
import itertools
import logging
import os
import socket
import threading
import time
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from functools import lru_cache
from typing import LiteralString, cast

import psycopg
from psycopg.conninfo import make_conninfo

from hub.errors import SchemaVersionError, StoreError
from hub.storage.engine import Cursor, Dialect, Engine, Tx, redact
from hub.storage.schema import MIGRATIONS, SCHEMA_VERSION

log = logging.getLogger(__name__)

#: Longest wait for a row lock held by another session (SQLite's busy timeout, same reason).
LOCK_TIMEOUT_S = 0.2
#: Longest a single statement may run: the event loop waits for it.
STATEMENT_TIMEOUT_S = 10.0
#: Longest a transaction may sit idle between statements (ours take microseconds; an import's
#: own is longer): under the default cluster lease (10 s), so a frozen node's lock lets go in time.
IDLE_IN_TRANSACTION_S = 5.0
CONNECT_TIMEOUT_S = 5
#: How long a call waits for a new connection to a server that broke the last one.
RECONNECT_WAIT_S = 0.25
#: The longest one call into the server may wait before the watchdog cuts the connection.
CALL_LIMIT_S = STATEMENT_TIMEOUT_S + 2.0
#: libpq connection parameters (PostgreSQL manual §34.1.2): a peer gone silent is noticed after
#: 2 s idle and 3 probes 1 s apart; data unacknowledged for 5 s fails the socket.
KEEPALIVE = {
    "keepalives": 1,
    "keepalives_idle": 2,
    "keepalives_interval": 1,
    "keepalives_count": 3,
    "tcp_user_timeout": 5000,
}
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


def _pg_rows(rows: Iterable[Sequence[object]]) -> Iterator[Sequence[object]] | None:
    """``rows`` as psycopg takes them, or ``None`` if there are none: psycopg's ``executemany``
    makes a round trip (a Sync) even for no rows, and most rule-state flushes delete nothing."""
    them = iter(rows)
    first = next(them, None)
    if first is None:
        return None
    return (_pg_params(row) for row in itertools.chain((first,), them))


class _Watchdog:
    """Cuts a connection whose current call into the server has waited past its deadline.

    The engine arms a deadline around each call (:meth:`bounded`); one daemon thread looks
    twice a second. Cutting is ``shutdown`` of the socket: the waiting call then fails at once,
    in its own thread, with psycopg's "server closed the connection" (the connection is broken
    and the engine replaces it at the next use).
    """

    def __init__(self) -> None:
        self.deadline: float | None = None
        self.conn: psycopg.Connection[tuple[object, ...]] | None = None
        self.cut = 0
        self._closed = threading.Event()
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()

    @contextmanager
    def bounded(self, conn: psycopg.Connection[tuple[object, ...]], seconds: float) -> Iterator[None]:
        # Under the lock, as the watchdog's check and cut: a call ending just as the watchdog
        # looks is never mistaken for the next one (found in review).
        with self._lock:
            previous = self.deadline
            self.conn = conn
            self.deadline = time.monotonic() + seconds
        if self._thread is None:
            self._thread = threading.Thread(target=self._run, name="linli-pg-watchdog", daemon=True)
            self._thread.start()
        try:
            yield
        finally:
            with self._lock:
                self.deadline = previous

    def close(self) -> None:
        self._closed.set()

    def _run(self) -> None:
        while not self._closed.wait(0.5):
            with self._lock:  # the call cannot end (nor the next begin) while it is judged and cut
                deadline, conn = self.deadline, self.conn
                if deadline is not None and conn is not None and time.monotonic() > deadline:
                    self.deadline = None
                    self._cut(conn)

    def _cut(self, conn: psycopg.Connection[tuple[object, ...]]) -> None:
        try:
            fd = conn.fileno()
        except psycopg.Error:
            return  # closed meanwhile: nothing waits on it
        self.cut += 1
        log.error(
            "PostgreSQL did not answer within %.0f s: cutting the connection (it is replaced)", CALL_LIMIT_S
        )
        with contextlib.suppress(OSError), socket.socket(fileno=os.dup(fd)) as sock:
            sock.shutdown(socket.SHUT_RDWR)


class PostgresTx(Tx):
    dialect = Dialect.POSTGRESQL
    for_update = " FOR UPDATE"
    for_share = " FOR SHARE"
    # clock_timestamp(), not now(): now() is the transaction's start, and a lease is judged now.
    now_sql = "EXTRACT(EPOCH FROM clock_timestamp())::DOUBLE PRECISION"

    def __init__(self, *, conn: psycopg.Connection[tuple[object, ...]], watchdog: _Watchdog) -> None:
        self._conn = conn
        self._watchdog = watchdog
        #: How long one statement may wait (longer while a migration or import waits its turn).
        self.limit = CALL_LIMIT_S

    def execute(self, sql: str, params: Sequence[object] = ()) -> Cursor:
        with self._watchdog.bounded(self._conn, self.limit):
            return self._conn.execute(_pg_sql(sql), _pg_params(params))

    def executemany(self, sql: str, rows: Iterable[Sequence[object]]) -> None:
        params = _pg_rows(rows)
        if params is None:
            return
        with self._watchdog.bounded(self._conn, self.limit), self._conn.cursor() as cursor:
            cursor.executemany(_pg_sql(sql), params)
            # psycopg runs executemany in pipeline mode and ends it with a Sync and then a Flush
            # request. The server arms idle_in_transaction_session_timeout only as it says
            # ReadyForQuery, and a Flush disarms it without another (PostgreSQL 15,
            # src/backend/tcop/postgres.c, PostgresMain): a node frozen right after a rule-state
            # flush's rows held its lease row FOR SHARE for good (found in review). One plain
            # statement ends in ReadyForQuery, armed again.
            self._conn.execute("SELECT 1")

    def insert_id(self, sql: str, params: Sequence[object]) -> int:
        with self._watchdog.bounded(self._conn, self.limit):
            row = self._conn.execute(_pg_sql(sql + " RETURNING id"), _pg_params(params)).fetchone()
        assert row is not None
        return int(cast("int", row[0]))


class PostgresEngine(Engine):
    dialect = Dialect.POSTGRESQL

    def __init__(self, *, url: str) -> None:
        self._url = url
        self.location = redact(url)
        self._watchdog = _Watchdog()
        self._reconnecting: threading.Thread | None = None
        self._fresh: psycopg.Connection[tuple[object, ...]] | None = None
        self._handover = threading.Lock()
        self._failed: str | None = None
        self._conn = self._connect()
        self._tx = PostgresTx(conn=self._conn, watchdog=self._watchdog)

    def _connect(self) -> psycopg.Connection[tuple[object, ...]]:
        try:
            conn = psycopg.connect(
                make_conninfo(self._url, **KEEPALIVE),
                autocommit=True,
                connect_timeout=CONNECT_TIMEOUT_S,
                application_name="linli-hub",
            )
            conn.execute(f"SET lock_timeout = {int(LOCK_TIMEOUT_S * 1000)}")
            conn.execute(f"SET statement_timeout = {int(STATEMENT_TIMEOUT_S * 1000)}")
            # A node frozen inside a fenced write (SIGSTOP, a VM paused) held the lease row
            # FOR SHARE, and no other node could take its communities over while it stayed so
            # (found in review): the server ends such a transaction after this long idle.
            conn.execute(f"SET idle_in_transaction_session_timeout = {int(IDLE_IN_TRANSACTION_S * 1000)}")
        except psycopg.Error as exc:
            raise StoreError(f"cannot open store {self.location}: {exc}".strip()) from exc
        return conn

    def _live(self) -> psycopg.Connection[tuple[object, ...]]:
        """The connection, replaced first if the last one broke (autocommit: no transaction is lost).

        The new one is made by a thread, and the event loop waits for it at most
        :data:`RECONNECT_WAIT_S`: on loopback or a LAN that is enough, and a server that does
        not answer (a partition) would otherwise hold the loop for ``connect_timeout`` at
        every retry. Not there yet, the call fails (the hub holds and retries the message)
        and the attempt goes on; the next call takes the connection it made.
        """
        if not (self._conn.closed or self._conn.broken):
            return self._conn
        attempt = self._reconnecting
        if attempt is None or (not attempt.is_alive() and self._fresh is None):
            attempt = threading.Thread(target=self._reconnect, name="linli-pg-reconnect", daemon=True)
            self._reconnecting = attempt
            attempt.start()
        attempt.join(RECONNECT_WAIT_S)
        with self._handover:  # the thread may store its connection this very moment
            fresh, self._fresh = self._fresh, None
        if fresh is None:
            raise StoreError(
                f"database {self.location} unreachable: reconnecting ({self._failed or 'no answer yet'})"
            )
        self._conn.close()
        self._conn = fresh
        self._tx = PostgresTx(conn=fresh, watchdog=self._watchdog)
        return fresh

    def _reconnect(self) -> None:
        try:
            fresh = self._connect()
        except StoreError as exc:
            self._failed = str(exc)
            return
        with self._handover:
            self._fresh = fresh
            self._failed = None

    @property
    def connections_cut(self) -> int:
        """Calls the watchdog cut off since start (a server that stopped answering)."""
        return self._watchdog.cut

    def close(self) -> None:
        self._watchdog.close()
        self._conn.close()

    def execute(self, sql: str, params: Sequence[object] = ()) -> Cursor:
        conn = self._live()
        with self._watchdog.bounded(conn, CALL_LIMIT_S):
            return conn.execute(_pg_sql(sql), _pg_params(params))

    def executemany(self, sql: str, rows: Iterable[Sequence[object]]) -> None:
        params = _pg_rows(rows)
        if params is None:
            return
        conn = self._live()
        with self._watchdog.bounded(conn, CALL_LIMIT_S), conn.cursor() as cursor:
            cursor.executemany(_pg_sql(sql), params)

    @contextmanager
    def transaction(self) -> Iterator[Tx]:
        conn = self._live()
        # In autocommit mode, transaction() is BEGIN … COMMIT, ROLLBACK when the block raises.
        # BEGIN and COMMIT are calls into the server like any statement: bounded the same way
        # (the statements between bound themselves).
        block = conn.transaction()
        with self._watchdog.bounded(conn, self._tx.limit):
            block.__enter__()
        try:
            yield self._tx
        except BaseException as exc:
            with self._watchdog.bounded(conn, self._tx.limit):
                block.__exit__(type(exc), exc, exc.__traceback__)
            raise
        with self._watchdog.bounded(conn, self._tx.limit):
            block.__exit__(None, None, None)

    @contextmanager
    def _waiting_turn(self) -> Iterator[None]:
        """Statements that wait for another hub's migration or import (up to MIGRATION_WAIT_S)."""
        self._live()  # a reconnect makes a new Tx: the limit goes on the one the block uses
        tx = self._tx
        tx.limit = MIGRATION_WAIT_S + 2.0
        try:
            yield
        finally:
            tx.limit = CALL_LIMIT_S

    @contextmanager
    def serialized(self) -> Iterator[Tx]:
        with self._waiting_turn(), self.transaction() as tx:
            # Hubs started together on a fresh database import the same community file: the
            # second one's upserts waited on the first one's row locks and gave up after
            # LOCK_TIMEOUT_S (LockNotAvailable), stopping that hub. One at a time instead; the
            # second then finds every community unchanged and writes nothing.
            tx.execute(f"SET LOCAL lock_timeout = {int(MIGRATION_WAIT_S * 1000)}")
            tx.execute(f"SET LOCAL statement_timeout = {int(MIGRATION_WAIT_S * 1000)}")
            tx.execute(
                f"SET LOCAL idle_in_transaction_session_timeout = {int(MIGRATION_WAIT_S * 1000)}"
            )  # an import dumps large communities between statements
            tx.execute("SELECT pg_advisory_xact_lock(?)", (IMPORT_LOCK,))
            yield tx

    def check_writable(self) -> None:
        try:
            row = self.execute("SELECT pg_is_in_recovery()").fetchone()  # bounded like any call
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
            with self._waiting_turn(), self.transaction() as tx:
                # Waiting for another hub's migration is the point of the lock: not the 200 ms a
                # write may wait (hubs started together failed to open the store before this).
                tx.execute(f"SET LOCAL lock_timeout = {int(MIGRATION_WAIT_S * 1000)}")
                tx.execute(f"SET LOCAL statement_timeout = {int(MIGRATION_WAIT_S * 1000)}")
                tx.execute(
                    f"SET LOCAL idle_in_transaction_session_timeout = {int(MIGRATION_WAIT_S * 1000)}"
                )  # an import dumps large communities between statements
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
