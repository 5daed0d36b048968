"""Live events across nodes: PostgreSQL ``LISTEN``/``NOTIFY`` between the hubs of a cluster.

Any node serves the console from the shared store, but its event bus only hears what its own
pipeline did. Each node therefore tells the others which alerts and cases it changed, on the
channel :data:`CHANNEL`, and each node hearing of another's change reads the record from the
store and publishes it to its own bus (the ``on_remote`` callback), exactly as if it had
made the change itself — so the stream's access filtering applies unchanged.

* **Ids, not records.** A ``NOTIFY`` payload must stay under 8000 bytes (PostgreSQL 15
  manual, NOTIFY); a case with its timeline does not. A payload is a small JSON object
  ``{"n": node, "e": [[kind, id, created], …]}``: the changes queued since the last send, cut
  into several payloads well under the limit in a burst.
* **Never twice to a node's own clients.** The sender's node id is in the payload, and a node
  ignores its own notifications (its bus already had the change, first hand).
* **After the commit.** A change is queued once committed and sent from this module's own
  connection, so the reader always finds it, and the ingest hot path pays nothing but an
  append (no round trip to the database per alert).
* **Best effort, by design.** These are live hints for screens; the records are in the
  store. While the database is unreachable the send queue keeps the newest
  :data:`QUEUE_LIMIT` changes and the listener reconnects with a growing backoff; what a
  console missed meanwhile it reloads when its stream reconnects (hub/web/stream.py).

Two named tasks (``linli-cluster-events-listen`` and ``…-notify``), each with its own
connection, stopped by cancel-and-await.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections import deque
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from enum import StrEnum
from typing import TYPE_CHECKING

from hub.storage.engine import redact

if TYPE_CHECKING:
    import psycopg

log = logging.getLogger(__name__)

CHANNEL = "linli_events"
#: Well under PostgreSQL's 8000-byte payload limit.
PAYLOAD_LIMIT = 7000
#: Changes kept for sending while the database is unreachable (the oldest go first).
QUEUE_LIMIT = 10_000
BACKOFF_FIRST_S = 0.5
BACKOFF_MAX_S = 10.0
CONNECT_TIMEOUT_S = 5


class Kind(StrEnum):
    ALERT = "alert"
    CASE = "case"


@dataclass(frozen=True, slots=True)
class Change:
    kind: Kind
    id: str
    created: bool = False


def _dumps(value: object) -> str:
    # Compact, so a batch's size is exactly its parts' sizes plus one comma per item.
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"))


def encode(node_id: str, changes: Sequence[Change]) -> Iterator[str]:
    """Payloads of at most :data:`PAYLOAD_LIMIT` bytes carrying ``changes`` in order."""
    batch: list[list[object]] = []
    size = 0
    head = len(_dumps({"n": node_id, "e": []}).encode())
    for change in changes:
        item: list[object] = [change.kind.value, change.id, int(change.created)]
        item_size = len(_dumps(item).encode()) + 1
        if batch and head + size + item_size > PAYLOAD_LIMIT:
            yield _dumps({"n": node_id, "e": batch})
            batch, size = [], 0
        batch.append(item)
        size += item_size
    if batch:
        yield _dumps({"n": node_id, "e": batch})


def decode(payload: str) -> tuple[str, list[Change]]:
    """The sending node and its changes; :class:`ValueError` for anything else."""
    try:
        body = json.loads(payload)
        node = body["n"]
        changes = [Change(Kind(kind), str(item_id), bool(created)) for kind, item_id, created in body["e"]]
    except (ValueError, KeyError, TypeError) as exc:
        raise ValueError(f"not a change notification: {payload[:200]!r}") from exc
    if not isinstance(node, str):
        raise ValueError(f"not a change notification: {payload[:200]!r}")
    return node, changes


class ClusterEvents:
    def __init__(self, *, url: str, node_id: str, on_remote: Callable[[Change], None]) -> None:
        self._url = url
        self.node_id = node_id
        self._on_remote = on_remote
        self._queue: deque[Change] = deque(maxlen=QUEUE_LIMIT)
        self._wake = asyncio.Event()
        self._tasks: list[asyncio.Task[None]] = []
        #: Set while the listener's ``LISTEN`` is in place (tests wait for it).
        self.listening = asyncio.Event()
        #: Notifications from other nodes heard, and their changes handed on (for tests and metrics).
        self.heard = 0
        self.sent = 0

    def changed(self, kind: Kind, item_id: str | int, *, created: bool = False) -> None:
        """A committed change of this node's: queue it for the other nodes."""
        self._queue.append(Change(kind, str(item_id), created))
        self._wake.set()

    def start(self) -> None:
        self._tasks = [
            asyncio.create_task(self._listen(), name="linli-cluster-events-listen"),
            asyncio.create_task(self._notify(), name="linli-cluster-events-notify"),
        ]

    async def stop(self) -> None:
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._tasks = []

    async def _connect(self) -> psycopg.AsyncConnection[tuple[object, ...]]:
        # Imported here: a hub on SQLite (the default) never loads the driver (0.2 s of start-up).
        import psycopg  # noqa: PLC0415

        return await psycopg.AsyncConnection.connect(
            self._url,
            autocommit=True,
            connect_timeout=CONNECT_TIMEOUT_S,
            application_name=f"linli-events-{self.node_id}",
        )

    async def _listen(self) -> None:
        import psycopg  # noqa: PLC0415 (see _connect)

        backoff = BACKOFF_FIRST_S
        while True:
            try:
                async with await self._connect() as conn:
                    await conn.execute(f"LISTEN {CHANNEL}")
                    self.listening.set()
                    backoff = BACKOFF_FIRST_S
                    async for notify in conn.notifies():
                        self._heard(notify.payload)
            except (psycopg.Error, OSError) as exc:
                self.listening.clear()
                log.warning(
                    "node %s: listening for other nodes' events on %s failed (%s); again in %.1f s",
                    self.node_id,
                    redact(self._url),
                    type(exc).__name__,
                    backoff,
                )
                await asyncio.sleep(backoff)
                backoff = min(BACKOFF_MAX_S, backoff * 2)

    def _heard(self, payload: str) -> None:
        try:
            node, changes = decode(payload)
        except ValueError:
            log.warning("node %s: ignored a malformed notification on %s", self.node_id, CHANNEL)
            return
        if node == self.node_id:
            return  # ours: this node's bus had it first hand
        self.heard += 1
        for change in changes:
            try:
                self._on_remote(change)
            except Exception:
                log.exception(
                    "node %s: %s %s from %s not shown live", self.node_id, change.kind, change.id, node
                )

    async def _notify(self) -> None:
        import psycopg  # noqa: PLC0415 (see _connect)

        backoff = BACKOFF_FIRST_S
        while True:
            try:
                async with await self._connect() as conn:
                    backoff = BACKOFF_FIRST_S
                    while True:
                        await self._wake.wait()
                        self._wake.clear()
                        while self._queue:
                            changes = list(self._queue)
                            self._queue.clear()
                            try:
                                for payload in encode(self.node_id, changes):
                                    await conn.execute("SELECT pg_notify(%s, %s)", (CHANNEL, payload))
                            except BaseException:
                                # Not sent (a payload's changes may have been: at most twice to
                                # the others, never lost while the queue has room).
                                self._queue.extendleft(reversed(changes))
                                raise
                            self.sent += len(changes)
            except (psycopg.Error, OSError) as exc:
                log.warning(
                    "node %s: telling other nodes of %d change(s) failed (%s); again in %.1f s",
                    self.node_id,
                    len(self._queue),
                    type(exc).__name__,
                    backoff,
                )
                self._wake.set()
                await asyncio.sleep(backoff)
                backoff = min(BACKOFF_MAX_S, backoff * 2)
