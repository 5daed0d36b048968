"""Residents' personal data as the registry holds it: packed, one ``bytes`` per resident.

Personal data here is what only a case, a page or a notice about one elder shows: the
address, the phone, the emergency contacts (监护人 and neighbours, with their phones) and the
medical notes. The hub held it as objects in every resident record: at 100 000 devices
≈ 20 MB of strings, contact records and tuples for 50 000 residents and 75 000 contacts
(docs/benchmarks.md, "Thirty-ninth pass"), against a target of 300 MB for the whole hub, for
data read a few times a day. :class:`PersonalData` keeps it as compact UTF-8 JSON instead,
and the records the registry hands around (its communities, the elder register's entries)
hold the fields' empty defaults: :meth:`PersonalData.whole` rebuilds the whole record for
the one reader that needs it. A side effect the access rules want anyway: personal data is
never in an object by accident, only where someone asked for it.

Owns the packing only; imports the community model alone (its ``filled`` builds the records
again without validating them: they were validated when they were imported). Must not import
the registry, the store or anything above them.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import orjson

from hub.community.model import Contact, Resident, field_names, filled


class _Kept(tuple[Contact, ...]):
    """The type of :data:`KEPT`: an empty tuple that is not ``()`` itself."""

    __slots__ = ()


#: What a record whose personal data is kept here holds as its emergency contacts: empty, as
#: ``()`` is, and equal to it, but this one object. It is what tells such a record from one
#: that truly has no personal data: a guess from emptiness gave one community's resident the
#: data of another community's resident of the same id (``Registry(strict=False)``).
KEPT = _Kept()
#: The resident fields this keeps packed, and what the records held have instead.
PERSONAL_FIELDS: dict[str, Any] = {
    "address": "",
    "phone": "",
    "emergency_contacts": KEPT,
    "medical_notes": "",
}
_RESIDENT_KEYS = field_names(Resident)
#: A contact's fields, in the order its values are packed.
CONTACT_KEYS = field_names(Contact)


class PersonalData:
    """Per resident id, the personal data packed; an id at most once (see :meth:`keep`)."""

    __slots__ = ("_packed",)

    def __init__(self) -> None:
        self._packed: dict[str, bytes] = {}

    def __len__(self) -> int:
        return len(self._packed)

    def keep(self, resident: Resident) -> Resident:
        """``resident`` without its personal data, which is kept here (``resident`` itself if it has none).

        Keyed by resident id: for an id kept already (another community's resident of that id,
        which ``Registry(strict=False)`` tolerates) ``resident`` is returned whole, as it is;
        :meth:`release` is for the one kept (see ``Registry``).
        """
        contacts = [tuple(getattr(c, key) for key in CONTACT_KEYS) for c in resident.emergency_contacts]
        if not self.keep_values(
            resident.id, resident.address, resident.phone, resident.medical_notes, contacts
        ):
            return resident
        return _with(resident, PERSONAL_FIELDS)

    def keep_values(
        self,
        resident_id: str,
        address: str,
        phone: str,
        medical_notes: str,
        contacts: Sequence[Sequence[Any]],
    ) -> bool:
        """Keep a resident's personal data given as values (each contact's in :data:`CONTACT_KEYS`
        order: the store's columns); ``False`` if there is none, or the id is kept already."""
        if not (address or phone or medical_notes or contacts) or resident_id in self._packed:
            return False
        packed = orjson.dumps((address, phone, medical_notes, contacts))
        # A copy of exactly its length: the bytes ``orjson.dumps`` returns keep its ~4 KB
        # buffer's memory for as long as they live (as hub.storage.rule_state_file notes).
        self._packed[resident_id] = memoryview(packed).tobytes()
        return True

    def whole(self, resident: Resident) -> Resident:
        """The record :meth:`keep` returned (or the store's read made), whole again; any other as it is."""
        if resident.emergency_contacts is not KEPT:
            return resident  # whole already: kept whole, or read elsewhere
        packed = self._packed.get(resident.id)
        if packed is None:
            return resident
        address, phone, notes, contacts = orjson.loads(packed)
        return _with(
            resident,
            {
                "address": address,
                "phone": phone,
                "medical_notes": notes,
                "emergency_contacts": tuple(filled(Contact, CONTACT_KEYS, tuple(c)) for c in contacts),
            },
        )

    def forget_since(self, count: int) -> None:
        """Drop what was kept after the first ``count`` (a build that failed midway)."""
        while len(self._packed) > count:
            self._packed.popitem()  # the last kept first: a dict keeps the order of insertion

    def release(self, resident: Resident) -> Resident:
        """:meth:`whole`, and its data no longer kept here if it was this record's."""
        whole = self.whole(resident)
        if whole is not resident:
            del self._packed[resident.id]
        return whole


def _with(resident: Resident, fields: dict[str, Any]) -> Resident:
    """``resident`` with ``fields`` replaced, not validated again (``dataclasses.replace`` would)."""
    return filled(
        Resident,
        _RESIDENT_KEYS,
        tuple(fields[k] if k in fields else getattr(resident, k) for k in _RESIDENT_KEYS),
    )
