"""Signs of life seen before the first visits round, held as columns until it takes them.

Until the round has built the register, nothing says whose door an event is, so
:class:`hub.casework.visits.Visits` keeps, per device and local day, the day's first sign and
the newest one, in arrival order (its ``_keep_early_sign`` says why two are enough). After a
restart every door, PIR and pendant of a district reports before that round: held as a dict of
``(device, day, first)`` keys to ``(event, time)`` pairs they were ≈ 0.25 KB a device (≈ 13 MB
traced for the 51 300 signs of ``bench.memory_split``, the events kept alive included).

Here a device and local day is a pair of rows in columns (the first sign and the newest: time,
kind and value class, arrival number) and a device one dict entry: ≈ 0.12 KB a device. A sign
that replaces the day's newest takes a new arrival number in place, so keeping one costs a dict
lookup and a few array writes, as the dict did (the hot path keeps every door event of a
backlog); :meth:`EarlySigns.take` sorts by arrival. What a sign is
needs only the event's kind and, for presence, whether its value is ``None``, ``True`` or
anything else (:func:`hub.casework.signs.is_sign`), so the row keeps that and the round gets
an equal event back (:meth:`EarlySigns.take`).

Must not import: ``hub.web``, ``hub.ingest``, ``hub.app``, ``hub.cli``.
"""

from __future__ import annotations

import heapq
from array import array

from adapters.events import Event, EventKind
from hub.casework.signs import ANY_SIGN

#: The kinds a row can hold, by their code (``code >> 2``).
_KINDS: tuple[EventKind, ...] = tuple(sorted(ANY_SIGN))
_KIND_CODE = {kind: code for code, kind in enumerate(_KINDS)}
#: A row's value, by its class (``code & 3``): all that :func:`is_sign` tells apart.
_VALUES: tuple[bool | None, ...] = (None, True, False)
#: A row that holds no sign (never filled, or its sign dropped past the limit).
_EMPTY = 0xFF


def _code(event: Event) -> int:
    value = event.value
    return _KIND_CODE[event.kind] * 4 + (0 if value is None else 1 if value is True else 2)


class EarlySigns:
    """Per device and local day the first sign and the newest one, in arrival order, at most ``limit``.

    Past ``limit`` the oldest sign goes first (:attr:`dropped` counts them). The same signs, in
    the same order, as a dict of ``(device, day, first)`` that re-inserts the newest at the end.
    """

    def __init__(self, *, limit: int) -> None:
        self._limit = limit
        self.dropped = 0
        self._reset()

    def _reset(self) -> None:
        #: Per pair (``row // 2``): its device and local day. Row ``2p`` is the day's first sign,
        #: ``2p + 1`` its newest.
        self._devices: list[str] = []
        self._days = array("q")
        #: Per row: time, ``kind code * 4 + value class`` (or ``_EMPTY``), arrival number.
        self._at = array("d")
        self._code = bytearray()
        self._seq = array("q")
        self._next = 0
        #: Per device the first row of its pair for the day it last reported on; pairs of its
        #: other days (a backlog across midnight, a late event) by ``(device, day)``.
        self._current: dict[str, int] = {}
        self._other: dict[tuple[str, int], int] = {}
        #: Pairs whose two rows are empty again (dropped), for reuse.
        self._free: list[int] = []
        #: The oldest held rows as ``(arrival, row)``, smallest first, for the drops past the limit
        #: (an entry whose row has since taken a newer sign or been dropped is skipped).
        self._oldest: list[tuple[int, int]] = []
        self._held = 0

    def __len__(self) -> int:
        return self._held

    def keep(self, event: Event, day: int, at: float) -> bool:
        """Hold ``event`` (a sign kind) seen at ``at`` on local ``day``; ``False`` if the oldest
        held sign was dropped to make room."""
        base = self._current.get(event.device_id, -1)
        if base < 0 or self._days[base >> 1] != day:
            base = self._pair(event.device_id, day)
        code = self._code
        # The day's first sign while it is held, else this one is the first: as the dict's keys.
        row = base if code[base] == _EMPTY else base + 1
        if code[row] == _EMPTY:
            self._held += 1
        code[row] = _code(event)
        self._at[row] = at
        self._seq[row] = self._next  # the newest goes last: arrival order is the round's order
        self._next += 1
        if self._held > self._limit:
            self._drop_oldest()
            return False
        return True

    def _pair(self, device: str, day: int) -> int:
        """The first row of ``device``'s pair for ``day``, made if it has none."""
        current = self._current.get(device, -1)
        if current >= 0:
            self._other[(device, self._days[current >> 1])] = current
        base = self._other.pop((device, day), -1)
        if base < 0:
            if self._free:
                base = self._free.pop()
                self._devices[base >> 1] = device
                self._days[base >> 1] = day
            else:
                base = 2 * len(self._devices)
                self._devices.append(device)
                self._days.append(day)
                self._at.extend((0.0, 0.0))
                self._code.extend((_EMPTY, _EMPTY))
                self._seq.extend((0, 0))
        self._current[device] = base
        return base

    def _drop_oldest(self) -> None:
        code, seq = self._code, self._seq
        while True:
            if not self._oldest:
                # The oldest 1/64 of the held rows at once (at least one), smallest first.
                held = ((seq[row], row) for row in range(len(code)) if code[row] != _EMPTY)
                self._oldest = heapq.nsmallest(max(1, self._held // 64), held)
                self._oldest.reverse()
            arrival, row = self._oldest.pop()
            if code[row] != _EMPTY and seq[row] == arrival:
                break
        code[row] = _EMPTY
        self._held -= 1
        self.dropped += 1
        base = row & ~1
        if code[base] == _EMPTY and code[base + 1] == _EMPTY:
            # Neither sign of the pair is held: it is no device's any more.
            device, day = self._devices[base >> 1], self._days[base >> 1]
            if self._current.get(device) == base:
                del self._current[device]
            else:
                del self._other[(device, day)]
            self._free.append(base)

    def held_rows(self) -> list[tuple[str, float, int]]:
        """``(device, at, code)`` of the signs held, in arrival order."""
        code, seq, at, devices = self._code, self._seq, self._at, self._devices
        rows = sorted((seq[row], row) for row in range(len(code)) if code[row] != _EMPTY)
        return [(devices[row >> 1], at[row], code[row]) for _, row in rows]

    def take(self) -> list[tuple[Event, float]]:
        """Every held sign as ``(event, at)``, in arrival order, and none held any more.

        The event is equal to the one kept in what a sign is made of (device, kind, and for
        presence the value's class); its ``ts`` is ``at``.
        """
        out = [
            (Event(device, _KINDS[code >> 2], at, "early-sign", _VALUES[code & 3]), at)
            for device, at, code in self.held_rows()
        ]
        self._reset()
        return out
