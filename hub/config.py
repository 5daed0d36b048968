"""Hub configuration: a YAML file plus ``LINLI_*`` environment variables, validated at start-up.

Environment variables override the file; nesting uses a double underscore:
``LINLI_MQTT__URL=mqtt://…``, ``LINLI_HTTP__PORT=8081``, ``LINLI_DATA_DIR=/var/lib/linli``.
A validation error names the key and where the bad value came from.

One namespace, no collisions: ``LINLI_<KEY>`` is the hub's own and an unknown one is refused
(a typo must not pass silently), except three sub-namespaces that belong to others and that the
hub never reads — ``LINLI_GRAFANA_*`` (Grafana's data-source provisioning and
``linli dashboards push``), ``LINLI_API_*`` (commands that call a running hub's API) and
``LINLI_DEV_*`` (tests and benchmarks). Names that older docs told people to set for those
(``LINLI_INFLUX_URL`` …) are ignored with a note saying their new name, not refused.

Every secret also has a ``*_FILE`` variant (``LINLI_TIMESERIES__TOKEN_FILE=/run/secrets/influx``,
as Docker and Kubernetes mount secrets): the file's content is the value, a trailing newline
stripped. Only secret keys (:data:`SECRET_KEYS`) have one, so ``LINLI_COMMUNITY_FILE`` keeps
meaning the ``community_file`` setting.
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field, replace
from enum import StrEnum
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    SecretStr,
    ValidationError,
    field_validator,
    model_validator,
)

from adapters.router import Family, FamilySource
from hub.errors import ConfigError
from hub.mqtt.topics import TOPIC_LEVELS, colliding
from hub.mqtt.url import MqttUrl
from hub.records import Role
from hub.timeseries.settings import TimeseriesSettings

ENV_PREFIX = "LINLI_"
#: Sub-namespaces of ``LINLI_`` that are not hub settings; the loader skips them.
FOREIGN_PREFIXES: Mapping[str, str] = {
    "LINLI_GRAFANA_": "Grafana provisioning and `linli dashboards push`",
    "LINLI_API_": "commands that call a running hub's API",
    "LINLI_DEV_": "tests and benchmarks",
    "LINLI_BUILD_": "building the wheel (setup.py: LINLI_BUILD_MYPYC)",
}
#: Names documented before the namespace was sorted out → what to use now. Ignored, with a note.
RENAMED: Mapping[str, str] = {
    "LINLI_INFLUX_URL": "LINLI_GRAFANA_INFLUX_URL (Grafana's data source; the hub's own is LINLI_TIMESERIES__URL)",
    "LINLI_INFLUX_DB": "LINLI_GRAFANA_INFLUX_DB (Grafana's data source; the hub's own is LINLI_TIMESERIES__DB)",
    "LINLI_INFLUX_TOKEN": "LINLI_GRAFANA_INFLUX_TOKEN (Grafana's data source; the hub's own is LINLI_TIMESERIES__TOKEN)",
    "LINLI_TOKEN": "LINLI_API_TOKEN",
    "LINLI_MQTT_USER": "LINLI_DEV_MQTT_USER",
    "LINLI_MQTT_PASSWORD": "LINLI_DEV_MQTT_PASSWORD",
    "LINLI_SCREENSHOTS": "LINLI_DEV_SCREENSHOTS",
}
#: Keys holding secrets: redacted when shown, settable from a file with ``LINLI_<KEY>_FILE``.
#: ``*`` stands for any one key of a mapping. mqtt.url and store.url are here because they may carry
#: a password.
SECRET_KEYS: tuple[str, ...] = (
    "mqtt.url",
    "store.url",
    "mqtt.password",
    "timeseries.password",
    "timeseries.token",
    "channel_secrets.*",
)
FILE_SUFFIX = "_FILE"


def is_secret_key(key: str) -> bool:
    parts = key.split(".")
    return any(
        len(parts) == len(pattern.split("."))
        and all(p in ("*", k) for p, k in zip(pattern.split("."), parts, strict=True))
        for pattern in SECRET_KEYS
    )


def read_secret_file(path: Path, *, key: str = "", source: str = "") -> str:
    """A secret's value from a file (Docker/Kubernetes secrets): its content, trailing newlines stripped."""
    try:
        return path.read_text(encoding="utf-8").rstrip("\r\n")
    except OSError as exc:
        raise ConfigError(
            f"cannot read secret file {path}: {exc.strerror or exc}", key=key, source=source
        ) from None
    except UnicodeDecodeError:
        raise ConfigError(f"secret file {path} is not UTF-8 text", key=key, source=source) from None


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
    topic_prefix: str = Field(default="linli", max_length=128, pattern=f"^{TOPIC_LEVELS}$")
    #: The SOS priority lane: a second session (``<client_id>-sos``) for the registered
    #: SOS-capable devices' topics, so a press never queues behind sensor traffic
    #: (docs/benchmarks.md). Off only where messages must be handled in arrival order on one
    #: connection (the ingest benchmark replays a stream on a clock pinned to it).
    priority_lane: bool = True
    #: Broker credentials apart from the URL (they win over the URL's): a password can then come
    #: from a secret file (``LINLI_MQTT__PASSWORD_FILE``) and be rotated without editing the URL.
    username: str | None = None
    password: SecretStr | None = None

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
        url = MqttUrl.parse(self.url)
        if self.username is not None:
            url = replace(url, username=self.username)
        if self.password is not None:
            url = replace(url, password=self.password.get_secret_value())
        return url


