"""Devices (registered, then unknown ones), one device, and recent device events."""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING, Annotated, Any

from fastapi import FastAPI, Path, Query, Request, Response
from pydantic import TypeAdapter

from hub.casework.access import Permission, Where
from hub.errors import NotFoundError
from hub.steps import run_in_turns
from hub.web import models as m
from hub.web.pages.devices import DEVICES_PER_STEP
from hub.web.routes.common import ERRORS, Limit, Offset, Who, page, rows_in_turns
from hub.web.views import device_json, event_json

if TYPE_CHECKING:
    from hub.web.api import Api

_DEVICE_LIST: TypeAdapter[list[m.DeviceOut]] = TypeAdapter(list[m.DeviceOut])
_EVENT_LIST: TypeAdapter[list[m.EventOut]] = TypeAdapter(list[m.EventOut])


def add_device_routes(api: FastAPI, web: Api) -> None:
    @api.get("/api/devices", response_model=list[m.DeviceOut], responses=ERRORS)
    async def devices(
        *,
        request: Request,
        response: Response,
        who: Who,
        grid: Annotated[str | None, Query(max_length=32)] = None,
        limit: Limit = 200,
        offset: Offset = 0,
    ) -> Response:
        """Registered devices, then unknown ones; those the caller may read, a page at a time."""
        now = web.clock.now()
        ids = [d.id for d in web.registry.devices()] + list(web.registry.unassigned)
        chosen: list[tuple[str, Where]] = []
        skipped = 0
        for n, device_id in enumerate(ids, 1):
            if n % DEVICES_PER_STEP == 0:
                # A turn for the rest of the hub: a grid's devices at the end of 100 000, or a
                # late offset, is a pass over all of them (an SOS press must not wait it out).
                await asyncio.sleep(0)
            where = web.device_where(device_id)
            if (grid is not None and where.grid != grid) or not who.reach.allows(Permission.READ, where):
                continue
            if skipped < offset:
                skipped += 1
                continue
            chosen.append((device_id, where))  # kept: the view's LOCATIONS check asks the same place
            if len(chosen) >= limit:
                break
        views = [
            device_json(
                web.registry,
                web.states,
                i,
                now=now,
                locations=who.reach.allows(Permission.LOCATIONS, where),
            )
            for i, where in chosen
        ]
        page(request, response, chosen, limit=limit, offset=offset)
        return await rows_in_turns(response, [v for v in views if v is not None], _DEVICE_LIST)

    @api.get("/api/devices/{device_id:path}", response_model=m.DeviceDetailOut, responses=ERRORS)
    async def device(who: Who, device_id: Annotated[str, Path(max_length=256)]) -> dict[str, Any]:
        """One device; ids may contain ``/`` (Zigbee2MQTT friendly names, Tasmota sub-devices)."""
        where = web.device_where(device_id)
        view = None
        if who.reach.allows(Permission.READ, where):
            view = device_json(
                web.registry,
                web.states,
                device_id,
                now=web.clock.now(),
                detail=True,
                locations=who.reach.allows(Permission.LOCATIONS, where),
            )
        if view is None:
            raise NotFoundError("没有这个设备 / no such device")
        return view

    @api.get("/api/events", response_model=list[m.EventOut], responses=ERRORS)
    async def events(
        *,
        request: Request,
        response: Response,
        who: Who,
        device_id: Annotated[str | None, Query(max_length=256)] = None,
        limit: Limit = 100,
        offset: Offset = 0,
    ) -> Response:
        """Recent device events, most recent first, of devices the caller may read."""

        answers: dict[str, bool] = {}  # the ring repeats few devices: ask once for each

        def readable(device: str) -> bool:
            known = answers.get(device)
            if known is None:
                known = answers[device] = who.reach.allows(Permission.READ, web.device_where(device))
            return known

        found = await run_in_turns(
            web.states.event_steps(device_id, limit=limit, offset=offset, include=readable)
        )
        page(request, response, found, limit=limit, offset=offset)
        return await rows_in_turns(response, [event_json(e) for e in found], _EVENT_LIST)
