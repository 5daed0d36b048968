"""The community model: district → street → community → grid → building → unit → household → resident.

Plus shared places (parking lots and spaces, fire lanes, entrances, fire exits), the people
on duty and the devices expected to report. This is the registry's import/export format
(YAML, and CSV for flat device and resident lists); the simulator writes the same format.
All models are frozen and validated field by field by pydantic.

The four a registry holds by the hundred thousand — :class:`Device`, :class:`Resident`, its
:class:`Contact`\\ s and :class:`Household` — are slotted pydantic *dataclasses* (:data:`RECORD`),
the rest ``BaseModel``\\ s. Same validation, same JSON; what differs is memory. A ``BaseModel``
keeps its fields in a ``__dict__`` of its own: 80 bytes of object and 160–184 of dict each, ≈ 69 MB
for the ≈ 276 000 of a 100 000-device district. Slots hold the same fields in 48–120 bytes
(docs/benchmarks.md, "Thirty-third pass"). They are read as models are (attributes); they are
made with :func:`validate_record` and dumped with :func:`dump_record` where a model would use
``model_validate`` and ``model_dump``, and changed with :func:`dataclasses.replace`.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from datetime import date
from enum import StrEnum
from typing import Annotated, Any, Literal, TypeVar

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    PlainSerializer,
    field_validator,
    model_validator,
)
from pydantic.dataclasses import dataclass
from pydantic_core import SchemaSerializer, SchemaValidator

from adapters.events import DeviceKind
from adapters.router import APPLICATION_LEVEL, Family, FamilySource
from hub.community.roster import Person
from hub.mqtt.topics import TOPIC_LEVELS, filters_overlap

#: Beijing DB11 unit-grid code: 6 county (GB/T 2260) + 3 street + 3 community + 3 grid sequence.
DB11_GRID_CODE = re.compile(r"^\d{15}$")
ID = r"^[A-Za-z0-9_.:/-]+$"
#: What a device id may not hold: control characters (C0, DEL, C1) and MQTT's wildcards. Gateway
#: names are otherwise free (a Zigbee2MQTT friendly name may have spaces, ``/`` and Chinese), but
#: a topic name cannot carry U+0000 [MQTT-1.5.3-2] nor ``+``/``#`` [MQTT-4.7.1-1], and SHOULD
#: NOT carry controls [MQTT-1.5.3]: such an id never matches a message. U+0000 would also be cut
#: short where SQLite's JSON functions read the rule state's keys (a string ends at \u0000 there).
DEVICE_ID_REFUSED = re.compile(r"[\x00-\x1f\x7f-\x9f+#]")
#: Longer than any gateway's id (a TTS device id is at most 36 characters, a DevEUI 16).
DEVICE_ID_MAX = 256


class _Model(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


#: How the registry's many records are declared: frozen, slotted, keyword-only (the fields keep
#: their order of declaration, which is their order in the store's rows and in exports).
RECORD = dataclass(frozen=True, slots=True, kw_only=True, config=ConfigDict(extra="forbid"))

#: One of the record classes (:class:`Device`, :class:`Resident`, :class:`Contact`, :class:`Household`).
R = TypeVar("R")


def validate_record(cls: type[R], doc: object) -> R:
    """``doc`` validated as a ``cls`` record (what ``cls.model_validate(doc)`` is for a model).

    Raises ``pydantic.ValidationError`` as a model does. The class's own validator, not a
    ``TypeAdapter`` per call: building one costs more than validating a row (CSV imports).
    """
    validator: SchemaValidator = cls.__pydantic_validator__  # type: ignore[attr-defined]
    record: R = validator.validate_python(doc)
    return record


def filled(cls: type[R], keys: tuple[str, ...], values: tuple[Any, ...]) -> R:
    """A record of ``cls`` holding ``values`` under ``keys`` (every field, any order), not validated:
    for values read back from what was validated when it was imported (``hub.community.trusted``)."""
    record = object.__new__(cls)
    for key, value in zip(keys, values, strict=True):
        object.__setattr__(record, key, value)  # past the frozen class's __setattr__, as its __init__
    return record


def field_names(cls: type[Any]) -> tuple[str, ...]:
    """A model's or a record's fields, in declaration order: the order a dump writes them in."""
    if issubclass(cls, BaseModel):
        return tuple(cls.model_fields)
    return tuple(cls.__pydantic_fields__)


def dump_record(record: object, *, mode: Literal["json", "python"] = "python") -> dict[str, Any]:
    """A record's fields as a dict (what ``model_dump(mode=…)`` is for a model)."""
    serializer: SchemaSerializer = type(record).__pydantic_serializer__  # type: ignore[attr-defined]
    dumped: dict[str, Any] = serializer.to_python(record, mode=mode)
    return dumped


