"""The last known state of every device that reported: last seen, online, battery, signal.

Kept in memory on the hot path (a dict update per event).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import cast

from adapters.events import WHOLE_READINGS, Event, EventKind
from hub.steps import Steps, run_through
from rules.subject import Subject

# Members read per event, as module constants: on CPython 3.11 every ``EnumClass.MEMBER``
# read goes through ``EnumType.__getattr__``'s slow hook (≈ 180 ns; gone in 3.12).
_OFFLINE = EventKind.OFFLINE
_BATTERY = EventKind.BATTERY
_SIGNAL = EventKind.SIGNAL
_BATTERY_KIND = _BATTERY.value
_SIGNAL_KIND = _SIGNAL.value
_DOOR_OPEN_EVENT = EventKind.DOOR_OPEN
_DOOR_OPEN = EventKind.DOOR_OPEN.value
_DOOR_CLOSED = EventKind.DOOR_CLOSED.value
#: "Not yet": before any time (one shared object).
NEVER = float("-inf")
#: The ring's placeholder for attributes not written yet (shared, never read or mutated).
_NO_ATTRS: Mapping[str, float | bool | str] = {}


#: What a device state keeps of an event: its time, or its value.
Reading = float | bool | str | None
#: Kinds whose last ``(ts, value)`` a device state holds in fields of its own; the rest go to
#: a list (:attr:`DeviceState.more`). Four: a door's open and closed, its battery and signal.
INLINE_KINDS = 4


@dataclass(slots=True)
class DeviceState:
    """The last known state of one device. Its id is where it is held (its registry subject, or
    the key of :class:`DeviceStates`' table), not a field: 16 bytes a reporting device
    (docs/benchmarks.md, "Thirty-eighth pass")."""

    last_seen: float
    family: str
    #: The last event of each kind the device reported: ``kinds`` (the kinds' values, first
    #: reported first) and, for each in that order, its ``ts`` and ``value``: the first
    #: :data:`INLINE_KINDS` in the fields ``t0, v0 … t3, v3``, any after them in ``more``
    #: (``ts, value, ts, value …``). Read through :attr:`last`, :attr:`values` and :meth:`last_ts`.
    #:
    #: Not a dict of ``(ts, value)`` tuples: that was ≈ 350 bytes a reporting device (the dict,
    #: its table and a tuple per kind). Not a list either, as it was until the thirty-eighth
    #: pass: a list object and its array were 128 bytes a device beside the state, where eight
    #: fields here are 64 (docs/benchmarks.md, "Thirty-eighth pass"). ``kinds`` is one tuple
    #: shared by every device that reported the same kinds (``DeviceStates._shared_kinds``),
    #: and an event updates its fields in place (no tuple made per event).
    kinds: tuple[str, ...]
    online: bool = True
    #: When the device's last battery, signal and heartbeat point was charted (the pipeline's
    #: health-series throttle). Here, not in a table per kind keyed by device id: those three
    #: tables were ≈ 7 MB more at 100 000 devices (docs/benchmarks.md, "Seventeenth pass").
    #: The charted event's own ``ts``, not the next due time: a sum would be a float object of
    #: its own per kind and device (≈ 10 MB at 100 000), where ``ts`` is the one the report's
    #: events, ``last_seen`` and ``last`` already share.
    battery_charted: float = NEVER
    signal_charted: float = NEVER
    heartbeat_charted: float = NEVER
    t0: Reading = None
    v0: Reading = None
    t1: Reading = None
    v1: Reading = None
    t2: Reading = None
    v2: Reading = None
    t3: Reading = None
    v3: Reading = None
    more: list[Reading] | None = None

    @property
    def values(self) -> list[Reading]:
        """``ts, value`` of each kind in ``kinds``, in that order (a copy)."""
        return [self.at(i) for i in range(2 * len(self.kinds))]

    def at(self, i: int) -> Reading:
        """Position ``i`` of :attr:`values`: the ``ts`` (even) or ``value`` (odd) of kind ``i // 2``."""
        if i < 4:
            if i < 2:
                return self.t0 if i == 0 else self.v0
            return self.t1 if i == 2 else self.v1
        if i < 8:
            if i < 6:
                return self.t2 if i == 4 else self.v2
            return self.t3 if i == 6 else self.v3
        more = self.more
        if more is None:
            raise IndexError(i)
        return more[i - 8]

    def keep(self, k: int, ts: Reading, value: Reading) -> None:
        """The last ``ts`` and ``value`` of kind ``k`` (its position in ``kinds``; a new kind's is
        ``len(kinds)`` before it is added). Stored as given: compiled, a narrowed float would be
        boxed anew."""
        if k < 2:
            if k == 0:
                self.t0, self.v0 = ts, value
            else:
                self.t1, self.v1 = ts, value
        elif k < INLINE_KINDS:
            if k == 2:
                self.t2, self.v2 = ts, value
            else:
                self.t3, self.v3 = ts, value
        else:
            at = 2 * (k - INLINE_KINDS)
            more = self.more
            if more is None or at >= len(more):
                # A new kind past the fields: the list grows to exactly its size (no spare slots).
                self.more = [ts, value] if more is None else [*more, ts, value]
            else:
                more[at] = ts
                more[at + 1] = value

    @property
    def last(self) -> dict[str, tuple[float, object]]:
        """Kind → ``(ts, value)`` of the device's last event of that kind (a copy)."""
        # The even positions hold the events' ts (floats); their type cannot say so.
        return {kind: (self.at(2 * i), self.at(2 * i + 1)) for i, kind in enumerate(self.kinds)}  # type: ignore[misc]

    @property
    def battery(self) -> float | None:
        """The device's last battery reading (%), if it was a number."""
        return _number(self, _BATTERY_KIND)

    @property
    def signal(self) -> float | None:
        """The device's last signal reading, if it was a number."""
        return _number(self, _SIGNAL_KIND)

    def last_ts(self, kind: str) -> float | None:
        """When the device's last event of ``kind`` (an ``EventKind`` value) happened, if any."""
        i = _position(self.kinds, kind)
        if i < 0:
            return None
        return self.at(2 * i)  # type: ignore[return-value]  # an even position: a ts


def _number(state: DeviceState, kind: str) -> float | None:
    """The last value of ``kind`` if it is a float (read, not kept a second time).

    Battery and signal were fields of their own, set on every such reading: compiled, each
    store boxed the value anew, two float objects a reporting device beside the ones in
    ``values`` (≈ 6 MB at 100 000 devices; docs/benchmarks.md, "Twenty-ninth pass").
    """
    i = _position(state.kinds, kind)
    if i < 0:
        return None
    value = state.at(2 * i + 1)
    return value if isinstance(value, float) else None


def _position(kinds: tuple[str, ...], kind: str) -> int:
    """Where ``kind`` is in ``kinds``, or -1: ``tuple.index`` in a loop of the module's own.

    Compiled, ``kinds.index(kind)`` was a generic method call by name, ≈ 400 instructions, for
    every event (docs/benchmarks.md, "Twenty-eighth pass"); a device has a few kinds.
    """
    for i in range(len(kinds)):
        if kinds[i] == kind:
            return i
    return -1


#: How many distinct ``DeviceState.kinds`` tuples are shared (see ``DeviceStates._shared_kinds``).
_KINDS_LIMIT = 4096
#: How many one-attribute dicts the ring shares (see ``DeviceStates._shared_attrs``); past
#: this many it starts over. A battery report's ``{"volts": v}`` is most of them: a fleet's
#: voltages take a few hundred values.
_ATTRS_LIMIT = 2048


#: A device is considered offline after this many missed heartbeat intervals (handbook §5).
OFFLINE_AFTER_HEARTBEATS = 2.0


def is_online(state: DeviceState | None, heartbeat_s: float | None, now: float) -> bool | None:
    """Online at ``now``: it said so last and has not missed two heartbeats (``None``: never heard)."""
    if state is None:
        return None
    if not state.online:
        return False
    return not (heartbeat_s is not None and now - state.last_seen > OFFLINE_AFTER_HEARTBEATS * heartbeat_s)


#: Recent events kept for ``GET /api/events``: one ring for all devices, so memory stays
#: bounded whatever the number of devices (history lives in the time-series store).
RECENT_EVENTS = 50_000
#: Ring entries a walk looks at between two turns of the loop (:meth:`DeviceStates.event_steps`).
ENTRIES_PER_STEP = 2048


class DeviceStates:
    """Every reporting device's :class:`DeviceState`, and the ring of recent events.

    A registered device's state is held on its registry subject (``Subject.state``), found
    by ``subjects`` (the registry's lookup of registered devices); a device the registry does
    not know (a stranger, a group of them) has its state in a table here. A table keyed by
    device id for all of them was 3.8 MB at 10⁵ reporting devices, beside the registry's own
    (docs/benchmarks.md, "Thirty-eighth pass").
    """

    def __init__(
        self, *, recent: int = RECENT_EVENTS, subjects: Callable[[str], Subject | None] | None = None
    ) -> None:
        #: States of devices without a registry subject (see the class).
        self._states: dict[str, DeviceState] = {}
        self._subjects = subjects
        #: States held, here and on subjects.
        self._count = 0
        # The ring keeps each event's fields in columns, not the events. Strings, numbers and
        # an attrs dict of them are nothing the cyclic collector tracks; an ``Event`` (or a
        # tuple, until a collection has looked at it) is. Under load the ring turns over every
        # few seconds while keeping the collector's allocation count flat (one in, one out),
        # so its 50 000 young events were what young collections walked: stalls of the event
        # loop of 10–80 ms at 10 000 msg/s (docs/benchmarks.md, "Nineteenth pass").
        # Lists written in place at a cursor, not deques: compiled (hub.ingest.hot_path), a
        # list store is native while each ``deque.append`` is a method call looked up by name,
        # six an event ("Twenty-seventh pass"). Unwritten slots hold placeholders never read.
        if recent < 1:
            raise ValueError("recent must be at least 1")
        self._device_ids: list[str] = [""] * recent
        self._kinds: list[EventKind] = [_OFFLINE] * recent
        self._times: list[float] = [NEVER] * recent
        self._families: list[str] = [""] * recent
        self._values: list[float | bool | str | None] = [None] * recent
        self._attrs: list[Mapping[str, float | bool | str]] = [_NO_ATTRS] * recent
        #: Where the next event goes, and how many slots hold one (at most ``recent``).
        self._next = 0
        self._held = 0
        #: Events recorded since the start: a walk that waited knows what was written over.
        self._written = 0
        #: Every distinct ``DeviceState.kinds`` tuple, so equal ones are one object. Bounded: a
        #: native device may list its events' kinds in any order; past the limit a tuple is not
        #: shared (still correct, only not smaller).
        self._kinds_seen: dict[tuple[str, ...], tuple[str, ...]] = {}
        #: One-attribute dicts the ring holds instead of equal ones: attribute name → the
        #: value → ``{name: value}`` (see :meth:`_shared_attrs`).
        self._attrs_seen: dict[str, dict[object, dict[str, object]]] = {}
        self._attrs_held = 0
        #: The last event's time, and the one object ``values`` hold it as (see :meth:`record`).
        self._stamp_of = NEVER
        self._stamp: float | None = NEVER

    @property
    def stamp(self) -> float | None:
        """The last recorded event's time as the one object the device states hold it as: the
        rules keep it too (:meth:`rules.evaluator.Evaluator.on_event`), not an object of theirs."""
        return self._stamp

    def _shared_kinds(self, kinds: tuple[str, ...]) -> tuple[str, ...]:
        seen = self._kinds_seen
        shared = seen.get(kinds)
        if shared is not None:
            return shared
        if len(seen) < _KINDS_LIMIT:
            seen[kinds] = kinds
        return kinds

    def _shared_attrs(self, attrs: dict[str, object]) -> dict[str, object]:
        """``attrs`` (one attribute), or the equal dict the ring already holds for another event.

        A battery report's attributes are ``{"volts": v}``, a dict of its own per event: a
        third of the ring's 50 000 entries at 10⁵ reporting devices, 3.5 MB (docs/benchmarks.md,
        "Fortieth pass"). A held dict is given only for the very same value object, never for
        an equal one: the adapters share common readings as one object each
        (``adapters._json``), and identity never mistakes ``1.0`` for ``True`` nor ``0.0`` for
        ``-0.0``. Looked up by the value (a float hashes cheaply; ``id()`` made an int object
        per call), then checked for identity; the held dict holds its value, so that object
        lives as long as the entry. Nothing changes a ring entry's attributes, nor those of
        the events :meth:`events` rebuilds from it. Typed ``object``: compiled, a loop over
        values of a declared type checks each one's type, and raises for any other.
        """
        for name, value in attrs.items():
            by_value = self._attrs_seen.get(name)
            if by_value is None:
                by_value = self._attrs_seen[name] = {}
            try:
                held = by_value.get(value)
            except TypeError:  # a value no adapter makes (a list): kept as the event's own
                return attrs
            if held is not None and held[name] is value:
                return held
            if self._attrs_held >= _ATTRS_LIMIT:
                self._attrs_seen.clear()
                self._attrs_held = 0
                by_value = self._attrs_seen[name] = {}
            if held is None:
                self._attrs_held += 1
            by_value[value] = attrs  # an equal value of another object: the newest wins
        return attrs

    def record(self, event: Event, subject: Subject | None = None) -> DeviceState:
        """Keep the event in the ring and in its device's state; returns that state.

        ``subject``: the registry's subject of ``event.device_id`` when the caller has it (the
        pipeline does); a registered one holds the state (see the class).
        """
        at = self._next
        self._device_ids[at] = event.device_id
        self._kinds[at] = event.kind
        self._times[at] = event.ts
        self._families[at] = event.family
        self._values[at] = event.value
        attrs = event.attrs
        # Only a plain dict (what the adapters make): compiled, its items are read natively.
        if attrs.__class__ is dict and len(attrs) == 1:
            attrs = cast(
                "Mapping[str, float | bool | str]", self._shared_attrs(cast("dict[str, object]", attrs))
            )
        self._attrs[at] = attrs
        at += 1
        size = len(self._times)
        self._next = at if at < size else 0
        if self._held < size:
            self._held += 1
        self._written += 1
        kind = event.kind
        key = kind._value_  # _value_: Enum.value is a slow property
        ts = event.ts
        # The time as one object for every event of the report: compiled, ``event.ts`` is a C
        # double and each store into ``values`` boxed it anew, three float objects a reporting
        # device where one does (docs/benchmarks.md, "Twenty-ninth pass"). Read from the
        # attribute, never from a narrowed local: that would box again.
        if ts != self._stamp_of:
            self._stamp_of = ts
            self._stamp = ts
        stamp = self._stamp
        registered = self._holder(subject)
        state: DeviceState | None = (
            registered.state if registered is not None else self._states.get(event.device_id)
        )
        if state is None:
            state = DeviceState(ts, event.family, ())
            if registered is not None:
                object.__setattr__(registered, "state", state)  # frozen: a memo, as ``Subject.plans``
            else:
                self._states[event.device_id] = state
            self._count += 1
        elif ts > state.last_seen:
            state.last_seen = ts
        # Held as the union (an object, compiled): a ``float`` local would be a C double, boxed
        # anew when stored.
        value: float | bool | str | None = event.value
        if type(value) is float:  # not a subclass (numpy's float64): that type is kept
            whole = _whole(value)
            if whole is not None:
                value = whole  # type: ignore[assignment]  # an equal float; see _whole
        i = _position(state.kinds, key)
        if i < 0:  # the device's first event of this kind
            i = len(state.kinds)
            state.kinds = self._shared_kinds((*state.kinds, key))
        state.keep(i, stamp, value)
        state.online = kind is not _OFFLINE
        return state

    def events(
        self,
        device_id: str | None = None,
        *,
        limit: int = 100,
        offset: int = 0,
        include: Callable[[str], bool] | None = None,
    ) -> list[Event]:
        """Most recent first; ``include(device_id)`` narrows to the devices a reader may see."""
        return run_through(self.event_steps(device_id, limit=limit, offset=offset, include=include))

    def event_steps(
        self,
        device_id: str | None = None,
        *,
        limit: int = 100,
        offset: int = 0,
        include: Callable[[str], bool] | None = None,
        entries_per_step: int = ENTRIES_PER_STEP,
    ) -> Steps[list[Event]]:
        """:meth:`events`, yielding after every ``entries_per_step`` entries looked at.

        A reader whose devices are rare in the ring, or who pages far back, makes the walk look
        at all 50 000 entries: 70–150 ms in one go on the loop that takes SOS presses
        (docs/benchmarks.md, "Twenty-seventh pass"). Events recorded while the walk waits are
        not in its page (it lists the ring as it was asked); those they pushed out of the ring
        end the page early, as they would have ended a later read.
        """
        found: list[Event] = []
        skipped = 0
        size = len(self._times)
        at = self._next
        written = self._written
        #: Entries still as they were asked for: those the events recorded meanwhile wrote over
        #: are not looked at.
        intact = self._held
        for looked in range(self._held):  # newest first: backwards from the cursor, wrapping
            if looked and looked % entries_per_step == 0:
                yield
                intact = min(intact, size - (self._written - written))
            if looked >= intact:
                break
            at = at - 1 if at else size - 1
            entry_device = self._device_ids[at]
            if device_id is not None and entry_device != device_id:
                continue
            if include is not None and not include(entry_device):
                continue
            if skipped < offset:
                skipped += 1
                continue
            found.append(
                Event(
                    entry_device,
                    self._kinds[at],
                    self._times[at],
                    self._families[at],
                    self._values[at],
                    self._attrs[at],
                )
            )
            if len(found) >= limit:
                break
        return found

    def door_unchanged(self, event: Event, subject: Subject | None = None) -> bool:
        """Whether ``event`` (a door's open or closed) says what the device's last door event
        said: a report repeating the state (Zigbee2MQTT sends ``contact`` with every battery or
        link report), not an opening or a closing. Unknown state (a first event, a restart) is
        a change."""
        registered = self._holder(subject)
        state = registered.state if registered is not None else self._states.get(event.device_id)
        if state is None:
            return False
        # One pass over the device's few kinds for both (``last_ts`` twice cost 3 % of a
        # message's instructions on a stream of door reports).
        kinds = state.kinds
        opened = closed = -1
        for i in range(len(kinds)):
            kind = kinds[i]
            if kind == _DOOR_OPEN:
                opened = i
            elif kind == _DOOR_CLOSED:
                closed = i
        mine, other = (opened, closed) if event.kind is _DOOR_OPEN_EVENT else (closed, opened)
        if mine < 0:
            return False
        if other < 0:
            return True
        last: float = state.at(2 * mine)  # type: ignore[assignment]  # an even position: a ts
        then: float = state.at(2 * other)  # type: ignore[assignment]
        return last > then

    def _holder(self, subject: Subject | None) -> Subject | None:
        """``subject`` if it holds its device's state: a registered one, and only where
        :meth:`get` finds it again through the registry's lookup (``None``: the table does)."""
        if subject is None or subject.record is None or self._subjects is None:
            return None
        return subject

    def get(self, device_id: str) -> DeviceState | None:
        registered = self._holder(self._subjects(device_id)) if self._subjects is not None else None
        if registered is not None:
            held: DeviceState | None = registered.state
            return held
        return self._states.get(device_id)

    def __len__(self) -> int:
        return self._count


def _whole(value: float) -> object:
    """The shared object of a whole-number reading from 1 to 255 (``None``: not one; nor 0,
    which would make ``-0.0`` ``0.0``): :data:`adapters.events.WHOLE_READINGS`. The adapters
    share battery percentages already; a link quality, a count, a native value arrive here as
    the message's own float."""
    if 0.0 < value <= 255.0:
        n = int(value)
        if n == value:
            return WHOLE_READINGS[n]
    return None