STORE_FILE = "linli.sqlite3"


class StoreSettings(_Model):
    """Where alerts, cases, the outbox and rule state live.

    ``url`` unset: the embedded SQLite file ``<data_dir>/linli.sqlite3`` (nothing to install).
    ``sqlite:///absolute/path`` or ``sqlite:relative/path`` for another file;
    ``postgresql://user@host:port/db`` for PostgreSQL, which several hubs can share. A URL with
    a password is a secret: set it with ``LINLI_STORE__URL_FILE`` (a mounted secret file).
    """

    url: str | None = None

    @field_validator("url")
    @classmethod
    def _known_scheme(cls, value: str | None) -> str | None:
        if value is None:
            return None
        scheme = value.split(":", 1)[0].lower() if ":" in value else ""
        if scheme not in ("sqlite", "postgresql", "postgres"):
            raise ValueError("store.url must start with sqlite: or postgresql://")
        return value

    def resolved_url(self, data_dir: Path) -> str:
        """The URL to open: ``url``, or the SQLite file in ``data_dir``."""
        if self.url is not None:
            return self.url
        path = data_dir / STORE_FILE
        return f"sqlite://{path}" if path.is_absolute() else f"sqlite:{path}"


class ClusterSettings(_Model):
    """Several hubs sharing one PostgreSQL store (issue 13): who this node is, how long a lease lasts."""

    #: This hub's name among the nodes; unset = not clustered (one hub owns every community).
    node_id: str | None = Field(default=None, min_length=1, max_length=64)
    #: A community's lease lasts this long after its last renewal; renewed well inside it.
    lease_s: float = Field(default=10.0, gt=0)


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
    #: Connections open at once; one more is closed as soon as it is accepted (counted in
    #: ``linli_http_connections_refused_total``). Each console tab's event stream holds one for as
    #: long as it is open, besides the browser's keep-alive connections: this is also the cap on
    #: consoles. Each is a file descriptor: half of the default ``ulimit -n 1024`` leaves the other
    #: half to the store, the MQTT sessions and, in ``linli demo``, the embedded broker's clients.
    max_connections: int = Field(default=512, ge=1, le=1_000_000)
    #: Connections one client address may hold at once (0: no such cap), so one client cannot take
    #: all ``max_connections`` and keep the console and the health check out. Loopback and
    #: ``trusted_proxies`` are not capped: a proxy carries everyone's connections (limit per
    #: client there, e.g. nginx's ``limit_conn``). A worker's phone or a console tab uses a few.
    max_connections_per_address: int = Field(default=128, ge=0, le=1_000_000)
    #: Failed token checks (a wrong token at ``POST /login`` or as ``Bearer``) one client address
    #: may make before it waits; one more is allowed every ``auth_refill_s``. While it waits every
    #: token check from it gets 429 (hub.web.auth_throttle). Behind a trusted proxy the address is
    #: the client's from ``X-Forwarded-For``.
    auth_attempts: int = Field(default=20, ge=1, le=1_000_000)
    auth_refill_s: float = Field(default=30.0, gt=0, le=86_400)
    #: The console's address as people outside reach it (``https://linli.example.org``): links
    #: the hub sends on its own (a guardian's 评价 link) start with it. Unset: none are sent.
    public_url: str | None = Field(default=None, pattern=r"^https?://[^\s/?#]+(/[^\s?#]*)?$")


