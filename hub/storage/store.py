"""The store: alerts, the notification outbox, the registry and quarantine records.

Invariants enforced here, by the schema rather than by luck:

* one **active** alert per (rule, subject): a partial unique index, so a second raise for
  the same pair can only update the open alert;
* an alert and the notifications it causes are written in **one transaction**, so a crash
  can lose neither one without the other (transactional outbox); the dispatcher delivers
  what is pending, again after a restart.

The database is SQLite (embedded, the default) or PostgreSQL, chosen by ``store.url``
(:mod:`hub.storage.engine`); the SQL here is the dialect both share, and nothing above the
store learns which one runs. The hub calls the store from the event loop: writes happen only
for alerts and notifications (rare next to readings), each one short transaction.
"""

from __future__ import annotations

import dataclasses
import logging
import sqlite3
from collections.abc import Callable, Collection, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import orjson

from adapters.router import FamilySource
from hub.community.compact import collector_paused
from hub.community.model import (
    Community,
    CommunitySource,
    IdClaim,
    describe_shared,
    id_claim,
    roster_clashes,
    shared_claims,
    shared_sentence,
    source_overlaps,
)
from hub.community.personal import PersonalData
from hub.community.trusted import community_from_store
from hub.errors import RegistryError, StoreError
from hub.records import Alert, AlertChange, Notification, QuarantineRecord, Recipient, UnassignedDevice
from hub.storage import community_pack
from hub.storage.checkpoints import CHECKPOINT_EVERY_S, WalCheckpointer
from hub.storage.engine import Cursor, Dialect, Engine, Tx, dialect_of, sqlite_path
from hub.storage.scope import in_scope
from hub.storage.sqlite import BUSY_TIMEOUT_S, SqliteEngine
from rules.signals import Signal
from rules.subject import Subject

#: Each community's row (``updated_at``: what the copies' writer checks it against) with its
#: start-up copy (``hub.storage.community_pack``), if any. The registry's read and the writer
#: (``hub.storage.community_copies``) both use it.
COMMUNITIES_WITH_COPIES = (
    "SELECT c.code, c.doc, c.updated_at, p.packed FROM communities c"
    " LEFT JOIN community_copies p ON p.code = c.code ORDER BY c.code"
)

log = logging.getLogger(__name__)

__all__ = ["BUSY_TIMEOUT_S", "Fence", "Store", "open_engine"]

#: ``(tx, community)``: raises unless this node may write for ``community`` (see ``install_fence``).
Fence = Callable[[Tx, str], None]


def open_engine(url: str) -> Engine:
    """The engine a ``store.url`` names: ``sqlite:…`` or ``postgresql://…``."""
    if dialect_of(url) is Dialect.SQLITE:
        return SqliteEngine(path=sqlite_path(url))
    # Imported here: psycopg loads libpq, which an embedded hub never needs.
    from hub.storage.postgres import PostgresEngine  # noqa: PLC0415

    return PostgresEngine(url=url)


#: A quarantined topic's characters, marker included: real topics are far shorter, and a
#: longer one is someone's garbage; its full length is noted in the detail.
QUARANTINE_TOPIC_CHARS = 256
#: A quarantine detail's characters (a decoder's message may quote the payload).
QUARANTINE_DETAIL_CHARS = 1_000
#: The payload sample kept with a quarantine record.
QUARANTINE_EXCERPT_BYTES = 256
#: Quarantine rows kept; past it, the least recently seen are pruned (≈ 15 MB at the bounds above).
QUARANTINE_MAX_ROWS = 10_000
#: Quarantine rows not seen again for this long are pruned.
QUARANTINE_MAX_AGE_S = 30 * 86_400.0
_CUT = "…"
#: Notifications marked delivered per statement (well under any engine's parameter limit).
_MARK_CHUNK = 500


