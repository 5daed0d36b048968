"""Finding 1, broker side: a sensor credential can neither write a worker's reply nor read a
notification, and a worker reads only his own — on real Mosquitto started with the
configuration ``linli broker config`` generates, and on the embedded broker with the same ACL.
"""

from __future__ import annotations

import asyncio
import getpass
import subprocess
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import gmqtt
import pytest
import yaml
from click.testing import CliRunner
from gmqtt.mqtt.constants import MQTTv311

from hub.broker import AclRules, EmbeddedBroker
from hub.broker.acl import Access
from hub.cli import main
from hub.cli.security import mosquitto_password_line
from hub.cli.service import boundary
from hub.config import load_settings
from hub.errors import BrokerConfigError
from tests.conftest import server_missing
from tests.helpers import COMMUNITY, REGISTRY
from tests.support.servers import (
    MOSQUITTO_CANDIDATES,
    Broker,
    ServerMissingError,
    find_binary,
    free_port,
    stop_process,
    wait_for_port,
)

WORKERS = f"linli/{COMMUNITY}/workers"
#: Long enough for a loopback broker to deliver what it is going to deliver.
SETTLE_S = 0.5


# -- the ACL language ------------------------------------------------------------------------------


def test_acl_follows_mosquitto_semantics() -> None:
    rules = AclRules.parse(
        """
        # anonymous
        topic read public/#
        user alice
        topic readwrite a/#
        topic deny a/secret
        topic b/c
        user bob
        topic write x
        pattern read users/%u/inbox
        pattern write clients/%c/out
        """
    )
    assert rules.allows(None, "c", "public/1", Access.READ)
    assert not rules.allows(None, "c", "public/1", Access.WRITE)
    assert rules.allows("alice", "c", "a/b", Access.WRITE) and rules.allows("alice", "c", "a/b", Access.READ)
    assert not rules.allows("alice", "c", "a/secret", Access.READ), "deny wins"
    assert rules.allows("alice", "c", "b/c", Access.WRITE), "no access word: readwrite"
    assert not rules.allows("alice", "c", "public/1", Access.READ), "anonymous rules are not alice's"
    assert rules.allows("bob", "c", "x", Access.WRITE) and not rules.allows("bob", "c", "x", Access.READ)
    assert rules.allows("bob", "c", "users/bob/inbox", Access.READ)
    assert not rules.allows("bob", "c", "users/alice/inbox", Access.READ)
    assert rules.allows("bob", "dev-1", "clients/dev-1/out", Access.WRITE)
    assert not rules.allows("carol", "c", "x", Access.WRITE), "no rule: denied"


@pytest.mark.parametrize("name", ["+", "#", "a/b", ""])
def test_a_pattern_cannot_be_widened_by_a_chosen_name(name: str) -> None:
    rules = AclRules.parse("pattern readwrite users/%u/inbox\npattern readwrite c/%c")
    assert not rules.allows(name, name, f"users/{name}/inbox", Access.READ)
    assert not rules.allows("u", name, f"c/{name}", Access.READ)


@pytest.mark.parametrize("text", ["bogus line", "topic read a/#/b", "user", "topic read a+"])
def test_a_bad_acl_is_refused(text: str) -> None:
    with pytest.raises(BrokerConfigError):
        AclRules.parse(text)


def test_password_lines_are_mosquitto_compatible(tmp_path: Path) -> None:
    line = mosquitto_password_line("alice", "secret", salt=b"0123456789ab")
    user, hashed = line.split(":", 1)
    assert user == "alice" and hashed.startswith("$7$101$") and "secret" not in line


# -- both brokers, same generated policy -----------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Site:
    host: str
    port: int
    passwords: dict[str, str] = field(repr=False)