class PlaceKind(StrEnum):
    PARKING_LOT = "parking_lot"
    PARKING_SPACE = "parking_space"
    FIRE_LANE = "fire_lane"
    ENTRANCE = "entrance"
    FIRE_EXIT = "fire_exit"


class Place(_Model):
    """A shared facility of a grid; a parking space may name its lot."""

    id: str = Field(pattern=ID)
    kind: PlaceKind
    name: str
    lot: str | None = None


@RECORD
class Household:
    id: str = Field(pattern=ID)
    room: str


class Unit(_Model):
    id: str = Field(pattern=ID)
    name: str
    households: tuple[Household, ...] = ()


class Building(_Model):
    id: str = Field(pattern=ID)
    name: str
    units: tuple[Unit, ...] = ()


class Grid(_Model):
    code: str
    name: str
    #: Optional boundary as [longitude, latitude] pairs (GCJ-02 or WGS-84, as the city uses).
    polygon: tuple[tuple[float, float], ...] = ()
    buildings: tuple[Building, ...] = ()
    places: tuple[Place, ...] = ()

    @field_validator("code")
    @classmethod
    def _db11(cls, value: str) -> str:
        if not DB11_GRID_CODE.match(value):
            raise ValueError(
                "grid code must be the 15-digit DB11 code (6 county + 3 street + 3 community + 3 grid)"
            )
        if value[12:] == "000":
            raise ValueError("grid sequence (last 3 digits) starts at 001")
        return value

    @field_validator("polygon")
    @classmethod
    def _closed_ring(cls, value: tuple[tuple[float, float], ...]) -> tuple[tuple[float, float], ...]:
        if value and len(value) < 3:
            raise ValueError("a grid polygon needs at least 3 points")
        return value

    @property
    def community_code(self) -> str:
        """The 12-digit statistical community code the grid code starts with."""
        return self.code[:12]


@RECORD
class Contact:
    #: A guardian (监护人) reached on his own channel has an id: ``channels_file`` lists his
    #: endpoints under it (``person_id``), and a closed case's 评价 link is sent there.
    id: str | None = Field(default=None, pattern=ID)
    name: str
    relation: str = ""
    phone: str = ""


@RECORD
class Resident:
    id: str = Field(pattern=ID)
    name: str
    household: str | None = None
    address: str = ""
    phone: str = ""
    age: int | None = Field(default=None, ge=0, le=130)
    living_alone: bool = False
    disabled: bool = False
    cognitive_impairment: bool = False
    emergency_contacts: tuple[Contact, ...] = ()
    medical_notes: str = ""

    @field_validator("emergency_contacts", mode="before")
    @classmethod
    def _contacts(cls, value: object) -> object:
        # Accept plain strings ("女儿 13800000000") as well as mappings.
        if isinstance(value, list | tuple):
            return [{"name": v} if isinstance(v, str) else v for v in value]
        return value


def utf8(value: object) -> object:
    """A text as its UTF-8 bytes; bytes only if they are UTF-8 (a record copied with
    ``dataclasses.replace`` holds them already; YAML's ``!!binary`` can give any). Anything else
    as it is: validation says what is wrong with it."""
    if isinstance(value, str):
        return value.encode()  # a lone surrogate has no UTF-8 form: UnicodeEncodeError, a ValueError
    if isinstance(value, bytes | bytearray):
        held = bytes(value)
        held.decode()  # not UTF-8: UnicodeDecodeError, a ValueError, which names the field
        return held
    return value


