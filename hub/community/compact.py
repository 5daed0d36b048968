"""Memory at scale: one copy of each repeated string across the registry's models.

Why: read back from the store (``orjson`` → models), each device, resident and household
carried its own copy of every string (the same 15-digit grid code, model name and household
id once per device). The values are equal, so sharing them changes nothing a caller can see:
strings are immutable. The models of the hierarchy (grids, buildings, units, places, the
community) also share their ``__pydantic_fields_set__`` where they are built from the store's
rows (``hub.community.trusted``): a set of all the field names per model, which pydantic only
changes on a *copy* (``model_copy``), never on a frozen model. The many records (devices,
residents, contacts, households) have no fields set and no ``__dict__``: they are slotted
(``hub.community.model.RECORD``; docs/benchmarks.md, "Thirty-third pass").

Each model's ``__dict__`` is made key-sharing where that is smaller (:class:`KeySharing`).
"""

from __future__ import annotations

import gc
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any, TypeVar

V = TypeVar("V")

#: The fields whose values repeat across devices, residents and households (a grid code, a
#: model, the household and resident a device names, common names, room numbers). Only these are looked at: walking the
#: whole parsed tree cost more start-up time than it saved memory (≈ 2 s at 100 000 devices).
DEVICE_KEYS = ("grid", "model", "profile", "household", "resident", "place", "location")
RESIDENT_KEYS = ("id", "name", "household", "address")
CONTACT_KEYS = ("name", "relation")
PLACE_KEYS = ("name",)
HOUSEHOLD_KEYS = ("id", "room")


def share_strings(doc: dict[str, Any], memo: dict[str, str]) -> dict[str, Any]:
    """``doc`` (a parsed community) with repeated strings of its devices and residents made one object.

    Changes ``doc`` in place (it was just parsed) and returns it.
    """
    for device in doc.get("devices", ()):
        _share_keys(device, DEVICE_KEYS, memo)
    for resident in doc.get("residents", ()):
        _share_keys(resident, RESIDENT_KEYS, memo)
        for contact in resident.get("emergency_contacts", ()):
            if isinstance(contact, dict):
                _share_keys(contact, CONTACT_KEYS, memo)
    for grid in doc.get("grids", ()):
        for building in grid.get("buildings", ()):
            _share_keys(building, PLACE_KEYS, memo)
            for unit in building.get("units", ()):
                _share_keys(unit, PLACE_KEYS, memo)
                for household in unit.get("households", ()):
                    _share_keys(household, HOUSEHOLD_KEYS, memo)
    return doc


def _share_keys(item: dict[str, Any], keys: tuple[str, ...], memo: dict[str, str]) -> None:
    for key in keys:
        value = item.get(key)
        if type(value) is str:
            item[key] = memo.setdefault(value, value)


@contextmanager
def collector_paused(*, freeze: bool = False) -> Iterator[None]:
    """No cyclic collection while a large acyclic tree is built (parsing, validating).

    Each full collection walks everything built so far, so a tree of 10⁶ objects built with
    the collector on costs several times the work of building it (measured: YAML dump and
    load of a 100 000-device registry 2–3× slower). Reference counting still frees garbage.

    ``freeze``: what was built lives as long as the process (the registry, restored rule
    state at start-up). Everything allocated while paused is still in the young generation,
    so the first collections after ``gc.enable()`` would walk all of it; at 100 000 devices
    that was 1.4–1.8 s of a 6.5–7.7 s restart. ``gc.freeze()`` moves it to the permanent
    generation first, untraversed (``hub.ingest.heap.settle_heap`` freezes the rest once the
    hub has started). The cost: cyclic garbage made in the block is never collected, so use
    it only for one-time start-up work.
    """
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            if freeze:
                gc.freeze()
            gc.enable()


class KeySharing:
    """Key-sharing copies (PEP 412) of dicts that have the same keys in the same order.

    Why: a model keeps a dict of the keys every other model of its class repeats. (At 100 000
    devices that was ≈ 280 000 dicts, until the devices, residents, contacts and households
    became slotted records; the hierarchy's models still have one each.) An ordinary dict keeps its own keys and hash
    table (464 B for a device's fields); a key-sharing one keeps only its values, the keys
    once per shape (≈ 160–296 B). Nothing a reader can see changes: same keys in the same
    order, same values, an ordinary ``dict`` type.

    CPython makes a key-sharing dict only one way: attributes set one by one on an instance
    without a dict. Its copies share the keys, and ``update`` with the same keys only puts
    values in. Per shape, :meth:`template` tries an instance of ``owner`` if given (its
    class's cached keys: sized to fit once the class has been used, but whether they are
    still shared depends on what the process did with the class before; in the test process
    they were not) and one of a fresh class (always shared, its values sized for up to 30
    keys). It keeps the copy ``sys.getsizeof`` finds smallest, only if it beats an ordinary
    dict: a dict of two keys does better as one, and an interpreter that shares no keys
    loses nothing. (The subjects' rule attributes, 8 keys,
    measured 272 B either way: not worth it.) One instance per store read, so nothing
    outlives what it built.
    """

    __slots__ = ("_templates",)

    def __init__(self) -> None:
        self._templates: dict[tuple[str, ...], dict[str, Any] | None] = {}

    def template(self, keys: tuple[str, ...], owner: type[Any] | None = None) -> dict[str, Any] | None:
        """The dict whose copies hold ``keys`` (``None`` each), or ``None``: an ordinary one is as small."""
        if keys in self._templates:
            return self._templates[keys]
        best: dict[str, Any] | None = None
        best_size = sys.getsizeof(dict.fromkeys(keys))
        probes: list[object] = [type("_Values", (), {})()]
        if owner is not None:
            probes.insert(0, object.__new__(owner))  # no __init__: nothing validated, no fields
        for probe in probes:
            try:
                for key in keys:
                    object.__setattr__(probe, key, None)
                candidate: dict[str, Any] = probe.__dict__
            except (AttributeError, TypeError):  # an owner without an instance dict
                continue
            size = sys.getsizeof(candidate.copy())
            if tuple(candidate) == keys and size < best_size:
                best, best_size = candidate, size
        self._templates[keys] = best
        return best

    def packed(self, values: dict[str, V], owner: type[Any] | None = None) -> dict[str, V]:
        """``values`` as a key-sharing copy, or ``values`` itself where that is not smaller."""
        template = self.template(tuple(values), owner)
        if template is None:
            return values
        shared: dict[str, V] = template.copy()
        shared.update(values)
        return shared
