"""One LINLI_* namespace: Grafana's and the clients' variables never stop the hub, *_FILE secrets,
and every effective value knows where it came from."""

from __future__ import annotations

import json
from pathlib import Path
from typing import get_args, get_origin

import pytest
from click.testing import CliRunner
from pydantic import BaseModel, SecretStr

from hub.cli import main
from hub.config import (
    SECRET_KEYS,
    Settings,
    ValueSource,
    is_secret_key,
    load_config,
    load_settings,
    read_secret_file,
)
from hub.errors import ConfigError

GRAFANA_ENV = {
    "LINLI_GRAFANA_INFLUX_URL": "http://influx:8086",
    "LINLI_GRAFANA_INFLUX_DB": "linli",
    "LINLI_GRAFANA_INFLUX_TOKEN": "grafana-secret",
    "LINLI_GRAFANA_URL": "http://grafana:3000",
    "LINLI_GRAFANA_TOKEN": "glsa_x",
    "LINLI_API_TOKEN": "api-secret",
    "LINLI_DEV_SCREENSHOTS": "/tmp/shots",
}


def test_old_grafana_variables_no_longer_stop_the_hub() -> None:
    # Issue 17: the docs said to set LINLI_INFLUX_URL/DB/TOKEN for Grafana; the hub then refused to start.
    old = {"LINLI_INFLUX_URL": "http://influx:8086", "LINLI_INFLUX_DB": "linli", "LINLI_INFLUX_TOKEN": "t"}
    loaded = load_config(None, environ=old)
    assert loaded.settings.timeseries.url == "http://127.0.0.1:8086"  # not taken for the hub's own
    assert any("LINLI_GRAFANA_INFLUX_URL" in note for note in loaded.notes)


def test_grafana_api_and_dev_variables_are_not_the_hubs() -> None:
    loaded = load_config(None, environ=GRAFANA_ENV)
    assert loaded.settings == load_settings(None, environ={})
    assert loaded.notes == ()


def test_an_unknown_hub_variable_is_still_refused() -> None:
    with pytest.raises(ConfigError) as info:
        load_settings(None, environ={"LINLI_MQQT__URL": "mqtt://x"})
    assert "LINLI_MQQT__URL" in str(info.value)


def test_secret_from_a_file_strips_the_trailing_newline(tmp_path: Path) -> None:
    (tmp_path / "token").write_text("s3cr3t\n", encoding="utf-8")
    (tmp_path / "pw").write_text("broker-pw\r\n", encoding="utf-8")
    (tmp_path / "robot").write_text("robot-secret", encoding="utf-8")
    loaded = load_config(
        None,
        environ={
            "LINLI_TIMESERIES__TOKEN_FILE": str(tmp_path / "token"),
            "LINLI_MQTT__URL": "mqtt://hub@broker:1883",
            "LINLI_MQTT__PASSWORD_FILE": str(tmp_path / "pw"),
            "LINLI_CHANNEL_SECRETS__OPS_ROBOT_FILE": str(tmp_path / "robot"),
        },
    )
    s = loaded.settings
    assert s.timeseries.token is not None and s.timeseries.token.get_secret_value() == "s3cr3t"
    assert s.mqtt.parsed_url.password == "broker-pw" and s.mqtt.parsed_url.username == "hub"
    assert s.channel_secrets["ops_robot"].get_secret_value() == "robot-secret"
    origin = loaded.origin("timeseries.token")
    assert origin.source is ValueSource.ENV_FILE and origin.detail == "LINLI_TIMESERIES__TOKEN_FILE"


def test_file_named_keys_that_are_not_secrets_keep_their_meaning(tmp_path: Path) -> None:
    # community_file is a setting of its own, not "community" read from a file.
    s = load_settings(None, environ={"LINLI_COMMUNITY_FILE": str(tmp_path / "c.yaml")})
    assert s.community_file == tmp_path / "c.yaml"


def test_value_and_file_for_the_same_secret_is_ambiguous(tmp_path: Path) -> None:
    (tmp_path / "t").write_text("a")
    with pytest.raises(ConfigError) as info:
        load_settings(
            None,
            environ={"LINLI_TIMESERIES__TOKEN": "b", "LINLI_TIMESERIES__TOKEN_FILE": str(tmp_path / "t")},
        )
    assert info.value.key == "timeseries.token"


