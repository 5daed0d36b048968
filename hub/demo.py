"""``linli demo``: embedded broker + hub + simulated community + console, on loopback.

The simulator is passed in by the CLI (the hub never imports ``simulators``).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
import signal
from collections.abc import Callable, Coroutine
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from adapters.router import FamilySource
from hub.app import Hub
from hub.broker import AclRules, EmbeddedBroker
from hub.casework.broker_access import GatewayUser, UserKind, broker_access
from hub.casework.reply_keys import FILE_NAME as REPLY_KEYS_FILE
from hub.casework.reply_keys import ReplyKeys
from hub.clock import Clock
from hub.community.files import load_yaml
from hub.config import ApiToken, Settings, load_settings
from hub.errors import ConfigError
from hub.files import write_private
from hub.records import Role
from hub.web.api import token_hash

log = logging.getLogger(__name__)

HUB_USER = "linli-hub"
SIM_USER = "linli-sim"


@dataclass(frozen=True, slots=True)
class Endpoint:
    """Where the simulator connects: the embedded broker, with its own credentials."""

    host: str
    port: int
    username: str
    password: str = field(repr=False)


SimulatorFactory = Callable[[Endpoint], Coroutine[Any, Any, None]]

#: Where a running demo says how to reach it (ports chosen at start): for
#: ``linli simulate scenario --demo DIR``, so no secret has to go on a command line.
ENDPOINTS_FILE = "endpoints.yaml"


@dataclass(frozen=True, slots=True, kw_only=True)
class DemoTarget:
    """A running demo as a scenario reaches it: its API, a command-centre token, the broker as
    the simulator's gateway user, and the people's reply keys."""

    http: str
    token: str = field(repr=False)
    mqtt_url: str = field(repr=False)
    reply_keys: Path


def demo_target(data_dir: Path) -> DemoTarget:
    """Read a running demo's endpoints and secrets from its data directory."""
    endpoints_path = data_dir / ENDPOINTS_FILE
    if not endpoints_path.exists():
        raise ConfigError(f"{endpoints_path}: no demo is running with this data directory")
    endpoints = yaml.safe_load(endpoints_path.read_text(encoding="utf-8")) or {}
    secret = load_or_create(data_dir / "secrets.yaml", ())
    try:
        return DemoTarget(
            http=f"http://127.0.0.1:{int(endpoints['http_port'])}",
            token=secret["console_token"],
            mqtt_url=f"mqtt://{SIM_USER}:{secret['sim_password']}@127.0.0.1:{int(endpoints['mqtt_port'])}",
            reply_keys=data_dir / REPLY_KEYS_FILE,
        )
    except (KeyError, TypeError, ValueError) as exc:
        raise ConfigError(f"{data_dir}: incomplete demo files ({exc})") from None