def _text(value: bytes) -> str:
    return value.decode()


#: Free text held as its UTF-8 bytes: read and written as text (imports, dumps, exports), kept
#: as bytes. A device's location is text of its own per device, mostly Chinese ("3号楼2单元902
#: 入户门"), which CPython keeps at two bytes a character with a 74-byte header: 112-byte blocks,
#: where the UTF-8 bytes are 64. 4.8 MB at 10⁵ devices (docs/benchmarks.md, "Fortieth pass").
#: Text that has no UTF-8 form (a lone surrogate) is refused when the record is validated.
Utf8Text = Annotated[bytes, BeforeValidator(utf8), PlainSerializer(_text, return_type=str)]


@RECORD
class Device:
    id: str = Field(min_length=1, max_length=DEVICE_ID_MAX)
    kind: DeviceKind
    grid: str
    model: str = ""
    #: Decoder profile (vendor mapping); defaults to the model's profile.
    profile: str | None = None
    #: Where it is, in the installer's words; held packed (:data:`Utf8Text`), read as text with
    #: :attr:`location_text`.
    location: Utf8Text = b""
    place: str | None = None
    household: str | None = None
    resident: str | None = None
    heartbeat_s: float = Field(default=3600.0, gt=0)
    installed: date | None = None

    @field_validator("id")
    @classmethod
    def _publishable(cls, value: str) -> str:
        refused = DEVICE_ID_REFUSED.search(value)
        if refused is not None:
            raise ValueError(
                f"device id {value[:64]!r} holds {refused.group()!r} at {refused.start()}: control"
                " characters and the MQTT wildcards + and # cannot be in a topic, so no message could name it"
            )
        return value

    @property
    def location_text(self) -> str:
        """:attr:`location` as text."""
        return self.location.decode()


class Street(_Model):
    code: str = Field(pattern=r"^\d{9}$")
    name: str


class CommunitySource(_Model):
    """One gateway of this community: its family and the base topic it publishes under.

    Real sites give each community its own root (a Zigbee2MQTT ``base_topic`` per instance,
    a TTS or ChirpStack application per community), so the hub node that owns a community
    subscribes to exactly these roots (issue 13: partitions are communities).

    The Things Stack, ChirpStack and native topics share one base (``v3``, ``application``,
    ``linli``) and put the application or community one level below it: ``application`` names
    it (``<app-id>@<tenant>``, the ChirpStack application id, the community's own code for
    native), and ``base_topic`` may then be left to the family's default.
    """

    family: Family
    #: Empty only with an ``application``: alone, the family's default root is every community's.
    base_topic: str = Field(default="", pattern=f"^({TOPIC_LEVELS})?$")
    application: str = Field(default="", max_length=128, pattern=r"^[A-Za-z0-9_.@-]*$")

    @model_validator(mode="after")
    def _own_root(self) -> CommunitySource:
        if self.application and self.family not in APPLICATION_LEVEL:
            raise ValueError(f"{self.family.value} topics have no application level; give a base_topic")
        if not self.base_topic and not self.application:
            needs = "an application" if self.family in APPLICATION_LEVEL else "a base_topic"
            raise ValueError(
                f"a {self.family.value} source of a community needs {needs}: the default root is every community's"
            )
        return self

    def as_family_source(self, community: str) -> FamilySource:
        """This source of ``community``: a native one with no ``application`` covers that
        community's own level only (``<base>/<code>/devices/+/events``). Taken whole, its
        ``<base>/+/…`` let the community's gateway, and the hub's reading of its root, speak for
        every community (found in review: a gateway bound to A raised B's SOS)."""
        if self.family is Family.NATIVE and not self.application:
            return FamilySource(self.family, self.base_topic, community)
        return FamilySource(self.family, self.base_topic, self.application)


