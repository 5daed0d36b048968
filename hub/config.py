"""Hub configuration: a YAML file plus ``LINLI_*`` environment variables, validated at start-up.

Environment variables override the file; nesting uses a double underscore:
``LINLI_MQTT__URL=mqtt://…``, ``LINLI_HTTP__PORT=8081``, ``LINLI_DATA_DIR=/var/lib/linli``.
A validation error names the key and where the bad value came from.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import yaml
from pydantic import BaseModel, ConfigDict, Field, SecretStr, ValidationError, field_validator

from adapters.router import Family
from hub.errors import ConfigError
from hub.mqtt.url import MqttUrl
from hub.records import Role
from hub.timeseries.settings import TimeseriesSettings

ENV_PREFIX = "LINLI_"


class _Model(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class MqttSettings(_Model):
    url: str = "mqtt://127.0.0.1:1883"
    client_id: str = "linli-hub"
    #: Messages larger than this are quarantined unread (bytes).
    max_payload_bytes: int = Field(default=64 * 1024, gt=0)
    #: CA bundle for mqtts:// brokers with a private CA; system CAs otherwise.
    tls_ca_file: Path | None = None
    #: Root of every topic Linli itself publishes (notifications, replies).
    topic_prefix: str = "linli"

    @field_validator("url")
    @classmethod
    def _valid_url(cls, value: str) -> str:
        try:
            MqttUrl.parse(value)
        except ConfigError as exc:
            raise ValueError(exc.message) from None
        return value

    @property
    def parsed_url(self) -> MqttUrl:
        return MqttUrl.parse(self.url)


class HttpSettings(_Model):
    #: Loopback by default: put a reverse proxy with TLS in front to expose the console.
    host: str = "127.0.0.1"
    port: int = Field(default=8080, ge=0, le=65535)
    #: A console session ends after this long without a request (seconds).
    session_idle_s: float = Field(default=2 * 3600, gt=0, le=7 * 86400)
    #: …and this long after login, whatever (a shift and a half).
    session_max_s: float = Field(default=12 * 3600, gt=0, le=30 * 86400)
    #: Mark the session cookie ``Secure`` always (the console is only reached over HTTPS).
    secure_cookies: bool = False
    #: Reverse proxies (their IP addresses) whose ``X-Forwarded-Proto: https`` makes the cookie
    #: ``Secure`` and the expected origin ``https://``; nobody else's header is believed.
    trusted_proxies: tuple[str, ...] = ()
    #: Origins besides the hub's own that may post with a console session (``https://host``).
    allowed_origins: tuple[str, ...] = ()
    #: Request bodies larger than this are refused with 413 (bytes).
    max_body_bytes: int = Field(default=64 * 1024, ge=1024, le=16 * 1024 * 1024)


class SourceSettings(_Model):
    family: Family
    #: Root topic of the family; empty means the family's default (zigbee2mqtt, v3, application, …).
    base_topic: str = ""


class ApiToken(_Model):
    """A bearer token for the API and console. Store ``sha256`` rather than the token itself.

    ``name`` only labels the token (logs, the console header, and the actor of a token that is
    no person); it never stands for a roster person. ``person`` does: a token of a role whose
    reach depends on who the person is (grid team, duty officer) must name one, of that same
    role in the roster, or the hub refuses to start (``hub.web.api.check_tokens``).
    """

    name: str = Field(min_length=1, max_length=64)
    #: A closed set (:class:`hub.records.Role`): an unknown role is refused at start, naming the key.
    role: Role = Role.COMMAND_CENTRE
    sha256: str = Field(pattern=r"^[0-9a-f]{64}$")
    #: The roster person this token acts as (grid workers' phones); actions are recorded as them.
    person: str | None = Field(default=None, min_length=1, max_length=64)


class Settings(_Model):
    data_dir: Path = Path("data")
    timezone: str = "Asia/Shanghai"
    community_file: Path | None = None
    #: Case time limits, working calendar and escalation chains; the shipped defaults when unset.
    policies_file: Path | None = None
    rule_paths: tuple[Path, ...] = ()
    #: Per-place thresholds: ``{rule_id: {"community:<code>" | "grid:<code>" | "resident:<id>": {field: value}}}``.
    rule_overrides: dict[str, dict[str, dict[str, float | int | str]]] = Field(default_factory=dict)
    mqtt: MqttSettings = MqttSettings()
    http: HttpSettings = HttpSettings()
    #: Gateways whose messages the hub takes in (ChirpStack v3 and v4 share the `application` root).
    sources: tuple[SourceSettings, ...] = (
        SourceSettings(family=Family.ZIGBEE2MQTT),
        SourceSettings(family=Family.TTN_V3),
        SourceSettings(family=Family.CHIRPSTACK_V4),
        SourceSettings(family=Family.TASMOTA),
        SourceSettings(family=Family.NATIVE),
    )
    api_tokens: tuple[ApiToken, ...] = ()
    #: Per-person notification channels (DingTalk/WeCom robots, webhooks) besides their MQTT topic.
    channels_file: Path | None = None
    #: Secrets the channels refer to by name (``secret_ref``); set them from LINLI_CHANNEL_SECRETS__<NAME>.
    channel_secrets: dict[str, SecretStr] = Field(default_factory=dict)
    #: Scenario testing only: run on a manual clock starting at this Unix time, moved forward by
    #: ``POST /api/test/clock`` (admin or command-centre token). Never set this in production.
    test_clock_start: float | None = None
    #: Where time series go: InfluxDB (v1 or v2 API), or by default an embedded SQLite file.
    timeseries: TimeseriesSettings = TimeseriesSettings()

    @field_validator("timezone")
    @classmethod
    def _known_zone(cls, value: str) -> str:
        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError):
            raise ValueError(
                f"unknown time zone {value!r} (use an IANA name such as Asia/Shanghai)"
            ) from None
        return value

    @property
    def zone(self) -> ZoneInfo:
        return ZoneInfo(self.timezone)


def _env_overlay(environ: Mapping[str, str]) -> tuple[dict[str, Any], dict[str, str]]:
    """``LINLI_A__B=v`` → ``{"a": {"b": "v"}}``, plus which variable set each dotted key."""
    overlay: dict[str, Any] = {}
    origin: dict[str, str] = {}
    for name, value in environ.items():
        if not name.startswith(ENV_PREFIX):
            continue
        path = [part.lower() for part in name[len(ENV_PREFIX) :].split("__") if part]
        if not path:
            continue
        node = overlay
        for part in path[:-1]:
            node = node.setdefault(part, {})
            if not isinstance(node, dict):
                raise ConfigError("conflicting environment variables", key=".".join(path), source=name)
        node[path[-1]] = value
        origin[".".join(path)] = f"environment variable {name}"
    return overlay, origin


def _merge(base: dict[str, Any], top: dict[str, Any]) -> dict[str, Any]:
    merged = dict(base)
    for key, value in top.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = _merge(merged[key], value)
        else:
            merged[key] = value
    return merged


def load_settings(
    file: Path | None = None,
    *,
    environ: Mapping[str, str] | None = None,
    overrides: Mapping[str, Any] | None = None,
) -> Settings:
    """Build settings from a YAML file, the environment and explicit overrides (highest last)."""
    doc: dict[str, Any] = {}
    source = "defaults"
    if file is not None:
        source = f"file {file}"
        try:
            loaded = yaml.safe_load(file.read_text(encoding="utf-8"))
        except OSError as exc:
            raise ConfigError(f"cannot read config: {exc.strerror}", source=source) from None
        except yaml.YAMLError as exc:
            raise ConfigError(f"config is not valid YAML: {exc}", source=source) from None
        if loaded is not None and not isinstance(loaded, dict):
            raise ConfigError("config must be a YAML mapping", source=source)
        doc = loaded or {}
        # Relative paths in a config file are relative to that file, not to the CWD.
        for key in ("data_dir", "community_file", "policies_file", "channels_file"):
            if isinstance(doc.get(key), str) and not Path(doc[key]).is_absolute():
                doc[key] = str((file.parent / doc[key]).resolve())
        if isinstance(doc.get("rule_paths"), list):
            doc["rule_paths"] = [
                str((file.parent / p).resolve()) if isinstance(p, str) else p for p in doc["rule_paths"]
            ]
    env, origin = _env_overlay(os.environ if environ is None else environ)
    merged = _merge(_merge(doc, env), dict(overrides or {}))
    try:
        return Settings.model_validate(merged)
    except ValidationError as exc:
        error = exc.errors()[0]
        key = ".".join(str(part) for part in error["loc"])
        where = next((origin[k] for k in origin if key == k or key.startswith(k + ".")), source)
        raise ConfigError(error["msg"], key=key, source=where) from None
