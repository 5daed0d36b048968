"""The state port: where rules keep their memory between events, timers included.

Everything a rule remembers about one subject — the last notify of the merge window, the
start of a duration, an absence deadline, the events of a count window, the last numeric
value, whether it raised — is one :class:`Slot` under the key ``(rule_id, subject)``. A
slot's ``due`` is its timer: the port keeps an index of them so :meth:`StatePort.pop_due`
and :meth:`StatePort.next_due` are cheap.

The evaluator always ``put``\\ s a slot after changing it (and never changes a slot it does
not put), so an implementation may copy slots. :class:`MemoryState` keeps them in a dict,
tracks which keys changed since the last :meth:`MemoryState.drain_dirty` and can
:meth:`~MemoryState.snapshot` / :meth:`~MemoryState.restore` them as JSON-ready data.

Snapshot format (``version`` 1)::

    {"version": 1,
     "slots": [{"rule": "doors.entrance_held_open", "subject": "door-1",
                "state": {"trigger": "duration", "since": 1.8e9, "due": 1.8e9 + 300, ...}}, ...],
     "deleted": [["rule", "subject"], ...]}      # only in a partial snapshot of given keys
"""

from __future__ import annotations

import gc
import heapq
import logging
import sys
from collections.abc import Callable, Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from itertools import islice
from types import MappingProxyType
from typing import Any, cast

from mypy_extensions import mypyc_attr

log = logging.getLogger(__name__)

#: (rule id, subject id). Spelled as a tuple of any length on purpose: the compiled build
#: (hub/ingest/hot_path.py) holds a ``tuple[str, str]`` unboxed and makes a new tuple object each
#: time it stores one, so one key in the slot table, the timer heap and the dirty set was three
#: objects instead of one (+0.6 KB a reporting device; docs/benchmarks.md, "Twenty-sixth pass").
Key = tuple[str, ...]
#: JSON-ready data (what ``json.dumps`` / ``orjson.dumps`` accepts).
JsonDict = dict[str, Any]

SNAPSHOT_VERSION = 1

#: The parameters of a slot that has none: one read-only mapping shared by every such slot.
NO_PARAMS: Mapping[str, float] = MappingProxyType({})


def _no_params() -> Mapping[str, float]:
    return NO_PARAMS


@dataclass(frozen=True, slots=True)
class Rare:
    """A slot's fields that most slots never set: what a raised alert or a count window keeps.

    Held apart (:attr:`Slot.rare`, ``None`` while all four are at their defaults): an absence
    deadline or a battery threshold, most of the 2–3 × 10⁵ slots of 10⁵ reporting devices,
    never notifies, counts or keeps evidence, and four fields fewer make the compiled slot a
    128-byte block instead of 144 (docs/benchmarks.md, "Fortieth pass"). Read and written
    through :class:`Slot`'s properties of the same names. Frozen: a setter puts a new one in
    its slot, so a slot copied with ``copy.copy`` or ``dataclasses.replace`` (which share it)
    never changes with the other. Set only when an alert is raised, renotified or merged, or
    a count trigger's window moves: one small object then.
    """

    notified: float | None = None
    count: int = 0
    times: Sequence[float] = ()
    evidence: Sequence[JsonDict] = ()

    def unset(self) -> bool:
        """All four at their defaults (an empty ``times`` or ``evidence`` of any type counts
        as unset, as :meth:`Slot.to_json` leaves it out; a ``count`` of another type does not)."""
        count = self.count
        return (
            self.notified is None
            and count == 0
            and count.__class__ is int
            and not self.times
            and not self.evidence
        )


#: A slot's rare fields all at their defaults: what :meth:`Slot._held` reads while ``rare`` is ``None``.
_UNSET = Rare()


