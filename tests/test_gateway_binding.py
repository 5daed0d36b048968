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
from hub.casework.broker_access import GatewayUser, broker_access
from hub.cli import main
from hub.community.files import parse_yaml
from hub.config import Settings, load_settings
from hub.errors import ConfigError, RegistryError
from hub.mqtt.topics import filters_overlap
from hub.storage.store import Store
from tests.helpers import COMMUNITY, REGISTRY, SOS_BUTTON, eventually
from tests.support.servers import free_port
from tests.test_broker_acl import SETTLE_S, Client, Site, generate, run_mosquitto, serve

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
    async with serve(request.param, out, port) as served:
        yield served


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


# -- the review of the binding: native roots, nested roots, a prefix of several levels -----------


def two(a_source: str, b_source: str) -> str:
    return REGISTRY.replace("    grids:\n", f"    sources: [{a_source}]\n    grids:\n", 1) + (
        f'  - code: "{OTHER}"\n'
        "    name: 和平里社区\n"
        '    street: {code: "110105001", name: 幸福街道}\n'
        + (f"    sources: [{b_source}]\n" if b_source else "")
        + f'    grids: [{{code: "{OTHER}001", name: 第一网格}}]\n'
        f'    devices: [{{id: b-sos, kind: sos_button, model: TS0215A, grid: "{OTHER}001"}}]\n'
    )


@pytest.mark.parametrize("base", ["gw-a", "linli"])
def test_a_communitys_native_root_covers_its_own_level_only(base: str) -> None:
    """Found in review: a community's native source with only a ``base_topic`` subscribed (and
    granted its bound gateway) ``<base>/+/devices/+/events``: every community's level, and with
    ``base_topic: linli`` every community's native topics."""
    access = broker_access(
        communities=parse_yaml(two(f"{{family: native, base_topic: {base}}}", ""), file="test"),
        sources=[FamilySource(s.family, s.base_topic) for s in Settings().sources],
        topic_prefix="linli",
        hub_user="linli-hub",
        gateways=[GatewayUser(name="gw-a", communities=(COMMUNITY,))],
    )
    (gateway,) = [u for u in access.users if u.name == "gw-a"]
    assert {t for _, t in gateway.topics} == {
        f"{base}/{COMMUNITY}/devices/+/events",
        f"linli/{COMMUNITY}/devices/+/events",
    }


async def test_a_bound_gateways_native_press_for_another_community_raises_nothing(tmp_path: Path) -> None:
    """End to end on Mosquitto with the generated configuration: the bound gateway's press under
    its native root naming B's button is dropped; its own community's press is handled."""
    port = free_port()
    text = two("{family: native, base_topic: gw-a}", "")
    out = generate(tmp_path, port, text=text, gateways=(f"gw-a={COMMUNITY}",))
    passwords = yaml.safe_load((out / "credentials.yaml").read_text(encoding="utf-8"))
    press = b'{"v": 1, "kind": "sos_press", "value": "single"}'
    with run_mosquitto(out / "mosquitto.conf", port):
        settings = load_settings(
            None,
            environ={},
            overrides={
                "data_dir": str(tmp_path / "data"),
                "community_file": str(tmp_path / "community.yaml"),
                "mqtt": {"url": f"mqtt://linli-hub:{passwords['linli-hub']}@127.0.0.1:{port}"},
                "http": {"host": "127.0.0.1", "port": 0},
            },
        )
        async with Hub(settings=settings) as hub:
            gateway = await Client(Site("127.0.0.1", port, passwords), "gw-a", "gw-a").start()
            gateway.client.publish(f"gw-a/{OTHER}/devices/b-sos/events", press, qos=1)
            gateway.client.publish(f"gw-a/{COMMUNITY}/devices/{SOS_BUTTON}/events", press, qos=1)
            await eventually(hub.store.alerts, what="A's press")
            await asyncio.sleep(SETTLE_S)
            assert {a.device_id for a in hub.store.alerts()} == {SOS_BUTTON}
            await gateway.stop()


@pytest.mark.parametrize(
    ("a_source", "b_source"),
    [
        ("{family: zigbee2mqtt, base_topic: estate}", "{family: zigbee2mqtt, base_topic: estate/b}"),
        ("{family: ttn_v3, base_topic: v3}", "{family: ttn_v3, application: app2@ttn}"),
        ("{family: zigbee2mqtt, base_topic: site}", "{family: tasmota, base_topic: site/b}"),
    ],
)
def test_two_communities_gateway_topics_may_not_overlap(tmp_path: Path, a_source: str, b_source: str) -> None:
    """Found in review: A's root ``estate`` held B's ``estate/b``; A's bound gateway could write
    ``estate/#`` and the hub gave the message to B. Refused in one file and across imports."""
    with pytest.raises(RegistryError, match="both have gateway topics"):
        parse_yaml(two(a_source, b_source), file="test")
    (a, b) = parse_yaml(two(a_source, ""), file="test")
    b = b.model_copy(update={"sources": parse_yaml(two(b_source, ""), file="test")[0].sources})
    store = Store(path=tmp_path / "s.sqlite3")
    try:
        store.save_communities([a], at=1.0)
        with pytest.raises(RegistryError, match="both have gateway topics"):
            store.save_communities([b], at=2.0)
        assert [c.code for c in store.communities()] == [COMMUNITY]
    finally:
        store.close()


def test_a_prefix_of_several_levels_beside_the_native_root_loads() -> None:
    """Found in review: the reserved filters were wider than the hub's topics (``…/workers/#``),
    so ``linli/site1`` with the default native root was refused for an overlap no topic has."""
    settings = load_settings(None, environ={}, overrides={"mqtt": {"topic_prefix": "linli/site1"}})
    assert settings.mqtt.topic_prefix == "linli/site1"