class Community(_Model):
    code: str = Field(pattern=r"^\d{12}$")
    name: str
    street: Street | None = None
    #: The gateways' topic roots that belong to this community (none: the hub-wide sources).
    sources: tuple[CommunitySource, ...] = ()
    grids: tuple[Grid, ...] = Field(min_length=1)
    people: tuple[Person, ...] = ()
    residents: tuple[Resident, ...] = ()
    devices: tuple[Device, ...] = ()

    @model_validator(mode="after")
    def _references(self) -> Community:
        grids = {g.code for g in self.grids}
        for grid in self.grids:
            if grid.community_code != self.code:
                raise ValueError(
                    f"grid {grid.code} is not inside community {self.code} (its first 12 digits differ)"
                )
        if self.street is not None and not self.code.startswith(self.street.code):
            raise ValueError(f"community {self.code} is not inside street {self.street.code}")
        households = {h.id for g in self.grids for b in g.buildings for u in b.units for h in u.households}
        places = {p.id for g in self.grids for p in g.places}
        residents = {r.id for r in self.residents}
        _unique("grid", [g.code for g in self.grids])
        _unique("resident", [r.id for r in self.residents])
        _unique("device", [d.id for d in self.devices])
        _unique("person", [p.id for p in self.people])
        for resident in self.residents:
            if resident.household is not None and resident.household not in households:
                raise ValueError(f"resident {resident.id} names unknown household {resident.household}")
        for device in self.devices:
            if device.grid not in grids:
                raise ValueError(f"device {device.id} names unknown grid {device.grid}")
            if device.resident is not None and device.resident not in residents:
                raise ValueError(f"device {device.id} names unknown resident {device.resident}")
            if device.household is not None and device.household not in households:
                raise ValueError(f"device {device.id} names unknown household {device.household}")
            if device.place is not None and device.place not in places:
                raise ValueError(f"device {device.id} names unknown place {device.place}")
        for person in self.people:
            unknown = set(person.grids) - grids
            if unknown:
                raise ValueError(f"person {person.id} covers unknown grids {sorted(unknown)}")
        for source in self.sources:
            if source.family is Family.NATIVE and source.application not in ("", self.code):
                # linli/<community>/…: the level is the community, so it can only be this one's.
                raise ValueError(
                    f"community {self.code}: a native source's application is its own code, not {source.application}"
                )
        return self


#: One community's claim on ids: its code, its device ids, its resident ids.
IdClaim = tuple[str, Sequence[str], Sequence[str]]


def shared_ids(communities: Iterable[Community]) -> list[str]:
    """Device and resident ids that more than one community registers, one sentence each.

    The registry answers a device id with one subject, so an id two communities share makes
    one of them lose its device: a native press on ``linli/<other>/devices/<id>/events`` is
    then quarantined as ``community_mismatch`` — an SOS lost. Ids must be district-wide.
    (Within one community ``Community._references`` already refuses repeats.)
    """
    return [shared_sentence(*clash) for clash in shared_claims(map(id_claim, communities))]


def id_claim(community: Community) -> IdClaim:
    """The ids ``community`` registers, as :func:`shared_claims` takes them."""
    return (community.code, [d.id for d in community.devices], [r.id for r in community.residents])


def shared_sentence(what: str, item: str, first: str, second: str) -> str:
    """One clash of :func:`shared_claims`, for people."""
    return f"{what} id {item} is registered in communities {first} and {second}"


def shared_claims(claims: Iterable[IdClaim]) -> list[tuple[str, str, str, str]]:
    """``(what, id, first community, other community)`` for each id claimed twice, in order.

    Claims rather than models: the store checks an import against the communities it holds
    from their stored documents, without building 10⁵ devices' models for their ids.
    """
    owners: dict[tuple[str, str], str] = {}
    shared: list[tuple[str, str, str, str]] = []
    for code, devices, residents in claims:
        for what, ids in (("device", devices), ("resident", residents)):
            for item in ids:
                first = owners.setdefault((what, item), code)
                if first != code:
                    shared.append((what, item, first, code))
    return shared


def role_clashes(communities: Iterable[Community]) -> list[str]:
    """One sentence per person on several communities' rosters with different roles.

    A person acts with one role (``Actor.role``) over every grid of his roster entries: a duty
    officer of one community who volunteers in another would have the duty officer's desk over
    both (found in review: he closed the other community's SOS case). The same role in
    several communities is fine (a street's staff).
    """
    return roster_clashes((c.code, [(p.id, p.role.value) for p in c.people]) for c in communities)


