"""A subject's attributes laid out for 10⁵ devices: the facts devices share, once, plus their own ids.

Why: the registry gave every device a dict of its rule attributes (``device.model``,
``resident.living_alone``, ``place.kind``…): 272 bytes each, ≈ 27 MB at 100 000 devices
(docs/benchmarks.md, "Thirtieth pass"), and no two equal because each names its own resident
or place. Everything else in them repeats: a handful of models and heartbeats, three flags, an
age. :class:`Facts` keeps the repeated part as one dict shared by every device that has it
(:class:`FactsMemo`) and the two ids that are a device's own in slots of its own, 56 bytes a
device. It is a read-only :class:`~collections.abc.Mapping` with the same keys and values as
the dict it replaces, so rules (scopes, conditions, overrides, absence periods) read it as
before.

Owns the layout only; imports nothing of Linli's. Not compiled (``hub.ingest.hot_path``): a
``Mapping`` subclass stays a Python class, and it is read when a plan is made, not per event.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any

Fact = str | bool | int | float

#: The attributes whose values are a device's own (one resident, one place): kept out of the
#: shared dict, which would otherwise be one per device again.
RESIDENT_ID = "resident.id"
PLACE_ID = "place.id"
OWN_KEYS = (RESIDENT_ID, PLACE_ID)
_MISSING: Any = object()


class Facts(Mapping[str, Fact]):
    """Read-only attributes: ``shared`` (not copied, never to be changed) plus a resident and a place id."""

    __slots__ = ("_place", "_resident", "_shared")

    def __init__(
        self, shared: Mapping[str, Fact], *, resident: str | None = None, place: str | None = None
    ) -> None:
        if RESIDENT_ID in shared or PLACE_ID in shared:
            raise ValueError("a device's own ids are not shared facts")
        self._shared = shared
        self._resident = resident
        self._place = place

    def get(self, key: str, default: Any = None) -> Any:
        # Called by rules for every scope attribute and condition: no exception on a miss.
        if key == RESIDENT_ID:
            return default if self._resident is None else self._resident
        if key == PLACE_ID:
            return default if self._place is None else self._place
        return self._shared.get(key, default)

    def __getitem__(self, key: str) -> Fact:
        value = self.get(key, _MISSING)
        if value is _MISSING:
            raise KeyError(key)
        return value  # type: ignore[no-any-return]

    def __contains__(self, key: object) -> bool:
        return isinstance(key, str) and self.get(key, _MISSING) is not _MISSING

    def __iter__(self) -> Iterator[str]:
        yield from self._shared
        if self._place is not None:
            yield PLACE_ID
        if self._resident is not None:
            yield RESIDENT_ID

    def __len__(self) -> int:
        return len(self._shared) + (self._place is not None) + (self._resident is not None)

    def __repr__(self) -> str:
        return repr(dict(self))


class FactsMemo:
    """One per registry build: equal shared parts are one dict, and devices without own ids one object.

    The registry asks by a key of its own (:meth:`shared`, :meth:`keep`): a tuple of the few
    values it derives the facts from, cheaper to make than the dict, which is built only for
    the first device of each key (at 10⁵ devices, building a dict per device to find its twin
    cost ≈ 0.3 s of a restart). :meth:`facts` takes any mapping (tools, tests).
    """

    __slots__ = ("_bare", "_by_key", "_shared")

    def __init__(self) -> None:
        self._by_key: dict[object, Mapping[str, Fact]] = {}
        self._shared: dict[tuple[tuple[str, type, Fact], ...], Mapping[str, Fact]] = {}
        self._bare: dict[int, Facts] = {}

    def shared(self, key: object) -> Mapping[str, Fact] | None:
        """The shared facts kept for ``key`` (hashable; equal keys must mean equal facts)."""
        return self._by_key.get(key)

    def keep(self, key: object, facts: Mapping[str, Fact]) -> Mapping[str, Fact]:
        """Remember ``facts`` (no own ids; never changed after) for ``key``; returns the one kept.

        Equal facts under two keys are still one object.
        """
        kept = self._by_key[key] = self._intern(facts)
        return kept

    def _intern(self, facts: Mapping[str, Fact]) -> Mapping[str, Fact]:
        """The one object kept for facts equal to ``facts`` (``facts`` itself the first time)."""
        # The type is part of what is equal: True == 1 == 1.0 are one dict key, but not one fact.
        content = tuple([(k, v.__class__, v) for k, v in facts.items()])
        return self._shared.setdefault(content, facts)

    def of(
        self, shared: Mapping[str, Fact], *, resident: str | None = None, place: str | None = None
    ) -> Facts:
        """A device's :class:`Facts`: ``shared`` (from :meth:`keep`) plus its own ids."""
        if resident is None and place is None:
            bare = self._bare.get(id(shared))
            if bare is None:
                bare = self._bare[id(shared)] = Facts(shared)
            return bare
        return Facts(shared, resident=resident, place=place)

    def facts(self, attributes: Mapping[str, Fact]) -> Facts:
        """``attributes`` as :class:`Facts`; ``attributes`` is not kept."""
        return self.of(
            self._intern({k: v for k, v in attributes.items() if k not in OWN_KEYS}),
            resident=_text(RESIDENT_ID, attributes.get(RESIDENT_ID)),
            place=_text(PLACE_ID, attributes.get(PLACE_ID)),
        )


def _text(key: str, value: Fact | None) -> str | None:
    if value is None or isinstance(value, str):
        return value
    raise ValueError(f"{key} must be text, not {type(value).__name__}")
