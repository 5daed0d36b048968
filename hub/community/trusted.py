"""Registry models from the store's rows without validating them a second time.

Why: a community row is the JSON dump of a :class:`~hub.community.model.Community` that was
validated when it was imported (``Store.save_communities`` dumps the model, every field
included). Validating it again on every start cost 2.3 s of a 100 000-device restart
(docs/benchmarks.md, "Restart at 100 000 devices"). The bulk of a community — its devices,
residents, grids, buildings, units and households — is therefore built here the way
``model_construct`` builds a model (``__dict__`` and fields set assigned, nothing checked),
with the few conversions JSON loses (enums, dates, tuples). The small parts with their own
validators (the street, gateway sources, the roster) are still validated.

A row that does not have exactly a model's fields (written by an older version whose models
had fewer fields) is validated as before, so a default added since is filled in.

Each model's ``__dict__`` is a key-sharing copy where that is smaller
(:class:`hub.community.compact.KeySharing`; docs/benchmarks.md, "Fourteenth pass").
"""

from __future__ import annotations

from datetime import date
from typing import Any, TypeVar

from pydantic import BaseModel

from adapters.events import DeviceKind
from hub.community.compact import KeySharing
from hub.community.model import (
    Building,
    Community,
    CommunitySource,
    Contact,
    Device,
    Grid,
    Household,
    Place,
    PlaceKind,
    Resident,
    Street,
    Unit,
)
from hub.community.roster import Person

M = TypeVar("M", bound=BaseModel)

_KINDS = {kind.value: kind for kind in DeviceKind}
_PLACE_KINDS = {kind.value: kind for kind in PlaceKind}
_set = object.__setattr__


class _Builder:
    """One per store read: the fields set each class's models share (``hub.community.compact``)."""

    def __init__(self, full: dict[type[BaseModel], set[str]]) -> None:
        self._full = full
        self._sharing = KeySharing()

    def _fields(self, cls: type[BaseModel]) -> set[str]:
        every = self._full.get(cls)
        if every is None:
            every = self._full[cls] = set(cls.model_fields)
        return every

    def make(self, cls: type[M], values: dict[str, Any]) -> M:
        """``cls.model_construct(**values)`` for a row with every field, without its per-field loop."""
        model = cls.__new__(cls)
        _set(model, "__dict__", self._sharing.packed(values, cls))
        _set(model, "__pydantic_fields_set__", self._fields(cls))
        _set(model, "__pydantic_extra__", None)
        _set(model, "__pydantic_private__", None)
        return model

    def complete(self, cls: type[BaseModel], values: dict[str, Any]) -> bool:
        return values.keys() == self._fields(cls)

    def community(self, doc: dict[str, Any]) -> Community:
        if not self.complete(Community, doc):
            return Community.model_validate(doc)
        street = doc["street"]
        values = {
            "code": doc["code"],
            "name": doc["name"],
            "street": None if street is None else Street.model_validate(street),
            "sources": tuple(CommunitySource.model_validate(s) for s in doc["sources"]),
            "grids": tuple(self.grid(g) for g in doc["grids"]),
            "people": tuple(Person.model_validate(p) for p in doc["people"]),
            "residents": tuple(self.resident(r) for r in doc["residents"]),
            "devices": tuple(self.device(d) for d in doc["devices"]),
        }
        return self.make(Community, values)

    def grid(self, doc: dict[str, Any]) -> Grid:
        if not self.complete(Grid, doc):
            return Grid.model_validate(doc)
        doc["polygon"] = tuple(tuple(point) for point in doc["polygon"])
        doc["buildings"] = tuple(self.building(b) for b in doc["buildings"])
        doc["places"] = tuple(self.place(p) for p in doc["places"])
        return self.make(Grid, doc)

    def building(self, doc: dict[str, Any]) -> Building:
        if not self.complete(Building, doc):
            return Building.model_validate(doc)
        doc["units"] = tuple(self.unit(u) for u in doc["units"])
        return self.make(Building, doc)

    def unit(self, doc: dict[str, Any]) -> Unit:
        if not self.complete(Unit, doc):
            return Unit.model_validate(doc)
        doc["households"] = tuple(
            self.make(Household, h) if self.complete(Household, h) else Household.model_validate(h)
            for h in doc["households"]
        )
        return self.make(Unit, doc)

    def place(self, doc: dict[str, Any]) -> Place:
        if not self.complete(Place, doc):
            return Place.model_validate(doc)
        kind = _PLACE_KINDS.get(doc["kind"])
        if kind is None:  # a kind no longer known: validation says so
            return Place.model_validate(doc)
        doc["kind"] = kind
        return self.make(Place, doc)

    def resident(self, doc: dict[str, Any]) -> Resident:
        if not self.complete(Resident, doc):
            return Resident.model_validate(doc)
        doc["emergency_contacts"] = tuple(
            self.make(Contact, c) if self.complete(Contact, c) else Contact.model_validate(c)
            for c in doc["emergency_contacts"]
        )
        return self.make(Resident, doc)

    def device(self, doc: dict[str, Any]) -> Device:
        if not self.complete(Device, doc):
            return Device.model_validate(doc)
        kind = _KINDS.get(doc["kind"])
        if kind is None:  # a kind no longer known: validation says so
            return Device.model_validate(doc)
        doc["kind"] = kind
        installed = doc["installed"]
        if installed is not None:
            doc["installed"] = date.fromisoformat(installed)
        return self.make(Device, doc)


def community_from_store(doc: dict[str, Any], full: dict[type[BaseModel], set[str]]) -> Community:
    """The community a store row holds (``doc``: the parsed row, consumed), models sharing ``full``'s sets."""
    return _Builder(full).community(doc)
