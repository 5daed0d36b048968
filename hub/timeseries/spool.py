"""The on-disk spool: batches that could not be delivered yet, kept in order, bounded in size.

One file per batch, ``<sequence>-<lines>.lp.gz`` (the gzip-compressed request body), written
to a temporary name, fsynced and renamed, so a crash leaves either the whole batch or none of
it. Sequence numbers continue across restarts, so replay after a crash is in order. When the
spool would exceed ``max_bytes`` the **oldest** batches are deleted first; their line count is
returned to the caller, who counts and reports it (never silent).

Every file operation runs in a worker thread (:func:`asyncio.to_thread`): the event loop never
waits on the disk.
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from dataclasses import dataclass
from pathlib import Path

from hub.files import private_dir, write_private

log = logging.getLogger(__name__)

SUFFIX = ".lp.gz"


@dataclass(frozen=True, slots=True, kw_only=True)
class Segment:
    seq: int
    lines: int
    size: int
    path: Path


def _parse(path: Path) -> Segment | None:
    name = path.name
    if not name.endswith(SUFFIX):
        return None
    try:
        seq_text, lines_text = name[: -len(SUFFIX)].split("-")
        return Segment(seq=int(seq_text), lines=int(lines_text), size=path.stat().st_size, path=path)
    except (ValueError, OSError):
        return None


class Spool:
    """FIFO of gzip batches in ``directory``; not thread-safe, used by one flusher task."""

    def __init__(self, *, directory: Path, max_bytes: int) -> None:
        self.directory = directory
        self.max_bytes = max_bytes
        self._segments: deque[Segment] = deque()
        self._bytes = 0
        self._lines = 0
        self._next_seq = 1

    def _scan(self) -> list[Segment]:
        private_dir(self.directory)
        for stale in self.directory.glob("*.tmp"):
            stale.unlink(missing_ok=True)
        found = [seg for p in self.directory.iterdir() if (seg := _parse(p)) is not None]
        return sorted(found, key=lambda s: s.seq)

    async def open(self) -> None:
        """Load what a previous run left behind (it is replayed first)."""
        segments = await asyncio.to_thread(self._scan)
        self._segments = deque(segments)
        self._bytes = sum(s.size for s in segments)
        self._lines = sum(s.lines for s in segments)
        self._next_seq = (segments[-1].seq + 1) if segments else 1

    @property
    def empty(self) -> bool:
        return not self._segments

    @property
    def pending_lines(self) -> int:
        return self._lines

    @property
    def pending_bytes(self) -> int:
        return self._bytes

    @property
    def pending_batches(self) -> int:
        return len(self._segments)

    def peek(self) -> Segment | None:
        return self._segments[0] if self._segments else None

    def _write(self, path: Path, body: bytes, victims: list[Segment]) -> None:
        for victim in victims:
            victim.path.unlink(missing_ok=True)
        # Spooled points carry device ids and places: 0600 like every data file.
        write_private(path, body)

    async def append(self, body: bytes, *, lines: int) -> int:
        """Add one gzip batch at the end; returns how many lines were dropped to make room (and
        the batch's own when it cannot be written)."""
        victims: list[Segment] = []
        dropped = 0
        if len(body) > self.max_bytes:  # cannot ever fit: the batch itself is what is dropped
            return lines
        while self._segments and self._bytes + len(body) > self.max_bytes:
            victim = self._segments.popleft()
            self._bytes -= victim.size
            self._lines -= victim.lines
            dropped += victim.lines
            victims.append(victim)
        seq = self._next_seq
        self._next_seq += 1
        path = self.directory / f"{seq:016d}-{lines}{SUFFIX}"
        try:
            await asyncio.to_thread(self._write, path, body, victims)
        except OSError as exc:
            # Listed only once on disk: a segment without its file (disk full, directory not
            # writable) stopped every later replay, long after the disk had room again.
            log.error("time-series spool could not keep a batch of %d points: %s", lines, exc)
            return dropped + lines
        self._segments.append(Segment(seq=seq, lines=lines, size=len(body), path=path))
        self._bytes += len(body)
        self._lines += lines
        return dropped

    async def read(self, segment: Segment) -> bytes:
        return await asyncio.to_thread(segment.path.read_bytes)

    async def remove(self, segment: Segment) -> None:
        """Forget the oldest segment (after it was delivered or quarantined)."""
        if self._segments and self._segments[0].seq == segment.seq:
            self._segments.popleft()
            self._bytes -= segment.size
            self._lines -= segment.lines
        await asyncio.to_thread(segment.path.unlink, missing_ok=True)
