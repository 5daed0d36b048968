"""The InfluxDB writer: O(1) ``write`` on the hot path, batches, gzip, retries, spool, quarantine.

``write(point)`` encodes the point to its line and appends the line to an in-memory list; a
single named task (``linli-timeseries``) takes batches of up to ``batch_size`` lines every
``flush_interval_s`` (or at once when a batch is full) and POSTs them gzip-compressed to the
v1 (``/write``) or v2 (``/api/v2/write``) endpoint.

Why lines and not points wait in the list: a :class:`Point` is an object the cyclic collector
tracks, a ``str`` is not. Thousands of points waiting for the flush were most of what each
young collection walked, and the collections that promoted them stalled the event loop for
10–50 ms at 10 000 msg/s, longer than the SOS target (docs/benchmarks.md, "Nineteenth pass").
The encoding is the same work either way, done once per point on the event loop.

Outcomes of a request:

* 2xx — delivered.
* 429, 5xx, 408, timeouts, connection errors — *retryable*: the batch goes to the on-disk
  :class:`~hub.timeseries.spool.Spool`; the spool is replayed, oldest first, after an
  exponential backoff with jitter (``Retry-After`` honoured). While anything is spooled, new
  batches are appended behind it, so the server receives points in the order they were written.
* 401, 403, 404 — a configuration problem (token, permissions, missing database/bucket) that an
  operator can fix without losing data: treated as retryable and logged as an error
  (``linli doctor`` explains it).
* 413 — the batch is split in half and each half sent again.
* any other 4xx (400 bad line protocol, field-type conflict, 422 outside retention) — can never
  succeed: the batch is sent again shape by shape (measurement, field keys and types:
  :func:`~hub.timeseries.line_protocol.shape`, so a type conflict's lines are apart at once),
  and a refused part is bisected (re-sending lines that were accepted is harmless, a point
  with the same series and time overwrites itself) until the refused lines are isolated; those
  go to the ``on_quarantine`` callback with the server's message. Never retried.

``stop()`` flushes everything: to the server if it answers, otherwise to the spool. After a
crash, what the spool holds is replayed by the next ``start()``. What a crash loses is only the
in-memory buffer: one flush interval, or what arrived during one request to a slow server (at
most ``request_timeout_s``). Past :data:`SPILL_BATCHES` batches the buffer goes to the spool;
past :data:`MAX_BUFFERED_LINES` the oldest lines are dropped and counted.
"""

from __future__ import annotations

import asyncio
import contextlib
import gzip
import logging
import random
import time
import zlib
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from enum import Enum
from pathlib import Path
from typing import TYPE_CHECKING

from hub.timeseries.line_protocol import Point, shape
from hub.timeseries.pending import queue_lines
from hub.timeseries.settings import TimeseriesSettings
from hub.timeseries.spool import Spool

if TYPE_CHECKING:
    import aiohttp

log = logging.getLogger(__name__)

#: Batches the buffer may hold before the flusher moves the rest to the spool.
SPILL_BATCHES = 4
#: Lines the buffer may hold at all (≈ 30–60 MB): past it the oldest are dropped, counted.
MAX_BUFFERED_LINES = 200_000

TASK_NAME = "linli-timeseries"
#: Bodies at least this large are gzip-compressed in a worker thread (zlib releases the GIL).
_THREAD_GZIP_BYTES = 64 * 1024
#: A refused batch is bisected with at most this many extra requests; the rest is quarantined whole.
_MAX_BISECT_REQUESTS = 64


class Outcome(Enum):
    OK = "ok"
    RETRY = "retry"
    REFUSED = "refused"
    TOO_LARGE = "too_large"


@dataclass(frozen=True, slots=True, kw_only=True)
class QuarantinedLines:
    """Lines the server refused for good, with its status and message."""

    lines: tuple[str, ...]
    status: int
    message: str


@dataclass(slots=True)
class WriterStats:
    """Counters for ``/api/health``, hub self-metrics and the benchmark."""

    points_written: int = 0
    points_delivered: int = 0
    invalid_points: int = 0
    batches_sent: int = 0
    requests: int = 0
    retryable_failures: int = 0
    batches_spooled: int = 0
    points_spooled: int = 0
    batches_replayed: int = 0
    points_dropped: int = 0
    points_quarantined: int = 0
    last_error: str = ""

    def queued(self, seen: int, refused: int, why: str) -> None:
        """Count a ``write``: ``seen`` points, ``refused`` of them unwritable, the last one's ``why``."""
        self.points_written += seen
        if refused:
            self.invalid_points += refused
            if why:
                self.last_error = why


