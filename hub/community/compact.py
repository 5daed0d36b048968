"""Memory at scale: one copy of each repeated string across the registry's models.

Why: the registry keeps every device and resident as a frozen pydantic model. Read back
from the store (``orjson`` → ``model_validate``), each model carried its own copy of
every string (the same 15-digit grid code, model name and household id once per device)
and its own ``__pydantic_fields_set__``: a set of all its field names, 728 bytes for a
device, more than the device's ``__dict__`` (docs/benchmarks.md, "State at scale, fourth
pass"). The values are equal, so sharing them changes nothing a caller can see: the
strings are immutable and pydantic only changes a fields set on a *copy*
(``model_copy``), never on a frozen model. The fields sets are shared where the models are
built from the store's rows (``hub.community.trusted``).
"""

from __future__ import annotations

import gc
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

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
