"""A broker ACL that lets the hub subscribe but not read: ready, and every press dropped.

Mosquitto with a plain ``acl_file`` grants a SUBSCRIBE for a filter the client may not read
(SUBACK with the granted QoS, MQTT 3.1.1 §3.9.3) and then leaves the messages out at delivery.
The hub cannot see that from the SUBACK, so it says ready. ``linli doctor --gateway-mqtt``
publishes a probe on each gateway topic the hub subscribes to, as a gateway's credential, and
says when the hub's credential does not receive it. Against real Mosquitto (and the embedded
broker for a broker without MQTT 5).
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path

import aiohttp
import gmqtt
import pytest
import yaml
from click.testing import CliRunner
from gmqtt.mqtt.constants import MQTTv311

from adapters.errors import DecodeError
from adapters.router import AdapterRouter, Family, FamilySource
from hub.app import Hub
from hub.broker import AclRules, EmbeddedBroker
from hub.broker.topics import topic_matches
from hub.casework.broker_access import hub_gateway_filters, own_sources, probe_targets
from hub.cli import main
from hub.clock import ManualClock
from hub.community.model import CommunityFile
from hub.community.registry import Registry
from hub.mqtt.roundtrip import PROBE_MARK, is_probe
from tests.conftest import server_missing
from tests.helpers import COMMUNITY, REGISTRY, SOS_BUTTON, Phone, eventually, hub_settings
from tests.support.samples import SAMPLES
from tests.support.servers import DEPLOY_MOSQUITTO, Broker, ServerMissingError, deployed_mosquitto

pytestmark = pytest.mark.needs_server("mosquitto")

PRESS = 1_795_371_180.0
SOS = (SAMPLES / "zigbee2mqtt" / "tuya_ts0215a_sos_emergency.json").read_bytes()
HUB_USER, HUB_PASSWORD = "linli", "hub-test-secret"
#: The community's own Zigbee2MQTT root, and its gateway's user name (deploy/mosquitto/acl).
ROOT = f"zigbee2mqtt-{COMMUNITY}"
GATEWAY_PASSWORD = "gateway-test-secret"
#: Another community's gateway: it may publish under its own root only.
OTHER_ROOT, OTHER_PASSWORD = "zigbee2mqtt-110105001002", "other-gateway-secret"
#: Long enough for a loopback broker to deliver what it is going to deliver.
SETTLE_S = 1.0

SHIPPED_ACL = (DEPLOY_MOSQUITTO / "acl").read_text(encoding="utf-8")
#: The shipped ACL as a site might edit it: the hub's read narrowed to the default root, so the
#: community's own root is not covered (a typo would do the same).
NARROWED_ACL = SHIPPED_ACL.replace("topic read #\n", "topic read zigbee2mqtt/#\n")


@pytest.fixture
def narrowed(tmp_path: Path) -> Iterator[Broker]:
    assert NARROWED_ACL != SHIPPED_ACL
    users = {HUB_USER: HUB_PASSWORD, ROOT: GATEWAY_PASSWORD}
    try:
        with deployed_mosquitto(tmp_path / "mosquitto", users=users, acl=NARROWED_ACL) as broker:
            yield broker
    except ServerMissingError as exc:
        server_missing(str(exc))


def gateway_url(broker: Broker) -> str:
    return f"mqtt://{ROOT}:{GATEWAY_PASSWORD}@{broker.host}:{broker.port}"


def doctor(tmp_path: Path, broker: Broker, *gateways: str, option: str = "--gateway-mqtt") -> tuple[int, str]:
    """``linli doctor --gateway-mqtt …`` (or ``option``) for a hub configured like the tests'
    (blocking: a thread when a hub runs on the test's loop)."""
    registry = tmp_path / "community.yaml"
    if not registry.exists():
        registry.write_text(REGISTRY, encoding="utf-8")
    config = tmp_path / "doctor.yaml"
    settings = {
        "data_dir": str(tmp_path / "doctor-data"),
        "community_file": str(registry),
        "sources": [{"family": "zigbee2mqtt", "base_topic": ROOT}],
        "mqtt": {"url": broker.url},
    }
    config.write_text(yaml.safe_dump(settings), encoding="utf-8")
    args = ["doctor", "--config", str(config), *(a for url in gateways for a in (option, url))]
    result = CliRunner().invoke(main, args)
    for secret in (HUB_PASSWORD, GATEWAY_PASSWORD, OTHER_PASSWORD, WORKER_PASSWORD):
        assert secret not in result.output, "secrets are never printed"
    return result.exit_code, result.output


async def test_a_hub_denied_its_gateway_root_says_ready_and_linli_doctor_finds_it(
    tmp_path: Path, narrowed: Broker
) -> None:
    """The gap itself: SUBACK granted, ``/readyz`` 200, the SOS press never reaches the hub —
    and the doctor's round trip, run beside the hub, names the root the hub cannot read."""
    settings = hub_settings(tmp_path, narrowed, sources=[{"family": "zigbee2mqtt", "base_topic": ROOT}])
    async with Hub(settings=settings, clock=ManualClock(start=PRESS)) as hub:
        await eventually(hub.caught_up.is_set, within=20, what="the rule timers running")
        assert hub.mqtt.subscribed.is_set() and hub.mqtt.refused == (), "SUBACK granted"
        gateway = gmqtt.Client("gw", clean_session=True)
        gateway.set_auth_credentials(ROOT, GATEWAY_PASSWORD)
        await gateway.connect(narrowed.host, narrowed.port, version=MQTTv311)
        gateway.publish(f"{ROOT}/{SOS_BUTTON}", SOS, qos=1)
        await asyncio.sleep(SETTLE_S)
        await gateway.disconnect()
        async with (
            aiohttp.ClientSession() as session,
            session.get(f"http://127.0.0.1:{hub.http_port}/readyz") as response,
        ):
            status, body = response.status, await response.json()
        assert hub.pipeline.stats.messages == 0, "the press never reached the hub"
        assert status == 200, body
        code, output = await asyncio.to_thread(doctor, tmp_path, narrowed, gateway_url(narrowed))
    assert code == 1, output
    assert (
        f"[error] 网关往返：代理接受了 '{ROOT}' 在 {ROOT}/linli-doctor 上发布的探测消息，却没有投递给"
        f"已订阅 {ROOT}/# 的 hub 凭据 'linli'"
    ) in output, output
    assert (
        f"the broker accepted a probe from '{ROOT}' on {ROOT}/linli-doctor and never delivered it" in output
    )
    assert "every SOS press from that gateway is dropped silently" in output


async def test_the_round_trip_passes_on_the_shipped_acl_beside_a_running_hub(tmp_path: Path) -> None:
    """The shipped ACL: the probe arrives. A running hub gets it too and drops it, counted, not
    quarantined. Another community's gateway may not publish on this root (MQTT 5 PUBACK 0x87):
    with it alone the root is not checked (a warning), with both the right one proves it."""
    users = {HUB_USER: HUB_PASSWORD, ROOT: GATEWAY_PASSWORD, OTHER_ROOT: OTHER_PASSWORD}
    try:
        with deployed_mosquitto(tmp_path / "mosquitto", users=users) as broker:
            settings = hub_settings(tmp_path, broker, sources=[{"family": "zigbee2mqtt", "base_topic": ROOT}])
            other = f"mqtt://{OTHER_ROOT}:{OTHER_PASSWORD}@{broker.host}:{broker.port}"
            async with Hub(settings=settings, clock=ManualClock(start=PRESS)) as hub:
                await eventually(hub.caught_up.is_set, within=20, what="the rule timers running")
                code, output = await asyncio.to_thread(doctor, tmp_path, broker, other, gateway_url(broker))
                await eventually(lambda: hub.pipeline.stats.doctor_probes, within=5, what="the probe")
                assert hub.pipeline.stats.quarantined == 0, "a probe is no bad input"
                alone, warned = await asyncio.to_thread(doctor, tmp_path, broker, other)
                unchecked, hint = await asyncio.to_thread(doctor, tmp_path, broker)
    except ServerMissingError as exc:
        server_missing(str(exc))
    assert code == 0, output
    assert "[ok] 网关往返：1 个网关主题的探测消息到达了 hub 凭据 'linli'" in output, output
    assert "gateway round trip: a probe on each of 1 gateway topic(s) reached the hub's credential" in output
    assert alone == 0, warned
    assert f"[warn] 网关往返：未检查 {ROOT}/linli-doctor" in warned, warned
    assert f"the broker refused the publish to every credential given ('{OTHER_ROOT}'; PUBACK 0x87)" in warned
    assert unchecked == 0 and "[warn] 网关往返未检查：用 --gateway-mqtt 给出网关的凭据" in hint, hint


async def test_without_mqtt_5_a_probe_that_does_not_arrive_is_an_error_saying_both_causes(
    tmp_path: Path,
) -> None:
    """The embedded broker speaks MQTT 3.1.1 only: no PUBACK reason code tells a refused publish
    from a dropped delivery, and a press would be lost either way."""
    acl = AclRules.parse(NARROWED_ACL.replace("${TOPIC_PREFIX}", "linli"))
    users = {HUB_USER: HUB_PASSWORD, ROOT: GATEWAY_PASSWORD}
    async with EmbeddedBroker(host="127.0.0.1", port=0, users=users, acl=acl) as embedded:
        broker = Broker("127.0.0.1", embedded.port, HUB_USER, HUB_PASSWORD)
        code, output = await asyncio.to_thread(doctor, tmp_path, broker, gateway_url(broker))
    assert code == 1, output
    assert f"[error] 网关往返：'{ROOT}' 在 {ROOT}/linli-doctor 上发布的探测消息 3 秒内没有到达" in output, (
        output
    )
    assert "the broker does not say why (MQTT 3.1.1): either it may not publish there" in output


async def test_the_shipped_acl_lets_a_hub_with_its_own_topic_prefix_notify(tmp_path: Path) -> None:
    """The shipped ACL let the hub write under ``linli/`` only: a hub with another
    ``mqtt.topic_prefix`` published every notification into a denied topic, which Mosquitto
    acknowledges to a 3.1.1 client (PUBACK has no return code) and drops. The ACL is now a
    template that follows the prefix, as mosquitto.conf is one for the port."""
    users = {HUB_USER: HUB_PASSWORD, ROOT: GATEWAY_PASSWORD}
    try:
        with deployed_mosquitto(tmp_path / "mosquitto", users=users, topic_prefix="estate") as broker:
            settings = hub_settings(
                tmp_path,
                broker,
                sources=[{"family": "zigbee2mqtt", "base_topic": ROOT}],
                mqtt={"url": broker.url, "client_id": "linli-hub-test", "topic_prefix": "estate"},
            )
            async with Hub(settings=settings, clock=ManualClock(start=PRESS)) as hub:
                await eventually(hub.caught_up.is_set, within=20, what="the rule timers running")
                # The hub's credential reads everything under the shipped ACL: it stands in
                # for the command centre's app here.
                centre = Phone(broker, client_id="centre")
                await centre.start("estate/command-centre/notifications")
                gateway = gmqtt.Client("gw", clean_session=True)
                gateway.set_auth_credentials(ROOT, GATEWAY_PASSWORD)
                await gateway.connect(broker.host, broker.port, version=MQTTv311)
                gateway.publish(f"{ROOT}/{SOS_BUTTON}", SOS, qos=1)
                await eventually(lambda: hub.pipeline.stats.messages, within=10, what="the press")
                await eventually(lambda: centre.messages, within=10, what="the command centre told")
                await gateway.disconnect()
                await centre.stop()
    except ServerMissingError as exc:
        server_missing(str(exc))


def test_each_probe_matches_its_filter_and_no_decoder_takes_it_for_a_device() -> None:
    """Every family's filters, hub-wide and a community's own: the probe topic is one the filter
    matches, the native one is under a registered community (the only ones a gateway may write),
    and each decoder ignores or refuses the probe, which the hub then drops as a probe."""
    registry = REGISTRY.replace(
        "    grids:\n", f"    sources: [{{family: tasmota, base_topic: {ROOT}}}]\n    grids:\n", 1
    )
    communities = CommunityFile.model_validate(yaml.safe_load(registry)).communities
    hub_wide = [FamilySource(family) for family in Family if family is not Family.CHIRPSTACK_V3]
    targets = probe_targets(hub_wide, communities)
    router = AdapterRouter(sources=[*hub_wide, *own_sources(communities)])
    assert {t.topic_filter for t in targets} == set(hub_gateway_filters(hub_wide, communities))
    assert f"linli/{COMMUNITY}/devices/linli-doctor/events" in {t.topic for t in targets}
    payload = PROBE_MARK + b'"0123456789abcdef"]'
    assert is_probe(payload) and not is_probe(SOS)
    # Bad input behind the mark is not a probe: it is quarantined like any other.
    assert not is_probe(PROBE_MARK + b'"' + b"x" * 200 + b'"]')
    assert not is_probe(PROBE_MARK + b'{"action":"sos"}')
    for target in targets:
        assert topic_matches(target.topic_filter, target.topic), target
        try:
            events = router.decode(target.topic, payload, PRESS, Registry(communities=communities))
        except DecodeError:
            continue
        assert events == [], target


# -- a roster person's two paths ------------------------------------------------------------------

WORKER, WORKER_PASSWORD = "w-night", "worker-test-secret"
WORKER_LINES = {
    "read": f"topic read linli/{COMMUNITY}/workers/{WORKER}/notifications\n",
    "write": f"topic write linli/{COMMUNITY}/workers/{WORKER}/replies\n",
}


def worker_doctor(tmp_path: Path, broker: Broker, *workers: str) -> tuple[int, str]:
    """``linli doctor --worker-mqtt …`` (blocking: a thread when a hub runs on the test's loop)."""
    return doctor(tmp_path, broker, *workers, option="--worker-mqtt")


@pytest.mark.parametrize("missing", ["none", "read", "write"])
async def test_linli_doctor_proves_a_workers_notifications_and_replies(tmp_path: Path, missing: str) -> None:
    """The person's ACL lines as `linli broker config` writes them, or one of them missing.

    Without ``read`` on their notification topic, Mosquitto acknowledges the hub's SOS notice and
    never delivers it to them; without ``write`` on their reply topic, their 受理 is dropped. The
    hub is connected and ready either way. A running hub counts the reply probe, unquarantined.
    """
    lines = "".join(line for access, line in WORKER_LINES.items() if access != missing)
    acl = SHIPPED_ACL + f"\nuser {WORKER}\n{lines}"
    users = {HUB_USER: HUB_PASSWORD, ROOT: GATEWAY_PASSWORD, WORKER: WORKER_PASSWORD}
    try:
        with deployed_mosquitto(tmp_path / "mosquitto", users=users, acl=acl) as broker:
            settings = hub_settings(tmp_path, broker, sources=[{"family": "zigbee2mqtt", "base_topic": ROOT}])
            person = f"mqtt://{WORKER}:{WORKER_PASSWORD}@{broker.host}:{broker.port}"
            async with Hub(settings=settings, clock=ManualClock(start=PRESS)) as hub:
                await eventually(hub.caught_up.is_set, within=20, what="the rule timers running")
                code, output = await asyncio.to_thread(worker_doctor, tmp_path, broker, person)
                if missing != "write":
                    await eventually(lambda: hub.replies.doctor_probes, within=5, what="the reply probe")
                assert hub.quarantine.counts == {}, "a probe is no bad reply"
                unchecked, hint = await asyncio.to_thread(worker_doctor, tmp_path, broker)
    except ServerMissingError as exc:
        server_missing(str(exc))
    reply = f"linli/{COMMUNITY}/workers/{WORKER}/replies"
    notices = f"linli/{COMMUNITY}/workers/{WORKER}/notifications"
    if missing == "none":
        assert code == 0, output
        assert f"a probe '{WORKER}' published on {reply} reached hub 'linli'" in output, output
        assert f"a probe hub 'linli' published on {notices} reached '{WORKER}'" in output, output
    elif missing == "read":
        assert code == 1, output
        assert (
            f"the broker accepted hub 'linli''s probe on {notices} and never delivered it to '{WORKER}'"
            in output
        ), output
        assert f"'{WORKER}''s notifications (SOS included) are dropped silently" in output, output
    else:
        assert code == 1, output
        assert f"the broker refused '{WORKER}' the publish on {reply} (PUBACK 0x87)" in output, output
        assert f"'{WORKER}''s replies (受理/到场/反馈) are dropped silently" in output, output
    assert unchecked == 0 and "[warn] 工作人员往返未检查：用 --worker-mqtt" in hint, hint


async def test_a_person_in_no_roster_is_an_error_not_a_pass(tmp_path: Path) -> None:
    users = {HUB_USER: HUB_PASSWORD, "nobody": WORKER_PASSWORD}
    try:
        with deployed_mosquitto(tmp_path / "mosquitto", users=users) as broker:
            url = f"mqtt://nobody:{WORKER_PASSWORD}@{broker.host}:{broker.port}"
            code, output = await asyncio.to_thread(worker_doctor, tmp_path, broker, url)
    except ServerMissingError as exc:
        server_missing(str(exc))
    assert code == 1 and "'nobody' is in no community's roster" in output, output
