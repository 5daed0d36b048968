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

The many records (devices, residents, contacts, households: slotted dataclasses,
:data:`hub.community.model.RECORD`) get their slots set one by one, from a dict per record
(the JSON) or from columns (the start-up copy, :mod:`hub.community.columns`); each ``BaseModel``'s
``__dict__`` is a key-sharing copy where that is smaller
(:class:`hub.community.compact.KeySharing`; docs/benchmarks.md, "Fourteenth pass").
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import date
from typing import Any, TypeVar

from pydantic import BaseModel

from adapters.events import DeviceKind
from hub.community.columns import Table, each_row, is_table
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
    field_names,
    filled,
    utf8,
    validate_record,
)
from hub.community.personal import CONTACT_KEYS, KEPT, PersonalData
from hub.community.roster import Person

M = TypeVar("M")

_KINDS = {kind.value: kind for kind in DeviceKind}
_PLACE_KINDS = {kind.value: kind for kind in PlaceKind}
_set = object.__setattr__


class _Shape:
    """One model or record class as the builder makes it: its fields, in order, and its dict template."""

    __slots__ = ("cls", "fields", "keys", "record", "sharing", "template")

    def __init__(self, cls: type[Any], fields: set[str], sharing: KeySharing) -> None:
        self.cls = cls
        #: Every field's name: the fields set each model of the class shares.
        self.fields = fields
        #: The fields in declaration order: the order ``model_dump`` wrote them in.
        self.keys = field_names(cls)
        #: A slotted record (``RECORD``), not a ``BaseModel``: its fields are its slots.
        self.record = not issubclass(cls, BaseModel)
        self.sharing = sharing
        #: What each model's ``__dict__`` is a copy of (``None``: an ordinary dict is as small).
        self.template = None if self.record else sharing.template(self.keys, cls)


