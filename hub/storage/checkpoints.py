"""The SQLite store's WAL checkpoints, made by a worker thread instead of inside a commit.

In WAL mode SQLite copies the log back into the database file (a *checkpoint*) on its own
when a commit leaves more than ``wal_autocheckpoint`` pages (1 000, ≈ 4 MB) in the log, in
the connection that committed and before that commit returns; with ``synchronous=NORMAL``
that checkpoint is also where the file is synced (https://sqlite.org/wal.html#ckpt,
https://sqlite.org/pragma.html#pragma_synchronous). The hub writes from its event loop, so
whichever write crossed the line paid for it: measured in process, one SOS press in about 40
took 4 ms instead of 0.55 ms to become an alert and a case, and nothing else ran meanwhile
(docs/benchmarks.md, "Tenth pass").

:class:`WalCheckpointer` runs as the hub's named task ``linli-store-checkpoints``: every
:data:`CHECKPOINT_EVERY_S` its own connection, in a worker thread, makes a ``PASSIVE``
checkpoint (it never waits for the writer or readers, and a writer never waits for it: WAL
keeps readers, the writer and the checkpointer apart). Only once such a round has succeeded
does the hub's connection stop checkpointing by itself; a round that fails (disk full, I/O
error, a file that went away) gives the commits their automatic checkpoints back until a
round succeeds again, and so does the task's end. The log cannot grow without bound because
the thread stopped or failed.

Nor because the commits never pause: SQLite starts the log over only when a write begins and
finds every frame already copied (https://sqlite.org/wal.html#avoiding_excessively_large_wal_files).
A round copies what was committed when it began; commits that land meanwhile leave the log
unfinished, and under steady writes it would never start over (a test reached 66 MB from 60 MB
of commits). When a round leaves more than :data:`HAND_BACK_PAGES` times the automatic
threshold in the log, the commits get their checkpoints back: the next one past the
threshold copies the few frames left and the log starts over, then the worker takes over
again. ``journal_size_limit`` trims a log file a burst made large when it starts over.

Another connection may be checkpointing when a round starts (the child that makes the
start-up copies of the registry, an operator's ``sqlite3`` shell, a replicator). SQLite then
answers the ``PASSIVE`` checkpoint with ``(1, -1, -1)``: busy, no counts
(https://sqlite.org/pragma.html#pragma_wal_checkpoint). That is not a failure. The round is
counted as ``busy`` and changes nothing, and the next one comes at the usual interval. Only
``(0, -1, -1)`` means the file is not in WAL mode.

Must not import the hub's application (used by :mod:`hub.app`, never the other way round).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import sqlite3
from pathlib import Path

from hub.storage.sqlite import BUSY_TIMEOUT_S, SqliteEngine

log = logging.getLogger(__name__)

#: How often the worker checkpoints. At the SOS path's ≈ 100 KB of log per press, a second
#: of presses at the bench's highest rates stays within a few automatic thresholds.
CHECKPOINT_EVERY_S = 1.0
#: A log longer than this many times the automatic threshold goes back to the commits.
HAND_BACK_PAGES = 4
#: After a failed round, the next one waits this long (doubling, up to the maximum).
RETRY_FIRST_S = 1.0
RETRY_MAX_S = 30.0


class WalCheckpointer:
    """Checkpoints ``engine``'s WAL from a worker thread; see the module docstring."""

    def __init__(self, *, engine: SqliteEngine, every_s: float = CHECKPOINT_EVERY_S) -> None:
        self._engine = engine
        self._path: Path = engine.path
        self._every_s = every_s
        self._db: sqlite3.Connection | None = None
        #: The engine's own threshold before the hand-over (SQLite's default unless configured).
        self._pages = engine.autocheckpoint()
        #: Rounds made and failed since start (``/api/stats``).
        self.rounds = 0
        self.failures = 0
        #: Rounds that found another connection checkpointing (see the module docstring).
        self.busy = 0
        #: Whether the commits currently leave checkpoints to this task.
        self.handed_over = False
        #: Frames in the log at the last round (``/api/stats``).
        self.log_frames = 0

    async def run(self) -> None:
        failures = 0
        try:
            while True:
                try:
                    checkpointed = await self._round()
                except asyncio.CancelledError:
                    raise
                except Exception as exc:
                    failures += 1
                    self.failures += 1
                    self._take_back()
                    delay = min(RETRY_MAX_S, RETRY_FIRST_S * 2 ** (failures - 1))
                    log.warning(
                        "WAL checkpoint of %s failed (%s); commits checkpoint by themselves, retry in %.0f s",
                        self._path,
                        exc,
                        delay,
                    )
                    await asyncio.sleep(delay)
                    continue
                if not checkpointed:
                    # Another connection was checkpointing: neither a failure nor a success of
                    # ours, so the hand-over and the backoff stay as they were.
                    await asyncio.sleep(self._every_s)
                    continue
                failures = 0
                if self.log_frames > self._pages * HAND_BACK_PAGES:
                    self._take_back()  # the commits finish the log (see the module docstring)
                elif not self.handed_over:
                    self._engine.autocheckpoint(0)
                    self.handed_over = True
                await asyncio.sleep(self._every_s)
        finally:
            self._take_back()
            if self._db is not None:
                self._db.close()
                self._db = None

    async def _round(self) -> bool:
        """One checkpoint in a worker thread; ``False`` if another connection was checkpointing."""
        done = asyncio.get_running_loop().run_in_executor(None, self._checkpoint)
        try:
            frames = await asyncio.shield(done)
        except asyncio.CancelledError:
            # The thread finishes its round before run() closes the connection it uses, however
            # often the task is cancelled meanwhile (a round is one bounded checkpoint).
            while not done.done():
                with contextlib.suppress(asyncio.CancelledError):
                    await asyncio.wait([done])
            raise
        self.rounds += 1
        if frames is None:
            self.busy += 1
            return False
        self.log_frames = frames
        return True

    def _checkpoint(self) -> int | None:
        """In the worker thread: one PASSIVE checkpoint; returns the frames in the log, or
        ``None`` when another connection holds the checkpoint."""
        if self._db is None:
            # Only this task's rounds use it, one at a time, each in some executor thread.
            self._db = sqlite3.connect(self._path, check_same_thread=False, timeout=BUSY_TIMEOUT_S)
        row = self._db.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchone()
        busy, frames = int(row[0]), int(row[1])  # (busy, frames in the log, frames copied)
        if frames < 0:
            if busy:
                return None  # another connection holds the checkpoint: no counts this round
            # SQLite answers (0, -1, -1) when the file is not in WAL mode: nothing of ours to do.
            raise sqlite3.OperationalError(f"{self._path} is not in WAL mode")
        return frames

    def _take_back(self) -> None:
        if self.handed_over:
            self._engine.autocheckpoint(self._pages)
            self.handed_over = False
