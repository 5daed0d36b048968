"""The community tree: grids the caller may read, residents whole only where personal data reaches."""

from __future__ import annotations

import functools
from typing import TYPE_CHECKING, Any

from fastapi import FastAPI

from hub.casework.access import Permission, Reach, Scope, Where
from hub.clock import iso
from hub.web import models as m
from hub.web.routes.common import ERRORS, MAX_PAGE, Who
from hub.web.views import community_json

if TYPE_CHECKING:
    from hub.web.api import Api


def may(reach: Reach, action: Permission, community: str, grid: str | None) -> bool:
    return reach.allows(action, Where(community=community, grid=grid))


def add_community_routes(api: FastAPI, web: Api) -> None:
    @api.get(
        "/api/community",
        response_model=m.CommunityTreeOut,
        response_model_exclude_unset=True,
        responses=ERRORS,
    )
    async def community(who: Who) -> dict[str, Any]:
        """The grids the caller may read; rooms only where ``locations`` reaches, residents whole only
        where ``personal_data`` does."""
        reach = who.reach
        trees = []
        for c in web.registry.communities:
            whole = reach.allows(Permission.READ, Where(community=c.code, grid=None))
            tree = community_json(
                c,
                personal=functools.partial(may, reach, Permission.PERSONAL_DATA, c.code),
                with_personal_data=web.registry.whole,
                visible=functools.partial(may, reach, Permission.READ, c.code),
                locations=functools.partial(may, reach, Permission.LOCATIONS, c.code),
                staff_names=reach.may_ever(Permission.PERSONAL_DATA),
                whole=whole,
            )
            if tree["grids"] or whole:
                trees.append(tree)
        everything = reach.scope(Permission.READ) is Scope.ALL
        unassigned = [
            {"id": d.id, "family": d.family, "first_seen": iso(d.first_seen)}
            for d in list(web.registry.unassigned.values())[:MAX_PAGE]
        ]
        return {"communities": trees, "unassigned_devices": unassigned if everything else []}