@dataclass(frozen=True, slots=True)
class _Reply:
    outcome: Outcome
    status: int
    message: str
    retry_after: float | None = None


def _gzip(data: bytes, level: int) -> bytes:
    return gzip.compress(data, compresslevel=level, mtime=0)


def _classify(status: int) -> Outcome:
    if 200 <= status < 300:
        return Outcome.OK
    if status == 413:
        return Outcome.TOO_LARGE
    if status in (401, 403, 404, 408, 429) or status >= 500:
        return Outcome.RETRY
    return Outcome.REFUSED


class InfluxWriter:
    """Writes points to InfluxDB (v1 or v2 API) without losing them when the server is away."""

    def __init__(
        self,
        *,
        settings: TimeseriesSettings,
        spool_dir: Path,
        on_quarantine: Callable[[QuarantinedLines], None] | None = None,
    ) -> None:
        self._settings = settings
        self._url, self._params, self._headers = settings.write_target()
        self._spool = Spool(directory=spool_dir, max_bytes=settings.spool_max_bytes)
        self._on_quarantine = on_quarantine
        self._buffer: list[str] = []  # encoded lines, oldest first
        self._batch_size = settings.batch_size
        self._wake = asyncio.Event()
        self._stopping = False
        self._task: asyncio.Task[None] | None = None
        self._session: aiohttp.ClientSession | None = None
        self._inflight: tuple[list[str], bytes] | None = None
        self._failures = 0
        self._retry_at = 0.0
        self.stats = WriterStats()

    # ----------------------------------------------------------------- hot path
    def write(self, point: Point) -> None:
        """Queue one point's line: no I/O, never blocks; a point with nothing to write is counted."""
        self._queued(*queue_lines((point,), self._buffer))

    def write_many(self, points: Iterable[Point]) -> None:
        """Queue the points' lines in one call into the compiled half (:func:`queue_lines`).

        Casework and care chart through here too: this must never raise (a point that cannot
        be encoded is counted, the others are queued).
        """
        self._queued(*queue_lines(points, self._buffer))

    def _queued(self, seen: int, refused: int, why: str) -> None:
        self.stats.queued(seen, refused, why)
        waiting = len(self._buffer)
        if waiting >= self._batch_size:
            self._wake.set()
            if waiting > MAX_BUFFERED_LINES:
                self._overflow()

    def _overflow(self) -> None:
        """The hard bound: the flusher is stuck in one request while points keep coming (rare)."""
        dropped = len(self._buffer) - MAX_BUFFERED_LINES + self._batch_size
        del self._buffer[:dropped]
        self.stats.points_dropped += dropped
        log.error(
            "time-series buffer over %d lines while the server answers slowly: dropped the oldest %d",
            MAX_BUFFERED_LINES,
            dropped,
        )

    # ---------------------------------------------------------------- lifecycle
    @property
    def spool(self) -> Spool:
        return self._spool

    @property
    def buffered(self) -> int:
        return len(self._buffer)

    @property
    def spool_fill(self) -> float:
        """How full the disk spool is (0 – 1): near 1, the oldest spooled points are dropped."""
        return self._spool.pending_bytes / self._spool.max_bytes if self._spool.max_bytes else 0.0

    async def start(self) -> None:
        await self._spool.open()
        if not self._spool.empty:
            log.info(
                "time-series spool holds %d points in %d batches; replaying",
                self._spool.pending_lines,
                self._spool.pending_batches,
            )
        import aiohttp  # noqa: PLC0415 (unused by many hubs: 0.25 s of start-up)

        timeout = aiohttp.ClientTimeout(total=self._settings.request_timeout_s)
        self._session = aiohttp.ClientSession(timeout=timeout)
        self._stopping = False
        self._task = asyncio.create_task(self._run(), name=TASK_NAME)

    async def stop(self, *, grace_s: float = 10.0) -> None:
        """Flush everything (to the server, or to the spool if it does not answer) and close."""
        task, self._task = self._task, None
        if task is not None:
            self._stopping = True
            self._wake.set()
            try:
                await asyncio.wait_for(asyncio.shield(task), grace_s)
            except TimeoutError:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
            except Exception:  # the flusher died: still save what is left below
                log.exception("time-series flusher failed")
        await self._save_leftovers()
        if self._session is not None:
            await self._session.close()
            self._session = None

    async def flush(self) -> None:
        """Deliver (or spool) everything buffered now; for tests and the shutdown path."""
        await self._cycle(final=True)

    async def _save_leftovers(self) -> None:
        if self._inflight is not None:
            lines, body = self._inflight
            self._inflight = None
            await self._to_spool(body, len(lines))
        while self._buffer:
            lines = self._take()
            body = await self._compress(lines)
            await self._to_spool(body, len(lines))

    # ------------------------------------------------------------------ flusher
    async def _run(self) -> None:
        interval = self._settings.flush_interval_s
        while True:
            stopping = self._stopping
            timeout = 0.0 if stopping else interval
            if not self._spool.empty and not stopping:
                timeout = min(interval, max(0.0, self._retry_at - time.monotonic()))
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(timeout):
                    await self._wake.wait()
            self._wake.clear()
            stopping = stopping or self._stopping
            try:
                await self._cycle(final=stopping)
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # keep flushing whatever happens; the next cycle retries
                self.stats.last_error = f"{type(exc).__name__}: {exc}"
                log.exception("time-series flush cycle failed")
            if stopping:
                return

    def _take(self) -> list[str]:
        """Up to one batch of lines, oldest first."""
        if len(self._buffer) <= self._batch_size:
            lines, self._buffer = self._buffer, []
        else:
            lines = self._buffer[: self._batch_size]
            del self._buffer[: self._batch_size]
        return lines

    def _backing_off(self) -> bool:
        return time.monotonic() < self._retry_at

    async def _cycle(self, *, final: bool) -> None:
        """Move the buffer out (sent, or spooled behind a backlog) and replay the spool."""
        ignore_backoff = final
        while True:
            while self._buffer:
                if len(self._buffer) > SPILL_BATCHES * self._batch_size:
                    # The server answers slower than points come (found in review: the buffer
                    # grew without bound): what waits beyond a few batches goes to the spool, on
                    # disk and bounded, in order; the newer ones queue behind it there.
                    while len(self._buffer) > self._batch_size:
                        spilled = self._take()
                        await self._to_spool(await self._compress(spilled), len(spilled))
                lines = self._take()
                body = await self._compress(lines)
                if self._spool.empty and (ignore_backoff or not self._backing_off()):
                    self._inflight = (lines, body)
                    delivered = await self._deliver(lines, body)
                    self._inflight = None
                    if not delivered:
                        await self._to_spool(body, len(lines))
                        ignore_backoff = False
                else:
                    await self._to_spool(body, len(lines))
            segment = self._spool.peek()
            if segment is None or (self._backing_off() and not ignore_backoff):
                return
            try:
                # Unreadable (deleted by hand to free the disk, an I/O error) is as corrupt: it
                # stopped every replay behind it.
                body = await self._spool.read(segment)
                lines = gzip.decompress(body).decode().split("\n")
            except (OSError, EOFError, zlib.error, UnicodeDecodeError) as exc:
                log.error("time-series spool file %s is corrupt (%s); quarantined", segment.path, exc)
                self._quarantine([], 0, f"corrupt spool file {segment.path.name}: {exc}", segment.lines)
                await self._spool.remove(segment)
                continue
            if not await self._deliver(lines, body):
                return
            self.stats.batches_replayed += 1
            await self._spool.remove(segment)
            ignore_backoff = False

    async def _to_spool(self, body: bytes, lines: int) -> None:
        dropped = await self._spool.append(body, lines=lines)
        self.stats.batches_spooled += 1
        self.stats.points_spooled += lines
        if dropped:
            self.stats.points_dropped += dropped
            log.error(
                "time-series spool dropped %d points (the oldest, to stay under %d bytes, or a batch"
                " it could not write); %d dropped in total",
                dropped,
                self._spool.max_bytes,
                self.stats.points_dropped,
            )

    async def _compress(self, lines: list[str]) -> bytes:
        data = "\n".join(lines).encode()
        level = self._settings.gzip_level
        if len(data) >= _THREAD_GZIP_BYTES:
            return await asyncio.to_thread(_gzip, data, level)
        return _gzip(data, level)

    # ----------------------------------------------------------------- delivery
    async def _deliver(self, lines: list[str], body: bytes) -> bool:
        """Send one batch; ``True`` when it is done with (delivered or quarantined)."""
        reply = await self._post(body)
        if reply.outcome is Outcome.OK:
            self._delivered(len(lines))
            return True
        if reply.outcome is Outcome.RETRY:
            self._failed(reply)
            return False
        budget = [_MAX_BISECT_REQUESTS]
        groups: dict[str, list[str]] = {}
        for line in lines:
            groups.setdefault(shape(line), []).append(line)
        if 1 < len(groups) <= _MAX_BISECT_REQUESTS // 2:
            # Shape by shape first: a field type conflict refuses every line of its shape, and
            # bisecting a batch where those lie spread among good ones ran out of requests and
            # quarantined good lines with them (found in review).
            return await self._parts(list(groups.values()), budget)
        return await self._split(lines, reply, budget)

    def _delivered(self, count: int) -> None:
        self.stats.batches_sent += 1
        self.stats.points_delivered += count
        if self._failures:
            log.info("time-series server reachable again after %d failed attempts", self._failures)
        self._failures = 0
        self._retry_at = 0.0

    def _failed(self, reply: _Reply) -> None:
        self.stats.retryable_failures += 1
        self.stats.last_error = f"{reply.status or 'connection'}: {reply.message}"[:500]
        self._failures += 1
        cap = min(self._settings.backoff_max_s, self._settings.backoff_base_s * 2 ** (self._failures - 1))
        delay = cap / 2 + random.uniform(0, cap / 2)  # noqa: S311 - jitter, not cryptography
        if reply.retry_after is not None:
            delay = max(delay, min(reply.retry_after, self._settings.backoff_max_s))
        self._retry_at = time.monotonic() + delay
        level = logging.ERROR if reply.status in (401, 403, 404) else logging.WARNING
        log.log(
            level,
            "time-series write failed (%s); retrying in %.1fs (attempt %d)",
            self.stats.last_error,
            delay,
            self._failures,
        )

    async def _split(self, lines: list[str], reply: _Reply, budget: list[int]) -> bool:
        """Isolate the lines the server refuses (400/413…) by bisection; deliver the others.

        Returns ``True`` when every line was delivered, quarantined or (if the server went away
        half-way) spooled for replay.
        """
        if len(lines) == 1 or budget[0] <= 0:
            message = reply.message
            if reply.outcome is Outcome.TOO_LARGE and len(lines) > 1:
                message = f"request too large, split budget exhausted: {message}"
            self._quarantine(lines, reply.status, message)
            return True
        middle = len(lines) // 2
        return await self._parts([lines[:middle], lines[middle:]], budget)

    async def _parts(self, parts: list[list[str]], budget: list[int]) -> bool:
        """Send each part of a refused batch; a refused part is bisected in turn (:meth:`_split`)."""
        for index, part in enumerate(parts):
            budget[0] -= 1
            sub = await self._post(await self._compress(part))
            if sub.outcome is Outcome.OK:
                self._delivered(len(part))
            elif sub.outcome is Outcome.RETRY:
                self._failed(sub)
                # The server went away half-way: keep what is left for replay.
                for rest in parts[index:]:
                    await self._to_spool(await self._compress(rest), len(rest))
                return True
            else:
                await self._split(part, sub, budget)
        return True

    def _quarantine(self, lines: list[str], status: int, message: str, count: int | None = None) -> None:
        n = len(lines) if count is None else count
        self.stats.points_quarantined += n
        log.warning("time-series server refused %d lines (%s): %s", n, status, message[:300])
        if self._on_quarantine is not None:
            try:
                self._on_quarantine(QuarantinedLines(lines=tuple(lines), status=status, message=message))
            except Exception:
                log.exception("time-series quarantine callback failed")

    async def _post(self, body: bytes) -> _Reply:
        assert self._session is not None, "start() first"
        import aiohttp  # noqa: PLC0415 (see start)

        self.stats.requests += 1
        headers = dict(self._headers)
        headers["Content-Encoding"] = "gzip"
        try:
            async with self._session.post(self._url, params=self._params, data=body, headers=headers) as resp:
                if 200 <= resp.status < 300:
                    await resp.read()
                    return _Reply(Outcome.OK, resp.status, "")
                text = (await resp.text(errors="replace"))[:2000].strip()
                retry_after = _retry_after(resp.headers.get("Retry-After"))
                return _Reply(_classify(resp.status), resp.status, text, retry_after)
        except (aiohttp.ClientError, TimeoutError, OSError) as exc:
            return _Reply(Outcome.RETRY, 0, f"{type(exc).__name__}: {exc}")


def _retry_after(value: str | None) -> float | None:
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        return None