def test_missing_secret_file_names_the_variable(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as info:
        load_settings(None, environ={"LINLI_TIMESERIES__TOKEN_FILE": str(tmp_path / "nope")})
    assert "LINLI_TIMESERIES__TOKEN_FILE" in str(info.value)


def test_read_secret_file(tmp_path: Path) -> None:
    (tmp_path / "s").write_text("x y\n\n")
    assert read_secret_file(tmp_path / "s") == "x y"


def _secret_fields(model: type[BaseModel], prefix: str = "") -> set[str]:
    found: set[str] = set()
    for name, info in model.model_fields.items():
        annotation = info.annotation
        if get_origin(annotation) is dict:
            if SecretStr in get_args(annotation):
                found.add(prefix + name + ".*")
            continue
        for arg in (annotation, *get_args(annotation)):
            if arg is SecretStr:
                found.add(prefix + name)
            elif isinstance(arg, type) and issubclass(arg, BaseModel):
                found |= _secret_fields(arg, f"{prefix}{name}.")
    return found


def test_every_secret_field_has_a_file_variant() -> None:
    secrets = _secret_fields(Settings)
    assert secrets  # the walk works
    assert secrets <= set(SECRET_KEYS)
    assert all(is_secret_key(k.replace("*", "any")) for k in secrets)


def test_origins_default_file_env_and_override(tmp_path: Path) -> None:
    file = tmp_path / "linli.yaml"
    file.write_text("http: {port: 9000}\nmqtt: {client_id: site-1}\n")
    loaded = load_config(
        file, environ={"LINLI_MQTT__URL": "mqtt://b:1884"}, overrides={"timezone": "Asia/Urumqi"}
    )
    assert loaded.origin("http.port").source is ValueSource.FILE
    assert loaded.origin("http.port").detail == str(file)
    assert loaded.origin("mqtt.url").source is ValueSource.ENV
    assert loaded.origin("timezone").source is ValueSource.OVERRIDE
    assert loaded.origin("http.host").source is ValueSource.DEFAULT


def test_config_show_redacts_and_says_where(tmp_path: Path) -> None:
    (tmp_path / "token").write_text("influx-token-value\n")
    file = tmp_path / "linli.yaml"
    file.write_text("http: {port: 9000}\ntimeseries: {kind: influx_v2, password: file-pw}\n")
    result = CliRunner().invoke(
        main,
        ["config", "show", "--config", str(file)],
        env={
            "LINLI_MQTT__URL": "mqtt://hub:broker-pw@broker:1883",
            "LINLI_TIMESERIES__TOKEN_FILE": str(tmp_path / "token"),
            "LINLI_GRAFANA_TOKEN": "glsa_hidden",
        },
    )
    assert result.exit_code == 0, result.output
    out = result.output
    for secret in ("influx-token-value", "broker-pw", "file-pw", "glsa_hidden"):
        assert secret not in out
    lines = {line.split(" = ")[0].strip(): line for line in out.splitlines() if " = " in line}
    assert "9000" in lines["http.port"] and str(file) in lines["http.port"]
    assert "mqtt://hub:***@broker:1883" in lines["mqtt.url"] and "LINLI_MQTT__URL" in lines["mqtt.url"]
    assert (
        "<redacted>" in lines["timeseries.token"]
        and "LINLI_TIMESERIES__TOKEN_FILE" in lines["timeseries.token"]
    )
    assert "<redacted>" in lines["timeseries.password"]
    assert "default" in lines["http.host"]


def test_config_show_json(tmp_path: Path) -> None:
    result = CliRunner().invoke(
        main, ["config", "show", "--format", "json"], env={"LINLI_HTTP__PORT": "8181"}
    )
    assert result.exit_code == 0, result.output
    doc = json.loads(result.output)
    assert doc["http.port"] == {"value": 8181, "source": "env", "detail": "LINLI_HTTP__PORT"}


def test_store_url_defaults_to_sqlite_in_data_dir_and_comes_from_a_secret_file(tmp_path: Path) -> None:
    assert load_settings(None, environ={}).store.resolved_url(Path("data")) == "sqlite:data/linli.sqlite3"
    assert (
        load_settings(None, environ={}).store.resolved_url(tmp_path) == f"sqlite://{tmp_path}/linli.sqlite3"
    )
    (tmp_path / "store-url").write_text("postgresql://linli:db-pw@db:5432/linli\n")
    s = load_settings(None, environ={"LINLI_STORE__URL_FILE": str(tmp_path / "store-url")})
    assert s.store.resolved_url(tmp_path) == "postgresql://linli:db-pw@db:5432/linli"
    s = load_settings(None, environ={"LINLI_STORE__URL": "postgresql://hub@127.0.0.1:5433/linli"})
    assert s.store.url == "postgresql://hub@127.0.0.1:5433/linli"
    with pytest.raises(ConfigError, match=r"store\.url"):
        load_settings(None, environ={"LINLI_STORE__URL": "mysql://x/y"})


def test_config_show_redacts_the_store_url(tmp_path: Path) -> None:
    result = CliRunner().invoke(
        main, ["config", "show"], env={"LINLI_STORE__URL": "postgresql://linli:db-pw@db:5432/linli"}
    )
    assert result.exit_code == 0, result.output
    assert "db-pw" not in result.output and "store.url" in result.output