async def run_demo(
    *,
    data_dir: Path,
    community_file: Path,
    mqtt_port: int,
    http_port: int,
    simulator: SimulatorFactory,
    stop: asyncio.Event | None = None,
    announce: Callable[[str], None] = print,
    clock: Clock | None = None,
) -> None:
    """Run until ``stop`` is set or SIGINT/SIGTERM arrives, then shut everything down in order.

    ``data_dir`` should be absolute (the CLI resolves it) so the printed paths are usable.
    """
    secret = load_or_create(data_dir / "secrets.yaml", ("hub_password", "sim_password", "console_token"))
    stop = stop or asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError, RuntimeError):
            loop.add_signal_handler(sig, stop.set)

    # The same users and ACL `linli broker config` generates for Mosquitto: the simulator is a
    # gateway (its topics only, no notifications), each roster person reads and replies on
    # their own topics only; every person's reply key is issued for trying the app side.
    access = broker_access(
        communities=load_yaml(community_file),
        sources=[FamilySource(s.family, s.base_topic) for s in Settings().sources],
        topic_prefix=Settings().mqtt.topic_prefix,
        hub_user=HUB_USER,
        gateways=[GatewayUser(name=SIM_USER)],
    )
    people = access.names(UserKind.PERSON)
    person_passwords = load_or_create(data_dir / "broker-users.yaml", tuple(people))
    ReplyKeys(path=data_dir / REPLY_KEYS_FILE).ensure(people)
    broker = EmbeddedBroker(
        host="127.0.0.1",
        port=mqtt_port,
        users={
            **{person: person_passwords[person] for person in people},
            HUB_USER: secret["hub_password"],
            SIM_USER: secret["sim_password"],
        },
        acl=AclRules.parse(access.acl_text()),
    )
    await broker.start()
    hub: Hub | None = None
    sim_task: asyncio.Task[None] | None = None
    try:
        settings = load_settings(
            None,
            environ={},
            overrides={
                "data_dir": str(data_dir),
                "community_file": str(community_file),
                "mqtt": {"url": f"mqtt://{HUB_USER}:{secret['hub_password']}@127.0.0.1:{broker.port}"},
                "http": {"host": "127.0.0.1", "port": http_port},
                "api_tokens": [
                    ApiToken(
                        name="demo", role=Role.COMMAND_CENTRE, sha256=token_hash(secret["console_token"])
                    )
                ],
            },
        )
        hub = Hub(settings=settings, clock=clock)
        await hub.start()
        endpoints = {"http_port": hub.http_port, "mqtt_port": broker.port}
        write_private(data_dir / ENDPOINTS_FILE, yaml.safe_dump(endpoints).encode("utf-8"))
        sim_task = asyncio.create_task(
            simulator(Endpoint("127.0.0.1", broker.port, SIM_USER, secret["sim_password"])),
            name="linli-demo-simulator",
        )
        announce(
            "\n".join(
                [
                    "邻里 Linli demo is running / 演示已启动",
                    f"  MQTT broker (embedded): mqtt://127.0.0.1:{broker.port}  (users and passwords: {data_dir / 'secrets.yaml'}, people: {data_dir / 'broker-users.yaml'})",
                    f"  Worker reply keys:      {data_dir / REPLY_KEYS_FILE}  (docs/topics.md: signed replies)",
                    f"  Console / 控制台:       http://127.0.0.1:{hub.http_port}/login",
                    f"  Token / 令牌:           {secret['console_token']}  (paste it on the login page / 在登录页输入)",
                    f"  API:                    http://127.0.0.1:{hub.http_port}/api/alerts  (Authorization: Bearer <token>)",
                    f"  API docs / 接口文档:    http://127.0.0.1:{hub.http_port}/docs",
                    f"  Data directory:         {data_dir}",
                    "  Play a scenario / 运行场景 (simulators/scenarios/*.yaml):",
                    "    on its own hub:   linli simulate scenario FILE --expect",
                    (
                        f"    against this one: linli simulate scenario FILE --expect --demo {data_dir}\n"
                        "      (moves this demo's clock forward to the scenario's weekday and time of day"
                        " / 演示时钟会前移到场景的时间)"
                        if hub.api.advance_clock is not None
                        else "    against this one: only on real time (without --speed)"
                    ),
                    "  Press Ctrl-C to stop / 按 Ctrl-C 停止",
                ]
            )
        )
        stop_wait = asyncio.create_task(stop.wait(), name="linli-demo-stop")
        done, _ = await asyncio.wait({stop_wait, sim_task}, return_when=asyncio.FIRST_COMPLETED)
        stop_wait.cancel()
        if sim_task in done and not sim_task.cancelled() and sim_task.exception() is not None:
            log.error("simulator stopped: %s", sim_task.exception())
    finally:
        if sim_task is not None:
            sim_task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await sim_task
        (data_dir / ENDPOINTS_FILE).unlink(missing_ok=True)
        if hub is not None:
            await hub.stop()
        await broker.stop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            with contextlib.suppress(NotImplementedError, RuntimeError):
                loop.remove_signal_handler(sig)
        announce("Linli demo stopped cleanly / 已安全停止")


def load_or_create(path: Path, names: tuple[str, ...]) -> dict[str, str]:
    """Return ``{name: secret}``, generating any missing secret (file mode 0600); never logs them."""
    values: dict[str, str] = {}
    if path.exists():
        loaded = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
        if isinstance(loaded, dict):
            values = {str(k): str(v) for k, v in loaded.items()}
    missing = [n for n in names if n not in values]
    if missing:
        for name in missing:
            values[name] = secrets.token_urlsafe(24)
        text = "# Generated by `linli demo`. Keep private.\n" + yaml.safe_dump(values)
        write_private(path, text.encode("utf-8"))
    return values