def cut_topic(topic: str, detail: str) -> tuple[str, str]:
    """``(topic, detail)`` with a topic over :data:`QUARANTINE_TOPIC_CHARS` cut, with a marker,
    and its full length noted in the detail; a cut topic stays as it is.

    Long topics that share their start share a row (their count adds up), which is what an
    operator needs to know about them; the cut length counts the marker, so cutting twice
    changes nothing (the quarantine cuts its keys in memory, the store again here).
    """
    if len(topic) <= QUARANTINE_TOPIC_CHARS:
        return topic, detail
    cut = topic[: QUARANTINE_TOPIC_CHARS - len(_CUT)] + _CUT
    return cut, f"{detail} [topic of {len(topic)} characters, cut]"


def bounded_quarantine(record: QuarantineRecord) -> QuarantineRecord:
    """The record with its topic, detail and payload sample cut to the table's bounds."""
    detail = record.detail
    if len(detail) > QUARANTINE_DETAIL_CHARS:
        detail = detail[: QUARANTINE_DETAIL_CHARS - len(_CUT)] + _CUT
    # After the detail's cut, so that the topic's full length is never cut off.
    topic, detail = cut_topic(record.topic, detail)
    excerpt = record.excerpt[:QUARANTINE_EXCERPT_BYTES]
    if (topic, detail, excerpt) == (record.topic, record.detail, record.excerpt):
        return record
    return dataclasses.replace(record, topic=topic, detail=detail, excerpt=excerpt)


def _same_occurrence(recorded: dict[str, Any], signal: Signal) -> bool:
    """The signal repeats a recorded occurrence (a QoS 1 redelivery or a replay)."""
    message = signal.trace.get("message")
    if message is not None and signal.trace.get("redelivered") and recorded.get("message") == message:
        return True  # the broker resent a message that already decided this (DUP set)
    if signal.key:
        return bool(recorded.get("key") == signal.key)
    return "event" in recorded and recorded.get("event") == signal.trace.get("event")


#: A notification row as :class:`Notification` takes it, with its alert joined for the community
#: a cluster node's share is judged by (``in_scope("a.community", …)``).
_OUTBOX_IN_SCOPE = (
    "SELECT n.id, n.alert_id, n.recipient, n.channel, n.address, n.payload, n.attempts"
    " FROM notifications n LEFT JOIN alerts a ON a.id = n.alert_id"
)
_ALERT_COLUMNS = (
    "id, rule, subject, category, severity, status, device_id, grid, community, title_zh, title_en,"
    " raised_at, last_seen, count, resolved_at, trace"
)
_SELECT_ALERTS = f"SELECT {_ALERT_COLUMNS} FROM alerts"  # noqa: S608 - constant columns
_INSERT_ALERT = (
    "INSERT INTO alerts (rule, subject, category, severity, status, device_id, grid, community,"
    " title_zh, title_en, raised_at, last_seen, count, trace)"
    " VALUES (?, ?, ?, ?, 'active', ?, ?, ?, ?, ?, ?, ?, 1, ?)"
)
_ACTIVE_ALERT = _SELECT_ALERTS + " WHERE rule = ? AND subject = ? AND status = 'active'"
_ALERT_BY_ID = _SELECT_ALERTS + " WHERE id = ?"


def _alert(row: tuple[Any, ...]) -> Alert:
    (id_, rule, subject, category, severity, status, device_id, grid, community) = row[:9]
    (title_zh, title_en, raised_at, last_seen, count, resolved_at, trace) = row[9:]
    return Alert(
        id=id_,
        rule=rule,
        subject=subject,
        category=category,
        severity=severity,
        status=status,
        device_id=device_id,
        grid=grid,
        community=community,
        title_zh=title_zh,
        title_en=title_en,
        raised_at=raised_at,
        last_seen=last_seen,
        count=count,
        resolved_at=resolved_at,
        trace=orjson.loads(trace),
    )


