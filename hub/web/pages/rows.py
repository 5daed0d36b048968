"""One open case as the console shows it: place, elder (masked by role), light with its label."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any

from hub.casework.access import Permission, Reach, Where
from hub.community.privacy import mask_name

if TYPE_CHECKING:
    from hub.web.api import Api

LIGHT_RANK = {"red": 0, "yellow": 1, "green": 2}
SEVERITY_RANK = {"critical": 0, "major": 1, "minor": 2, "info": 3}


@dataclass(frozen=True, slots=True, kw_only=True)
class CaseRow:
    id: str
    sos: bool
    severity: str
    category: str
    title: dict[str, str]
    grid: str
    grid_name: str
    place: str
    elder: str
    elapsed_s: float
    light: str
    light_stage: str
    assignee: str
    state: str
    filed_at: str

    @property
    def rank(self) -> tuple[int, int, int, str]:
        """SOS always first, then the worst light, the severity, the oldest."""
        return (
            0 if self.sos else 1,
            LIGHT_RANK.get(self.light, 3),
            SEVERITY_RANK.get(self.severity, 9),
            self.filed_at,
        )


def worst_stage(view: dict[str, Any]) -> tuple[str, str]:
    """(light, stage) of the worst open stage; green on the whole case when all are done."""
    open_stages = [s for s in view["sla"] if not s["done"]] or [{"light": "green", "stage": "case"}]
    worst = min(open_stages, key=lambda s: LIGHT_RANK.get(s["light"], 3))
    return str(worst["light"]), str(worst["stage"])


def place_of(web: Api, reach: Reach, device_id: str, where: Where) -> tuple[str, str]:
    """(grid name, place): building / unit / room or the named place where ``locations`` reaches."""
    device = web.registry.device(device_id)
    if device is None:
        return "", ""
    found = web.registry.grid(device.grid)
    grid_name = found[1].name if found is not None else device.grid
    if reach.allows(Permission.LOCATIONS, where):
        return grid_name, web.registry.place_label(device_id)
    return grid_name, grid_name


def elder_of(web: Api, reach: Reach, device_id: str, where: Where) -> str:
    """The elder behind the device: the name where ``personal_data`` reaches, else masked."""
    device = web.registry.device(device_id)
    if device is None or device.resident is None:
        return ""
    resident = web.registry.held_resident(device.resident)  # its name only
    if resident is None:
        return ""
    return resident.name if reach.allows(Permission.PERSONAL_DATA, where) else mask_name(resident.name)


def case_row(web: Api, reach: Reach, view: dict[str, Any], *, now: float) -> CaseRow:
    where = Where(community=view["community"], grid=view["grid"], assignee=view["assignee"])
    grid_name, place = place_of(web, reach, view["subject"], where)
    light, stage = worst_stage(view)
    return CaseRow(
        id=view["id"],
        sos=view["category"] == "sos",
        severity=view["severity"],
        category=view["category"],
        title=view["title"],
        grid=view["grid"] or "",
        grid_name=grid_name,
        place=place,
        elder=elder_of(web, reach, view["subject"], where),
        elapsed_s=now - datetime.fromisoformat(view["filed_at"]).timestamp(),
        light=light,
        light_stage=stage,
        assignee=view["assignee"] or "",
        state=view["state"],
        filed_at=view["filed_at"],
    )
