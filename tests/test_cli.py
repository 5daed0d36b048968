"""The `linli` command as a user runs it: help texts, the demo, `run --config` on Mosquitto."""

from __future__ import annotations

import asyncio
import os
import re
import signal
import subprocess
import sys
from pathlib import Path

import aiohttp
import pytest
import yaml
from click.testing import CliRunner

from hub.cli import main
from hub.cli.common import one_hub_per_data_dir
from tests.helpers import SOS_BUTTON, TOKEN, hub_settings, publisher
from tests.support.samples import SAMPLES
from tests.support.servers import Broker

LINLI = str(Path(sys.executable).with_name("linli"))


@pytest.mark.parametrize("command", [[], ["demo"], ["run"], ["token"]])
def test_every_command_has_help(command: list[str]) -> None:
    result = CliRunner().invoke(main, [*command, "--help"])
    assert result.exit_code == 0 and "Usage:" in result.output


def test_run_help_explains_the_mqtt_url() -> None:
    output = CliRunner().invoke(main, ["run", "--help"]).output
    assert "--mqtt URL" in output and "mqtt://user:pass@host:port" in output and "mqtts://" in output


def test_run_with_invalid_config_names_key_and_file(tmp_path: Path) -> None:
    config = tmp_path / "linli.yaml"
    config.write_text("mqtt: {url: 'tcp://nowhere'}\n")
    result = CliRunner().invoke(main, ["run", "--config", str(config)])
    assert result.exit_code == 1
    assert "mqtt.url" in result.output and str(config) in result.output
    assert "Traceback" not in result.output


def test_token_prints_a_config_entry() -> None:
    output = CliRunner().invoke(main, ["token", "--name", "ops"]).output
    token = re.search(r"shown once\): (\S+)", output)
    assert token and re.search(r"sha256: [0-9a-f]{64}", output)


async def wait_for_line(proc: asyncio.subprocess.Process, pattern: str, seen: list[str]) -> re.Match[str]:
    assert proc.stdout is not None
    while True:
        line = (await asyncio.wait_for(proc.stdout.readline(), 30)).decode()
        if not line:
            raise AssertionError("process ended before printing " + pattern + "\n" + "".join(seen))
        seen.append(line)
        if match := re.search(pattern, line):
            return match


async def stop(proc: asyncio.subprocess.Process) -> tuple[int, str, str]:
    proc.send_signal(signal.SIGTERM)
    stdout, stderr = await asyncio.wait_for(proc.communicate(), 30)
    return proc.returncode or 0, stdout.decode(), stderr.decode()


async def test_demo_runs_from_any_directory_shows_sos_and_stops_cleanly(tmp_path: Path) -> None:
    data = tmp_path / "demo-data"
    elsewhere = tmp_path / "cwd"
    elsewhere.mkdir()
    proc = await asyncio.create_subprocess_exec(
        LINLI, "demo", "--data-dir", str(data), "--mqtt-port", "0", "--http-port", "0", "--sos-every", "0.5",
        cwd=elsewhere, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
    )  # fmt: skip
    seen: list[str] = []
    try:
        mqtt = await wait_for_line(proc, r"mqtt://127\.0\.0\.1:(\d+)", seen)
        console = await wait_for_line(proc, r"http://127\.0\.0\.1:(\d+)/login(\S*)", seen)
        assert console.group(2) == "", "the console link carries no token (issue 11 #4)"
        printed = await wait_for_line(proc, r"Token / 令牌:\s+(\S+)", seen)
        assert int(mqtt.group(1)) > 0
        port, token = console.group(1), printed.group(1)
        assert yaml.safe_load((data / "secrets.yaml").read_text())["console_token"] == token
        assert oct((data / "secrets.yaml").stat().st_mode & 0o777) == "0o600"
        async with aiohttp.ClientSession(headers={"Authorization": f"Bearer {token}"}) as session:

            async def sos_alerts() -> list[dict[str, object]]:
                async with session.get(f"http://127.0.0.1:{port}/api/alerts") as response:
                    return [a for a in await response.json() if a["category"] == "sos"]

            alerts: list[dict[str, object]] = []
            for _ in range(300):
                alerts = await sos_alerts()
                if alerts:
                    break
                await asyncio.sleep(0.1)
            assert alerts, "the simulated community raised no SOS alert"
            assert alerts[0]["grid"] is not None, "simulated buttons are registered in a grid"
    finally:
        code, stdout, stderr = await stop(proc)
    assert code == 0, stderr
    assert "Traceback" not in stderr
    assert "stopped cleanly" in stdout
    assert (data / "linli.sqlite3").exists()


