"""The store's port: one database engine behind :class:`Engine`, chosen by ``store.url``.

Two implementations: :class:`~hub.storage.sqlite.SqliteEngine`, the embedded default (one file
in the data directory, nothing to install), and :class:`~hub.storage.postgres.PostgresEngine`
(psycopg 3), for several hubs sharing one database. The stores above (alerts and outbox,
cases, rule state) write their SQL once, in the dialect both engines share — ``?``
placeholders, ``ON CONFLICT … DO NOTHING/UPDATE``, partial unique indexes — and ask the engine
for the few things that differ: :attr:`Tx.for_update` (a row lock PostgreSQL needs and SQLite's
database-wide write lock makes unnecessary), :meth:`Tx.insert_id` (``lastrowid`` or
``RETURNING id``) and DDL types (:meth:`Tx.ddl`). The callers (ingest, casework, notify,
web) only ever see a :class:`Tx` from ``store.transaction()`` and never learn which engine runs.

Both engines are synchronous on purpose: the hub writes from its event loop (inside the MQTT
callback), one short transaction per alert, so a write is a few round trips on loopback
rather than a hop to a thread pool (docs/scale.md has the measured cost per alert).
"""

from __future__ import annotations

import re
from abc import ABC, abstractmethod
from collections.abc import Iterable, Iterator, Sequence
from contextlib import AbstractContextManager
from enum import StrEnum
from pathlib import Path
from typing import Any, Protocol
from urllib.parse import urlsplit, urlunsplit

from hub.errors import StoreError


class Dialect(StrEnum):
    SQLITE = "sqlite"
    POSTGRESQL = "postgresql"


class Cursor(Protocol):
    """What a statement returns, in both engines (a DB-API cursor)."""

    @property
    def rowcount(self) -> int: ...

    @property
    def description(self) -> Any: ...

    def fetchone(self) -> Any: ...

    def fetchall(self) -> list[Any]: ...

    def __iter__(self) -> Iterator[Any]: ...


class Tx(ABC):
    """One open transaction: what ``store.transaction()`` yields and the store's writers take.

    Callers pass it on to the store's methods and never run SQL on it themselves.
    """

    dialect: Dialect
    #: Appended to a ``SELECT`` that is followed by an update of the rows it read.
    for_update: str
    #: Appended to a ``SELECT`` whose rows must not change until this transaction ends.
    for_share: str
    #: The database's clock, as Unix seconds: one clock for every node (leases).
    now_sql: str

    @abstractmethod
    def execute(self, sql: str, params: Sequence[object] = ()) -> Cursor: ...

    @abstractmethod
    def executemany(self, sql: str, rows: Iterable[Sequence[object]]) -> None: ...

    @abstractmethod
    def insert_id(self, sql: str, params: Sequence[object]) -> int:
        """Run an ``INSERT`` into a table with an ``id`` key the database assigns; return that id."""

    def ddl(self, script: str) -> None:
        """Run table definitions written for SQLite, in this engine's types (migrations only)."""
        if self.dialect is Dialect.POSTGRESQL:
            script = postgres_ddl(script)
        for statement in statements(script):
            self.execute(statement)


class Engine(ABC):
    """A connection to one database, used from the event loop thread only."""

    dialect: Dialect
    #: For messages: the file, or the URL without its password.
    location: str

    @abstractmethod
    def transaction(self) -> AbstractContextManager[Tx]:
        """One atomic write: committed when the block ends, rolled back if it raises."""

    def serialized(self) -> AbstractContextManager[Tx]:
        """A transaction that waits its turn behind every other hub's, not the short lock timeout.

        For start-up writes that hubs started together all make (the community file's import):
        waiting for the first hub's import is the point, failing after 200 ms would stop the
        second hub. SQLite's ``BEGIN IMMEDIATE`` already serialises writers.
        """
        return self.transaction()

    @abstractmethod
    def execute(self, sql: str, params: Sequence[object] = ()) -> Cursor:
        """One statement outside a transaction (a read, or a write that is atomic by itself)."""

    @abstractmethod
    def executemany(self, sql: str, rows: Iterable[Sequence[object]]) -> None: ...

    @abstractmethod
    def check_writable(self) -> None:
        """Raise :class:`StoreError` saying why a write would fail now (lock held, read-only standby)."""

    @abstractmethod
    def migrate(self) -> int:
        """Bring the schema to the current version; returns the version found. Refuses a newer one."""

    @abstractmethod
    def schema_version(self) -> int: ...

    @abstractmethod
    def close(self) -> None: ...


# -- URLs -------------------------------------------------------------------------------------


def sqlite_url(path: Path) -> str:
    """``sqlite:///abs/path`` for an absolute path, ``sqlite:rel/path`` for a relative one."""
    return f"sqlite://{path}" if path.is_absolute() else f"sqlite:{path}"


def sqlite_path(url: str) -> Path:
    """The file of a ``sqlite:`` URL (see :func:`sqlite_url`); a host part is refused."""
    rest = url.removeprefix("sqlite:")
    if rest.startswith("//"):
        rest = rest[2:]
        if not rest.startswith("/"):
            raise StoreError(f"store URL {url!r}: use sqlite:///absolute/path or sqlite:relative/path")
    if not rest:
        raise StoreError(f"store URL {url!r} names no file")
    return Path(rest)


def redact(url: str) -> str:
    """The URL with its password replaced, for logs and error messages."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    netloc = parts.netloc.rsplit("@", 1)[1]
    user = parts.username or ""
    return urlunsplit(parts._replace(netloc=f"{user}:***@{netloc}"))


def dialect_of(url: str) -> Dialect:
    scheme = url.split(":", 1)[0].lower()
    if scheme == "sqlite":
        return Dialect.SQLITE
    if scheme in ("postgresql", "postgres"):
        return Dialect.POSTGRESQL
    raise StoreError(f"store URL {redact(url)!r}: unknown scheme {scheme!r} (sqlite: or postgresql:)")


# -- DDL --------------------------------------------------------------------------------------

_PG_TYPES: tuple[tuple[re.Pattern[str], str], ...] = (
    # SQLite's rowid alias → an identity column (PostgreSQL 10+); BY DEFAULT keeps explicit ids
    # (a restore, a test) possible, as in SQLite.
    (re.compile(r"\bINTEGER PRIMARY KEY\b"), "BIGINT GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY"),
    (re.compile(r"\bINTEGER\b"), "BIGINT"),
    # SQLite's REAL is 8 bytes; PostgreSQL's REAL is 4 (a Unix time would lose its seconds).
    (re.compile(r"\bREAL\b"), "DOUBLE PRECISION"),
    (re.compile(r"\bBLOB\b"), "BYTEA"),
    (re.compile(r"\)\s*WITHOUT ROWID"), ")"),
)


def postgres_ddl(script: str) -> str:
    """Translate SQLite table definitions into PostgreSQL's types (the only difference they have)."""
    for pattern, replacement in _PG_TYPES:
        script = pattern.sub(replacement, script)
    return script


def statements(script: str) -> list[str]:
    """The statements of a DDL script (no ``;`` inside our definitions)."""
    return [s.strip() for s in script.split(";") if s.strip()]
