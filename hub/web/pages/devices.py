"""The devices page: health of each device, filters, unassigned devices, the quarantine.

Bounded for 100 000 devices: one pass over the registry with dictionary reads only (no
per-device rendering until the page is chosen), and at most :data:`MAX_PAGE` rows rendered.
The pass is made in steps (:func:`device_page_steps`): at 100 000 devices it is 0.1–0.2 s, a
stall an SOS press arriving meanwhile would wait out in one go.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from typing import TYPE_CHECKING

from hub.casework.access import Permission, Reach, Scope, Where
from hub.clock import iso
from hub.ingest.device_state import is_online
from hub.records import QuarantineRecord
from hub.steps import Steps
from rules.battery import low_battery_pct

if TYPE_CHECKING:
    from hub.web.api import Api

PAGE = 100
MAX_PAGE = 500


class Show(StrEnum):
    ALL = "all"
    OFFLINE = "offline"
    LOW_BATTERY = "low_battery"
    UNASSIGNED = "unassigned"


@dataclass(frozen=True, slots=True, kw_only=True)
class DeviceRow:
    id: str
    kind: str
    grid: str
    online: bool | None
    battery: float | None
    signal: float | None
    last_seen: str | None
    assigned: bool


@dataclass(frozen=True, slots=True, kw_only=True)
class DevicePage:
    rows: list[DeviceRow]
    total: int
    offset: int
    limit: int
    grid: str
    show: Show
    grids: list[tuple[str, str]]
    quarantine: list[QuarantineRecord]
    quarantine_counts: dict[str, int]
    everything: bool
    #: Below this percentage the "low battery" filter lists a device: the rule packs' level.
    low_battery_pct: float

    @property
    def next_offset(self) -> int | None:
        return self.offset + self.limit if self.offset + self.limit < self.total else None

    @property
    def prev_offset(self) -> int | None:
        return max(0, self.offset - self.limit) if self.offset > 0 else None


#: Devices looked at between two turns of the event loop (≈ 1–2 µs each).
DEVICES_PER_STEP = 2048


def device_page_steps(
    web: Api, reach: Reach, *, grid: str, show: Show, offset: int, limit: int
) -> Steps[DevicePage]:
    """The page of devices ``reach`` may read, in steps of :data:`DEVICES_PER_STEP` devices."""
    now = web.clock.now()
    low = low_battery_pct(web.rules())
    everything = reach.scope(Permission.READ) is Scope.ALL
    states = web.states
    rows: list[DeviceRow] = []
    total = 0
    readable_grids: list[tuple[str, str]] = []
    for community in web.registry.communities:
        for g in community.grids:
            if everything or reach.allows(Permission.READ, Where(community=community.code, grid=g.code)):
                readable_grids.append((g.code, g.name))
    allowed = {code for code, _ in readable_grids}
    if show is not Show.UNASSIGNED:
        for n, device in enumerate(web.registry.devices(), 1):  # a list: ingest may add meanwhile
            if n % DEVICES_PER_STEP == 0:
                yield
            if device.grid not in allowed or (grid and device.grid != grid):
                continue
            state = states.get(device.id)
            online = is_online(state, device.heartbeat_s, now)
            if show is Show.OFFLINE and online is not False:
                continue
            battery = state.battery if state is not None else None
            if show is Show.LOW_BATTERY and (battery is None or battery >= low):
                continue
            total += 1
            if offset < total <= offset + limit:
                rows.append(
                    DeviceRow(
                        id=device.id,
                        kind=device.kind.value,
                        grid=device.grid,
                        online=online,
                        battery=battery,
                        signal=state.signal if state is not None else None,
                        last_seen=iso(state.last_seen) if state is not None else None,
                        assigned=True,
                    )
                )
    if everything and not grid and show in (Show.ALL, Show.UNASSIGNED):
        # A copy: ingest adds unknown devices between the steps.
        for n, stranger in enumerate(list(web.registry.unassigned.values()), 1):
            if n % DEVICES_PER_STEP == 0:
                yield
            total += 1
            if offset < total <= offset + limit:
                state = states.get(stranger.id)
                rows.append(
                    DeviceRow(
                        id=stranger.id,
                        kind=stranger.family,
                        grid="",
                        online=is_online(state, None, now),
                        battery=state.battery if state is not None else None,
                        signal=state.signal if state is not None else None,
                        last_seen=iso(state.last_seen if state is not None else stranger.first_seen),
                        assigned=False,
                    )
                )
    # The quarantine's payload excerpts may carry anything: its list is for the whole desk only.
    quarantine = web.store.quarantine(limit=50) if everything else []
    counts = dict(web.stats().get("quarantine", {})) if everything else {}
    return DevicePage(
        rows=rows,
        total=total,
        offset=offset,
        limit=limit,
        grid=grid,
        show=show,
        grids=readable_grids,
        quarantine=quarantine,
        quarantine_counts=counts,
        everything=everything,
        low_battery_pct=low,
    )