async def test_run_against_mosquitto_with_config_file(tmp_path: Path, mosquitto_broker: Broker) -> None:
    settings = hub_settings(tmp_path, mosquitto_broker)
    config = tmp_path / "linli.yaml"
    config.write_text(
        yaml.safe_dump(
            {
                "data_dir": str(settings.data_dir),
                "community_file": str(settings.community_file),
                "http": {"port": 0},
                "api_tokens": [t.model_dump(mode="json") for t in settings.api_tokens],
            }
        )
    )
    env = {**os.environ, "LINLI_MQTT__CLIENT_ID": "linli-cli-test"}
    proc = await asyncio.create_subprocess_exec(
        LINLI, "run", "--config", str(config), "--mqtt", mosquitto_broker.url,
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env,
    )  # fmt: skip
    seen: list[str] = []
    try:
        port = (await wait_for_line(proc, r"http://127\.0\.0\.1:(\d+)/", seen)).group(1)
        gateway = await publisher(mosquitto_broker)
        gateway.publish(
            f"zigbee2mqtt/{SOS_BUTTON}",
            (SAMPLES / "zigbee2mqtt" / "tuya_ts0215a_sos_emergency.json").read_bytes(),
            qos=1,
        )
        async with aiohttp.ClientSession(headers={"Authorization": f"Bearer {TOKEN}"}) as session:

            async def alerts() -> list[dict[str, object]]:
                async with session.get(f"http://127.0.0.1:{port}/api/alerts") as response:
                    result: list[dict[str, object]] = await response.json()
                    return result

            found: list[dict[str, object]] = []
            for _ in range(100):
                found = await alerts()
                if found:
                    break
                await asyncio.sleep(0.05)
            assert [a["device_id"] for a in found] == [SOS_BUTTON]
        await gateway.disconnect()
    finally:
        code, _, stderr = await stop(proc)
    assert code == 0, stderr
    assert "Traceback" not in stderr
    assert mosquitto_broker.password not in stderr, "secrets are never logged"
    assert "***" in stderr


def test_doctor_reports_a_healthy_setup(tmp_path: Path, mosquitto_broker: Broker) -> None:
    result = CliRunner().invoke(
        main, ["doctor", "--mqtt", mosquitto_broker.url], env={"LINLI_DATA_DIR": str(tmp_path)}
    )
    assert result.exit_code == 0, result.output
    assert "accepts our credentials" in result.output and mosquitto_broker.password not in result.output


def test_doctor_says_what_is_wrong(tmp_path: Path, mosquitto_broker: Broker) -> None:
    wrong = mosquitto_broker.url.replace(mosquitto_broker.password, "wrong-password")
    result = CliRunner().invoke(
        main,
        ["doctor", "--mqtt", wrong],
        env={
            "LINLI_DATA_DIR": str(tmp_path),
            "LINLI_TIMESERIES__KIND": "influx_v1",
            "LINLI_TIMESERIES__URL": "http://127.0.0.1:9",
        },
    )
    assert result.exit_code == 1
    assert "[error] MQTT broker" in result.output and "wrong-password" not in result.output
    assert "127.0.0.1:9" in result.output


def test_a_second_hub_on_the_same_data_directory_is_refused(tmp_path: Path) -> None:
    # Two hubs on one data directory share its rule-state file and spool, and with one client
    # id take each other's MQTT session over in turn. A hub that holds the directory (a child
    # process here, as the service would be) keeps `linli run` and `linli demo` out of it.
    data = tmp_path / "data"
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import sys, time; from pathlib import Path; from hub.cli.common import one_hub_per_data_dir\n"
            "with one_hub_per_data_dir(Path(sys.argv[1])):\n    print('held', flush=True); time.sleep(60)",
            str(data),
        ],
        stdout=subprocess.PIPE,
    )
    try:
        assert holder.stdout is not None and holder.stdout.readline() == b"held\n"
        config = tmp_path / "linli.yaml"
        config.write_text(f"data_dir: {data}\nmqtt: {{url: 'mqtt://127.0.0.1:1'}}\n", encoding="utf-8")
        for args in (["run", "--config", str(config)], ["demo", "--data-dir", str(data)]):
            result = CliRunner().invoke(main, args)
            assert result.exit_code == 1, result.output
            assert f"another Linli hub (pid {holder.pid}) is running on the data directory" in result.output
        assert not (data / "community.yaml").exists(), "the refused demo wrote nothing there"
    finally:
        holder.kill()  # kill -9: the kernel releases the lock, no stale lock file blocks a restart
        holder.wait()
    with one_hub_per_data_dir(data):
        assert (data / "linli.lock").read_text(encoding="ascii").strip() == str(os.getpid())