class ReplySettings(_Model):
    """Worker replies over MQTT: where the reply keys are, how far a reply's ``ts`` may be off."""

    #: The persons' reply keys (YAML, 0600); ``<data_dir>/reply-keys.yaml`` when unset.
    keys_file: Path | None = None
    #: A reply whose signed ``ts`` is further than this from the hub's clock is refused (s).
    window_s: float = Field(default=300.0, gt=0, le=86_400)


class UnknownDeviceSettings(_Model):
    """Bounds for devices that publish without being registered (issue 11, finding 6)."""

    #: Unregistered devices listed one by one (and kept in the store); beyond this they are
    #: counted per gateway/topic prefix only.
    max_listed: int = Field(default=1_000, ge=0)
    #: Gateway/topic prefixes counted separately; beyond this they share one ``*other*`` count.
    max_prefixes: int = Field(default=100, ge=1)
    #: Presses from unregistered devices through one gateway within this many seconds of the
    #: last one are one burst: one alert and case saying how many, not one per device.
    burst_s: float = Field(default=600.0, ge=0)


class SourceSettings(_Model):
    family: Family
    #: Root topic of the family; empty means the family's default (zigbee2mqtt, v3, application, …).
    base_topic: str = Field(default="", max_length=128, pattern=f"^({TOPIC_LEVELS})?$")


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

    @field_validator("role")
    @classmethod
    def _login_role(cls, value: Role) -> Role:
        # A guardian (监护人) evaluates through a signed one-time link and has no login (issue 18).
        if value is Role.GUARDIAN:
            raise ValueError("a guardian has no token: he evaluates through a one-time link")
        return value


class Settings(_Model):
    data_dir: Path = Path("data")
    timezone: str = "Asia/Shanghai"
    community_file: Path | None = None
    #: Case time limits, working calendar and escalation chains; the shipped defaults when unset.
    policies_file: Path | None = None
    rule_paths: tuple[Path, ...] = ()
    #: Site device profiles (files or directories of ``*.yaml``), loaded after the shipped ones:
    #: where ``linli profiles suggest --out`` writes for the installer to review.
    profile_paths: tuple[Path, ...] = ()
    #: Per-place thresholds: ``{rule_id: {"community:<code>" | "grid:<code>" | "resident:<id>": {field: value}}}``.
    rule_overrides: dict[str, dict[str, dict[str, float | int | str]]] = Field(default_factory=dict)
    mqtt: MqttSettings = MqttSettings()
    store: StoreSettings = StoreSettings()
    cluster: ClusterSettings = ClusterSettings()
    http: HttpSettings = HttpSettings()
    replies: ReplySettings = ReplySettings()
    unknown_devices: UnknownDeviceSettings = UnknownDeviceSettings()
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
    #: Readiness fails below this much free space on the data disk: act before SQLite refuses writes.
    min_free_disk_mb: int = Field(default=64, ge=0)

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

    @model_validator(mode="after")
    def _sources_outside_own_topics(self) -> Settings:
        """No gateway root reaches into the hub's own topics (:mod:`hub.mqtt.topics`)."""
        filters = [f for s in self.sources for f in FamilySource(s.family, s.base_topic).subscriptions()]
        clash = colliding(self.mqtt.topic_prefix, filters)
        if clash:
            raise ValueError(
                f"sources: gateway topic {clash[0]} lies in the hub's own topics under"
                f" mqtt.topic_prefix {self.mqtt.topic_prefix!r} (notifications, replies): give that"
                " source another base_topic"
            )
        return self

    @property
    def zone(self) -> ZoneInfo:
        return ZoneInfo(self.timezone)

    @property
    def reply_keys_file(self) -> Path:
        return self.replies.keys_file or Path(self.data_dir) / "reply-keys.yaml"


class ValueSource(StrEnum):
    """Where an effective setting came from (``linli config show``)."""

    DEFAULT = "default"
    FILE = "file"
    ENV = "env"
    #: A ``LINLI_<KEY>_FILE`` variable naming a secret file.
    ENV_FILE = "env_file"
    #: A command-line option (``--mqtt``).
    OVERRIDE = "override"


@dataclass(frozen=True, slots=True)
class Origin:
    source: ValueSource
    #: The file, or the variable's name.
    detail: str = ""

    def __str__(self) -> str:
        if self.source is ValueSource.ENV_FILE:
            return f"secret file named by {self.detail}"
        if self.source is ValueSource.DEFAULT:
            return "default"
        return f"{self.source.value} {self.detail}".strip()


DEFAULT_ORIGIN = Origin(ValueSource.DEFAULT)


