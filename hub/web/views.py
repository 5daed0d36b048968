"""JSON views of devices, events and the community tree, with personal data masked by role.

Residents' personal data (names, phones, addresses, contacts, medical notes, care flags) is
shown only where the access table (:mod:`hub.casework.access`) grants ``personal_data``;
elsewhere masked values (:mod:`hub.community.privacy`). Household-level locations
(building, unit, room) need ``locations``. The caller asks the table; these functions take
its answers as booleans or per-grid predicates.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from adapters.events import Event
from hub.cases.model import TimelineEntry
from hub.clock import iso
from hub.community.model import Community, Grid, Resident
from hub.community.privacy import mask_name, resident_json
from hub.community.registry import Registry
from hub.ingest.device_state import DeviceStates, is_online
from hub.steps import Steps

#: How a guardian who answered by link is named in a case's timeline (``guardian:<name>``).
_GUARDIAN_ACTOR = "guardian:"


def timeline_json(entry: TimelineEntry, *, personal: bool) -> dict[str, Any]:
    """One timeline entry; without ``personal_data`` a guardian is "guardian", not his name.

    The 评价 link records its answer under the emergency contact's name, which is a
    resident's personal data like his phone (:mod:`hub.community.privacy`).
    """
    body = entry.to_dict()
    body["ts"] = iso(entry.ts)
    if not personal and entry.actor.startswith(_GUARDIAN_ACTOR):
        body["actor"] = "guardian"
    return body


def event_json(event: Event) -> dict[str, Any]:
    return {
        "device_id": event.device_id,
        "kind": event.kind.value,
        "ts": iso(event.ts),
        "family": event.family,
        "value": event.value,
        "attrs": dict(event.attrs),
    }


def device_json(
    registry: Registry,
    states: DeviceStates,
    device_id: str,
    *,
    now: float,
    detail: bool = False,
    locations: bool = True,
) -> dict[str, Any] | None:
    device = registry.device(device_id)
    stranger = registry.unassigned.get(device_id)
    state = states.get(device_id)
    if device is None and stranger is None and state is None:
        return None
    body: dict[str, Any] = {
        "id": device_id,
        "assigned": device is not None,
        "kind": device.kind.value if device else None,
        "model": device.model if device else None,
        "grid": device.grid if device else None,
        "community": device.grid[:12] if device else None,
        "location": device.location_text if device and locations else None,
        "place": device.place if device else None,
        "family": state.family if state else (stranger.family if stranger else None),
        "heartbeat_s": device.heartbeat_s if device else None,
        "last_seen": iso(state.last_seen) if state else None,
        "online": is_online(state, device.heartbeat_s if device else None, now),
        "battery": state.battery if state else None,
        "signal": state.signal if state else None,
    }
    if detail:
        body["installed"] = device.installed.isoformat() if device and device.installed else None
        body["first_seen_unassigned"] = iso(stranger.first_seen) if stranger else None
        body["state"] = (
            {kind: {"ts": iso(ts), "value": value} for kind, (ts, value) in state.last.items()}
            if state
            else {}
        )
        location = registry.location(device_id)
        if location is not None:
            body["where"] = {
                "community": {"code": location.community.code, "name": location.community.name},
                "grid": {"code": location.grid.code, "name": location.grid.name},
                "building": location.building.name if location.building and locations else None,
                "unit": location.unit.name if location.unit and locations else None,
                "room": location.household.room if location.household and locations else None,
                "place": {
                    "id": location.place.id,
                    "kind": location.place.kind.value,
                    "name": location.place.name,
                }
                if location.place
                else None,
            }
    return body


#: Residents or devices a community's tree takes between two turns of the loop (≈ 6 µs a resident).
TREE_ITEMS_PER_STEP = 500


def _grid_json(
    grid: Grid,
    devices_by_grid: dict[str, list[str]],
    residents_by_household: dict[str | None, list[dict[str, Any]]],
    *,
    locations: bool,
) -> dict[str, Any]:
    return {
        "code": grid.code,
        "name": grid.name,
        "polygon": grid.polygon,
        "places": [p.model_dump(mode="json") for p in grid.places],
        "devices": devices_by_grid.get(grid.code, []),
        "buildings": [
            {
                "id": b.id,
                "name": b.name,
                "units": [
                    {
                        "id": u.id,
                        "name": u.name,
                        "households": [
                            {"id": h.id, "room": h.room, "residents": residents_by_household.get(h.id, [])}
                            for h in u.households
                        ],
                    }
                    for u in b.units
                ],
            }
            for b in (grid.buildings if locations else ())
        ],
    }


def community_steps(
    community: Community,
    *,
    personal: Callable[[str | None], bool],
    with_personal_data: Callable[[Resident], Resident],
    visible: Callable[[str], bool] = lambda grid: True,
    locations: Callable[[str], bool] = lambda grid: True,
    staff_names: bool = True,
    whole: bool = True,
) -> Steps[dict[str, Any]]:
    """The community's tree, in steps (:mod:`hub.steps`): only the grids ``visible(grid)``; residents whole where ``personal(grid)``.

    The roster's people only where the caller reads one of their grids, or reads the whole
    community (``whole``): the roster is staff data, and a grid team saw every grid's people
    of its community here while the roster page showed it its own grids only.

    Buildings, units and households (rooms, and who lives in each) only where ``locations(grid)``:
    a room number is a location, and a household's residents, even masked, say who lives there.
    Residents without a household are asked as ``personal(None)`` (the community level).

    A district's community is 30 000 residents and 65 000 devices: made in one go it held the
    event loop 0.9 s, no SOS handled meanwhile (found in review). It yields every
    :data:`TREE_ITEMS_PER_STEP` residents or devices, and after each grid.
    """
    devices_by_grid: dict[str, list[str]] = {}
    for index, device in enumerate(community.devices):
        devices_by_grid.setdefault(device.grid, []).append(device.id)
        if index % TREE_ITEMS_PER_STEP == TREE_ITEMS_PER_STEP - 1:
            yield
    grid_of_household = {
        h.id: grid.code
        for grid in community.grids
        for b in grid.buildings
        for u in b.units
        for h in u.households
    }
    residents_by_household: dict[str | None, list[dict[str, Any]]] = {}
    for index, resident in enumerate(community.residents):
        if index % TREE_ITEMS_PER_STEP == TREE_ITEMS_PER_STEP - 1:
            yield
        grid_code = grid_of_household.get(resident.household) if resident.household else None
        # Only the residents the tree shows are unpacked (≈ 6 µs each, 50 000 in a district).
        shown = (
            personal(None)
            if resident.household is None
            else grid_code is not None and visible(grid_code) and locations(grid_code)
        )
        if shown:
            residents_by_household.setdefault(resident.household, []).append(
                resident_json(with_personal_data(resident), personal=personal(grid_code))
            )
    grids: list[dict[str, Any]] = []
    for grid in community.grids:
        if not visible(grid.code):
            continue
        grids.append(
            _grid_json(grid, devices_by_grid, residents_by_household, locations=locations(grid.code))
        )
        yield
    return {
        "code": community.code,
        "name": community.name,
        "street": community.street.model_dump() if community.street else None,
        "grids": grids,
        "residents_without_household": residents_by_household.get(None, []) if personal(None) else [],
        "people": [
            {
                "id": p.id,
                "name": p.name if staff_names else mask_name(p.name),
                "role": p.role.value,
                "grids": p.grids,
            }
            for p in community.people
            if whole or any(visible(g) for g in p.grids)
        ],
    }
