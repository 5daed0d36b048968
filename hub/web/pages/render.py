"""Jinja2 rendering of the console pages: the whole page, or only its live part.

A page's ``main`` block is what the live script fetches again (``?part=main``) when the event
stream says something changed, so the server stays the one place that renders.
Templates are ``page_*.html`` beside the console's static files (shipped as package data).
"""

from __future__ import annotations

from datetime import UTC, datetime
from importlib import resources
from typing import Any
from zoneinfo import ZoneInfo

import jinja2
from fastapi import Request
from fastapi.responses import HTMLResponse

from hub.steps import Steps, run_through
from hub.web.pages.text import Lang, Words, lang_of

#: Pieces of a page's output rendered between two turns of the loop (a few µs each).
CHUNKS_PER_STEP = 2048


def _source(name: str) -> str:
    return resources.files("hub.web.console").joinpath(name).read_text(encoding="utf-8")


class Renderer:
    """One Jinja2 environment per hub (no module global), autoescaping everything."""

    def __init__(self, *, zone: ZoneInfo) -> None:
        self._zone = zone
        self._env = jinja2.Environment(
            loader=jinja2.FunctionLoader(_source),
            autoescape=True,
            undefined=jinja2.StrictUndefined,
            trim_blocks=True,
            lstrip_blocks=True,
        )
        self._env.filters["when"] = self.when

    def when(self, value: str | float | None) -> str:
        """A time in the community's zone (never the browser's): ``2026-11-23 02:13:00``."""
        if value is None or value == "":
            return ""
        moment = (
            datetime.fromtimestamp(value, UTC)
            if isinstance(value, int | float)
            else datetime.fromisoformat(value)
        )
        return moment.astimezone(self._zone).strftime("%Y-%m-%d %H:%M:%S")

    def page(
        self, request: Request, name: str, context: dict[str, Any], *, status: int = 200
    ) -> HTMLResponse:
        """The page rendered in one go (tests, short pages)."""
        return run_through(self.page_steps(request, name, context, status=status))

    def page_steps(
        self,
        request: Request,
        name: str,
        context: dict[str, Any],
        *,
        status: int = 200,
        chunks_per_step: int = CHUNKS_PER_STEP,
    ) -> Steps[HTMLResponse]:
        """:meth:`page`, yielding every ``chunks_per_step`` pieces of output.

        The overview lists up to 500 cases and its SOS rows, and every console renders it again
        on every alert: 60–110 ms in one ``render`` with a thousand open cases, on the loop that
        takes SOS presses (docs/benchmarks.md, "Twenty-seventh pass"). Jinja's ``generate``
        gives the same text piece by piece.
        """
        lang = lang_of(request)
        words = Words(lang=lang)
        full = {
            **context,
            "t": words,
            "lang": lang.value,
            "other_lang": (Lang.ZH if lang is Lang.EN else Lang.EN).value,
            "path": request.url.path,
        }
        template = self._env.get_template(name)
        if request.query_params.get("part") == "main":
            pieces = template.blocks["main"](template.new_context(full))
        else:
            pieces = template.generate(full)
        body: list[str] = []
        for piece in pieces:
            body.append(piece)
            if len(body) % chunks_per_step == 0:
                yield
        return HTMLResponse("".join(body), status_code=status, headers={"Cache-Control": "no-store"})
