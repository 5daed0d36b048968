"""Generate the dashboards' JSON and Grafana's provisioning files: ``python -m dashboards.build``.

``--check`` regenerates in memory and exits 1 (listing the files) when what is committed under
``dashboards/generated/`` and ``dashboards/provisioning/`` differs.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any, Protocol, Self, cast

from grafana_foundation_sdk.builders import bargauge, gauge, heatmap, histogram, stat, table, timeseries
from grafana_foundation_sdk.builders.dashboard import Dashboard, QueryVariable
from grafana_foundation_sdk.cog import builder as cogbuilder
from grafana_foundation_sdk.cog import variants as cogvariants
from grafana_foundation_sdk.cog.encoder import JSONEncoder
from grafana_foundation_sdk.models import dashboard as model

from dashboards.definitions import DASHBOARDS, DashboardSpec, PanelSpec, Viz
from dashboards.influxql import DATASOURCE, DATASOURCE_TYPE, DATASOURCE_UID, InfluxQL
from dashboards.push import FOLDER, GENERATED

ROOT = Path(__file__).parent
PROVISIONING = ROOT / "provisioning"
#: Where the provider YAML tells Grafana to find the JSON files (mount ``generated/`` there).
DASHBOARDS_PATH = "/var/lib/grafana/dashboards/linli"


class _PanelBuilder(Protocol):
    def id(self, id_val: int) -> Self: ...
    def title(self, title: str) -> Self: ...
    def description(self, description: str) -> Self: ...
    def datasource(self, datasource: model.DataSourceRef) -> Self: ...
    def with_target(self, target: cogbuilder.Builder[cogvariants.Dataquery]) -> Self: ...
    def unit(self, unit: str) -> Self: ...
    def min(self, min_val: float) -> Self: ...
    def max(self, max_val: float) -> Self: ...
    def grid_pos(self, grid_pos: model.GridPos) -> Self: ...
    def build(self) -> model.Panel: ...


def _builder(viz: Viz) -> _PanelBuilder:
    if viz is Viz.TIMESERIES:
        return timeseries.Panel()
    if viz is Viz.STAT:
        return stat.Panel()
    if viz is Viz.GAUGE:
        return gauge.Panel()
    if viz is Viz.BARGAUGE:
        return bargauge.Panel()
    if viz is Viz.TABLE:
        return table.Panel()
    if viz is Viz.HEATMAP:
        return heatmap.Panel().calculate(True)
    return histogram.Panel()


class _Layout:
    """Left to right, wrapping at Grafana's 24 columns."""

    def __init__(self) -> None:
        self.x = 0
        self.y = 0
        self.row_h = 0

    def place(self, w: int, h: int) -> model.GridPos:
        if self.x + w > 24:
            self.x, self.y, self.row_h = 0, self.y + self.row_h, 0
        pos = model.GridPos(h=h, w=w, x=self.x, y=self.y)
        self.x += w
        self.row_h = max(self.row_h, h)
        return pos


def _panel(spec: PanelSpec, panel_id: int, layout: _Layout) -> _PanelBuilder:
    b = _builder(spec.viz).id(panel_id).title(spec.title).datasource(DATASOURCE)
    b = b.grid_pos(layout.place(spec.w, spec.h))
    if spec.description:
        b = b.description(spec.description)
    if spec.unit:
        b = b.unit(spec.unit)
    if spec.min is not None:
        b = b.min(spec.min)
    if spec.max is not None:
        b = b.max(spec.max)
    for index, query in enumerate(spec.queries):
        ref = chr(ord("A") + index)
        b = b.with_target(
            InfluxQL(query.text, ref_id=ref, result_format=query.result_format, alias=query.alias)
        )
    return b


def _variable(name: str, label: str, query: str) -> QueryVariable:
    return (
        QueryVariable(name)
        .label(label)
        .datasource(DATASOURCE)
        .query(query)
        .refresh(model.VariableRefresh.ON_TIME_RANGE_CHANGED)
        .sort(model.VariableSort.ALPHABETICAL_ASC)
        .multi(True)
        .include_all(True)
    )


