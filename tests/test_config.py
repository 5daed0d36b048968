"""Configuration from YAML plus LINLI_* variables; errors name the key and where it came from."""

from __future__ import annotations

from pathlib import Path

import pytest

from hub.clock import ManualClock, ScaledClock
from hub.config import load_settings
from hub.errors import ConfigError
from hub.mqtt.url import MqttUrl


def test_defaults_are_safe() -> None:
    settings = load_settings(None, environ={})
    assert settings.http.host == "127.0.0.1"
    assert settings.timezone == "Asia/Shanghai"
    assert settings.mqtt.parsed_url.host == "127.0.0.1"


def test_file_then_environment_then_overrides(tmp_path: Path) -> None:
    file = tmp_path / "linli.yaml"
    file.write_text("data_dir: state\nmqtt: {url: 'mqtt://a:1883', client_id: site-1}\nhttp: {port: 9000}\n")
    settings = load_settings(
        file, environ={"LINLI_HTTP__PORT": "9001", "LINLI_MQTT__URL": "mqtt://b:1884", "OTHER": "x"}
    )
    assert settings.data_dir == (tmp_path / "state").resolve()
    assert settings.http.port == 9001
    assert settings.mqtt.parsed_url.host == "b" and settings.mqtt.client_id == "site-1"
    settings = load_settings(file, environ={}, overrides={"mqtt": {"url": "mqtt://c"}})
    assert settings.mqtt.parsed_url.host == "c" and settings.mqtt.client_id == "site-1"


def test_error_from_file_names_key_and_file(tmp_path: Path) -> None:
    file = tmp_path / "linli.yaml"
    file.write_text("http: {port: 99999}\n")
    with pytest.raises(ConfigError) as info:
        load_settings(file, environ={})
    assert info.value.key == "http.port"
    assert str(file) in str(info.value)


def test_http_connection_cap_defaults_under_the_fd_limit_and_is_at_least_one() -> None:
    assert load_settings(None, environ={}).http.max_connections == 512  # half of `ulimit -n 1024`
    assert load_settings(None, environ={"LINLI_HTTP__MAX_CONNECTIONS": "64"}).http.max_connections == 64
    with pytest.raises(ConfigError) as info:
        load_settings(None, environ={"LINLI_HTTP__MAX_CONNECTIONS": "0"})
    assert info.value.key == "http.max_connections"


def test_error_from_environment_names_the_variable(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as info:
        load_settings(None, environ={"LINLI_MQTT__URL": "http://wrong"})
    assert info.value.key == "mqtt.url"
    assert "LINLI_MQTT__URL" in str(info.value)


@pytest.mark.parametrize(
    ("body", "key"),
    [
        ("timezone: Mars/Olympus\n", "timezone"),
        ("colour: red\n", "colour"),
        ("sources: [{family: lora, base_topic: x}]\n", "sources.0.family"),
    ],
)
def test_unknown_values_and_keys_are_refused(tmp_path: Path, body: str, key: str) -> None:
    file = tmp_path / "c.yaml"
    file.write_text(body)
    with pytest.raises(ConfigError) as info:
        load_settings(file, environ={})
    assert info.value.key == key


def test_not_a_mapping(tmp_path: Path) -> None:
    file = tmp_path / "c.yaml"
    file.write_text("- 1\n")
    with pytest.raises(ConfigError, match="mapping"):
        load_settings(file, environ={})


@pytest.mark.parametrize(
    ("url", "host", "port", "tls", "user", "password"),
    [
        ("mqtt://localhost", "localhost", 1883, False, None, None),
        ("mqtts://broker.example:8884", "broker.example", 8884, True, None, None),
        ("mqtt://hub:p%40ss@127.0.0.1:1884", "127.0.0.1", 1884, False, "hub", "p@ss"),
        ("mqtts://u:pw@[::1]", "::1", 8883, True, "u", "pw"),
    ],
)
def test_mqtt_urls(url: str, host: str, port: int, tls: bool, user: str | None, password: str | None) -> None:
    parsed = MqttUrl.parse(url)
    assert (parsed.host, parsed.port, parsed.tls, parsed.username, parsed.password) == (
        host,
        port,
        tls,
        user,
        password,
    )


def test_mqtt_url_never_shows_its_password() -> None:
    parsed = MqttUrl.parse("mqtt://hub:s3cret@h:1")
    assert "s3cret" not in repr(parsed) and "s3cret" not in str(parsed) and "s3cret" not in parsed.redacted()


@pytest.mark.parametrize("url", ["http://h", "mqtt://", "mqtt://h:notaport", "h:1883"])
def test_bad_mqtt_urls(url: str) -> None:
    with pytest.raises(ConfigError):
        MqttUrl.parse(url)


def test_scaled_clock_runs_faster_than_the_wall() -> None:
    wall = ManualClock(start=1000.0)
    clock = ScaledClock(start=1_800_000_000.0, speed=60, wall=wall)
    assert clock.now() == 1_800_000_000.0
    wall.advance(1.5)
    assert clock.now() == 1_800_000_090.0 and clock.wall_seconds(90) == 1.5
