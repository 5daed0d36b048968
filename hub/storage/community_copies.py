"""Making the communities' start-up copies (:mod:`hub.storage.community_pack`), in a child process.

Why a child: making a copy parses the 44 MB JSON of a 100 000-device community again, shares
its strings and marshals it — ≈ 1.7 s of one core, and memory that, in the hub, stayed in
its heap after it was freed (the cold start's RSS rose from 514 to 586 MB in the bench;
docs/benchmarks.md, "Eighth pass"), with the GIL held throughout (``marshal.dumps`` is one
call). In a child the hub's event loop and memory never see it: the hub starts as before,
the child writes the copies, and the next start reads them.

The hub starts the child (:func:`make_in_child`) after it is ready, when its own read found
a community without a sound copy; the child (``python -m hub.storage.community_copies``)
reads the store's URL on stdin, not from its arguments, so a PostgreSQL password never shows
in a process list. A copy is written only where the row still holds the doc it was made
from, so a community imported meanwhile is never given a stale one.

Must not import the hub's application: the child loads the store and nothing else.
"""

from __future__ import annotations

import asyncio
import logging
import subprocess
import sys
import time
from typing import Any

from hub.community.trusted import community_from_store
from hub.storage import community_pack
from hub.storage.community_pack import COPY_ERRORS
from hub.storage.engine import Dialect
from hub.storage.store import COMMUNITIES_WITH_COPIES, Store

log = logging.getLogger(__name__)

#: The child's run is bounded: at 100 000 devices it takes ≈ 3 s of which imports ≈ 0.5 s.
CHILD_TIMEOUT_S = 600.0
#: … and tighter before a start (:func:`make_in_child_now`): the hub handles no press while it
#: waits, and reading the JSON instead only costs memory.
BEFORE_START_TIMEOUT_S = 60.0
CHECKPOINT_TRIES = 20
CHECKPOINT_RETRY_S = 0.1


def make_copies(store: Store) -> int:
    """Write a copy for each community without a sound one; returns how many were written."""
    made: list[tuple[str, bytes, float, int]] = []
    for code, raw, updated_at, packed in store.execute(COMMUNITIES_WITH_COPIES).fetchall():
        doc = bytes(raw)
        if _builds(community_pack.unpack(doc, packed, code=code)):
            continue
        made.append((code, community_pack.pack(doc, community_pack.parse(doc, {})), updated_at, len(doc)))
    if made:
        with store.transaction() as db:
            # Only where the row still holds the doc the copy was made from: an import may have
            # replaced it meanwhile (and dropped its copy), giving it a new ``updated_at``. Not
            # ``doc = ?``: comparing 44 MB of JSON inside the write lock held it 50-90 ms longer
            # (0.10-0.15 s in all at 10⁵ devices), and the hub's writes wait for that lock
            # (``hub.storage.sqlite.BUSY_TIMEOUT_S``, 0.2 s) or are retried. A copy is only ever
            # used if its digest is of the row's doc (``community_pack.unpack``): a stale one
            # that got past this check is read as JSON and made again, never used.
            db.executemany(
                "INSERT INTO community_copies (code, packed)"
                " SELECT code, ? FROM communities WHERE code = ? AND updated_at = ? AND length(doc) = ?"
                " ON CONFLICT (code) DO UPDATE SET packed = excluded.packed",
                [(packed, code, updated_at, size) for code, packed, updated_at, size in made],
            )
        if store.dialect is Dialect.SQLITE:
            _checkpoint(store)
    return len(made)


def _builds(unpacked: dict[str, Any] | None) -> bool:
    """Whether a copy is sound and builds its community (the hub reads the JSON where it does
    not: ``Store._community``); ≈ 0.6 s at 10⁵ devices, here in the child, not in the hub."""
    if unpacked is None:
        return False
    try:
        community_from_store(unpacked, {})
    except COPY_ERRORS:
        return False
    return True


def _checkpoint(store: Store) -> None:
    """Move the copies (14 MB at 10⁵ devices) from the WAL into the database, here.

    Left in the WAL, the hub's next commit past the auto-checkpoint threshold copies them
    on its event loop (0.3–0.5 s into the restart's backlog, measured), or its next start
    does. PASSIVE never waits for, or blocks, the hub; a frame a reader of the hub still
    needs is left for the next try, a few times.
    """
    for _ in range(CHECKPOINT_TRIES):
        _, log_frames, done = store.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchone()
        if log_frames <= 0 or done >= log_frames:
            return
        time.sleep(CHECKPOINT_RETRY_S)


def make_in_child_now(url: str, *, timeout_s: float = BEFORE_START_TIMEOUT_S) -> bool:
    """:func:`make_copies` in a child process, waited for (the hub is not started yet); ``False``
    (logged) if it failed or took longer than ``timeout_s``: the hub then reads the JSON.

    For a hub about to read a community that has no copy (a cold start, a changed file): built
    from the 44 MB JSON of a 100 000-device community in the hub's own process, the parse left
    ≈ 50 MB of holes in its heap that its later objects never filled (docs/benchmarks.md,
    "Thirty-ninth pass"). Read from the copy, the hub's heap is the restart's.
    """
    try:
        done = subprocess.run(
            [sys.executable, "-m", "hub.storage.community_copies"],
            input=url.encode(),
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            timeout=timeout_s,
            check=False,
        )
    except subprocess.TimeoutExpired:  # run() has killed and waited for the child
        log.warning("communities' start-up copies not made within %.0f s; the JSON is read", timeout_s)
        return False
    except OSError as exc:
        log.warning("communities' start-up copies not made (%s); the JSON is read", exc)
        return False
    if done.returncode != 0:
        last = done.stderr.decode("utf-8", "replace").strip().splitlines()[-1:] or ["(no output)"]
        log.warning(
            "communities' start-up copies not made (exit %s: %s); the JSON is read", done.returncode, last[0]
        )
        return False
    return True


async def make_in_child(url: str, *, timeout_s: float = CHILD_TIMEOUT_S) -> bool:
    """Run :func:`make_copies` in a child process; ``False`` (logged) if it failed.

    Cancelled (the hub stops), the child is killed and awaited: a copy half written is rolled
    back by the database, and the next start reads the JSON.
    """
    child = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "hub.storage.community_copies",
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.PIPE,
    )
    try:
        async with asyncio.timeout(timeout_s):
            _, err = await child.communicate(url.encode())
    except TimeoutError:
        await _end(child)
        log.warning(
            "communities' start-up copies not made within %.0f s; the next start reads the JSON", timeout_s
        )
        return False
    except asyncio.CancelledError:
        await _end(child)
        raise
    if child.returncode != 0:
        last = err.decode("utf-8", "replace").strip().splitlines()[-1:] or ["(no output)"]
        log.warning(
            "communities' start-up copies not made (exit %s: %s); the next start reads the JSON",
            child.returncode,
            last[0],
        )
        return False
    return True


async def _end(child: asyncio.subprocess.Process) -> None:
    if child.returncode is None:
        child.kill()
        await child.wait()


def main() -> int:
    url = sys.stdin.read().strip()
    store = Store(url=url)
    try:
        made = make_copies(store)
    finally:
        store.close()
    print(f"{made} start-up copies made", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