class Store:
    """Alerts, outbox, registry and quarantine over one engine, used from the event loop thread only.

    ``Store(path=…)`` opens a SQLite file, ``Store(url=…)`` whatever the URL names; the schema is
    brought to the current version on open (a newer one is refused).
    """

    def __init__(self, *, path: Path | None = None, url: str | None = None) -> None:
        if (path is None) == (url is None):
            raise TypeError("Store needs exactly one of path= and url=")
        engine = SqliteEngine(path=path) if path is not None else open_engine(url or "")
        try:
            engine.migrate()
        except StoreError:
            engine.close()
            raise
        except Exception as exc:
            engine.close()
            raise StoreError(f"cannot open store {engine.location}: {exc}") from exc
        self._engine = engine
        #: The SQLite file, ``None`` on a server database.
        self.path: Path | None = engine.path if isinstance(engine, SqliteEngine) else None
        self.dialect = engine.dialect
        self.location = engine.location
        # Insertion order of the outbox: SQLite's implicit rowid, PostgreSQL's identity column.
        self._insert_order = "n.rowid" if engine.dialect is Dialect.SQLITE else "n.seq"
        self._fence: Fence | None = None
        #: The last :meth:`communities` read a row without a sound start-up copy
        #: (``hub.storage.community_pack``): the hub has a child process make them.
        self.copies_wanted = False

    def install_fence(self, fence: Fence | None) -> None:
        """Clustered hubs: ``fence(tx, community)`` runs first in every write made for a community.

        It raises :class:`~hub.errors.FencedError` unless this node still holds the community's
        lease at the epoch it claimed (``hub/cluster``); a single hub installs none.
        """
        self._fence = fence

    @property
    def fenced(self) -> bool:
        """Whether writes for a community are fenced (a cluster node)."""
        return self._fence is not None

    def close(self) -> None:
        self._engine.close()

    def checkpointer(self, *, every_s: float = CHECKPOINT_EVERY_S) -> WalCheckpointer | None:
        """The task that checkpoints an SQLite store's log off the event loop (``None``: a server)."""
        engine = self._engine
        return WalCheckpointer(engine=engine, every_s=every_s) if isinstance(engine, SqliteEngine) else None

    @contextmanager
    def transaction(self, *, community: str | None = None) -> Iterator[Tx]:
        """One atomic write, for the store's writers (this class and its siblings) to share.

        ``community``: the write is made on behalf of that community's owner, so an installed
        fence checks the lease first, inside the same transaction (nothing lands if it refuses).
        """
        with self._engine.transaction() as tx:
            if community is not None and self._fence is not None:
                self._fence(tx, community)
            yield tx

    def execute(self, sql: str, params: Sequence[object] = ()) -> Cursor:
        """One statement outside a transaction: reads by the store's sibling modules."""
        return self._engine.execute(sql, params)

    def check_writable(self) -> None:
        """Raise :class:`~hub.errors.StoreError` if a write would fail now (readiness)."""
        self._engine.check_writable()

    def schema_version(self) -> int:
        return self._engine.schema_version()

    @property
    def db(self) -> sqlite3.Connection:
        """The SQLite connection itself, for tests and tools that need SQLite's own statements."""
        if not isinstance(self._engine, SqliteEngine):
            raise StoreError(f"{self.location} is not a SQLite store")
        return self._engine.db

    def queue_notification(
        self,
        db: Tx,
        *,
        notification_id: str,
        alert_id: int,
        recipient: Recipient,
        payload: bytes,
        at: float,
        case_id: str | None = None,
    ) -> Notification:
        """Add one notification to the outbox inside the caller's transaction."""
        note_id = notification_id
        db.execute(
            "INSERT INTO notifications (id, alert_id, case_id, recipient, channel, address, payload, created_at,"
            " next_attempt) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (
                note_id,
                alert_id,
                case_id,
                recipient.id,
                recipient.channel,
                recipient.address,
                payload,
                at,
                0.0,
            ),
        )
        return Notification(note_id, alert_id, recipient.id, recipient.channel, recipient.address, payload, 0)

    # -- alerts ---------------------------------------------------------------------------

    def upsert_alert(self, db: Tx, signal: Signal, subject: Subject) -> tuple[Alert, bool] | None:
        """Record a raise/update signal inside the caller's transaction: ``(alert, created)``.

        Returns ``None`` when the signal changes nothing (a redelivered message whose
        occurrence is already recorded). The caller queues the alert's notifications in the
        same transaction (transactional outbox).
        """
        row = db.execute(_ACTIVE_ALERT + db.for_update, (signal.rule_id, signal.subject)).fetchone()
        created = row is None
        if created:
            values = (
                signal.rule_id,
                signal.subject,
                signal.category,
                signal.severity.value,
                subject.device_id,
                subject.grid,
                subject.community,
                signal.title_zh,
                signal.title_en,
                signal.ts,
                signal.ts,
                orjson.dumps({"occurrences": [signal.trace]}),
            )
            if db.dialect is Dialect.POSTGRESQL:
                # The row as stored, in the insert's own round trip (the event loop waits for
                # each): RETURNING, PostgreSQL manual, INSERT. SQLite's insert_id uses lastrowid.
                stored = db.execute(f"{_INSERT_ALERT} RETURNING {_ALERT_COLUMNS}", values).fetchone()
                return _alert(stored), True
            alert_id = db.insert_id(_INSERT_ALERT, values)
        else:
            existing = _alert(row)
            recent = existing.trace["occurrences"]
            if any(_same_occurrence(o, signal) for o in recent):
                # The very same occurrence again (QoS 1 redelivery, replay): nothing new happened.
                return None
            occurrences = [*recent[-19:], signal.trace]
            # The row is locked (FOR UPDATE, or SQLite's write lock): max() in Python is current.
            db.execute(
                "UPDATE alerts SET last_seen = ?, count = count + 1, trace = ? WHERE id = ?",
                (max(existing.last_seen, signal.ts), orjson.dumps({"occurrences": occurrences}), existing.id),
            )
            alert_id = existing.id
        return _alert(db.execute(_ALERT_BY_ID, (alert_id,)).fetchone()), created

    def clear_alert(self, signal: Signal, *, community: str | None = None) -> AlertChange | None:
        """Resolve the active alert of the signal's (rule, subject), if there is one."""
        with self.transaction(community=community) as db:
            row = db.execute(_ACTIVE_ALERT + db.for_update, (signal.rule_id, signal.subject)).fetchone()
            if row is None:
                return None
            db.execute(
                "UPDATE alerts SET status = 'resolved', resolved_at = ? WHERE id = ?", (signal.ts, row[0])
            )
            alert = _alert(db.execute(_ALERT_BY_ID, (row[0],)).fetchone())
        return AlertChange(alert=alert, created=False, notifications=())

    @staticmethod
    def resolve_alert(db: Tx, alert_id: int, *, at: float) -> Alert | None:
        """Resolve an active alert by id inside the caller's transaction (a visit found the elder well).

        ``None`` if it was not active (already cleared by its sensor): nothing changes then.
        """
        cursor = db.execute(
            "UPDATE alerts SET status = 'resolved', resolved_at = ? WHERE id = ? AND status = 'active'",
            (at, alert_id),
        )
        if cursor.rowcount != 1:
            return None
        return _alert(db.execute(_ALERT_BY_ID, (alert_id,)).fetchone())

    def active_alert(self, rule: str, subject: str) -> Alert | None:
        """The open alert of (rule, subject), if any."""
        row = self.execute(_ACTIVE_ALERT, (rule, subject)).fetchone()
        return _alert(row) if row else None

    def alert(self, alert_id: int) -> Alert | None:
        row = self._engine.execute(_ALERT_BY_ID, (alert_id,)).fetchone()
        return _alert(row) if row else None

    def message_in_active_alert(self, device_id: str, message: str) -> bool:
        """Whether an active alert of ``device_id`` recorded the message whose digest is ``message``.

        Only for a press that came with DUP set and no newer time than the device's previous one
        (``Pipeline._press_in_time``): a rare path, so the few active alerts are read whole.
        """
        rows = self._engine.execute(
            _SELECT_ALERTS + " WHERE status = 'active' AND device_id = ?", (device_id,)
        )
        return any(
            occurrence.get("message") == message
            for alert in map(_alert, rows)
            for occurrence in alert.trace["occurrences"]
        )

    def alerts(
        self,
        *,
        limit: int = 100,
        status: str | None = None,
        offset: int = 0,
        grids: frozenset[str] | None = None,
        communities: frozenset[str] | None = None,
    ) -> list[Alert]:
        """Newest first. ``grids``/``communities`` (either matches) narrow to what a reader may see."""
        query = _SELECT_ALERTS + " WHERE TRUE"
        params: list[Any] = []
        if status is not None:
            query += " AND status = ?"
            params.append(status)
        if grids is not None or communities is not None:
            either = ["FALSE"]
            for column, values in (("grid", grids or frozenset()), ("community", communities or frozenset())):
                if values:
                    either.append(f"{column} IN ({','.join('?' * len(values))})")
                    params.extend(sorted(values))
            query += " AND (" + " OR ".join(either) + ")"
        query += " ORDER BY raised_at DESC, id DESC LIMIT ? OFFSET ?"
        return [_alert(r) for r in self._engine.execute(query, (*params, limit, offset))]

    # -- notification outbox --------------------------------------------------------------

    def pending_notifications(
        self, *, now: float, limit: int = 100, communities: frozenset[str] | None = None
    ) -> list[Notification]:
        """Due for delivery; ``communities``: only those of a cluster node's share (by the alert's)."""
        if communities is None:
            rows = self._engine.execute(
                "SELECT id, alert_id, recipient, channel, address, payload, attempts FROM notifications"
                " WHERE delivered_at IS NULL AND abandoned_at IS NULL AND next_attempt <= ?"
                " ORDER BY created_at, id LIMIT ?",
                (now, limit),
            ).fetchall()
        else:
            where, params = in_scope("a.community", communities)
            rows = self._engine.execute(
                _OUTBOX_IN_SCOPE
                + f" WHERE n.delivered_at IS NULL AND n.abandoned_at IS NULL AND n.next_attempt <= ?{where}"
                " ORDER BY n.created_at, n.id LIMIT ?",
                (now, *params, limit),
            ).fetchall()
        return [Notification(*row) for row in rows]

    def undelivered_notifications(
        self, ids: Collection[str], *, communities: frozenset[str] | None = None
    ) -> list[Notification]:
        """Those of ``ids`` still to deliver, whatever their next attempt's time (``communities``: as above).

        The dispatcher asks for retries due by the monotonic clock, which the wall-clock time
        stored for them does not show due yet (the clock stepped back).
        """
        if not ids:
            return []
        wanted = tuple(ids)
        where, params = in_scope("a.community", communities)
        rows = self._engine.execute(
            _OUTBOX_IN_SCOPE + " WHERE n.delivered_at IS NULL AND n.abandoned_at IS NULL"
            f" AND n.id IN ({', '.join('?' * len(wanted))}){where} ORDER BY n.created_at, n.id",
            (*wanted, *params),
        ).fetchall()
        return [Notification(*row) for row in rows]

    def retry_times(self, *, communities: frozenset[str] | None = None) -> dict[str, float]:
        """Notification → when it is next tried, for those whose delivery failed and that wait to be retried."""
        where, params = in_scope("a.community", communities)
        rows = self._engine.execute(
            "SELECT n.id, n.next_attempt FROM notifications n LEFT JOIN alerts a ON a.id = n.alert_id"  # noqa: S608
            f" WHERE n.delivered_at IS NULL AND n.abandoned_at IS NULL AND n.attempts > 0{where}",
            params,
        ).fetchall()
        return {row[0]: float(row[1]) for row in rows}

    def next_retry_at(self, *, communities: frozenset[str] | None = None) -> float | None:
        where, params = in_scope("a.community", communities)
        row = self._engine.execute(
            "SELECT min(n.next_attempt) FROM notifications n LEFT JOIN alerts a ON a.id = n.alert_id"  # noqa: S608
            f" WHERE n.delivered_at IS NULL AND n.abandoned_at IS NULL{where}",
            params,
        ).fetchone()
        return float(row[0]) if row and row[0] is not None else None

    def mark_delivered_all(self, notification_ids: Sequence[str], *, at: float) -> None:
        """Mark notifications delivered at ``at``: one statement per :data:`_MARK_CHUNK` of them
        (those the broker acknowledged in one loop turn), one round trip on PostgreSQL.

        Those marked already are left as they are: a batch whose first chunk landed and whose
        second failed is marked again whole, and each delivery counts one attempt (review).
        """
        ids = list(notification_ids)
        for start in range(0, len(ids), _MARK_CHUNK):
            chunk = ids[start : start + _MARK_CHUNK]
            self._engine.execute(
                "UPDATE notifications SET delivered_at = ?, attempts = attempts + 1, last_error = NULL"  # noqa: S608
                f" WHERE delivered_at IS NULL AND id IN ({', '.join('?' * len(chunk))})",
                (at, *chunk),
            )

    def mark_failed(self, notification_id: str, *, error: str, retry_at: float) -> None:
        self._engine.execute(
            "UPDATE notifications SET attempts = attempts + 1, last_error = ?, next_attempt = ? WHERE id = ?",
            (error[:500], retry_at, notification_id),
        )

    def mark_abandoned(self, notification_id: str, *, error: str, at: float) -> None:
        """The receiver refused for good (HTTP 4xx, a robot's permanent errcode): stop retrying, keep why."""
        self._engine.execute(
            "UPDATE notifications SET attempts = attempts + 1, last_error = ?, abandoned_at = ? WHERE id = ?",
            (error[:500], at, notification_id),
        )

    def notification_log(
        self,
        *,
        since: float = 0.0,
        limit: int = 500,
        offset: int = 0,
        communities: frozenset[str] | None = None,
    ) -> list[dict[str, Any]]:
        """Notifications created at or after ``since``, oldest first, with what they said and how they went.

        ``communities`` narrows to alerts of those communities (a duty officer's desk).
        """
        where = ""
        params: list[Any] = [since]
        if communities is not None:
            where = f" AND a.community IN ({','.join('?' * len(communities))})"
            params.extend(sorted(communities))
        query = (
            "SELECT n.id, n.alert_id, n.case_id, n.recipient, n.channel, n.address, n.created_at, n.attempts,"
            " n.delivered_at, n.abandoned_at, n.last_error, n.payload, a.rule FROM notifications n"
            " JOIN alerts a ON a.id = n.alert_id WHERE n.created_at >= ?"
        )
        # The ORDER BY column is ours (rowid or seq), never input; the rest are placeholders.
        query += where + f" ORDER BY n.created_at, {self._insert_order} LIMIT ? OFFSET ?"
        cursor = self._engine.execute(query, (*params, limit, offset))
        rows: list[dict[str, Any]] = []
        for *head, payload, rule in cursor:
            keys = ("id", "alert_id", "case_id", "recipient", "channel", "address", "created_at", "attempts")
            row = dict(zip((*keys, "delivered_at", "abandoned_at", "last_error"), head, strict=True))
            try:
                body = orjson.loads(payload)
                row["type"] = body.get("type") or (
                    "case." + body["notice"]["kind"] if "notice" in body else ""
                )
            except (orjson.JSONDecodeError, KeyError, TypeError, AttributeError):
                row["type"] = ""
            row["rule"] = rule
            rows.append(row)
        return rows

    def notifications_for(self, alert_id: int) -> list[dict[str, Any]]:
        cursor = self._engine.execute(
            "SELECT id, recipient, channel, address, attempts, delivered_at, abandoned_at, last_error FROM notifications"
            " WHERE alert_id = ? ORDER BY created_at, id",
            (alert_id,),
        )
        names = [d[0] for d in cursor.description]
        return [dict(zip(names, row, strict=True)) for row in cursor]

    # -- registry -----------------------------------------------------------------------------

    def save_communities(self, communities: Sequence[Community], *, at: float, source: str = "") -> int:
        """Upsert communities by code; returns how many changed. Registered devices leave the unassigned list.

        Raises :class:`~hub.errors.RegistryError` (naming ``source``, the file imported) and
        saves nothing if a device or resident id would then belong to two communities.
        """
        changed = 0
        # Not fenced by a lease (every node imports the same file); serialised between hubs.
        with self._engine.serialized() as db:
            self._refuse_shared_ids(db, communities, source=source or f"store {self.location}")
            for community in communities:
                doc = orjson.dumps(community.model_dump(mode="json"))
                row = db.execute("SELECT doc FROM communities WHERE code = ?", (community.code,)).fetchone()
                if row is not None and bytes(row[0]) == doc:
                    continue
                changed += 1
                db.execute(
                    "INSERT INTO communities (code, doc, updated_at) VALUES (?, ?, ?)"
                    " ON CONFLICT (code) DO UPDATE SET doc = excluded.doc, updated_at = excluded.updated_at",
                    (community.code, doc, at),
                )
                # The start-up copy (hub.storage.community_pack) is made again after the next read.
                db.execute("DELETE FROM community_copies WHERE code = ?", (community.code,))
                db.executemany(
                    "DELETE FROM unassigned_devices WHERE id = ?", [(d.id,) for d in community.devices]
                )
        return changed

    @staticmethod
    def _refuse_shared_ids(db: Tx, communities: Sequence[Community], *, source: str) -> None:
        """Ids of ``communities`` against each other and against the communities they leave in place.

        An import adds or replaces some communities next to others already held; the file's
        own check (``CommunityFile``) cannot see those, and the registry would otherwise give
        the shared id to one community and quarantine the other's presses.
        """
        incoming = {c.code for c in communities}
        held: list[IdClaim] = []
        rosters: list[tuple[str, list[tuple[str, str]]]] = []
        roots: list[tuple[str, list[FamilySource]]] = []
        for code, raw in db.execute("SELECT code, doc FROM communities ORDER BY code").fetchall():
            if code in incoming:
                continue  # replaced by this import: its old ids go with it
            doc = orjson.loads(bytes(raw))
            devices = [d["id"] for d in doc.get("devices", ())]
            held.append((code, devices, [r["id"] for r in doc.get("residents", ())]))
            rosters.append((code, [(p["id"], p["role"]) for p in doc.get("people", ())]))
            roots.append(
                (
                    code,
                    [
                        CommunitySource.model_validate(s).as_family_source(code)
                        for s in doc.get("sources", ())
                    ],
                )
            )
        # One community's gateway topics are no other's, across imports too (CommunityFile).
        overlaps = source_overlaps(
            [*roots, *((c.code, [s.as_family_source(c.code) for s in c.sources]) for c in communities)]
        )
        if overlaps:
            raise RegistryError(describe_shared(overlaps), file=source, field="sources")
        # One role per person across the district, as one community's file checks (CommunityFile).
        roles = roster_clashes(
            [*rosters, *((c.code, [(p.id, p.role.value) for p in c.people]) for c in communities)]
        )
        if roles:
            raise RegistryError(describe_shared(roles), file=source, field="communities")
        shared = shared_claims([*held, *map(id_claim, communities)])
        if not shared:
            return
        kept = {code for code, _devices, _residents in held}
        sentences = [
            shared_sentence(*clash) + (f" ({clash[2]} is already in the store)" if clash[2] in kept else "")
            for clash in shared
        ]
        raise RegistryError(describe_shared(sentences), file=source, field="communities")

    def copies_missing(self, *, at_least: int) -> int:
        """How many communities of a JSON doc of ``at_least`` bytes have no start-up copy (an
        import drops a changed community's copy; ``hub.storage.community_copies`` makes them)."""
        row = self._engine.execute(
            "SELECT count(*) FROM communities c LEFT JOIN community_copies p ON p.code = c.code"
            " WHERE p.code IS NULL AND length(c.doc) >= ?",
            (at_least,),
        ).fetchone()
        return int(row[0])

    def communities_count(self) -> int:
        return int(self._engine.execute("SELECT count(*) FROM communities").fetchone()[0])

    def communities(self, *, personal: PersonalData | None = None) -> list[Community]:
        """The registry's communities; equal strings (``hub.community.compact``) and fields sets
        (``hub.community.trusted``) shared; from each row's start-up copy where it is sound.

        With ``personal``, residents built from a copy come without their personal data, kept
        there instead (``hub.community.personal``; for ``Registry(personal=…)``)."""
        rows = self._engine.execute(COMMUNITIES_WITH_COPIES).fetchall()
        strings: dict[str, str] = {}
        field_sets: dict[type[Any], set[str]] = {}
        result: list[Community] = []
        self.copies_wanted = False
        with collector_paused():
            for code, raw, _, packed in rows:
                doc = bytes(raw)
                result.append(self._community(code, doc, packed, strings, field_sets, personal=personal))
        return result

    def _community(
        self,
        code: str,
        doc: bytes,
        packed: bytes | memoryview | None,
        strings: dict[str, str],
        field_sets: dict[type[Any], set[str]],
        *,
        personal: PersonalData | None,
    ) -> Community:
        """One row's community, from its start-up copy if that is sound and builds, else its JSON.

        Validated when imported: built, not validated again (``hub.community.trusted``). A copy
        is derived data: one that passes its digests and still does not build (a bug in the
        version that wrote it) must not keep the hub from starting on the JSON, the truth.
        """
        parsed = community_pack.unpack(doc, packed, code=code)
        if parsed is not None:
            kept = 0 if personal is None else len(personal)
            try:
                return community_from_store(parsed, field_sets, personal)
            except community_pack.COPY_ERRORS as exc:
                if personal is not None:
                    personal.forget_since(kept)  # the JSON's residents are built whole
                log.warning(
                    "community %s: its start-up copy does not build (%r); its JSON is read", code, exc
                )
        # Made by a child process once the hub is up (hub.storage.community_copies).
        self.copies_wanted |= len(doc) >= community_pack.WORTH_BYTES
        return community_from_store(community_pack.parse(doc, strings), field_sets)

    def add_unassigned(self, device: UnassignedDevice) -> None:
        self._engine.execute(
            "INSERT INTO unassigned_devices (id, family, first_seen) VALUES (?, ?, ?) ON CONFLICT (id) DO NOTHING",
            (device.id, device.family, device.first_seen),
        )

    def unassigned(self) -> list[UnassignedDevice]:
        rows = self._engine.execute(
            "SELECT id, family, first_seen FROM unassigned_devices ORDER BY first_seen"
        )
        return [UnassignedDevice(*row) for row in rows]

    # -- quarantine -----------------------------------------------------------------------

    def add_quarantine(self, records: Sequence[QuarantineRecord], *, at: float | None = None) -> int:
        """Add records, aggregated per (topic, reason); then bound the table. Returns the rows pruned.

        Garbage costs the sender nothing: 10⁵ messages on distinct 2 000-character topics made
        10⁵ rows and 878 MB. So each row is bounded (:func:`bounded_quarantine`) and the table
        keeps the :data:`QUARANTINE_MAX_ROWS` most recently seen rows, and with ``at`` (the
        hub's clock, never the wall clock: a test or replay runs on its own time) none last
        seen more than :data:`QUARANTINE_MAX_AGE_S` before it. What goes stays counted in the
        hub's per-reason counters; the caller counts the rows pruned.
        """
        pruned = 0
        with self.transaction() as db:
            db.executemany(
                "INSERT INTO quarantine (topic, reason, detail, excerpt, first_seen, last_seen, count)"
                " VALUES (?, ?, ?, ?, ?, ?, ?) ON CONFLICT (topic, reason) DO UPDATE SET"
                " detail = excluded.detail, excerpt = excluded.excerpt, last_seen = excluded.last_seen,"
                " count = quarantine.count + excluded.count",
                [
                    (b.topic, b.reason, b.detail, b.excerpt, b.first_seen, b.last_seen, b.count)
                    for b in map(bounded_quarantine, records)
                ],
            )
            if at is not None:
                pruned += db.execute(
                    "DELETE FROM quarantine WHERE last_seen < ?", (at - QUARANTINE_MAX_AGE_S,)
                ).rowcount
            over = int(db.execute("SELECT count(*) FROM quarantine").fetchone()[0]) - QUARANTINE_MAX_ROWS
            if over > 0:
                # The least recently seen go; topic and reason break ties so the choice is stable.
                pruned += db.execute(
                    "DELETE FROM quarantine WHERE (topic, reason) IN (SELECT topic, reason FROM quarantine"
                    " ORDER BY last_seen, topic, reason LIMIT ?)",
                    (over,),
                ).rowcount
        return pruned

    def quarantine(self, *, limit: int = 100) -> list[QuarantineRecord]:
        rows = self._engine.execute(
            "SELECT topic, reason, detail, excerpt, first_seen, last_seen, count FROM quarantine"
            " ORDER BY last_seen DESC LIMIT ?",
            (limit,),
        )
        return [QuarantineRecord(*row) for row in rows]
