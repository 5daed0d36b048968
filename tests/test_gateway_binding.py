"""Gateways bound to their communities, and gateway roots kept out of the hub's own topics.

Found in review: ``linli broker config`` gave every gateway user every community's roots, so
the password of one community's Zigbee2MQTT could raise (or, with a stuck retained message,
keep raising) presses in every other community. ``--gateway NAME=CODE`` now binds a gateway to
its communities' own roots and native topics, on real Mosquitto and the embedded broker alike.

And a gateway root under ``mqtt.topic_prefix`` (a community's Zigbee2MQTT ``base_topic: linli``)
made the hub subscribe to its own notifications and gave the gateway's credential the right to
write notifications to every worker's phone: it is refused at every door.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import yaml
from click.testing import CliRunner

from adapters.router import Family, FamilySource
from hub.app import Hub
from hub.broker import AclRules, EmbeddedBroker
from hub.casework.broker_access import GatewayUser, broker_access
from hub.cli import main
from hub.community.files import parse_yaml
from hub.config import Settings, load_settings
from hub.errors import ConfigError
from hub.mqtt.topics import filters_overlap
from hub.storage.store import Store
from tests.helpers import COMMUNITY, REGISTRY
from tests.support.servers import free_port
from tests.test_broker_acl import SETTLE_S, Client, Site, generate, run_mosquitto

OTHER = "110105001002"
ROOT_A = f"zigbee2mqtt-{COMMUNITY}"
ROOT_B = f"zigbee2mqtt-{OTHER}"
TWO_COMMUNITIES = REGISTRY.replace(
    "    grids:\n", f"    sources: [{{family: zigbee2mqtt, base_topic: {ROOT_A}}}]\n    grids:\n", 1
) + (
    f'  - code: "{OTHER}"\n'
    "    name: 和平里社区\n"
    '    street: {code: "110105001", name: 幸福街道}\n'
    f"    sources: [{{family: zigbee2mqtt, base_topic: {ROOT_B}}}]\n"
    f'    grids: [{{code: "{OTHER}001", name: 第一网格}}]\n'
    f'    devices: [{{id: b-sos, kind: sos_button, model: TS0215A, grid: "{OTHER}001"}}]\n'
)


# -- the pure parts --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("first", "second", "overlap"),
    [
        ("linli/#", "linli/+/workers/#", True),
        ("linli", "linli/#", True),  # "#" also matches its parent level [MQTT-4.7.1-2]
        ("linli/+/devices/+/events", "linli/+/workers/#", False),
        ("linli/+/devices/+/events", "linli/command-centre/notifications", False),
        ("+/+/workers/x/replies", "linli/+/workers/#", True),
        ("tele/#", "tele/+/workers/#", True),
        ("zigbee2mqtt/#", "linli/+/workers/#", False),
        ("a/b", "a/b/c", False),
        ("a/+", "a/b", True),
        ("#", "anything/at/all", True),
    ],
)
def test_filters_overlap(first: str, second: str, overlap: bool) -> None:
    assert filters_overlap(first, second) is overlap
    assert filters_overlap(second, first) is overlap


def test_a_bound_gateway_gets_only_its_communitys_topics() -> None:
    access = broker_access(
        communities=parse_yaml(TWO_COMMUNITIES, file="test"),
        sources=[FamilySource(s.family, s.base_topic) for s in Settings().sources],
        topic_prefix="linli",
        hub_user="linli-hub",
        gateways=[GatewayUser(name="gw-a", communities=(COMMUNITY,)), GatewayUser(name="all")],
    )
    users = {u.name: dict((t, a) for a, t in u.topics) for u in access.users}
    assert users["gw-a"] == {f"{ROOT_A}/#": "readwrite", f"linli/{COMMUNITY}/devices/+/events": "write"}
    assert f"{ROOT_B}/#" in users["all"] and "zigbee2mqtt/#" in users["all"]
    assert f"linli/{OTHER}/devices/+/events" in users["all"]


@pytest.mark.parametrize(
    ("gateways", "says"),
    [
        ([GatewayUser(name="gw", communities=("999999999999",))], "no community 999999999999"),
        ([GatewayUser(name="zigbee2mqtt/a")], "cannot be an MQTT user name"),
        ([GatewayUser(name="+")], "cannot be an MQTT user name"),
        ([GatewayUser(name="gw"), GatewayUser(name="gw")], "must differ"),
        ([GatewayUser(name="linli-hub")], "must differ"),
    ],
)
def test_a_gateway_that_cannot_be_granted_is_refused(gateways: list[GatewayUser], says: str) -> None:
    with pytest.raises(ConfigError, match=says):
        broker_access(
            communities=parse_yaml(TWO_COMMUNITIES, file="test"),
            sources=[FamilySource(Family.ZIGBEE2MQTT)],
            topic_prefix="linli",
            hub_user="linli-hub",
            gateways=gateways,
        )


# -- on both brokers -------------------------------------------------------------------------------


@pytest.fixture(params=["mosquitto", "embedded"])
async def bound_site(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Site]:
    port = free_port()
    out = generate(tmp_path, port, text=TWO_COMMUNITIES, gateways=(f"gw-a={COMMUNITY}", "linli-gateway"))
    passwords = yaml.safe_load((out / "credentials.yaml").read_text(encoding="utf-8"))
    if request.param == "mosquitto":
        with run_mosquitto(out / "mosquitto.conf", port):
            yield Site("127.0.0.1", port, passwords)
    else:
        acl = AclRules.parse((out / "acl").read_text(encoding="utf-8"))
        async with EmbeddedBroker(host="127.0.0.1", port=port, users=passwords, acl=acl):
            yield Site("127.0.0.1", port, passwords)


async def test_a_bound_gateway_cannot_raise_another_communitys_alerts(bound_site: Site) -> None:
    hub = await Client(bound_site, "linli-hub", "hub").start(
        f"{ROOT_A}/#", f"{ROOT_B}/#", "zigbee2mqtt/#", "linli/+/devices/+/events"
    )
    gw_a = await Client(bound_site, "gw-a", "gw-a").start("linli/#")
    every = await Client(bound_site, "linli-gateway", "every").start()
    press = b'{"action":"emergency"}'
    for topic in (
        f"{ROOT_A}/0x01",  # its own root: delivered
        f"linli/{COMMUNITY}/devices/x/events",  # its own native topic: delivered
        f"{ROOT_B}/b-sos",  # the other community's root: dropped
        f"linli/{OTHER}/devices/b-sos/events",  # the other's native topic: dropped
        "zigbee2mqtt/b-sos",  # the hub-wide root: dropped
    ):
        gw_a.client.publish(topic, press, qos=1)
    every.client.publish(f"{ROOT_B}/b-sos", press, qos=1)  # control: the hub-wide gateway still may
    hub.client.publish(f"linli/{COMMUNITY}/workers/w-day/notifications", b"address", qos=1)
    await asyncio.sleep(SETTLE_S)
    assert sorted(hub.topics()) == sorted(
        {f"{ROOT_A}/0x01", f"linli/{COMMUNITY}/devices/x/events", f"{ROOT_B}/b-sos"}
    )
    assert [p for t, p in hub.messages if t == f"{ROOT_B}/b-sos"] == [press], "only the hub-wide gateway's"
    assert not [t for t in gw_a.topics() if "/workers/" in t], gw_a.messages
    for client in (hub, gw_a, every):
        await client.stop()


def test_broker_config_refuses_a_gateway_bound_to_no_registered_community(tmp_path: Path) -> None:
    registry = tmp_path / "community.yaml"
    registry.write_text(TWO_COMMUNITIES, encoding="utf-8")
    data = ["--data-dir", str(tmp_path / "data")]
    runner = CliRunner()
    assert runner.invoke(main, ["community", "import", str(registry), *data]).exit_code == 0
    for bad in ("gw=999999999999", "gw="):
        result = runner.invoke(
            main, ["broker", "config", "--out", str(tmp_path / "out"), "--gateway", bad, *data]
        )
        assert result.exit_code != 0 and "community" in result.output, result.output
    assert not (tmp_path / "out" / "acl").exists()


# -- gateway roots outside the hub's own topics ----------------------------------------------------


@pytest.mark.parametrize(
    "overrides",
    [
        {"sources": [{"family": "zigbee2mqtt", "base_topic": "linli"}]},
        {"sources": [{"family": "tasmota", "base_topic": "site"}], "mqtt": {"topic_prefix": "site/tele"}},
        {"sources": [{"family": "zigbee2mqtt", "base_topic": "a/+"}]},
        {"sources": [{"family": "zigbee2mqtt", "base_topic": "$SYS"}]},
        {"mqtt": {"topic_prefix": "#"}},
        {"mqtt": {"topic_prefix": ""}},
        {"mqtt": {"topic_prefix": "linli/"}},
    ],
)
def test_settings_refuse_gateway_roots_in_the_hubs_own_topics(overrides: dict[str, object]) -> None:
    with pytest.raises(ConfigError):
        load_settings(None, environ={}, overrides=overrides)


def test_the_shipped_sources_and_a_native_source_under_the_prefix_are_fine() -> None:
    settings = load_settings(None, environ={}, overrides={"mqtt": {"topic_prefix": "linli"}})
    assert any(s.family is Family.NATIVE for s in settings.sources)


UNDER_PREFIX = REGISTRY.replace(
    "    grids:\n", "    sources: [{family: zigbee2mqtt, base_topic: linli}]\n    grids:\n", 1
)


def test_community_import_refuses_a_root_in_the_hubs_own_topics(tmp_path: Path) -> None:
    registry = tmp_path / "community.yaml"
    registry.write_text(UNDER_PREFIX, encoding="utf-8")
    result = CliRunner().invoke(
        main, ["community", "import", str(registry), "--data-dir", str(tmp_path / "data")]
    )
    assert result.exit_code != 0 and "mqtt.topic_prefix" in result.output, result.output
    store = Store(path=tmp_path / "data" / "linli.sqlite3")
    try:
        assert store.communities() == []
    finally:
        store.close()


def test_a_start_leaves_out_a_stored_root_in_the_hubs_own_topics(tmp_path: Path) -> None:
    """Imported before the check (or under another prefix): the hub starts, without that root."""
    data = tmp_path / "data"
    data.mkdir(mode=0o700)
    store = Store(path=data / "linli.sqlite3")
    store.save_communities(parse_yaml(UNDER_PREFIX, file="old"), at=1.0)
    store.close()
    settings = load_settings(
        None, environ={}, overrides={"data_dir": str(data), "http": {"host": "127.0.0.1", "port": 0}}
    )
    hub = Hub(settings=settings)
    try:
        assert "linli/#" not in hub.adapters.subscriptions()
        (community,) = hub.registry.communities
        assert community.code == COMMUNITY and community.sources == ()
        assert any("mqtt.topic_prefix" in w for w in hub.start_warnings), hub.start_warnings
    finally:
        hub.close()


def test_the_file_import_at_start_refuses_it_too(tmp_path: Path) -> None:
    registry = tmp_path / "community.yaml"
    registry.write_text(UNDER_PREFIX, encoding="utf-8")
    settings = load_settings(
        None,
        environ={},
        overrides={
            "data_dir": str(tmp_path / "data"),
            "community_file": str(registry),
            "http": {"host": "127.0.0.1", "port": 0},
        },
    )
    with pytest.raises(Exception, match=r"mqtt\.topic_prefix"):
        Hub(settings=settings)
