"""Quarantine: every message that could not be decoded, kept with its reason, never silently.

Records are aggregated in memory per (topic, reason) and flushed to the store once a
second, so a flood of garbage costs a dictionary update per message, not a disk write.
Topics are cut to the store's bound on arrival (memory between flushes is bounded too),
and the store keeps a bounded table; ``pruned`` counts the rows it let go.
"""

from __future__ import annotations

import logging
from collections import Counter
from dataclasses import dataclass

from hub.clock import Clock
from hub.records import QuarantineRecord
from hub.storage.store import QUARANTINE_TOPIC_CHARS, Store, cut_topic

log = logging.getLogger(__name__)

EXCERPT_BYTES = 256
#: Distinct (topic, reason) keys kept between flushes; past this, keys fold into one.
MAX_KEYS = 10_000
OVERFLOW_TOPIC = "*overflow*"


@dataclass(slots=True)
class _Pending:
    detail: str
    excerpt: bytes
    first_seen: float
    last_seen: float
    count: int


class Quarantine:
    def __init__(self, *, store: Store, clock: Clock | None = None) -> None:
        self._store = store
        #: The hub's clock: the store prunes rows by age on it (without one, by count only).
        self._clock = clock
        self._pending: dict[tuple[str, str], _Pending] = {}
        self.counts: Counter[str] = Counter()
        #: Rows the store pruned to keep its table bounded (oldest first), since start.
        self.pruned = 0

    def add(self, *, topic: str, reason: str, detail: str, payload: bytes, at: float) -> None:
        self.counts[reason] += 1
        if len(topic) > QUARANTINE_TOPIC_CHARS:
            # 10 000 keys of 65 000-character topics would be 650 MB before the next flush.
            topic, detail = cut_topic(topic, detail[:200])
        key = (topic, reason)
        entry = self._pending.get(key)
        if entry is None:
            if len(self._pending) >= MAX_KEYS:
                key = (OVERFLOW_TOPIC, reason)
                entry = self._pending.get(key)
            if entry is None:
                log.warning("quarantined message on %r: %s (%s)", topic[:200], reason, detail[:200])
                self._pending[key] = _Pending(detail, payload[:EXCERPT_BYTES], at, at, 1)
                return
        entry.count += 1
        entry.last_seen = at
        entry.detail = detail
        entry.excerpt = payload[:EXCERPT_BYTES]

    def flush(self) -> int:
        if not self._pending:
            return 0
        records = [
            QuarantineRecord(topic, reason, e.detail, e.excerpt, e.first_seen, e.last_seen, e.count)
            for (topic, reason), e in self._pending.items()
        ]
        self.pruned += self._store.add_quarantine(
            records, at=self._clock.now() if self._clock is not None else None
        )
        self._pending.clear()
        return len(records)