def build_dashboard(spec: DashboardSpec) -> dict[str, Any]:
    board = (
        Dashboard(spec.title)
        .uid(spec.uid)
        .description(spec.description)
        .tags(list(spec.tags))
        .timezone("Asia/Shanghai")
        .time(spec.time_from, "now")
        .refresh("1m")
        .readonly()
    )
    if spec.grid_variables:
        board = board.with_variable(
            _variable("community", "社区", 'SHOW TAG VALUES FROM "device_health" WITH KEY = "community"')
        ).with_variable(
            _variable(
                "grid",
                "网格",
                'SHOW TAG VALUES FROM "device_health" WITH KEY = "grid" WHERE "community" =~ /^$community$/',
            )
        )
    layout = _Layout()
    for panel_id, panel in enumerate(spec.panels, start=1):
        board = board.with_panel(cast(cogbuilder.Builder[model.Panel], _panel(panel, panel_id, layout)))
    doc: dict[str, Any] = json.loads(json.dumps(board.build(), cls=JSONEncoder))
    return doc


def _dump(doc: Any) -> str:
    return json.dumps(doc, ensure_ascii=False, indent=2, sort_keys=True) + "\n"


DATASOURCE_YAML = f"""\
# Grafana data source provisioning (https://grafana.com/docs/grafana/latest/administration/provisioning/#data-sources).
# Generated by `python -m dashboards.build`; InfluxQL, so InfluxDB 1.x, 2.x (DBRP) and 3.x all work.
# LINLI_GRAFANA_INFLUX_URL / _DB / _TOKEN are read from Grafana's environment (not the hub's:
# the hub's own settings are LINLI_TIMESERIES__*, and it refuses LINLI_ names it does not know).
apiVersion: 1
datasources:
  - name: Linli InfluxDB
    type: {DATASOURCE_TYPE}
    uid: {DATASOURCE_UID}
    access: proxy
    url: ${{LINLI_GRAFANA_INFLUX_URL}}
    isDefault: true
    editable: false
    jsonData:
      version: InfluxQL
      dbName: ${{LINLI_GRAFANA_INFLUX_DB}}
      httpMode: POST
      httpHeaderName1: Authorization
    secureJsonData:
      httpHeaderValue1: Token ${{LINLI_GRAFANA_INFLUX_TOKEN}}
"""

PROVIDER_YAML = f"""\
# Grafana dashboard provider (https://grafana.com/docs/grafana/latest/administration/provisioning/#dashboards).
# Generated by `python -m dashboards.build`; mount dashboards/generated/ at the path below.
apiVersion: 1
providers:
  - name: linli
    orgId: 1
    folder: {FOLDER}
    folderUid: linli
    type: file
    disableDeletion: false
    allowUiUpdates: false
    updateIntervalSeconds: 60
    options:
      path: {DASHBOARDS_PATH}
      foldersFromFilesStructure: false
"""


def render() -> dict[Path, str]:
    """Every generated file and its content."""
    files = {GENERATED / f"{spec.uid}.json": _dump(build_dashboard(spec)) for spec in DASHBOARDS}
    files[PROVISIONING / "datasources" / "linli.yaml"] = DATASOURCE_YAML
    files[PROVISIONING / "dashboards" / "linli.yaml"] = PROVIDER_YAML
    return files


def drift(files: dict[Path, str]) -> list[Path]:
    stale = [p for p, text in files.items() if not p.exists() or p.read_text(encoding="utf-8") != text]
    extra = [p for p in GENERATED.glob("*.json") if p not in files]
    return sorted(stale + extra)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m dashboards.build", description=__doc__)
    parser.add_argument("--check", action="store_true", help="fail if committed files differ")
    args = parser.parse_args(argv)
    files = render()
    if args.check:
        stale = drift(files)
        for path in stale:
            print(f"out of date: {path.relative_to(ROOT.parent)}", file=sys.stderr)
        if stale:
            print("run: python -m dashboards.build", file=sys.stderr)
        return 1 if stale else 0
    for path, text in files.items():
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
    for path in GENERATED.glob("*.json"):
        if path not in files:
            path.unlink()
    print(f"wrote {len(files)} files")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