def generate(tmp_path: Path, port: int, *, text: str = REGISTRY, gateways: tuple[str, ...] = ()) -> Path:
    registry = tmp_path / "community.yaml"
    registry.write_text(text, encoding="utf-8")
    data = ["--data-dir", str(tmp_path / "data")]
    runner = CliRunner()
    assert runner.invoke(main, ["community", "import", str(registry), *data]).exit_code == 0
    out = tmp_path / "broker"
    result = runner.invoke(
        main,
        [
            "broker",
            "config",
            "--out",
            str(out),
            "--listen",
            f"127.0.0.1:{port}",
            "--run-as",
            getpass.getuser(),
            *data,
            *(arg for name in gateways for arg in ("--gateway", name)),
        ],
    )
    assert result.exit_code == 0, result.output
    return out


@contextmanager
def run_mosquitto(conf: Path, port: int) -> Iterator[None]:
    """Real Mosquitto with exactly the generated configuration."""
    try:
        binary = find_binary(MOSQUITTO_CANDIDATES, "mosquitto")
    except ServerMissingError as exc:
        server_missing(str(exc))
    proc = subprocess.Popen([binary, "-c", str(conf)], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        wait_for_port(port, proc=proc)
        yield
    finally:
        stop_process(proc)


@pytest.fixture(params=["mosquitto", "embedded"])
async def site(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Site]:
    port = free_port()
    out = generate(tmp_path, port)
    conf = (out / "mosquitto.conf").read_text(encoding="utf-8")
    assert (
        "allow_anonymous false" in conf
        and "persistence true" in conf
        and "max_queued_messages 100000" in conf
    )
    for name in ("acl", "passwd", "credentials.yaml", "mosquitto.conf"):
        assert (out / name).stat().st_mode & 0o077 == 0, name
    async with serve(request.param, out, port) as served:
        yield served


@asynccontextmanager
async def serve(broker: str, out: Path, port: int) -> AsyncIterator[Site]:
    """The generated configuration in ``out`` served by real Mosquitto or the embedded broker."""
    passwords = yaml.safe_load((out / "credentials.yaml").read_text(encoding="utf-8"))
    if broker == "mosquitto":
        with run_mosquitto(out / "mosquitto.conf", port):
            yield Site("127.0.0.1", port, passwords)
    else:
        acl = AclRules.parse((out / "acl").read_text(encoding="utf-8"))
        async with EmbeddedBroker(host="127.0.0.1", port=port, users=passwords, acl=acl):
            yield Site("127.0.0.1", port, passwords)


class Client:
    def __init__(self, site: Site, user: str, client_id: str) -> None:
        self.site = site
        self.messages: list[tuple[str, bytes]] = []
        self.client = gmqtt.Client(client_id, clean_session=True)
        self.client.set_auth_credentials(user, site.passwords[user])
        self.client.on_message = self._on_message

    def _on_message(self, client: Any, topic: str, payload: bytes, qos: int, properties: Any) -> int:
        self.messages.append((topic, payload))
        return 0

    async def start(self, *topics: str) -> Client:
        await self.client.connect(self.site.host, self.site.port, version=MQTTv311)
        if topics:
            subscribed = asyncio.Event()
            self.client.on_subscribe = lambda *args: subscribed.set()
            self.client.subscribe([gmqtt.Subscription(t, qos=1) for t in topics])
            await asyncio.wait_for(subscribed.wait(), 5)
        return self

    def topics(self) -> set[str]:
        return {topic for topic, _ in self.messages}

    async def stop(self) -> None:
        await self.client.disconnect()


async def test_a_sensor_credential_cannot_write_a_reply_nor_read_notifications(site: Site) -> None:
    hub = await Client(site, "linli-hub", "hub").start("linli/+/workers/+/replies", "zigbee2mqtt/#")
    sensor = await Client(site, "linli-gateway", "sensor").start("linli/#", "#")
    boss = await Client(site, "boss", "boss-app").start()
    # The attack of issue 11: the sensor password closes an SOS on the supervisor's topic.
    sensor.client.publish(f"{WORKERS}/boss/replies", b'{"action":"false_alarm"}', qos=1)
    sensor.client.publish("linli/command-centre/notifications", b"forged", qos=1)
    # Controls: the sensor's own topic reaches the hub; boss's own reply does too.
    sensor.client.publish("zigbee2mqtt/0x01", b'{"action":"emergency"}', qos=1)
    boss.client.publish(f"{WORKERS}/boss/replies", b'{"action":"accept"}', qos=1)
    # The hub notifies people; one notification is retained, to cover delivery on subscribe.
    hub.client.publish(f"{WORKERS}/w-night/notifications", b"elder's address and phone", qos=1)
    hub.client.publish("linli/command-centre/notifications", b"medical notes", qos=1, retain=True)
    await asyncio.sleep(SETTLE_S)
    late = await Client(site, "linli-gateway", "sensor-late").start("linli/#")
    await asyncio.sleep(SETTLE_S)
    assert hub.topics() == {"zigbee2mqtt/0x01", f"{WORKERS}/boss/replies"}
    assert [p for t, p in hub.messages if t.endswith("/replies")] == [b'{"action":"accept"}']
    assert not [t for t in sensor.topics() if t.startswith("linli/")], sensor.messages
    assert late.messages == []
    for client in (hub, sensor, boss, late):
        await client.stop()


async def test_a_worker_reads_only_his_own_notifications(site: Site) -> None:
    hub = await Client(site, "linli-hub", "hub").start()
    night = await Client(site, "w-night", "night-app").start("linli/+/workers/+/notifications", "linli/#")
    day = await Client(site, "w-day", "day-app").start(f"{WORKERS}/w-day/notifications")
    boss = await Client(site, "boss", "boss-app").start("linli/command-centre/notifications")
    hub.client.publish(f"{WORKERS}/w-night/notifications", b"for night", qos=1)
    hub.client.publish(f"{WORKERS}/w-day/notifications", b"for day", qos=1)
    hub.client.publish("linli/command-centre/notifications", b"for the command centre", qos=1)
    # A worker cannot forge a notification for a colleague either.
    night.client.publish(f"{WORKERS}/w-day/notifications", b"forged by night", qos=1)
    await asyncio.sleep(SETTLE_S)
    assert night.messages == [(f"{WORKERS}/w-night/notifications", b"for night")]
    assert day.messages == [(f"{WORKERS}/w-day/notifications", b"for day")]
    assert boss.messages == [("linli/command-centre/notifications", b"for the command centre")]
    for client in (hub, night, day, boss):
        await client.stop()


#: The test community with a Zigbee2MQTT root of its own (docs/deploy.md, step 3).
OWN_ROOT = f"zigbee2mqtt-{COMMUNITY}"
REGISTRY_WITH_OWN_ROOT = REGISTRY.replace(
    "    grids:\n", f"    sources: [{{family: zigbee2mqtt, base_topic: {OWN_ROOT}}}]\n    grids:\n", 1
)


async def test_the_generated_acl_covers_a_communitys_own_gateway_root(tmp_path: Path) -> None:
    """``linli broker config`` granted the gateway topics of the hub-wide ``sources`` only. A
    community's own root (its ``sources`` in the registry, which the hub subscribes to) was in
    no rule: Mosquitto granted the hub's SUBSCRIBE and delivered nothing, and the gateway's
    publishes there were acknowledged and dropped — every press of that community lost."""
    assert REGISTRY_WITH_OWN_ROOT != REGISTRY
    port = free_port()
    out = generate(tmp_path, port, text=REGISTRY_WITH_OWN_ROOT, gateways=(OWN_ROOT,))
    acl = (out / "acl").read_text(encoding="utf-8")
    passwords = yaml.safe_load((out / "credentials.yaml").read_text(encoding="utf-8"))
    site = Site("127.0.0.1", port, passwords)
    with run_mosquitto(out / "mosquitto.conf", port):
        hub = await Client(site, "linli-hub", "hub").start(f"{OWN_ROOT}/#")
        gateway = await Client(site, OWN_ROOT, "gw").start()
        gateway.client.publish(f"{OWN_ROOT}/0x01", b'{"action":"emergency"}', qos=1)
        await asyncio.sleep(SETTLE_S)
        await gateway.stop()
        await hub.stop()
    assert hub.topics() == {f"{OWN_ROOT}/0x01"}, acl


async def test_another_user_cannot_take_over_the_hubs_client_id() -> None:
    """Embedded broker: a client id is not a credential (the sensor would kick the hub off)."""
    acl = AclRules.parse("user hub\ntopic read #\nuser sensor\ntopic write zigbee2mqtt/#")
    async with EmbeddedBroker(users={"hub": "h", "sensor": "s"}, acl=acl) as broker:
        site = Site("127.0.0.1", broker.port, {"hub": "h", "sensor": "s"})
        hub = await Client(site, "hub", "linli-hub").start("zigbee2mqtt/#")
        intruder = Client(site, "sensor", "linli-hub")
        with pytest.raises(Exception):  # noqa: B017 - gmqtt raises its own connect errors
            await asyncio.wait_for(intruder.start(), 5)
        publisher = await Client(site, "sensor", "gw").start()
        publisher.client.publish("zigbee2mqtt/x", b"1", qos=1)
        await asyncio.sleep(SETTLE_S)
        assert hub.topics() == {"zigbee2mqtt/x"}, "the hub is still connected and subscribed"
        await publisher.stop()
        await hub.stop()


# -- linli doctor proves it from outside -----------------------------------------------------------


def doctor(hub_url: str, sensor_url: str, data_dir: Path) -> tuple[int, str]:
    result = CliRunner().invoke(
        main,
        ["doctor", "--mqtt", hub_url, "--sensor-mqtt", sensor_url],
        env={"LINLI_DATA_DIR": str(data_dir)},
    )
    return result.exit_code, result.output


def test_doctor_fails_when_a_sensor_credential_can_write_replies_and_read_notifications(
    tmp_path: Path, mosquitto_broker: Broker
) -> None:
    """The broker of issue 11: one password for everything, no ACL."""
    code, output = doctor(mosquitto_broker.url, mosquitto_broker.url, tmp_path)
    assert code == 1, output
    assert "[FAIL] sensor credential 'linli' could publish a worker reply" in output
    assert "[FAIL] sensor credential 'linli' received a notification" in output


def test_doctor_passes_on_mosquitto_with_the_generated_configuration(tmp_path: Path) -> None:
    port = free_port()
    out = generate(tmp_path, port)
    passwords = yaml.safe_load((out / "credentials.yaml").read_text(encoding="utf-8"))
    hub = f"mqtt://linli-hub:{passwords['linli-hub']}@127.0.0.1:{port}"
    sensor = f"mqtt://linli-gateway:{passwords['linli-gateway']}@127.0.0.1:{port}"
    with run_mosquitto(out / "mosquitto.conf", port):
        code, output = doctor(hub, sensor, tmp_path / "data")
    assert "[ok] sensor credential 'linli-gateway' cannot publish a worker reply" in output
    assert "[ok] sensor credential 'linli-gateway' cannot read notifications" in output
    # The sensor's credential is a gateway's: the round trip runs with it, on every gateway filter.
    assert "[ok] 网关往返：7 个网关主题的探测消息到达了 hub 凭据 'linli-hub'" in output, output
    assert code == 0, output


@pytest.mark.parametrize("with_acl", [True, False])
async def test_doctor_probe_against_the_embedded_broker(tmp_path: Path, with_acl: bool) -> None:
    port = free_port()
    out = generate(tmp_path, port)
    passwords = yaml.safe_load((out / "credentials.yaml").read_text(encoding="utf-8"))
    acl = AclRules.parse((out / "acl").read_text(encoding="utf-8")) if with_acl else None
    settings = load_settings(
        None,
        environ={},
        overrides={"mqtt": {"url": f"mqtt://linli-hub:{passwords['linli-hub']}@127.0.0.1:{port}"}},
    )
    async with EmbeddedBroker(host="127.0.0.1", port=port, users=passwords, acl=acl):
        healthy = await boundary(
            settings, f"mqtt://linli-gateway:{passwords['linli-gateway']}@127.0.0.1:{port}"
        )
    assert healthy is with_acl