class _Builder:
    """One per store read: the fields set each class's models share (``hub.community.compact``).

    The many models (devices, residents, their contacts, households: ≈ 280 000 at 100 000
    devices) are built in loops with the class's :class:`_Shape` looked up once, not per
    model: 10–25 % less CPU for the whole build (docs/benchmarks.md, "Eighteenth pass").
    """

    def __init__(self, full: dict[type[Any], set[str]], personal: PersonalData | None = None) -> None:
        self._full = full
        #: Where the residents' personal data goes as they are built from columns (the records
        #: hold none of it: ``hub.community.personal``); ``None``: records whole.
        self._personal = personal
        self._sharing = KeySharing()
        self._shapes: dict[type[Any], _Shape] = {}

    def _shape(self, cls: type[Any]) -> _Shape:
        shape = self._shapes.get(cls)
        if shape is None:
            every = self._full.get(cls)
            if every is None:
                every = self._full[cls] = set(field_names(cls))
            shape = self._shapes[cls] = _Shape(cls, every, self._sharing)
        return shape

    def make(self, cls: type[M], values: dict[str, Any]) -> M:
        """``cls.model_construct(**values)`` for a row with every field, without its per-field loop."""
        return _built(self._shape(cls), values)  # type: ignore[no-any-return]

    def complete(self, cls: type[Any], values: dict[str, Any]) -> bool:
        return values.keys() == self._shape(cls).fields

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
            "residents": self.residents(doc["residents"]),
            "devices": self.devices(doc["devices"]),
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
        doc["households"] = tuple(self.plain(Household, doc["households"]))
        return self.make(Unit, doc)

    def place(self, doc: dict[str, Any]) -> Place:
        if not self.complete(Place, doc):
            return Place.model_validate(doc)
        kind = _PLACE_KINDS.get(doc["kind"])
        if kind is None:  # a kind no longer known: validation says so
            return Place.model_validate(doc)
        doc["kind"] = kind
        return self.make(Place, doc)

    def plain(self, cls: type[M], docs: Sequence[dict[str, Any]] | Table) -> list[M]:
        """Records without conversions (households, contacts), from dicts or a table."""
        shape = self._shape(cls)
        if is_table(docs) and self._fits(shape, docs):
            _, keys, columns, _ = docs
            return [filled(shape.cls, keys, values) for values in zip(*columns, strict=True)]
        return [
            _built(shape, doc) if doc.keys() == shape.fields else validate_record(cls, doc)
            for doc in each_row(docs)
        ]

    @staticmethod
    def _fits(shape: _Shape, table: Table, nested: frozenset[str] = frozenset()) -> bool:
        """The table has exactly the record's fields (in any order), nested only where allowed."""
        _, keys, _, inner = table
        return len(keys) == len(shape.fields) and shape.fields.issuperset(keys) and nested.issuperset(inner)

    def residents(self, docs: list[dict[str, Any]] | Table) -> tuple[Resident, ...]:
        shape = self._shape(Resident)
        if is_table(docs) and self._fits(shape, docs, _CONTACTS):
            return self._resident_table(shape, docs)
        out: list[Resident] = []
        for doc in each_row(docs):
            if doc.keys() != shape.fields:
                out.append(validate_record(Resident, doc))
                continue
            doc["emergency_contacts"] = tuple(self.plain(Contact, doc["emergency_contacts"]))
            out.append(_built(shape, doc))
        return tuple(out)

    def _resident_table(self, shape: _Shape, table: Table) -> tuple[Resident, ...]:
        _, keys, columns, nested = table
        at = keys.index("emergency_contacts")
        ready = list(columns)
        inner = nested.get("emergency_contacts")
        if self._personal is not None and (inner is None or self._fits(self._shape(Contact), inner)):
            return self._residents_kept_apart(self._personal, keys, columns, inner)
        if inner is None:  # nobody has a contact: each row's list is empty
            ready[at] = [tuple(self.plain(Contact, c)) for c in columns[at]]
        else:  # each row's count of the contacts, in order
            contacts, start = self.plain(Contact, inner), 0
            sliced: list[tuple[Contact, ...]] = []
            for count in columns[at]:
                sliced.append(tuple(contacts[start : start + count]))
                start += count
            ready[at] = sliced
        return tuple(filled(Resident, keys, values) for values in zip(*ready, strict=True))

    def _residents_kept_apart(
        self,
        personal: PersonalData,
        keys: tuple[str, ...],
        columns: tuple[list[Any], ...],
        inner: Table | None,
    ) -> tuple[Resident, ...]:
        """The residents of a table, their personal data kept in ``personal`` from the columns.

        No contact record, address or phone is built for a resident whose data is kept: built
        and dropped, 20 MB of them at 100 000 devices left holes in the heap that the hub's
        later objects, of other sizes, did not fill (docs/benchmarks.md, "Thirty-ninth pass").
        """
        at, rid = keys.index("emergency_contacts"), keys.index("id")
        address, phone, notes = keys.index("address"), keys.index("phone"), keys.index("medical_notes")
        if inner is None:  # nobody has a contact: each row's list is empty
            contacts: list[tuple[Any, ...]] = []
        else:  # every row's contacts, in order; each one's values in the record's field order
            _, inner_keys, inner_columns, _ = inner
            contacts = list(zip(*(inner_columns[inner_keys.index(k)] for k in CONTACT_KEYS), strict=True))
        start = 0
        out: list[Resident] = []
        for values in zip(*columns, strict=True):
            count = len(values[at]) if inner is None else values[at]
            own = contacts[start : start + count]
            start += count
            row = list(values)
            if personal.keep_values(values[rid], values[address], values[phone], values[notes], own):
                row[address] = row[phone] = row[notes] = ""
                row[at] = KEPT  # what tells a kept record from one without personal data
            else:
                row[at] = tuple(filled(Contact, CONTACT_KEYS, c) for c in own)
            out.append(filled(Resident, keys, tuple(row)))
        return tuple(out)

    def devices(self, docs: list[dict[str, Any]] | Table) -> tuple[Device, ...]:
        shape = self._shape(Device)
        if is_table(docs) and self._fits(shape, docs):
            return self._device_table(docs)
        kinds, fromisoformat = _KINDS, date.fromisoformat
        #: Equal heartbeat intervals as one object: parsed, each device had a float of its own
        #: (32 bytes; ≈ 3 MB at 100 000 devices, which name a handful of intervals).
        beats: dict[object, object] = {}
        #: Equal locations as one bytes object (a safety kit's devices name their owner's).
        places: dict[object, object] = {}
        out: list[Device] = []
        for doc in each_row(docs):
            # Not every field, or a kind no longer known: validation fills in or says so.
            if doc.keys() != shape.fields or (kind := kinds.get(doc["kind"])) is None:
                out.append(validate_record(Device, doc))
                continue
            doc["kind"] = kind
            beat = doc["heartbeat_s"]
            doc["heartbeat_s"] = beats.setdefault(beat, beat)
            installed = doc["installed"]
            if installed is not None:
                doc["installed"] = fromisoformat(installed)
            doc["location"] = _packed(doc["location"], places)
            out.append(_built(shape, doc))
        return tuple(out)

    def _device_table(self, table: Table) -> tuple[Device, ...]:
        """The devices of a table: the same conversions as :meth:`devices`, a column at a time."""
        _, keys, columns, _ = table
        kind, beat, installed = keys.index("kind"), keys.index("heartbeat_s"), keys.index("installed")
        location = keys.index("location")
        beats: dict[object, object] = {}
        fromisoformat = date.fromisoformat
        ready = list(columns)
        ready[kind] = [_KINDS.get(value) for value in columns[kind]]
        ready[beat] = [beats.setdefault(value, value) for value in columns[beat]]
        ready[installed] = [None if value is None else fromisoformat(value) for value in columns[installed]]
        # Held packed (model.Utf8Text), equal locations as one bytes object.
        places: dict[object, object] = {}
        ready[location] = [_packed(value, places) for value in columns[location]]
        out: list[Device] = []
        for i, values in enumerate(zip(*ready, strict=True)):
            if values[kind] is None:  # a kind no longer known: validation says so
                out.append(
                    validate_record(
                        Device, {key: column[i] for key, column in zip(keys, columns, strict=True)}
                    )
                )
            else:
                out.append(filled(Device, keys, values))
        return tuple(out)


