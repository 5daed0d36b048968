"""``TimeseriesSettings``: where points go and how they are batched, retried and spooled.

The hub nests it in its configuration (``timeseries:`` in the YAML file,
``LINLI_TIMESERIES__KIND=influx_v1`` …). The token and password are :class:`pydantic.SecretStr`:
they never appear in a repr, a log line or an error message.
"""

from __future__ import annotations

import base64
from enum import StrEnum
from pathlib import Path
from urllib.parse import urlsplit

from pydantic import BaseModel, ConfigDict, Field, SecretStr, field_validator


class TimeseriesKind(StrEnum):
    #: No server: points go to the embedded SQLite sink in the data directory.
    NONE = "none"
    #: InfluxDB 1.x ``POST /write?db=&rp=`` (also 2.x/3.x v1-compatibility endpoints).
    INFLUX_V1 = "influx_v1"
    #: InfluxDB 2.x ``POST /api/v2/write?org=&bucket=`` with ``Authorization: Token``
    #: (also InfluxDB 3, VictoriaMetrics).
    INFLUX_V2 = "influx_v2"


class TimeseriesSettings(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    kind: TimeseriesKind = TimeseriesKind.NONE
    url: str = "http://127.0.0.1:8086"
    #: v1: database and (optional) retention policy.
    db: str = "linli"
    rp: str = ""
    #: v1 credentials (sent as HTTP basic auth), optional.
    username: str = ""
    password: SecretStr | None = None
    #: v2: organisation, bucket and API token.
    org: str = ""
    bucket: str = "linli"
    token: SecretStr | None = None
    #: A batch is sent when it reaches this many lines or when ``flush_interval_s`` passes.
    batch_size: int = Field(default=5000, gt=0, le=100_000)
    flush_interval_s: float = Field(default=1.0, gt=0, le=60)
    request_timeout_s: float = Field(default=10.0, gt=0)
    #: Exponential backoff with jitter between retries: base, doubling up to the cap.
    backoff_base_s: float = Field(default=0.5, gt=0)
    backoff_max_s: float = Field(default=30.0, gt=0)
    #: Where batches wait while the server is unreachable; ``None`` = ``<data_dir>/timeseries-spool``.
    spool_dir: Path | None = None
    #: Bounded spool: when full, the oldest batches are dropped (counted, logged).
    spool_max_bytes: int = Field(default=256 * 1024 * 1024, gt=0)
    #: gzip level for request bodies and spooled batches (1 fastest … 9 smallest).
    gzip_level: int = Field(default=3, ge=1, le=9)
    #: Embedded sink (kind ``none``): ``None`` = ``<data_dir>/timeseries.sqlite``.
    sqlite_path: Path | None = None
    retention_days: float = Field(default=7.0, gt=0)

    @field_validator("url")
    @classmethod
    def _http_url(cls, value: str) -> str:
        if not value.startswith(("http://", "https://")):
            raise ValueError("must start with http:// or https://")
        parts = urlsplit(value)
        if parts.username is not None or parts.password is not None or parts.query:
            # The URL is shown (config show, doctor, logs); credentials have keys of their own,
            # secret and settable from files (found in review: config show printed the password).
            raise ValueError(
                "must carry no user, password or query: set timeseries.username and"
                " timeseries.password, or timeseries.token"
            )
        return value.rstrip("/")

    def spool_path(self, data_dir: Path) -> Path:
        return self.spool_dir if self.spool_dir is not None else data_dir / "timeseries-spool"

    def sqlite_file(self, data_dir: Path) -> Path:
        return self.sqlite_path if self.sqlite_path is not None else data_dir / "timeseries.sqlite"

    def write_target(self) -> tuple[str, dict[str, str], dict[str, str]]:
        """(URL, query parameters, headers) of the write endpoint; the headers hold the secrets."""
        headers: dict[str, str] = {"Content-Type": "text/plain; charset=utf-8"}
        if self.kind is TimeseriesKind.INFLUX_V2:
            params = {"bucket": self.bucket, "precision": "ns"}
            if self.org:
                params["org"] = self.org
            if self.token is not None:
                headers["Authorization"] = f"Token {self.token.get_secret_value()}"
            return f"{self.url}/api/v2/write", params, headers
        params = {"db": self.db, "precision": "ns"}
        if self.rp:
            params["rp"] = self.rp
        if self.username:
            secret = self.password.get_secret_value() if self.password is not None else ""
            raw = f"{self.username}:{secret}".encode()
            headers["Authorization"] = "Basic " + base64.b64encode(raw).decode()
        elif self.token is not None:
            headers["Authorization"] = f"Token {self.token.get_secret_value()}"
        return f"{self.url}/write", params, headers