@dataclass(frozen=True, slots=True)
class LoadedConfig:
    """Effective settings plus, per dotted key that was set, where it was set."""

    settings: Settings
    origins: Mapping[str, Origin] = field(default_factory=dict)
    #: Variables ignored on purpose (old names), for the start-up log and ``config show``.
    notes: tuple[str, ...] = ()

    def origin(self, key: str) -> Origin:
        """Where ``key``'s value came from: the most specific key set at or above it, else a default."""
        parts = key.split(".")
        for end in range(len(parts), 0, -1):
            found = self.origins.get(".".join(parts[:end]))
            if found is not None:
                return found
        below = [o for k, o in self.origins.items() if k.startswith(key + ".")]
        return below[-1] if below else DEFAULT_ORIGIN


def _leaves(doc: Mapping[str, Any], prefix: str = "") -> Iterator[str]:
    for key, value in doc.items():
        if isinstance(value, Mapping) and value:
            yield from _leaves(value, f"{prefix}{key}.")
        else:
            yield f"{prefix}{key}"


def _env_overlay(environ: Mapping[str, str]) -> tuple[dict[str, Any], dict[str, Origin], list[str]]:
    """``LINLI_A__B=v`` → ``{"a": {"b": "v"}}``, which variable set each dotted key, and notes."""
    overlay: dict[str, Any] = {}
    origin: dict[str, Origin] = {}
    notes: list[str] = []
    for name, raw in sorted(environ.items()):
        if not name.startswith(ENV_PREFIX) or name.startswith(tuple(FOREIGN_PREFIXES)):
            continue
        if name in RENAMED:
            notes.append(f"{name} is ignored by the hub: it is now {RENAMED[name]}")
            continue
        value = raw
        how = ValueSource.ENV
        path = [part.lower() for part in name[len(ENV_PREFIX) :].split("__") if part]
        if not path:
            continue
        if name.endswith(FILE_SUFFIX) and is_secret_key(".".join(path)[: -len(FILE_SUFFIX)]):
            path[-1] = path[-1][: -len(FILE_SUFFIX)]
            key = ".".join(path)
            if name[: -len(FILE_SUFFIX)] in environ:
                raise ConfigError(
                    f"both {name[: -len(FILE_SUFFIX)]} and {name} are set; keep one",
                    key=key,
                    source=f"environment variable {name}",
                )
            value = read_secret_file(Path(raw), key=key, source=f"environment variable {name}")
            how = ValueSource.ENV_FILE
        node = overlay
        for part in path[:-1]:
            node = node.setdefault(part, {})
            if not isinstance(node, dict):
                raise ConfigError("conflicting environment variables", key=".".join(path), source=name)
        node[path[-1]] = value
        origin[".".join(path)] = Origin(how, name)
    return overlay, origin, notes


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
    return load_config(file, environ=environ, overrides=overrides).settings


def load_config(
    file: Path | None = None,
    *,
    environ: Mapping[str, str] | None = None,
    overrides: Mapping[str, Any] | None = None,
) -> LoadedConfig:
    """:func:`load_settings`, keeping where each value came from and the notes on ignored names."""
    doc: dict[str, Any] = {}
    source = "defaults"
    origins: dict[str, Origin] = {}
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
        replies = doc.get("replies")
        keys_file = replies.get("keys_file") if isinstance(replies, dict) else None
        if isinstance(replies, dict) and isinstance(keys_file, str) and not Path(keys_file).is_absolute():
            replies["keys_file"] = str((file.parent / keys_file).resolve())
        for key in ("rule_paths", "profile_paths"):
            if isinstance(doc.get(key), list):
                doc[key] = [str((file.parent / p).resolve()) if isinstance(p, str) else p for p in doc[key]]
        origins.update({key: Origin(ValueSource.FILE, str(file)) for key in _leaves(doc)})
    env, env_origin, notes = _env_overlay(os.environ if environ is None else environ)
    origins.update(env_origin)
    top = dict(overrides or {})
    origins.update({key: Origin(ValueSource.OVERRIDE, "command line") for key in _leaves(top)})
    merged = _merge(_merge(doc, env), top)
    try:
        settings = Settings.model_validate(merged)
    except ValidationError as exc:
        error = exc.errors()[0]
        key = ".".join(str(part) for part in error["loc"])
        where = next(
            (
                f"environment variable {o.detail}"
                for k, o in env_origin.items()
                if key == k or key.startswith(k + ".") or k.startswith(key + ".")
            ),
            source,
        )
        raise ConfigError(error["msg"], key=key, source=where) from None
    return LoadedConfig(settings=settings, origins=origins, notes=tuple(notes))