def roster_clashes(rosters: Iterable[tuple[str, Sequence[tuple[str, str]]]]) -> list[str]:
    """:func:`role_clashes` over ``(community code, [(person id, role)])``: the store checks an
    import against the communities it holds from their stored documents."""
    first: dict[str, tuple[str, str]] = {}
    clashes: list[str] = []
    for code, people in rosters:
        for person, role in people:
            held, where = first.setdefault(person, (role, code))
            if held != role:
                clashes.append(
                    f"person {person} is {held} in community {where} and {role} in {code}:"
                    " one person has one role (give one of them a new id)"
                )
    return clashes


def source_overlaps(claims: Iterable[tuple[str, Sequence[FamilySource]]]) -> list[str]:
    """One sentence per two communities whose own gateway topics overlap (``filters_overlap``).

    Not only the same root twice: community A's Zigbee2MQTT root ``estate`` holds B's
    ``estate/b``, a TTS ``v3`` with no application holds every application's ``v3/<app>``. The
    hub gave such a message to the most specific root's community, but A's gateway credential
    (bound to A by ``linli broker config``) may write all of ``estate/#``, B's presses included
    (found in review). Compared within a first topic level (and second, where both are plain),
    so a district's thousands of roots are not compared each with each.
    """
    by_level: dict[str, list[tuple[str, str]]] = {}
    for code, sources in claims:
        for source in sources:
            for topic_filter in source.subscriptions():
                by_level.setdefault(topic_filter.split("/", 1)[0], []).append((topic_filter, code))
    clashes: dict[tuple[str, str], str] = {}
    for entries in by_level.values():
        plain: dict[str, list[tuple[str, str]]] = {}
        open_second: list[tuple[str, str]] = []
        for entry in entries:
            levels = entry[0].split("/", 2)
            if len(levels) > 1 and levels[1] not in ("+", "#"):
                plain.setdefault(levels[1], []).append(entry)
            else:
                open_second.append(entry)
        groups = [*plain.values(), open_second]
        pairs = [(a, b) for group in groups for i, a in enumerate(group) for b in group[i + 1 :]]
        pairs += [(a, b) for a in open_second for group in plain.values() for b in group]
        for (first, one), (second, other) in pairs:
            if one != other and filters_overlap(first, second):
                key = (min(one, other), max(one, other))
                clashes.setdefault(
                    key, f"communities {key[0]} and {key[1]} both have gateway topics {first} and {second}"
                )
    return list(clashes.values())


def describe_shared(shared: list[str], *, at_most: int = 5) -> str:
    """:func:`shared_ids`' sentences as one message, the first few of a long list and a count."""
    more = f"; and {len(shared) - at_most} more" if len(shared) > at_most else ""
    return "; ".join(shared[:at_most]) + more


def _unique(what: str, ids: list[str]) -> None:
    seen: set[str] = set()
    for item in ids:
        if item in seen:
            raise ValueError(f"duplicate {what} id {item}")
        seen.add(item)


class CommunityFile(_Model):
    version: int = Field(default=1, ge=1, le=1)
    communities: tuple[Community, ...]

    @model_validator(mode="after")
    def _roots_owned_once(self) -> CommunityFile:
        """A topic belongs to one community's gateways: two owners would each take the other's presses."""
        clashes = source_overlaps(
            (c.code, [s.as_family_source(c.code) for s in c.sources]) for c in self.communities
        )
        if clashes:
            raise ValueError(describe_shared(clashes))
        return self

    @model_validator(mode="after")
    def _one_role_per_person(self) -> CommunityFile:
        clashes = role_clashes(self.communities)
        if clashes:
            raise ValueError(describe_shared(clashes))
        return self

    @model_validator(mode="after")
    def _ids_owned_once(self) -> CommunityFile:
        """A device or resident id belongs to one community: the registry keeps one of each."""
        shared = shared_ids(self.communities)
        if shared:
            raise ValueError(describe_shared(shared))
        return self