@dataclass(slots=True)
class Slot:
    """What one rule remembers about one subject. Fields unused by a trigger stay at defaults.

    ``times``, ``params`` and ``evidence`` are read-only types and start as one shared empty
    value: a trigger replaces them, never changes them in place. At 10⁵ devices a hub holds
    5 × 10⁵ slots, most of them with none of the three; an empty list or dict each was
    ≈ 200 B a slot (docs/benchmarks.md, "Ninth pass").

    ``notified``, ``count``, ``times`` and ``evidence`` are properties over :attr:`rare`, which
    is made anew when one of them is set (:class:`Rare` is frozen) and is ``None`` while all
    four are at their defaults. Construct a slot with them through
    :meth:`from_json`, or set them on it.

    ``seen`` is nearly always one event's identity, held as that string: the event's own
    ``ctx.ident``, shared by every slot the event touches. A list of its own per slot was
    ≈ 90 B a slot in service (docs/benchmarks.md, "Fourteenth pass"). Only events at the
    same time as the last applied one make it a tuple. :meth:`seen_idents` reads it as a list.
    """

    #: The trigger type that wrote it (a reload keeps slots only for the same type).
    trigger: str
    #: The newest event time applied; older events do not change the slot.
    last_ts: float | None = None
    #: Identities (``kind|value``) of the events applied at ``last_ts`` (redelivery guard): one
    #: as a ``str``, several (events at the same time) as a tuple, none as ``()``.
    seen: str | tuple[str, ...] = ()
    raised: bool = False
    #: When the state began (duration start, absence arm time, count raise time).
    since: float | None = None
    #: The timer: when :meth:`rules.evaluator.Evaluator.due` must look at this slot.
    due: float | None = None
    #: Last numeric value (threshold).
    value: float | None = None
    #: Parameters resolved for this subject when the state began (for timers and traces).
    params: Mapping[str, float] = field(default_factory=_no_params)
    #: ``notified``, ``count``, ``times`` and ``evidence`` when one of them is set (:class:`Rare`).
    rare: Rare | None = None
    #: :class:`MemoryState` bookkeeping (the earliest heap entry for this slot); never persisted.
    queued_due: float | None = field(default=None, repr=False, compare=False)

    def _held(self) -> Rare:
        """:attr:`rare`, or the one all-defaults :class:`Rare` (frozen, so it may be shared)."""
        rare = self.rare
        return _UNSET if rare is None else rare

    def _put(self, rare: Rare) -> None:
        """``rare`` in :attr:`rare`, or ``None`` when all four are at their defaults."""
        self.rare = None if rare.unset() else rare

    @property
    def notified(self) -> float | None:
        """The last time people were notified (merge window, renotify)."""
        rare = self.rare
        return None if rare is None else rare.notified

    @notified.setter
    def notified(self, value: float | None) -> None:
        # Stored as given, never narrowed to a float first: compiled, that would store a new
        # float object where the caller's (a due, an event's time) is shared.
        rare = self._held()
        self._put(Rare(value, rare.count, rare.times, rare.evidence))

    @property
    def count(self) -> int:
        """Occurrences since the alert was raised (merged events, renotifies)."""
        rare = self.rare
        return 0 if rare is None else rare.count

    @count.setter
    def count(self, value: int) -> None:
        rare = self._held()
        self._put(Rare(rare.notified, value, rare.times, rare.evidence))

    @property
    def times(self) -> Sequence[float]:
        """Times of recent matching events (count), newest last."""
        rare = self.rare
        return () if rare is None else rare.times

    @times.setter
    def times(self, value: Sequence[float]) -> None:
        rare = self._held()
        self._put(Rare(rare.notified, rare.count, value, rare.evidence))

    @property
    def evidence(self) -> Sequence[JsonDict]:
        """Summaries of the event(s) that caused the state (for traces)."""
        rare = self.rare
        return () if rare is None else rare.evidence

    @evidence.setter
    def evidence(self, value: Sequence[JsonDict]) -> None:
        rare = self._held()
        self._put(Rare(rare.notified, rare.count, rare.times, value))

    def seen_idents(self) -> list[str]:
        """``seen`` as a list, whichever way it is held (the stored JSON's form)."""
        seen = self.seen
        return [seen] if seen.__class__ is str else list(seen)

    def to_json(self) -> JsonDict:
        """The fields that differ from their defaults (in value or type), in :data:`STORED_ORDER`;
        the read-only ones (``times``, ``params``, ``evidence``) when not empty, as a list or dict.

        Spelled out field by field: the routine flush writes thousands of slots every few
        seconds, and a loop over ``fields()`` with ``getattr`` was most of its cost.
        """
        out: JsonDict = {"trigger": self.trigger}
        rare = self.rare
        if self.last_ts is not None:
            out["last_ts"] = self.last_ts
        if self.seen:
            out["seen"] = self.seen_idents()  # a list, as before seen was held as a string
        if self.raised is not False:
            out["raised"] = self.raised
        if self.since is not None:
            out["since"] = self.since
        if rare is not None and rare.notified is not None:
            out["notified"] = rare.notified
        if self.due is not None:
            out["due"] = self.due
        if self.value is not None:
            out["value"] = self.value
        if rare is not None:
            times = rare.times
            if times:
                out["times"] = list(times)
            count = rare.count
            if count != 0 or count.__class__ is not int:
                out["count"] = count
        params = self.params
        if params:
            out["params"] = dict(params)
        if rare is not None:
            evidence = rare.evidence
            if evidence:
                out["evidence"] = list(evidence)
        return out

    @classmethod
    def from_json(cls, doc: object, *, fresh: bool = False) -> Slot:
        """The slot of :meth:`to_json`; raises ``ValueError`` on malformed data (anything but an
        object included: callers hand over whatever a stored row decoded to).

        ``fresh``: ``doc`` was just parsed and nothing else holds it, so its lists and dicts
        are taken over instead of copied (a restart reads 10⁵ slots this way).
        """
        if not isinstance(doc, Mapping):
            raise ValueError(f"not a slot: a {type(doc).__name__}, not an object")
        if "queued_due" in doc:
            raise ValueError("not a slot: queued_due is not persisted")
        unknown = doc.keys() - _PERSISTED
        if unknown:
            raise ValueError(f"not a slot: unexpected field(s) {sorted(map(str, unknown))}")
        trigger = doc.get("trigger")
        if not isinstance(trigger, str):
            raise ValueError("a slot needs a trigger")
        # Every field is checked and given its declared type *before* the slot is built: the
        # compiled build (hub/ingest/hot_path.py) enforces the annotations when a value enters
        # the slot, and what a stored row decoded to is not ours to trust (JSON has lists for
        # tuples; a hand-edited or older row may hold anything).
        numbers = [_number(doc, name) for name in ("last_ts", "since", "notified", "due", "value")]
        raised = doc.get("raised", False)
        if raised.__class__ is not bool:
            if raised.__class__ is not int or raised not in (0, 1):
                raise ValueError(f"slot field raised must be true or false, got {raised!r}")
            raised = bool(raised)
        count = doc.get("count", 0)
        whole = count.__class__ is int or (count.__class__ is float and count.is_integer())
        if not whole:  # bool is not (its class is bool); inf and NaN are not integers
            raise ValueError(f"slot field count must be a whole number, got {count!r}")
        seen = doc.get("seen", ())
        if seen.__class__ is not str:
            if not isinstance(seen, list | tuple) or not all(i.__class__ is str for i in seen):
                raise ValueError(f"slot field seen must be a list of strings, got {seen!r}")
            seen = seen[0] if len(seen) == 1 else tuple(seen)
        # ``fresh``: the parsed document's own lists and dicts are taken over; anything else is
        # copied, so a slot never shares a mutable value with a document. Empty ones become the
        # shared empty values.
        times = doc.get("times", ())
        if not times:
            times = ()
        elif not (fresh and times.__class__ is list):
            times = list(times)
        params = doc.get("params", NO_PARAMS)
        if not params:
            params = NO_PARAMS
        elif not (fresh and params.__class__ is dict):
            params = dict(params)
        evidence = doc.get("evidence", ())
        if not evidence:
            evidence = ()
        elif not (fresh and evidence.__class__ is list and all(e.__class__ is dict for e in evidence)):
            evidence = [dict(e) for e in evidence]
        rare = Rare(numbers[2], int(count), times, evidence)
        return cls(
            # One copy of each trigger type's name across 10⁵ restored slots, not one per row (the
            # hub writes only its trigger types' names; a slot of another type is replaced on use).
            sys.intern(trigger),
            last_ts=numbers[0],
            seen=seen,
            raised=raised,
            since=numbers[1],
            due=numbers[3],
            value=numbers[4],
            params=params,
            rare=None if rare.unset() else rare,
        )