def _packed(location: object, places: dict[object, object]) -> object:
    """A device's location as the record holds it (``model.Utf8Text``): equal texts as one object."""
    if type(location) is not str:
        return utf8(location)
    packed = places.get(location)
    if packed is None:
        packed = places[location] = utf8(location)
    return packed


#: The one key of a resident whose values are records of their own.
_CONTACTS = frozenset({"emergency_contacts"})


def _built(shape: _Shape, values: dict[str, Any]) -> Any:
    """A model of ``shape.cls`` holding ``values`` (every field), as ``model_construct`` makes it."""
    model = object.__new__(shape.cls)
    if shape.record:
        # Slots, set past the frozen class's ``__setattr__`` as its own ``__init__`` does.
        for key in shape.keys:
            _set(model, key, values[key])
        return model
    template = shape.template
    if template is None:
        packed = values
    elif tuple(values) == shape.keys:
        packed = template.copy()
        packed.update(values)
    else:  # the fields in another order: a template of that order, or an ordinary dict
        packed = shape.sharing.packed(values, shape.cls)
    _set(model, "__dict__", packed)
    _set(model, "__pydantic_fields_set__", shape.fields)
    _set(model, "__pydantic_extra__", None)
    _set(model, "__pydantic_private__", None)
    return model


def community_from_store(
    doc: dict[str, Any], full: dict[type[Any], set[str]], personal: PersonalData | None = None
) -> Community:
    """The community a store row holds (``doc``: the parsed row, consumed), models sharing ``full``'s sets.

    With ``personal``, residents read from a start-up copy's columns come without their personal
    data, which is kept there (``hub.community.personal``); from JSON they come whole.
    """
    return _Builder(full, personal).community(doc)
