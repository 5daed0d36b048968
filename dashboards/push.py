"""Push the generated dashboards to a running Grafana through its HTTP API, with aiohttp.

Idempotent: the folder is created once (uid ``linli``), each dashboard is saved with its fixed
uid and ``overwrite: true`` (``POST /api/dashboards/db``), so pushing again updates in place.
File provisioning (``dashboards/provisioning/``) is the other way to install them.

Three calls need no Grafana client library: ``grafana-client`` used to do this and pulled in
``urllib3-future``, which replaces ``urllib3`` for every package in the environment. This module
imports neither the dashboards SDK nor ``dashboards.build``, so ``linli dashboards push`` works
without the ``linli[dashboards]`` extra (pushing reads the committed JSON).

    python -m dashboards.push --url http://grafana:3000 --token "$LINLI_GRAFANA_TOKEN"
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp

#: Where ``python -m dashboards.build`` writes the dashboards (kept in step with build.GENERATED).
GENERATED = Path(__file__).parent / "generated"
FOLDER = "邻里 Linli"
FOLDER_UID = "linli"


class PushError(Exception):
    """Grafana refused a call: carries the status and Grafana's message (never the token)."""

    def __init__(self, *, method: str, path: str, status: int, message: str) -> None:
        super().__init__(f"{method} {path} → HTTP {status}: {message}")
        self.method = method
        self.path = path
        self.status = status
        self.message = message


@dataclass(frozen=True, slots=True, kw_only=True)
class Pushed:
    uid: str
    version: int
    url: str


def load_generated(directory: Path = GENERATED) -> list[dict[str, Any]]:
    return [json.loads(p.read_text(encoding="utf-8")) for p in sorted(directory.glob("*.json"))]


@dataclass(frozen=True, slots=True)
class _Grafana:
    """A session and the base URL (which may have a path: Grafana behind a proxy at /grafana)."""

    session: aiohttp.ClientSession
    base: str


async def _call(
    grafana: _Grafana, method: str, path: str, body: dict[str, Any] | None = None
) -> tuple[int, Any]:
    async with grafana.session.request(method, grafana.base + path, json=body) as reply:
        try:
            doc = await reply.json(content_type=None)
        except (json.JSONDecodeError, aiohttp.ContentTypeError):
            doc = {"message": (await reply.text())[:200]}
        return reply.status, doc


def _refused(method: str, path: str, status: int, doc: Any) -> PushError:
    message = str(doc.get("message", doc)) if isinstance(doc, dict) else str(doc)
    return PushError(method=method, path=path, status=status, message=message)


async def ensure_folder(grafana: _Grafana) -> str:
    status, doc = await _call(grafana, "GET", f"/api/folders/{FOLDER_UID}")
    if status == 200:
        return FOLDER_UID
    if status != 404:
        raise _refused("GET", f"/api/folders/{FOLDER_UID}", status, doc)
    status, doc = await _call(grafana, "POST", "/api/folders", {"uid": FOLDER_UID, "title": FOLDER})
    if status != 200:
        raise _refused("POST", "/api/folders", status, doc)
    return FOLDER_UID


async def push_async(
    *, url: str, token: str, dashboards: list[dict[str, Any]] | None = None, timeout_s: float = 30.0
) -> list[Pushed]:
    headers = {"Authorization": f"Bearer {token}", "Accept": "application/json"}
    async with aiohttp.ClientSession(
        headers=headers, timeout=aiohttp.ClientTimeout(total=timeout_s)
    ) as session:
        grafana = _Grafana(session, url.rstrip("/"))
        folder = await ensure_folder(grafana)
        pushed = []
        for doc in dashboards if dashboards is not None else load_generated():
            body = {
                "dashboard": {**doc, "id": None},
                "folderUid": folder,
                "overwrite": True,
                "message": "linli",
            }
            status, reply = await _call(grafana, "POST", "/api/dashboards/db", body)
            if status != 200:
                raise _refused("POST", "/api/dashboards/db", status, reply)
            pushed.append(Pushed(uid=str(reply["uid"]), version=int(reply["version"]), url=str(reply["url"])))
        return pushed


def push(*, url: str, token: str, dashboards: list[dict[str, Any]] | None = None) -> list[Pushed]:
    """Push every dashboard (or ``dashboards``); raises :class:`PushError` or ``aiohttp.ClientError``."""
    return asyncio.run(push_async(url=url, token=token, dashboards=dashboards))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m dashboards.push", description=__doc__)
    parser.add_argument("--url", default=os.environ.get("LINLI_GRAFANA_URL", "http://127.0.0.1:3000"))
    parser.add_argument(
        "--token", default=os.environ.get("LINLI_GRAFANA_TOKEN", ""), help="service-account token"
    )
    args = parser.parse_args(argv)
    for item in push(url=args.url, token=args.token):
        print(f"{item.uid} v{item.version} {item.url}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
