"""The roster page: who is on duty now per grid, and the coming week's SOS gaps (``linli roster check``)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING
from zoneinfo import ZoneInfo

from hub.casework.access import Permission, Reach, Where
from hub.community.privacy import mask_name
from hub.community.roster import SOS_ROLES, coverage_gaps, on_duty
from hub.records import Role

if TYPE_CHECKING:
    from hub.web.api import Api

#: Everybody who can be on duty for a grid (the SOS chain's roles first).
DUTY_ROLES = (*SOS_ROLES, Role.GRID_POLICE, Role.VOLUNTEER)


@dataclass(frozen=True, slots=True, kw_only=True)
class GridDuty:
    community: str
    code: str
    name: str
    now: list[tuple[str, str, str]]  # (name, role, phone)
    gaps: list[str]  # "2026-11-24 Tue 03:00"
    sos_covered_now: bool


def roster_page(web: Api, reach: Reach, *, days: int = 7) -> list[GridDuty]:
    zone = ZoneInfo(web.timezone)
    now = web.clock.now()
    start = datetime.fromtimestamp(now, zone)
    names = reach.may_ever(Permission.PERSONAL_DATA)
    calendar = web.casework.policies.calendar
    out = []
    for community in web.registry.communities:
        for grid in community.grids:
            if not reach.allows(Permission.READ, Where(community=community.code, grid=grid.code)):
                continue
            people = on_duty(
                community.people, grid=grid.code, ts=now, zone=zone, roles=DUTY_ROLES, calendar=calendar
            )
            gaps = coverage_gaps(
                community.people,
                grids=[grid.code],
                start=start,
                zone=zone,
                hours=days * 24,
                calendar=calendar,
            )
            out.append(
                GridDuty(
                    community=community.name,
                    code=grid.code,
                    name=grid.name,
                    now=[
                        (p.name if names else mask_name(p.name), p.role.value, p.phone if names else "")
                        for p in people
                    ],
                    gaps=[f"{g.start:%Y-%m-%d %a %H:00}" for g in gaps],
                    sos_covered_now=any(p.role in SOS_ROLES for p in people),
                )
            )
    return out
