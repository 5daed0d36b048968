"""The community tree: grids the caller may read, residents whole only where personal data reaches."""

from __future__ import annotations

import asyncio
import functools
from typing import TYPE_CHECKING, Any

from fastapi import FastAPI, Response
from pydantic import TypeAdapter

from hub.casework.access import Permission, Reach, Scope, Where
from hub.clock import iso
from hub.steps import run_in_turns
from hub.web import models as m
from hub.web.routes.common import ERRORS, MAX_PAGE, ROWS_PER_TURN, Who
from hub.web.views import community_steps

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
    async def community(who: Who) -> Response:
        """The grids the caller may read; rooms only where ``locations`` reaches, residents whole only
        where ``personal_data`` does."""
        reach = who.reach
        trees = []
        for c in web.registry.communities:
            whole = reach.allows(Permission.READ, Where(community=c.code, grid=None))
            tree = await run_in_turns(
                community_steps(
                    c,
                    personal=functools.partial(may, reach, Permission.PERSONAL_DATA, c.code),
                    with_personal_data=web.registry.whole,
                    visible=functools.partial(may, reach, Permission.READ, c.code),
                    locations=functools.partial(may, reach, Permission.LOCATIONS, c.code),
                    staff_names=reach.may_ever(Permission.PERSONAL_DATA),
                    whole=whole,
                )
            )
            if tree["grids"] or whole:
                trees.append(tree)
        everything = reach.scope(Permission.READ) is Scope.ALL
        unassigned = [
            {"id": d.id, "family": d.family, "first_seen": iso(d.first_seen)}
            for d in list(web.registry.unassigned.values())[:MAX_PAGE]
        ]
        return await tree_in_turns(trees, unassigned if everything else [])


_GRID = TypeAdapter(m.GridOut)
_RESIDENTS = TypeAdapter(list[m.ResidentOut])


async def tree_in_turns(trees: list[dict[str, Any]], unassigned: list[dict[str, Any]]) -> Response:
    """The tree answered as FastAPI answers ``response_model=CommunityTreeOut`` (unset fields left
    out, by alias), checked and written a grid or :data:`ROWS_PER_TURN` residents at a time:
    in one go, a district's 16 MB tree held the loop another second (:func:`rows_in_turns`
    does the same for lists)."""
    parts: list[bytes] = []
    for tree in trees:
        grids: list[bytes] = []
        for grid in tree["grids"]:
            grids.append(_GRID.dump_json(_GRID.validate_python(grid), exclude_unset=True, by_alias=True))
            await asyncio.sleep(0)
        residents: list[bytes] = []
        loose = tree["residents_without_household"]
        for start in range(0, len(loose), ROWS_PER_TURN):
            checked = _RESIDENTS.validate_python(loose[start : start + ROWS_PER_TURN])
            residents.append(_RESIDENTS.dump_json(checked, exclude_unset=True, by_alias=True)[1:-1])
            await asyncio.sleep(0)
        rest = m.CommunityOut.model_validate({**tree, "grids": [], "residents_without_household": []})
        # The two lists go where the model wrote them empty: "grids" is the community's first
        # key of that name (its street has none; its people's come after), the other is unique.
        body = rest.model_dump_json(exclude_unset=True, by_alias=True).encode()
        body = body.replace(b'"grids":[]', b'"grids":[' + b",".join(grids) + b"]", 1)
        body = body.replace(
            b'"residents_without_household":[]',
            b'"residents_without_household":[' + b",".join(r for r in residents if r) + b"]",
            1,
        )
        parts.append(body)
    rest_of_it = m.CommunityTreeOut(
        communities=[], unassigned_devices=[m.UnassignedOut.model_validate(d) for d in unassigned]
    ).model_dump_json(exclude_unset=True, by_alias=True)
    answer = rest_of_it.encode().replace(b'"communities":[]', b'"communities":[' + b",".join(parts) + b"]", 1)
    return Response(answer, media_type="application/json")