#: The fields a stored slot may have, in the order :meth:`Slot.to_json` writes them (the order
#: they were declared in before four of them moved to :class:`Rare`). ``queued_due`` is
#: bookkeeping, never persisted; ``rare`` is where four of these are held, not a field of its own.
STORED_ORDER = (
    *("trigger", "last_ts", "seen", "raised", "since", "notified", "due", "value"),
    *("times", "count", "params", "evidence"),
)
_PERSISTED = frozenset(STORED_ORDER)


#: Rule → the subjects marked, as a dict's keys (see ``MemoryState._dirty``).
Marks = dict[str, dict[str, None]]


def _mark(marks: Marks, key: Key) -> None:
    """Mark ``key`` in a rule → subjects table (:class:`MemoryState`'s dirty marks)."""
    subjects = marks.get(key[0])
    if subjects is None:
        subjects = marks[key[0]] = {}
    subjects[key[1]] = None


def _number(doc: Mapping[str, object], name: str) -> float | None:
    """``doc[name]`` as a slot's time or value: ``None`` or a number (an integer becomes a float)."""
    value = doc.get(name)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ValueError(f"slot field {name} must be a number, got {value!r}")
    return float(value)


@mypyc_attr(allow_interpreted_subclasses=True)
class StatePort:
    """Slots per (rule, subject) and the timer index over their ``due``.

    A base class every state implements, not a ``Protocol``: in the compiled build a call
    through a Protocol is a generic method call by name (a lookup, an argument tuple parsed
    by the callee's wrapper), through a native base class a vtable call. The rule engines
    call the port three to seven times an event (docs/benchmarks.md, "Twenty-eighth pass").
    """

    __slots__ = ()

    def get(self, key: Key) -> Slot | None:
        raise NotImplementedError

    def has(self, key: Key) -> bool:
        """Whether a slot is kept for ``key`` (without reading it)."""
        raise NotImplementedError

    def put(self, key: Key, slot: Slot, *, durable: bool = True) -> None:
        """Store the slot; its ``due`` becomes the key's timer (``None`` cancels it).

        ``durable=False`` marks a routine update (a deadman deadline moved on by another
        reading, a new last value with no change of alert state): it is persisted lazily, so
        a crash may lose a few seconds of them, never an alert-state change.
        """
        raise NotImplementedError

    def delete(self, key: Key) -> None:
        raise NotImplementedError

    def slot_keys(self) -> list[Key]:
        raise NotImplementedError

    def pop_due(self, now: float) -> list[Key]:
        """Remove and return, earliest first, the keys whose timer is due at or before ``now``.

        Each timer is returned once; the caller puts the slot back with its next ``due``.
        """
        raise NotImplementedError

    def next_due(self) -> float | None:
        raise NotImplementedError


