"""A subject's attributes laid out for 10⁵ devices: the facts devices share, once; their own ids on the subject.

Why: the registry gave every device a dict of its rule attributes (``device.model``,
``resident.living_alone``, ``place.kind``…): 272 bytes each, ≈ 27 MB at 100 000 devices
(docs/benchmarks.md, "Thirtieth pass"), and no two equal because each names its own resident
or place. Everything else in them repeats: a handful of models and heartbeats, three flags, an
age. The repeated part is one dict shared by every device that has it (:class:`FactsMemo`), and
it *is* the subject's ``attributes``, not copied. The two ids that are a device's own
(``resident.id``, ``place.id``) are in the subject's one ``own`` field
(:attr:`rules.subject.Subject.own`); rules read a fact by name with
:meth:`~rules.subject.Subject.fact`, which looks in both, so scopes, conditions, overrides and
absence periods read the registry's subjects as they read a subject made with one dict.

A per-device read-only mapping of the shared dict plus the two ids (56 bytes, one for each of
≈ 101 000 devices at scale: every device has a resident or a place) held them before; the
``own`` field costs the compiled ``Subject`` 16 bytes instead (112 → 128, its block was full).

Owns the layout only; imports nothing of Linli's outside ``rules``. Not compiled
(``hub.ingest.hot_path``): it is used when a registry is built, not per event.
"""

from __future__ import annotations

from collections.abc import Mapping

from rules.subject import PLACE_ID, RESIDENT_ID, Fact, OwnIds, own_ids

__all__ = ["OWN_KEYS", "PLACE_ID", "RESIDENT_ID", "Fact", "FactsMemo"]

#: The attributes whose values are a device's own (one resident, one place): kept out of the
#: shared dict, which would otherwise be one per device again.
OWN_KEYS = (RESIDENT_ID, PLACE_ID)


class FactsMemo:
    """One per registry build: equal shared facts are one dict.

    The registry asks by a key of its own (:meth:`shared`, :meth:`keep`): a tuple of the few
    values it derives the facts from, cheaper to make than the dict, which is built only for
    the first device of each key (at 10⁵ devices, building a dict per device to find its twin
    cost ≈ 0.3 s of a restart). :meth:`split` takes any mapping (tools, tests).
    """

    __slots__ = ("_by_key", "_shared")

    def __init__(self) -> None:
        self._by_key: dict[object, Mapping[str, Fact]] = {}
        self._shared: dict[tuple[tuple[str, type, Fact], ...], Mapping[str, Fact]] = {}

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
        if RESIDENT_ID in facts or PLACE_ID in facts:
            # Shared by every device with these facts, it would give them all one resident.
            raise ValueError("a device's own ids are not shared facts")
        # The type is part of what is equal: True == 1 == 1.0 are one dict key, but not one fact.
        content = tuple([(k, v.__class__, v) for k, v in facts.items()])
        return self._shared.setdefault(content, facts)

    def split(self, attributes: Mapping[str, Fact]) -> tuple[Mapping[str, Fact], OwnIds]:
        """``attributes`` as a subject's shared ``attributes`` and ``own`` ids; ``attributes`` is not kept."""
        return (
            self._intern({k: v for k, v in attributes.items() if k not in OWN_KEYS}),
            own_ids(
                _text(RESIDENT_ID, attributes.get(RESIDENT_ID)), _text(PLACE_ID, attributes.get(PLACE_ID))
            ),
        )


def _text(key: str, value: Fact | None) -> str | None:
    if value is None or isinstance(value, str):
        return value
    raise ValueError(f"{key} must be text, not {type(value).__name__}")
