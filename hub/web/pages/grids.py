"""The grid map: each community's grids coloured by open cases, and a grid's buildings → units → devices.

Polygons are drawn when the registry has them (scaled into one SVG per community); otherwise
a schematic of tiles in the registry's order (grid codes number west→east, north→south).
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from typing import TYPE_CHECKING

from hub.casework.access import Permission, Reach, Where
from hub.community.model import Community, Device, Grid
from hub.errors import NotFoundError
from hub.ingest.device_state import is_online
from hub.steps import Steps
from hub.web.pages.devices import DEVICES_PER_STEP

if TYPE_CHECKING:
    from hub.web.api import Api

SVG_SIZE = 600.0
#: Devices listed per room or place; the rest are counted and the devices page lists them all.
DOTS_PER_PLACE = 12


@dataclass(frozen=True, slots=True, kw_only=True)
class GridTile:
    code: str
    name: str
    open_cases: int
    sos: int
    devices: int
    points: str  # SVG polygon points, "" when the registry has none

    @property
    def level(self) -> int:
        """0 none open, 1 some, 2 an SOS or five and more (the colour, always with the number)."""
        return 2 if self.sos or self.open_cases >= 5 else (1 if self.open_cases else 0)


@dataclass(frozen=True, slots=True, kw_only=True)
class CommunityMap:
    code: str
    name: str
    tiles: list[GridTile]
    drawn: bool


def scale_polygons(grids: list[Grid]) -> dict[str, str]:
    points = [p for g in grids for p in g.polygon]
    if not points:
        return {}
    xs, ys = [p[0] for p in points], [p[1] for p in points]
    span = max(max(xs) - min(xs), max(ys) - min(ys)) or 1.0

    def at(x: float, y: float) -> str:
        # North up: a larger latitude (y) is higher on the screen.
        return f"{(x - min(xs)) / span * SVG_SIZE:.1f},{(max(ys) - y) / span * SVG_SIZE:.1f}"

    return {g.code: " ".join(at(x, y) for x, y in g.polygon) for g in grids if g.polygon}


def open_by_grid(web: Api, reach: Reach) -> tuple[Counter[str], Counter[str]]:
    """Open cases and open SOS cases per grid the reader may see (one query)."""
    counts = web.casework.cases.open_per_grid(visible=web.casework.case_filter(reach, Permission.READ))
    opened: Counter[str] = Counter()
    sos: Counter[str] = Counter()
    for grid, (every, of_sos) in counts.items():
        if grid is not None:
            opened[grid], sos[grid] = every, of_sos
    return opened, sos


def grid_map(web: Api, reach: Reach) -> list[CommunityMap]:
    opened, sos = open_by_grid(web, reach)
    maps = []
    for community in web.registry.communities:
        grids = [g for g in community.grids if reach.allows(Permission.READ, Where(community.code, g.code))]
        if not grids:
            continue
        per_grid = web.registry.devices_per_grid()
        polygons = scale_polygons(grids)
        tiles = [
            GridTile(
                code=g.code,
                name=g.name,
                open_cases=opened[g.code],
                sos=sos[g.code],
                devices=per_grid[g.code],
                points=polygons.get(g.code, ""),
            )
            for g in grids
        ]
        maps.append(CommunityMap(code=community.code, name=community.name, tiles=tiles, drawn=bool(polygons)))
    return maps


@dataclass(frozen=True, slots=True, kw_only=True)
class DeviceDot:
    id: str
    kind: str
    online: bool | None
    battery: float | None


@dataclass(frozen=True, slots=True, kw_only=True)
class Spot:
    """A room or a place with its first devices, and how many it holds in all."""

    name: str
    dots: list[DeviceDot]
    total: int


@dataclass(frozen=True, slots=True, kw_only=True)
class UnitView:
    name: str
    rooms: list[Spot]


@dataclass(frozen=True, slots=True, kw_only=True)
class GridDetail:
    code: str
    name: str
    community: str
    buildings: list[tuple[str, list[UnitView]]]
    places: list[Spot]
    elsewhere: Spot
    locations: bool
    open_cases: int


def _find(web: Api, code: str) -> tuple[Community, Grid] | None:
    return web.registry.grid(code)


def grid_detail_steps(web: Api, reach: Reach, code: str) -> Steps[GridDetail]:
    """The grid's page, walking its community's devices in steps (≈ 50 ms at 100 000 in one go,
    a stall an SOS press would wait out)."""
    found = _find(web, code)
    where = Where(community=found[0].code, grid=code) if found is not None else None
    if found is None or where is None or not reach.allows(Permission.READ, where):
        raise NotFoundError("没有这个网格 / no such grid")
    community, grid = found
    now = web.clock.now()
    locations = reach.allows(Permission.LOCATIONS, where)

    def dot(device: Device) -> DeviceDot:
        state = web.states.get(device.id)
        return DeviceDot(
            id=device.id,
            kind=device.kind.value,
            online=is_online(state, device.heartbeat_s, now),
            battery=state.battery if state is not None else None,
        )

    by_household: dict[str, list[Device]] = {}
    by_place: dict[str, list[Device]] = {}
    elsewhere: list[Device] = []
    for n, device in enumerate(community.devices, 1):
        if n % DEVICES_PER_STEP == 0:
            yield
        if device.grid != code:
            continue
        household = device.household
        if household is None and device.resident is not None:
            resident = web.registry.held_resident(device.resident)  # its household only
            household = resident.household if resident is not None else None
        if locations and household is not None:
            by_household.setdefault(household, []).append(device)
        elif device.place is not None:
            by_place.setdefault(device.place, []).append(device)
        else:
            elsewhere.append(device)

    def spot(name: str, devices: list[Device]) -> Spot:
        return Spot(name=name, dots=[dot(d) for d in devices[:DOTS_PER_PLACE]], total=len(devices))

    buildings = (
        [
            (
                b.name,
                [
                    UnitView(
                        name=u.name, rooms=[spot(h.room, by_household.get(h.id, [])) for h in u.households]
                    )
                    for u in b.units
                ],
            )
            for b in grid.buildings
        ]
        if locations
        else []
    )
    opened, _ = open_by_grid(web, reach)
    return GridDetail(
        code=code,
        name=grid.name,
        community=community.name,
        buildings=buildings,
        places=[spot(p.name, by_place.get(p.id, [])) for p in grid.places],
        elsewhere=spot("", elsewhere),
        locations=locations,
        open_cases=opened[code],
    )
