"""Generated dashboards and provisioning files: Grafana's documented format, no drift, idempotent push."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
import yaml
from click.testing import CliRunner

from dashboards import build
from dashboards.push import push
from hub.cli import main

ROOT = Path(__file__).parents[1]
PANEL_TYPES = {"timeseries", "stat", "gauge", "bargauge", "table", "heatmap", "histogram"}
BOARDS = [json.loads(p.read_text(encoding="utf-8")) for p in sorted(build.GENERATED.glob("*.json"))]


def test_committed_files_match_the_generator() -> None:
    assert build.main(["--check"]) == 0


@pytest.mark.parametrize("board", BOARDS, ids=[b["uid"] for b in BOARDS])
def test_dashboard_json_follows_grafanas_model(board: dict[str, Any]) -> None:
    for key in ("uid", "title", "panels", "schemaVersion", "time", "templating", "annotations"):
        assert key in board, key
    assert board["schemaVersion"] >= 36
    assert len(board["uid"]) <= 40
    ids = [p["id"] for p in board["panels"]]
    assert len(ids) == len(set(ids))
    cells: set[tuple[int, int]] = set()
    for panel in board["panels"]:
        assert panel["type"] in PANEL_TYPES
        assert panel["datasource"] == {"type": "influxdb", "uid": "linli-influxdb"}
        pos = panel["gridPos"]
        assert pos["x"] >= 0 and pos["x"] + pos["w"] <= 24 and pos["h"] > 0 and pos["y"] >= 0
        mine = {
            (x, y) for x in range(pos["x"], pos["x"] + pos["w"]) for y in range(pos["y"], pos["y"] + pos["h"])
        }
        assert not cells & mine, f"{panel['title']} overlaps"
        cells |= mine
        assert any("\u4e00" <= ch <= "\u9fff" for ch in panel["title"]), panel["title"]  # zh-CN titles
        refs = [t["refId"] for t in panel["targets"]]
        assert refs and len(refs) == len(set(refs))
        for target in panel["targets"]:
            assert target["rawQuery"] is True and target["resultFormat"] in ("time_series", "table")
            assert target["datasource"]["uid"] == "linli-influxdb"
    for variable in board["templating"].get("list", []):
        assert variable["type"] == "query" and variable["datasource"]["uid"] == "linli-influxdb"


def test_uids_unique_across_dashboards_and_six_present() -> None:
    uids = [b["uid"] for b in BOARDS]
    assert sorted(uids) == sorted(set(uids)) and len(uids) == 6
    grid = next(b for b in BOARDS if b["uid"] == "linli-grid")
    assert [v["name"] for v in grid["templating"]["list"]] == ["community", "grid"]


def test_provisioning_files_follow_grafanas_format() -> None:
    ds = yaml.safe_load((build.PROVISIONING / "datasources" / "linli.yaml").read_text(encoding="utf-8"))
    assert ds["apiVersion"] == 1
    (source,) = ds["datasources"]
    assert source["type"] == "influxdb" and source["uid"] == "linli-influxdb" and source["access"] == "proxy"
    assert source["jsonData"]["dbName"]
    prov = yaml.safe_load((build.PROVISIONING / "dashboards" / "linli.yaml").read_text(encoding="utf-8"))
    assert prov["apiVersion"] == 1
    (provider,) = prov["providers"]
    assert provider["type"] == "file" and provider["options"]["path"] == build.DASHBOARDS_PATH


class FakeGrafana(BaseHTTPRequestHandler):
    """Answers as Grafana's HTTP API documents (folders, POST /api/dashboards/db) and records requests."""

    folders: dict[str, dict[str, Any]]
    dashboards: dict[str, int]
    log: list[tuple[str, str, dict[str, Any] | None, str]]

    def _reply(self, status: int, body: dict[str, Any]) -> None:
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def do_GET(self) -> None:
        self.log.append(("GET", self.path, None, self.headers.get("Authorization", "")))
        uid = self.path.rsplit("/", 1)[-1]
        if self.path.startswith("/api/folders/") and uid in self.folders:
            self._reply(200, self.folders[uid])
        else:
            self._reply(404, {"message": "folder not found"})

    def do_POST(self) -> None:
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        self.log.append(("POST", self.path, body, self.headers.get("Authorization", "")))
        if self.path == "/api/folders":
            self.folders[body["uid"]] = {"uid": body["uid"], "title": body["title"], "id": 1}
            self._reply(200, self.folders[body["uid"]])
        elif self.path == "/api/dashboards/db":
            uid = body["dashboard"]["uid"]
            if uid in self.dashboards and not body.get("overwrite"):
                self._reply(
                    412,
                    {
                        "message": "The dashboard has been changed by someone else",
                        "status": "version-mismatch",
                    },
                )
                return
            self.dashboards[uid] = self.dashboards.get(uid, 0) + 1
            self._reply(
                200,
                {
                    "id": 1,
                    "uid": uid,
                    "url": f"/d/{uid}/x",
                    "status": "success",
                    "version": self.dashboards[uid],
                },
            )
        else:
            self._reply(404, {"message": "not found"})

    def log_message(self, format: str, *args: Any) -> None:
        pass


@pytest.fixture
def grafana() -> Iterator[type[FakeGrafana]]:
    handler = type("Handler", (FakeGrafana,), {"folders": {}, "dashboards": {}, "log": []})
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    handler.url = f"http://127.0.0.1:{server.server_address[1]}"  # type: ignore[attr-defined]
    try:
        yield handler
    finally:
        server.shutdown()
        server.server_close()


def test_push_is_idempotent_same_uid_updates(grafana: Any) -> None:
    first = push(url=grafana.url, token="glsa_test")
    second = push(url=grafana.url, token="glsa_test")
    assert [p.uid for p in first] == [p.uid for p in second] and len(first) == 6
    assert all(p.version == 1 for p in first) and all(p.version == 2 for p in second)
    posts = [entry for entry in grafana.log if entry[1] == "/api/dashboards/db"]
    assert len(posts) == 12
    assert all(e[2] is not None and e[2]["overwrite"] is True and e[2]["folderUid"] == "linli" for e in posts)
    assert all(e[3] == "Bearer glsa_test" for e in grafana.log)
    assert [e[1] for e in grafana.log if e[1] == "/api/folders"] == ["/api/folders"]  # created once


def test_cli_push_takes_the_token_from_a_secret_file(grafana: Any, tmp_path: Path) -> None:
    (tmp_path / "token").write_text("glsa_from_file\n", encoding="utf-8")
    result = CliRunner().invoke(
        main,
        ["dashboards", "push"],
        env={"LINLI_GRAFANA_URL": grafana.url, "LINLI_GRAFANA_TOKEN_FILE": str(tmp_path / "token")},
    )
    assert result.exit_code == 0, result.output
    assert all(e[3] == "Bearer glsa_from_file" for e in grafana.log)


def test_cli_push_says_why_grafana_refused(grafana: Any) -> None:
    grafana.folders["linli"] = {"uid": "linli"}
    result = CliRunner().invoke(
        main, ["dashboards", "push", "--url", grafana.url + "/nowhere", "--token", "glsa_secret"]
    )
    assert result.exit_code == 1
    assert "HTTP 404" in result.output and "glsa_secret" not in result.output
