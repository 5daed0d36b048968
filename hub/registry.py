"""The community registry: grids, people on duty, residents and the devices expected to report.

Loaded from the community YAML file (the simulator writes the same format). Devices that
publish without being registered are kept as **unassigned**: they have no grid, so their
alerts go to the command centre — never to nowhere.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from pathlib import Path

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from adapters.events import DeviceKind
from hub.errors import RegistryError
from hub.roster import Person
from rules.subject import Subject

#: Beijing DB11 unit-grid code: 6 county (GB/T 2260) + 3 street + 3 community + 3 grid sequence.
DB11_GRID_CODE = re.compile(r"^\d{15}$")


class _Model(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class Grid(_Model):
    code: str
    name: str

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

    @property
    def community_code(self) -> str:
        """The 12-digit statistical community code the grid code starts with."""
        return self.code[:12]


class Resident(_Model):
    id: str
    name: str
    address: str = ""
    living_alone: bool = False
    age: int | None = None
    phone: str = ""
    emergency_contacts: tuple[str, ...] = ()


class Device(_Model):
    id: str = Field(min_length=1)
    kind: DeviceKind
    grid: str
    model: str = ""
    location: str = ""
    resident: str | None = None
    heartbeat_s: float = Field(default=3600.0, gt=0)


class Community(_Model):
    code: str = Field(pattern=r"^\d{12}$")
    name: str
    grids: tuple[Grid, ...] = Field(min_length=1)
    people: tuple[Person, ...] = ()
    residents: tuple[Resident, ...] = ()
    devices: tuple[Device, ...] = ()


class RegistryFile(_Model):
    version: int = 1
    communities: tuple[Community, ...]


class Registry:
    """In-memory view of the community file plus the unassigned devices seen since start."""

    def __init__(self, *, communities: Iterable[Community] = ()) -> None:
        self.communities = tuple(communities)
        self._grids: dict[str, tuple[Community, Grid]] = {}
        self._devices: dict[str, Device] = {}
        self._residents: dict[str, Resident] = {}
        self._subjects: dict[str, Subject] = {}
        self.unassigned: dict[str, float] = {}
        for community in self.communities:
            for grid in community.grids:
                self._grids[grid.code] = (community, grid)
            for resident in community.residents:
                self._residents[resident.id] = resident
            for device in community.devices:
                self._devices[device.id] = device
        for device in self._devices.values():
            self._subjects[device.id] = self._subject(device)

    @classmethod
    def load(cls, path: Path) -> Registry:
        try:
            doc = yaml.safe_load(path.read_text(encoding="utf-8"))
        except OSError as exc:
            raise RegistryError(f"cannot read: {exc.strerror}", file=str(path)) from None
        except yaml.YAMLError as exc:
            raise RegistryError(f"not valid YAML: {exc}", file=str(path)) from None
        try:
            parsed = RegistryFile.model_validate(doc)
        except ValidationError as exc:
            error = exc.errors()[0]
            raise RegistryError(
                error["msg"], file=str(path), field=".".join(map(str, error["loc"]))
            ) from None
        registry = cls(communities=parsed.communities)
        registry._check_references(str(path))
        return registry

    def _check_references(self, file: str) -> None:
        for community in self.communities:
            codes = {g.code for g in community.grids}
            for grid in community.grids:
                if grid.community_code != community.code:
                    raise RegistryError(
                        f"grid {grid.code} is not inside community {community.code}", file=file
                    )
            for device in community.devices:
                if device.grid not in codes:
                    raise RegistryError(f"device {device.id} names unknown grid {device.grid}", file=file)
                if device.resident is not None and device.resident not in self._residents:
                    raise RegistryError(
                        f"device {device.id} names unknown resident {device.resident}", file=file
                    )
            for person in community.people:
                unknown = set(person.grids) - codes
                if unknown:
                    raise RegistryError(
                        f"person {person.id} covers unknown grids {sorted(unknown)}", file=file
                    )

    def _subject(self, device: Device) -> Subject:
        community, _grid = self._grids[device.grid]
        attributes: dict[str, str | bool | int | float] = {"device.model": device.model}
        if device.resident is not None:
            resident = self._residents[device.resident]
            attributes["resident.id"] = resident.id
            attributes["resident.living_alone"] = resident.living_alone
            if resident.age is not None:
                attributes["resident.age"] = resident.age
        return Subject(
            device_id=device.id,
            kind=device.kind,
            grid=device.grid,
            community=community.code,
            attributes=attributes,
        )

    # -- lookups used on the hot path ------------------------------------------------------

    def device_kind(self, device_id: str) -> DeviceKind | None:
        device = self._devices.get(device_id)
        return device.kind if device is not None else None

    def subject(self, device_id: str, seen_at: float) -> Subject:
        """The rule subject for a device; an unknown device is recorded as unassigned."""
        subject = self._subjects.get(device_id)
        if subject is None:
            self.unassigned.setdefault(device_id, seen_at)
            subject = Subject(device_id=device_id)
        return subject

    def device(self, device_id: str) -> Device | None:
        return self._devices.get(device_id)

    def grid(self, code: str) -> tuple[Community, Grid] | None:
        return self._grids.get(code)

    def people_of(self, community_code: str) -> tuple[Person, ...]:
        for community in self.communities:
            if community.code == community_code:
                return community.people
        return ()
