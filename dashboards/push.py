"""Push the generated dashboards to a running Grafana through its HTTP API (``grafana-client``).

Idempotent: the folder is created once (uid ``linli``), each dashboard is saved with its fixed
uid and ``overwrite: true`` (``POST /api/dashboards/db``), so pushing again updates in place.
File provisioning (``dashboards/provisioning/``) is the other way to install them.

    python -m dashboards.push --url http://grafana:3000 --token "$GRAFANA_TOKEN"
"""

from __future__ import annotations

import argparse
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from grafana_client.api import GrafanaApi
from grafana_client.client import GrafanaClientError

from dashboards.build import FOLDER, GENERATED

FOLDER_UID = "linli"


@dataclass(frozen=True, slots=True, kw_only=True)
class Pushed:
    uid: str
    version: int
    url: str


def load_generated(directory: Path = GENERATED) -> list[dict[str, Any]]:
    return [json.loads(p.read_text(encoding="utf-8")) for p in sorted(directory.glob("*.json"))]


def ensure_folder(api: GrafanaApi) -> str:
    try:
        api.folder.get_folder(FOLDER_UID)  # type: ignore[no-untyped-call]
    except GrafanaClientError as exc:
        if exc.status_code != 404:
            raise
        api.folder.create_folder(FOLDER, uid=FOLDER_UID)  # type: ignore[no-untyped-call]
    return FOLDER_UID


def push(*, url: str, token: str, dashboards: list[dict[str, Any]] | None = None) -> list[Pushed]:
    api = GrafanaApi.from_url(url, credential=token)
    folder = ensure_folder(api)
    pushed = []
    for doc in dashboards if dashboards is not None else load_generated():
        body = {"dashboard": {**doc, "id": None}, "folderUid": folder, "overwrite": True, "message": "linli"}
        reply = api.dashboard.update_dashboard(body)
        pushed.append(Pushed(uid=str(reply["uid"]), version=int(reply["version"]), url=str(reply["url"])))
    return pushed


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m dashboards.push", description=__doc__)
    parser.add_argument("--url", default=os.environ.get("GRAFANA_URL", "http://127.0.0.1:3000"))
    parser.add_argument("--token", default=os.environ.get("GRAFANA_TOKEN", ""), help="service-account token")
    args = parser.parse_args(argv)
    for item in push(url=args.url, token=args.token):
        print(f"{item.uid} v{item.version} {item.url}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
