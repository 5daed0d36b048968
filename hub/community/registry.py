"""The community registry at run time: who and what is where, answered from memory.

Built from the communities held in the store (imported from YAML/CSV), plus the devices
that published without being registered: those are **unassigned**, have no grid, and
their alerts go to the command centre — never to nowhere. Lookups on the hot path are
dictionary reads.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import cast

from adapters.events import DeviceKind
from hub.community.files import load_yaml
from hub.community.model import (
    Building,
    Community,
    Device,
    Grid,
    Household,
    Place,
    Resident,
    Unit,
    describe_shared,
    role_clashes,
    shared_ids,
)
from hub.community.personal import PersonalData
from hub.community.roster import Person
from hub.errors import RegistryError
from hub.records import UnassignedDevice
from hub.timeseries.schema import SubjectInfo
from rules.facts import FactsMemo
from rules.subject import Subject, own_ids

_NO_SERIES_INFO = SubjectInfo()


@dataclass(frozen=True, slots=True)
class Location:
    """Where a device is, resolved through the hierarchy (for people, not for rules)."""

    community: Community
    grid: Grid
    building: Building | None = None
    unit: Unit | None = None
    household: Household | None = None
    place: Place | None = None


#: A LoRaWAN DevEUI: 16 hex digits (the id ChirpStack names a device by).
_HEX16 = re.compile(r"[0-9A-Fa-f]{16}")


class Registry:
    """Look-ups over the communities; a device or resident id two communities share is refused.

    ``strict=False`` is for the hub's start on its own store only: the store refuses such an
    import since ids are checked across communities (``Store.save_communities``), but a store
    written before that check may still hold one. Refusing to start there would lose *every*
    community's SOS until someone edits the registry, to save one device's: the hub starts,
    the later community keeps the id (as before), and ``shared`` names each clash for the
    log and the health page. Everything else (tools, tests, imports) is strict.
    """

    def __init__(
        self,
        *,
        communities: Iterable[Community] = (),
        unassigned: Iterable[UnassignedDevice] = (),
        strict: bool = True,
        personal: PersonalData | None = None,
    ) -> None:
        communities = tuple(communities)
        #: The residents' addresses, phones, emergency contacts and medical notes, packed: the
        #: communities and every record handed out hold none of it (``hub.community.personal``);
        #: :meth:`resident` and :meth:`whole` give it to the reader who shows it.
        #: ``personal``: what the store's read kept while it built ``communities`` (their
        #: residents come without it), to which this adds the rest.
        self._personal = PersonalData() if personal is None else personal
        #: The communities with their residents' personal data kept apart (copies: the caller's
        #: models are not changed).
        self.communities = _kept_apart(communities, self._personal)
        #: Ids registered by more than one community, one sentence each (``strict=False`` only).
        self.shared: list[str] = []
        self._grids: dict[str, tuple[Community, Grid]] = {}
        #: Built here, then held only through the subjects (``Subject.record``): one table keyed
        #: by device id, not two. A device's community is its grid's (``_grids``): a pair per
        #: device was ≈ 6 MB at 100 000 devices for what the grid code already says.
        devices_by_id: dict[str, Device] = {}
        self._residents: dict[str, Resident] = {}
        #: Per community code, a household's only resident, or ``None`` where several live (see
        #: ``_resident_of``). Per community: household ids are a community's own ("b1-u1-101" in
        #: each), so a district-wide table gave one community's door another's resident.
        self._sole_resident: dict[str, dict[str, Resident | None]] = {}
        #: Per community code, a household's unit; and a unit's building (by the unit object's
        #: identity: the registry holds every unit as long as it lives). Not a ``(building, unit,
        #: household)`` tuple per household: those were 3.2 MB at 50 000 households
        #: (docs/benchmarks.md, "Thirty-eighth pass"); the household is found again among its
        #: unit's few (:meth:`_household`).
        self._households: dict[str, dict[str, Unit]] = {}
        self._buildings: dict[int, Building] = {}
        self._places: dict[str, Place] = {}
        self._subjects: dict[str, Subject] = {}
        self._people: dict[str, tuple[Person, ...]] = {}
        self.unassigned: dict[str, UnassignedDevice] = {}
        for community in self.communities:
            devices, residents = len(devices_by_id), len(self._residents)
            self._people[community.code] = community.people
            homes = self._households.setdefault(community.code, {})
            for grid in community.grids:
                self._grids[grid.code] = (community, grid)
                self._places.update((p.id, p) for p in grid.places)
                for building in grid.buildings:
                    for unit in building.units:
                        self._buildings[id(unit)] = building
                        for household in unit.households:
                            homes[household.id] = unit
            self._residents.update((r.id, r) for r in community.residents)
            sole = self._sole_resident.setdefault(community.code, {})
            for resident in community.residents:
                if resident.household is not None:
                    sole[resident.household] = None if resident.household in sole else resident
            devices_by_id.update((device.id, device) for device in community.devices)
            if len(devices_by_id) != devices + len(community.devices) or len(
                self._residents
            ) != residents + len(community.residents):
                # Lengths, not a set per community: free at 10⁵ devices when nothing clashes.
                self.shared = shared_ids(self.communities)
                if strict:
                    raise RegistryError(describe_shared(self.shared), file="registry", field="communities")
        #: People on several rosters with different roles, one sentence each (``strict=False``
        #: only): such a person acts with the first community's role, there only (Casework.reach).
        self.role_clashes = role_clashes(self.communities)
        if self.role_clashes and strict:
            raise RegistryError(describe_shared(self.role_clashes), file="registry", field="communities")
        #: A device's series tags are its subject's ``memo``, filled on its first event (most of
        #: 10⁵ registered devices report rarely); the values are few (low-cardinality tags), so
        #: equal ones are one object: at 10⁵ devices most are equal.
        self._tags: dict[SubjectInfo, SubjectInfo] = {}
        #: Devices behind one gateway node: ``node/switch1`` belongs to ``node`` (Tasmota LWT).
        self._children: dict[str, list[str]] = {}
        #: The subjects' attributes share what repeats (``rules.facts``); only this build uses it.
        facts = FactsMemo()
        for device in devices_by_id.values():
            self._subjects[device.id] = self._subject(self._grids[device.grid][0], device, facts)
            if "/" in device.id:
                self._children.setdefault(device.id.rsplit("/", 1)[0], []).append(device.id)
        #: A DevEUI registered in upper case (as printed on the label and shown by TTS), by its
        #: lower-case form: ChirpStack publishes and its adapters read EUIs in lower case, and
        #: without this the registered button's SOS was an unknown device's press (found in
        #: review). Only ids of 16 hex digits with an upper-case letter: usually none.
        self._eui_aliases: dict[str, str] = {
            device_id.lower(): device_id
            for device_id in self._subjects
            if len(device_id) == 16 and device_id.lower() != device_id and _HEX16.fullmatch(device_id)
        }
        for stranger in unassigned:
            if stranger.id not in self._subjects and stranger.id not in self._eui_aliases:
                self.unassigned[stranger.id] = stranger
        #: Registered devices per grid code, counted on first use (the map page's tiles).
        self._per_grid: Counter[str] | None = None

    @classmethod
    def load(cls, path: Path) -> Registry:
        """A registry straight from a community YAML file (tools and tests)."""
        return cls(communities=load_yaml(path))

    def _subject(self, community: Community, device: Device, facts: FactsMemo) -> Subject:
        place = self._places[device.place].kind.value if device.place is not None else None
        resident = self._resident_of(device, community.code)
        # Everything the shared facts are made of, as one tuple, and the facts made from that
        # tuple alone: most devices find their twin's facts by it, no dict built for them
        # (``rules.facts``), and the key cannot leave out a fact the dict holds.
        key: _FactsKey = (
            device.model,
            (device.heartbeat_s, device.heartbeat_s.__class__),
            place,
            None
            if resident is None
            else (resident.living_alone, resident.disabled, resident.cognitive_impairment, resident.age),
        )
        shared = facts.shared(key)
        if shared is None:
            shared = facts.keep(key, _facts(key))
        return Subject(
            device_id=device.id,
            kind=device.kind,
            grid=device.grid,
            community=community.code,
            # The shared dict itself: the device's own ids are ``own``, not a mapping per device.
            attributes=shared,
            record=device,
            own=own_ids(None if resident is None else resident.id, device.place),
        )

    def _resident_of(self, device: Device, community: str) -> Resident | None:
        """The device's resident, or the only resident of the household whose door it is on
        (``community``: the code of the device's community)."""
        if device.resident is not None:
            return self._residents.get(device.resident)
        if device.household is not None:
            sole = self._sole_resident.get(community)
            return None if sole is None else sole.get(device.household)
        return None

    def _series_info(self, device: Device) -> SubjectInfo:
        location = self._located(device)
        building = location.building.name if location.building is not None else ""
        resident = self._resident_of(device, location.community.code)
        care = ""
        if resident is not None:
            care = (
                "living_alone" if resident.living_alone else ("aged_80" if (resident.age or 0) >= 80 else "")
            )
        place = self._places[device.place] if device.place else None
        info = SubjectInfo(
            community=location.community.code,
            grid=device.grid,
            building=building,
            device_kind=device.kind.value,
            model=device.model,
            place=place.kind.value if place is not None else "",
            care=care,
        )
        return self._tags.setdefault(info, info)

    def series_info(self, device_id: str) -> SubjectInfo:
        """Low-cardinality tags for the device's time series; empty for unknown devices."""
        subject = self._subjects.get(device_id)
        return _NO_SERIES_INFO if subject is None else self.series_of(subject)

    def series_of(self, subject: Subject) -> SubjectInfo:
        """:meth:`series_info` of a subject the caller holds (the pipeline's, every event): the
        tags are the subject's own memo, no lookup by id. Empty for a subject this registry did
        not make (an unknown device's)."""
        info = cast("SubjectInfo | None", subject.memo)  # only this method sets it
        if info is None:
            if subject.record is None:
                return _NO_SERIES_INFO
            info = self._series_info(_device(subject))
            object.__setattr__(subject, "memo", info)  # frozen: a memo, as ``Subject.plans``
        return info

    # -- the adapters' DeviceHints port -----------------------------------------------------

    def device_kind(self, device_id: str) -> DeviceKind | None:
        subject = self._subjects.get(device_id)
        return subject.kind if subject is not None else None

    def device_profile(self, device_id: str) -> str | None:
        device = self.device(device_id)
        if device is None:
            return None
        return device.profile or device.model or None

    def registered_id(self, device_id: str) -> str:
        # The subject's id is ``device.id``, the object the registry's own tables are keyed by
        # (and a slots read, where ``Device`` is a pydantic model).
        subject = self._subjects.get(device_id)
        if subject is not None:
            return subject.device_id
        return self._eui_aliases.get(device_id, device_id) if self._eui_aliases else device_id

    # -- lookups ------------------------------------------------------------------------------

    def children(self, node_id: str) -> list[str]:
        """Registered devices whose id is ``node_id/…`` (a node's availability is theirs)."""
        return self._children.get(node_id, [])

    def subjects(self) -> list[Subject]:
        """Every registered (expected) device: absence rules watch them even if they never report."""
        return list(self._subjects.values())

    def registered(self, device_id: str) -> Subject | None:
        """The subject of a registered device (``None``: the registry does not know it)."""
        return self._subjects.get(device_id)

    def subject(self, device_id: str) -> Subject:
        subject = self._subjects.get(device_id)
        return subject if subject is not None else Subject(device_id=device_id)

    def note_unassigned(self, device_id: str, family: str, seen_at: float) -> UnassignedDevice | None:
        """Record a device that published without being registered; returns it the first time only."""
        if device_id in self._subjects or device_id in self.unassigned:
            return None
        stranger = self.unassigned[device_id] = UnassignedDevice(device_id, family, seen_at)
        return stranger

    def device(self, device_id: str) -> Device | None:
        subject = self._subjects.get(device_id)
        return _device(subject) if subject is not None else None

    def devices(self) -> list[Device]:
        return [_device(subject) for subject in self._subjects.values()]

    def devices_per_grid(self) -> Counter[str]:
        """How many devices each grid has: counted once (a registry does not change; a reload
        is a new one), not on every map page over every device."""
        if self._per_grid is None:
            self._per_grid = Counter(_device(s).grid for s in self._subjects.values())
        return self._per_grid

    def place_label(self, device_id: str) -> str:
        """Where a device is, for people: grid, building, unit, room, named place, spot.

        A device's free-text ``location`` often spells the same place again ("1号楼1单元401
        入户门" for room 401 of unit 1, building 1): only what it adds (入户门) is appended.
        """
        location = self.location(device_id)
        if location is None:
            return ""
        device = self.device(device_id)
        parts = [
            part
            for part in (
                location.grid.name,
                location.building.name if location.building else "",
                location.unit.name if location.unit else "",
                location.household.room if location.household else "",
                location.place.name if location.place else "",
            )
            if part
        ]
        spot = spot_beyond(device.location_text if device else "", parts)
        return " ".join([*parts, spot] if spot else parts)

    def location(self, device_id: str) -> Location | None:
        device = self.device(device_id)
        return self._located(device) if device is not None else None

    def _located(self, device: Device) -> Location:
        community, grid = self._grids[device.grid]
        home: str | None = device.household
        if home is None and device.resident is not None:
            resident = self._residents.get(device.resident)
            home = resident.household if resident is not None else None
        building, unit, household = (
            (None, None, None) if home is None else self._household(community.code, home)
        )
        place = self._places.get(device.place) if device.place else None
        return Location(community, grid, building, unit, household, place)

    def _household(
        self, community: str, household_id: str
    ) -> tuple[Building, Unit, Household] | tuple[None, None, None]:
        """A household of ``community`` (its code) with its building and unit; three ``None``
        where the community has no such household (a resident id two communities register,
        ``strict=False``, may name the other's household: a location without it, not an error)."""
        homes = self._households.get(community)
        unit = None if homes is None else homes.get(household_id)
        if unit is None:
            return None, None, None
        # The last of that id, as the table kept the last one registered (ids may repeat).
        household = next(h for h in reversed(unit.households) if h.id == household_id)
        return self._buildings[id(unit)], unit, household

    def resident(self, resident_id: str) -> Resident | None:
        """The resident whole, personal data included (unpacked for this call)."""
        held = self._residents.get(resident_id)
        return None if held is None else self._personal.whole(held)

    def held_resident(self, resident_id: str) -> Resident | None:
        """The resident as held, without personal data: for a name, a household, the care flags
        (pages that list many; :meth:`resident` unpacks, ≈ 6 µs a record)."""
        return self._residents.get(resident_id)

    def whole(self, resident: Resident) -> Resident:
        """A resident the registry holds (in :attr:`communities`, the elder register) with its personal data."""
        return self._personal.whole(resident)

    def resident_of_device(self, device_id: str) -> Resident | None:
        """The registered device's resident, or the only resident of the household whose door it is on."""
        subject = self._subjects.get(device_id)
        if subject is None or subject.community is None:
            return None
        held = self._resident_of(_device(subject), subject.community)
        return None if held is None else self._personal.whole(held)

    def grid(self, code: str) -> tuple[Community, Grid] | None:
        return self._grids.get(code)

    def people_of(self, community_code: str) -> tuple[Person, ...]:
        return self._people.get(community_code, ())


def _kept_apart(communities: tuple[Community, ...], personal: PersonalData) -> tuple[Community, ...]:
    """``communities`` with each resident's personal data kept in ``personal`` instead.

    Not a resident whose id another community registers too (``strict=False``): kept by id,
    one's data would be the other's, so those are held whole (the first of them may come kept
    already: the store's read keeps them as it builds, ``hub.community.trusted``).
    """
    seen: set[str] = set()
    twice: set[str] = set()
    for community in communities:
        for resident in community.residents:
            (twice if resident.id in seen else seen).add(resident.id)
    kept: list[Community] = []
    for community in communities:
        residents = tuple(
            personal.release(r) if r.id in twice else personal.keep(r) for r in community.residents
        )
        changed = any(a is not b for a, b in zip(residents, community.residents, strict=True))
        kept.append(community.model_copy(update={"residents": residents}) if changed else community)
    return tuple(kept)


def _device(subject: Subject) -> Device:
    """A registered subject's device record (``Subject.record``, set by :meth:`Registry._subject`)."""
    return cast(Device, subject.record)  # only the registry makes these subjects


#: (model, (heartbeat, its type), place kind, (living alone, disabled, cognitive impairment,
#: age) of the resident): a device's shared facts (``Registry._subject``). The type is part of
#: what is equal: 3600 and 3600.0 are one dict key, not one fact.
_FactsKey = tuple[str, tuple[float, type], str | None, tuple[bool, bool, bool, int | None] | None]


def _facts(key: _FactsKey) -> dict[str, str | bool | int | float]:
    """What rules may know of a device besides its own ids (``rules.facts``): scopes, conditions, periods."""
    model, (beat, _), place, resident = key
    attributes: dict[str, str | bool | int | float] = {
        "device.model": model,
        # Absence rules such as "offline after 2× the heartbeat" read the interval from here.
        "device.heartbeat_s": beat,
    }
    if place is not None:
        attributes["place.kind"] = place
    if resident is not None:
        living_alone, disabled, cognitive_impairment, age = resident
        attributes["resident.living_alone"] = living_alone
        attributes["resident.disabled"] = disabled
        attributes["resident.cognitive_impairment"] = cognitive_impairment
        if age is not None:
            attributes["resident.age"] = age
            attributes["resident.aged_80_plus"] = age >= 80
    return attributes


def spot_beyond(text: str, parts: list[str]) -> str:
    """What ``text`` says beyond ``parts``: each part it starts with (in order, spaces ignored) is
    dropped, so a spot that repeats the building, unit, room or place adds only what is new."""
    rest = text.strip()
    for part in parts:
        after = rest[len(part) :]
        # Room 40 is not the start of "401": a number part must end where a number ends.
        if rest.startswith(part) and not (part[-1].isdigit() and after[:1].isdigit()):
            rest = after.lstrip()
    return rest
