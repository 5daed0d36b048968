"""An InfluxQL query target for the Foundation SDK (which ships no InfluxDB query builder).

The JSON matches what Grafana's InfluxDB data source saves for a raw InfluxQL query:
``{"refId", "datasource", "query", "rawQuery": true, "resultFormat"}``.
"""

from __future__ import annotations

from enum import StrEnum
from typing import Any

from grafana_foundation_sdk.cog import builder as cogbuilder
from grafana_foundation_sdk.cog import variants as cogvariants
from grafana_foundation_sdk.models.dashboard import DataSourceRef

#: The data source every dashboard uses; provisioned by ``provisioning/datasources/linli.yaml``.
DATASOURCE_UID = "linli-influxdb"
DATASOURCE_TYPE = "influxdb"
DATASOURCE = DataSourceRef(type_val=DATASOURCE_TYPE, uid=DATASOURCE_UID)


class ResultFormat(StrEnum):
    TIME_SERIES = "time_series"
    TABLE = "table"


class InfluxQLQuery(cogvariants.Dataquery):
    def __init__(self, *, ref_id: str, query: str, result_format: ResultFormat, alias: str = "") -> None:
        self.ref_id = ref_id
        self.query = query
        self.result_format = result_format
        self.alias = alias

    def to_json(self) -> dict[str, Any]:
        doc: dict[str, Any] = {
            "refId": self.ref_id,
            "datasource": {"type": DATASOURCE_TYPE, "uid": DATASOURCE_UID},
            "query": self.query,
            "rawQuery": True,
            "resultFormat": self.result_format.value,
        }
        if self.alias:
            doc["alias"] = self.alias
        return doc


class InfluxQL(cogbuilder.Builder[cogvariants.Dataquery]):
    def __init__(
        self,
        query: str,
        *,
        ref_id: str = "A",
        result_format: ResultFormat = ResultFormat.TIME_SERIES,
        alias: str = "",
    ) -> None:
        self._query = InfluxQLQuery(ref_id=ref_id, query=query, result_format=result_format, alias=alias)

    def build(self) -> cogvariants.Dataquery:
        return self._query
