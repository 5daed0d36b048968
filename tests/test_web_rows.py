"""A list answer checked and written in turns is the answer FastAPI gives in one go.

FastAPI checks a route's whole ``response_model=list[…]`` answer and writes it in one go: a
page of 1 000 cases was 15–20 ms of the event loop, 10 000 rows of the notification log
30–45 ms, in which no SOS press was handled. :func:`hub.web.routes.common.rows_in_turns` does
the same work a hundred rows at a time; these tests hold it to FastAPI's own bytes and headers.
"""

from __future__ import annotations

from typing import Any

import httpx
import pytest
from fastapi import FastAPI, Response
from fastapi.exceptions import ResponseValidationError
from pydantic import BaseModel, ConfigDict, Field, TypeAdapter

from hub.web.routes.common import ROWS_PER_TURN, rows_in_turns
from tests.helpers import LoopTurns


class Row(BaseModel):
    model_config = ConfigDict(populate_by_name=True)

    id: int
    title: str
    at: float
    kind: str = Field(alias="type")
    gone: str | None = None


ROWS: TypeAdapter[list[Row]] = TypeAdapter(list[Row])


def rows(n: int) -> list[dict[str, Any]]:
    # Non-ASCII text, floats of every shape and an alias: where two writers could differ.
    return [
        {
            "id": i,
            "title": f'一键呼叫 {i} "急"',
            "at": 1.79e9 + i / 7,
            "type": "sos",
            "gone": None,
            "extra": 1,
        }
        for i in range(n)
    ]


def app() -> FastAPI:
    api = FastAPI()

    @api.get("/one-go", response_model=list[Row])
    async def one_go(response: Response, n: int) -> Any:
        response.headers["Link"] = '</x?offset=5>; rel="next"'
        return rows(n)

    @api.get("/in-turns", response_model=list[Row])
    async def in_turns(response: Response, n: int) -> Any:
        response.headers["Link"] = '</x?offset=5>; rel="next"'
        return await rows_in_turns(response, rows(n), ROWS)

    @api.get("/bad", response_model=list[Row])
    async def bad(response: Response) -> Any:
        made = rows(ROWS_PER_TURN + 2)
        made[-1]["at"] = "soon"  # in the second piece
        return await rows_in_turns(response, made, ROWS)

    return api


@pytest.mark.parametrize("n", [0, 1, ROWS_PER_TURN, 2 * ROWS_PER_TURN + 3])
async def test_the_answer_in_turns_is_fastapis_answer(n: int) -> None:
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app()), base_url="http://t") as c:
        one, turns = await c.get(f"/one-go?n={n}"), await c.get(f"/in-turns?n={n}")
    assert one.status_code == turns.status_code == 200
    assert turns.content == one.content
    assert len(turns.json()) == n
    for name in ("content-type", "content-length", "link"):
        assert turns.headers[name] == one.headers[name], name


async def test_the_loop_takes_a_turn_between_pieces() -> None:
    async with LoopTurns() as turns:
        answer = await rows_in_turns(Response(), rows(3 * ROWS_PER_TURN + 1), ROWS)
    assert turns.count >= 3
    assert len(httpx.Response(200, content=answer.body).json()) == 3 * ROWS_PER_TURN + 1


async def test_a_row_the_model_refuses_is_the_hubs_error_not_the_callers() -> None:
    """A 500 as FastAPI's own check gives (not a 422: the caller asked nothing wrong), and no
    half-written list: the pieces already checked are not sent."""
    made = rows(ROWS_PER_TURN + 2)
    made[-1]["at"] = "soon"
    with pytest.raises(ResponseValidationError) as refused:
        await rows_in_turns(Response(), made, ROWS)
    # Located in the whole list, as FastAPI's own check locates it (not in its piece).
    assert [e["loc"] for e in refused.value.errors()] == [("response", ROWS_PER_TURN + 1, "at")]
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app(), raise_app_exceptions=False), base_url="http://t"
    ) as c:
        answer = await c.get("/bad")
    assert answer.status_code == 500 and not answer.content.startswith(b"[")