def _queue(heap: list[tuple[float, str, str]], slot: Slot, rule: str, subject: str) -> None:
    """Queue ``slot``'s timer at ``slot.due``: the entry's due and ``slot.queued_due`` are that very object.

    Read here as an ``object``, never as a ``float`` narrowed by a test for ``None``: compiled,
    that is a C double and every store boxed it anew, a float per heap entry beside the slot's
    own (≈ 131 000 objects, 4 MB at 100 000 reporting devices; docs/benchmarks.md,
    "Thirty-eighth pass"). The heap is the same list, typed for the store (a cast converts nothing).
    """
    due: object = slot.due
    slot.queued_due = slot.due
    heapq.heappush(cast("list[tuple[object, str, str]]", heap), (due, rule, subject))


class MemoryState(StatePort):
    """A process-local :class:`StatePort` with dirty tracking and JSON snapshots.

    Slots are kept in one table per rule, keyed by subject: a table keyed by ``(rule,
    subject)`` held a key tuple per slot for as long as the slot lived (56 bytes; ≈ 17 MB for
    the 3 × 10⁵ slots of 100 000 reporting devices, docs/benchmarks.md, "Thirtieth pass"),
    where a subject's id is the registry's own string. The port still speaks in keys.

    Timers are a heap of ``(due, rule, subject)`` with lazy deletion. A slot's ``due`` is the truth;
    ``slot.queued_due`` remembers its earliest heap entry. A postponed timer keeps its old
    entry until that entry reaches the top, is found early and re-queued at the real time,
    so moving an absence deadline forward on every event costs no heap operation; entries
    whose slot is gone or no longer matches are skipped. ``restore`` rebuilds the heap
    with ``heapify`` (linear).

    Restored lazily (:meth:`restore_lazy`, the hub's restart), a slot stays the JSON text it
    was stored as until something reads it: at 10⁵ devices most slots are absence deadlines
    nobody touches for hours, and building them all cost ≈ 1.5 s of a restart and ≈ 80 MB
    (docs/benchmarks.md, "Seventh pass"). Their timers are in the heap from the start (the
    store hands each row's ``due`` over with it). A text that does not decode is dropped
    with a warning and deleted from the store, as if the rule had no memory of the subject.
    """

    def __init__(self) -> None:
        #: rule → subject → slot.
        self._slots: dict[str, dict[str, Slot]] = {}
        #: Restored slots not read yet: their stored JSON (see :meth:`restore_lazy`), rule →
        #: subject → text, and how many there are.
        self._raw: dict[str, dict[str, str | bytes]] = {}
        self._raw_count = 0
        #: The due each unread slot's restored heap entry carries, rule → subject → that very
        #: float: the slot read takes the entry as its own instead of queueing a second one.
        #: A second entry per restored timer was ≈ 94 000 stale tuples at 100 000 reporting
        #: devices (≈ 6 MB; docs/benchmarks.md, "Thirty-sixth pass").
        self._raw_due: dict[str, dict[str, float]] = {}
        #: Below this many unread rows, :meth:`_read` moves the rest into tables of their size.
        self._raw_compact_below = 0
        self._decode: Callable[[str | bytes], Any] | None = None
        #: ``(due, rule, subject)``: no key tuple held per timer (the entry would hold one).
        self._heap: list[tuple[float, str, str]] = []
        #: Changed since the last drain, rule → subjects: no key tuple held per mark either
        #: (3 × 10⁵ of them between two routine flushes). The subjects are a dict's keys, not a
        #: set: a set's table is twice a dict's for as many (16 bytes a slot, at most 60 % full;
        #: the marks of a burst of 101 300 reports were 6.3 MB as sets, docs/benchmarks.md,
        #: "Thirty-eighth pass").
        self._dirty: Marks = {}
        #: Only routine changes, persisted on a slower cadence (see ``put``).
        self._soft: Marks = {}

    def __len__(self) -> int:
        return sum([len(table) for table in self._slots.values()]) + self._raw_count

    def _slot(self, rule: str, subject: str) -> Slot | None:
        """The slot held for ``(rule, subject)`` (read already), or ``None``."""
        table = self._slots.get(rule)
        return None if table is None else table.get(subject)

    def _unread(self, rule: str, subject: str) -> bool:
        table = self._raw.get(rule)
        return table is not None and subject in table

    # -- the port -------------------------------------------------------------------------

    def get(self, key: Key) -> Slot | None:
        table = self._slots.get(key[0])
        slot = None if table is None else table.get(key[1])
        if slot is None and self._raw_count:
            return self._read(key)
        return slot

    def has(self, key: Key) -> bool:
        return self._slot(key[0], key[1]) is not None or (
            self._raw_count > 0 and self._unread(key[0], key[1])
        )

    def put(self, key: Key, slot: Slot, *, durable: bool = True) -> None:
        self._keep(key, slot)
        if self._raw_count:
            self._take_raw(key)  # replaced unread: the stored text is stale now
        _mark(self._dirty if durable else self._soft, key)
        due = slot.due
        if due is not None:
            queued = slot.queued_due
            if queued is None or queued > due:
                _queue(self._heap, slot, key[0], key[1])
                if len(self._heap) > 2 * len(self) + 1024:
                    self._rebuild()

    def delete(self, key: Key) -> None:
        table = self._slots.get(key[0])
        if (table is not None and table.pop(key[1], None) is not None) or (
            self._raw_count and self._take_raw(key) is not None
        ):
            _mark(self._dirty, key)

    def slot_keys(self) -> list[Key]:
        keys: list[Key] = [(rule, subject) for rule, table in self._slots.items() for subject in table]
        keys.extend([(rule, subject) for rule, table in self._raw.items() for subject in table])
        return keys

    def pop_due(self, now: float) -> list[Key]:
        fired: list[Key] = []
        heap = self._heap
        while heap and heap[0][0] <= now:
            due, rule, subject = heapq.heappop(heap)
            slot = self._slot(rule, subject)
            if slot is None and self._raw_count:
                slot = self._read((rule, subject))
            if slot is None or slot.queued_due != due:
                continue  # stale: the slot is gone or has an earlier entry
            slot.queued_due = None
            real = slot.due
            if real is None:
                continue  # cancelled
            if real != due:
                _queue(heap, slot, rule, subject)  # postponed: re-queue at the real time
                continue
            fired.append((rule, subject))
        return fired

    def queued_count(self) -> int:
        """Entries in the timer heap, stale ones included: what the timers hold in memory."""
        return len(self._heap)

    def next_due(self) -> float | None:
        heap = self._heap
        while heap:
            due, rule, subject = heap[0]
            slot = self._slot(rule, subject)
            if slot is None and self._raw_count:
                slot = self._read((rule, subject))
                if slot is not None:
                    # Look at the top again: the read may have queued an entry of its own in
                    # front of this one (a stored due later than the JSON's), and popping the
                    # top now would pop that entry, leaving the timer none.
                    continue
            if slot is None or slot.queued_due != due:
                heapq.heappop(heap)
                continue
            real = slot.due
            if real is None:
                slot.queued_due = None
                heapq.heappop(heap)
                continue
            if real != due:
                heapq.heappop(heap)
                _queue(heap, slot, rule, subject)
                continue
            return due
        return None

    def _rebuild(self) -> None:
        # A slot not read yet has exactly one entry, the one it was restored with: keep it.
        # Read as objects: compiled, an entry typed ``tuple[float, str, str]`` is unpacked to a C
        # double and boxed anew when kept, undoing the restored entries' sharing (see ``_queue``).
        old = cast("list[tuple[object, str, str]]", self._heap)
        entries: list[tuple[object, str, str]] = (
            [entry for entry in old if self._unread(entry[1], entry[2])] if self._raw_count else []
        )
        heap = cast("list[tuple[float, str, str]]", entries)
        for rule, table in self._slots.items():
            for subject, slot in table.items():
                # Never ``slot.due`` tested for None and then stored: see :func:`_queue`.
                due: object = slot.due
                slot.queued_due = slot.due
                if due is not None:
                    entries.append((due, rule, subject))
        heapq.heapify(heap)
        self._heap = heap

    def _decoded(self, key: Key, doc: object, *, fresh: bool) -> Slot | None:
        """``doc`` as a slot, or ``None``: a row that is not one is dropped and deleted.

        One damaged row must not stop a rule for everyone, nor the hub's start: the rule
        forgets the subject (as if it had no memory of it), and the next flush deletes the row.
        """
        try:
            return Slot.from_json(doc, fresh=fresh)
        except (ValueError, TypeError) as exc:
            log.warning("rule state of %s for %s dropped: %s", key[0], key[1], exc)
            _mark(self._dirty, key)
            return None

    def _take_due(self, key: Key) -> float | None:
        """The due of an unread slot's restored heap entry, taken out (``None``: it has none)."""
        table = self._raw_due.get(key[0])
        return None if table is None else table.pop(key[1], None)

    def _take_raw(self, key: Key) -> str | bytes | None:
        """A restored slot's text, taken out of the unread ones (``None``: there is none)."""
        self._take_due(key)
        raw = self._raw
        table = raw.get(key[0])
        if table is None or key[1] not in table:
            return None
        # Counted out even if the row held no text (never from the state file, whose column is
        # NOT NULL): such a row is gone once asked for, as before.
        text = table.pop(key[1])
        self._raw_count -= 1
        if self._raw_count < self._raw_compact_below:
            # A dict's table never shrinks on deletion: once every device has reported, the
            # 10⁵ rows' tables (≈ 10 MB at 100 000 devices) would stay, empty, for the life of
            # the process. Each time three quarters are read, the rest move to tables of their size.
            self._raw = {rule: dict(rows) for rule, rows in raw.items() if rows}
            self._raw_due = {rule: dict(dues) for rule, dues in self._raw_due.items() if dues}
            self._raw_compact_below = self._raw_count // 4
        return text

    def _read(self, key: Key) -> Slot | None:
        """A restored slot's first read: its stored text becomes a :class:`Slot`."""
        restored = self._take_due(key)  # before the text: taking that drops it
        text = self._take_raw(key)
        if text is None:
            return None
        assert self._decode is not None
        try:
            doc = self._decode(text)
        except (ValueError, TypeError):  # not JSON (decoders raise ValueError): dropped below
            doc = None
        slot = self._decoded(key, doc, fresh=True)
        if slot is None:
            return None
        self._keep(key, slot)
        due = slot.due
        if due is None:
            return slot  # no timer: a restored entry, were there one, is skipped as stale
        # The restored entry is this timer's, as ``put`` would have queued it: the store's due
        # is the JSON's (a column SQLite generates from it), so they can differ only in the last
        # digit of SQLite's own text-to-double parse. A later due is a postponed timer
        # (re-queued when the entry comes up), an earlier one needs an entry of its own; either
        # way no timer waits on a stale entry. Stored before ``restored`` is narrowed: compiled,
        # a narrowed float is a C double and would be boxed anew (one more float per timer).
        slot.queued_due = restored
        if restored is not None and restored <= due:
            if restored == due:
                # The row's float for the slot's due as well, not an equal one the JSON decoded
                # (two objects per restored timer; docs/benchmarks.md, "Thirty-eighth pass").
                # From the attribute, not the narrowed local: compiled, that would box anew.
                slot.due = slot.queued_due
            return slot
        _queue(self._heap, slot, key[0], key[1])
        return slot

    def replace_subjects(
        self, subjects: Collection[str], rows: Iterable[tuple[str, str, Mapping[str, Any] | None]]
    ) -> None:
        """Drop every slot of ``subjects`` and hold ``rows`` for them instead; nothing becomes
        dirty but a row that is not a slot (dropped and deleted: the subject is this hub's now).

        For a hub that shares subjects with others (a cluster): what it drops is another
        node's to persist, and ``rows`` were just read from the store.
        """
        wanted = frozenset(subjects)
        for table in self._slots.values():
            for subject in [s for s in table if s in wanted]:
                del table[subject]
        for rows_of_rule in self._raw.values():
            for subject in [s for s in rows_of_rule if s in wanted]:
                del rows_of_rule[subject]
                self._raw_count -= 1
        for dues in self._raw_due.values():
            for subject in [s for s in dues if s in wanted]:
                del dues[subject]
        for marks in (self._dirty, self._soft):
            for marked in marks.values():
                for subject in [s for s in marked if s in wanted]:
                    del marked[subject]
        for rule, subject, state in rows:
            if subject in wanted:
                key = (rule, subject)
                if (slot := self._decoded(key, state, fresh=False)) is not None:
                    self._keep(key, slot)
        self._rebuild()

    def _keep(self, key: Key, slot: Slot) -> None:
        """Hold ``slot`` for ``key`` without marking anything (``put`` marks; restores do not)."""
        table = self._slots.get(key[0])
        if table is None:
            table = self._slots[key[0]] = {}
        table[key[1]] = slot

    # -- persistence helpers ----------------------------------------------------------------

    def drain_dirty(self, *, include_routine: bool = False) -> set[Key]:
        """Keys written or deleted since the last call (persist ``snapshot(keys)`` of them).

        Routine updates (``put(..., durable=False)``) are included only when asked for.
        """
        dirty, self._dirty = self._dirty, {}
        if include_routine:
            for rule, subjects in self._soft.items():
                if rule in dirty:
                    dirty[rule].update(subjects)
                else:
                    dirty[rule] = subjects
            self._soft = {}
        else:
            soft = self._soft
            for rule, subjects in dirty.items():
                routine = soft.get(rule)
                if routine:
                    for subject in subjects:
                        routine.pop(subject, None)
        return {(rule, subject) for rule, subjects in dirty.items() for subject in subjects}

    def dirty_count(self) -> int:
        """How many keys are marked, routine ones included (a key marked both ways counts twice)."""
        return sum([len(marks) for marks in self._dirty.values()]) + sum(
            [len(marks) for marks in self._soft.values()]
        )

    def take_dirty(self, limit: int) -> list[Key]:
        """Up to ``limit`` marked keys, routine ones included, taken out of the marks.

        :meth:`drain_dirty` in pieces: a key tuple is made only for the keys taken. Draining
        the 2 × 10⁵ marks of a burst at once held as many tuples (≈ 20 MB at 100 000 devices)
        for as long as their rows took to write (docs/benchmarks.md, "Thirty-fifth pass").
        """
        keys: list[Key] = []
        soft = self._soft
        for marks, durable in ((self._dirty, True), (soft, False)):
            for rule in list(marks):
                subjects = marks[rule]
                routine = soft.get(rule) if durable else None
                # Oldest first (a dict keeps the order of marking): a slice taken from the newest
                # end would leave the oldest marks behind for as long as new ones keep coming.
                for subject in list(islice(subjects, limit - len(keys))):
                    del subjects[subject]
                    if routine:
                        routine.pop(subject, None)  # written now: not again as a routine change
                    keys.append((rule, subject))
                if not subjects:
                    del marks[rule]
                if len(keys) >= limit:
                    return keys
        return keys

    def mark_dirty(self, keys: Iterable[Key]) -> None:
        """Keys a writer drained but could not write: they go out with the next flush."""
        for key in keys:
            _mark(self._dirty, key)

    def snapshot(self, keys: Iterable[Key] | None = None) -> JsonDict:
        """All slots, or just ``keys`` (then keys without a slot are listed as ``deleted``)."""
        if keys is None:
            unread: list[Key] = [(rule, subject) for rule, table in self._raw.items() for subject in table]
            for each in unread:
                self._read(each)
            chosen: list[tuple[Key, Slot]] = [
                ((rule, subject), slot)
                for rule, table in self._slots.items()
                for subject, slot in table.items()
            ]
            deleted: list[list[str]] = []
        else:
            chosen = []
            deleted = []
            for key in keys:
                slot = self.get(key)
                if slot is None:
                    deleted.append([key[0], key[1]])
                else:
                    chosen.append((key, slot))
        slots = [{"rule": key[0], "subject": key[1], "state": slot.to_json()} for key, slot in chosen]
        doc: JsonDict = {"version": SNAPSHOT_VERSION, "slots": slots}
        if deleted:
            doc["deleted"] = deleted
        return doc

    @classmethod
    def restore(cls, snapshot: Mapping[str, Any]) -> MemoryState:
        """A state holding the snapshot's slots and timers; nothing is dirty afterwards."""
        if snapshot.get("version") != SNAPSHOT_VERSION:
            raise ValueError(f"unsupported state snapshot version {snapshot.get('version')!r}")
        return cls.restore_rows(
            (row["rule"], row["subject"], row["state"]) for row in snapshot.get("slots", ())
        )

    @classmethod
    def restore_rows(
        cls,
        rows: Iterable[tuple[str, str, Mapping[str, Any] | None]],
        *,
        fresh: bool = False,
        names: dict[str, str] | None = None,
    ) -> MemoryState:
        """Restore from ``(rule, subject, state)`` rows, e.g. read back from a table.

        ``fresh``: each state was just parsed for this call (:meth:`Slot.from_json`). A state
        that is not a slot (``None`` for a row that was not JSON) is dropped with a warning and
        marked for deletion, as in :meth:`restore_lazy`: only that subject's memory is lost.
        ``names``: as in :meth:`restore_lazy`.
        """
        state = cls()
        keep = state._keep
        decoded = state._decoded
        names = {} if names is None else names
        # Building ~10⁵ long-lived objects would trigger many useless GC passes: pause it.
        was_enabled = gc.isenabled()
        gc.disable()
        try:
            for rule, subject, doc in rows:
                text = str(subject)
                key = (str(rule), names.setdefault(text, text))
                if (slot := decoded(key, doc, fresh=fresh)) is not None:
                    keep(key, slot)
        finally:
            if was_enabled:
                gc.enable()
        state._rebuild()
        return state

    @classmethod
    def restore_lazy(
        cls,
        rows: Iterable[tuple[str, str, str | bytes, object]],
        *,
        decode: Callable[[str | bytes], Any],
        names: dict[str, str] | None = None,
    ) -> MemoryState:
        """Restore from ``(rule, subject, state JSON, due)`` rows without reading the slots yet.

        ``due`` is the JSON's ``due`` as the store extracted it (anything but a number: no
        timer). Each slot is decoded with ``decode`` when it is first read (:meth:`get`, a timer
        coming due, :meth:`snapshot`); nothing is dirty afterwards.

        ``names``: the subject ids the caller already holds, each mapped to itself (the
        registry's device ids). A row's subject becomes that copy, and a subject the mapping
        lacks is added once: the database hands each row a string of its own, and a device has
        three or four rows whose keys live as long as the process (≈ 22 MB at 100 000 devices).
        """
        state = cls()
        state._decode = decode
        raw = state._raw
        # The same lists, typed for the stores below (a cast: nothing is converted).
        raw_due = cast("dict[str, dict[str, object]]", state._raw_due)
        heap = state._heap
        entries = cast("list[tuple[object, str, str]]", heap)
        rules: dict[str, str] = {}  # one copy of each rule id across 10⁵ keys
        names = {} if names is None else names
        count = 0
        # The previous row's due, as the object the entries hold: timers armed at one instant
        # (the deadlines a first start seeds, a rule's at a reload) have equal dues, and each
        # row hands over a float of its own (≈ 126 000 at 100 000 devices, 4 MB;
        # docs/benchmarks.md, "Thirty-eighth pass"). The store gives a rule's rows together.
        last: object = None
        for row_rule, subject, text, due in rows:
            rule = rules.setdefault(row_rule, row_rule)
            name = names.setdefault(subject, subject)
            table = raw.get(rule)
            if table is None:
                table = raw[rule] = {}
            if name not in table:
                count += 1
            table[name] = text
            if due.__class__ is float or due.__class__ is int:  # not bool, not text
                # One object for the entry and the dues' table, the row's own float: typed
                # ``object`` on purpose (compiled, a ``float`` local is a C double, boxed anew
                # at each store; docs/benchmarks.md, "Thirty-sixth pass").
                queued: object = due  # not narrowed to ``float``: that would unbox it
                if due.__class__ is int:
                    queued = float(due)
                if queued == last:
                    queued = last
                else:
                    last = queued
                entries.append((queued, rule, name))
                dues = raw_due.get(rule)
                if dues is None:
                    dues = raw_due[rule] = {}
                dues[name] = queued
            else:
                dues = raw_due.get(rule)
                if dues is not None:
                    dues.pop(name, None)  # a repeated row without a timer: no restored entry to claim
        heapq.heapify(heap)
        state._raw_count = count
        state._raw_compact_below = count // 4
        return state
