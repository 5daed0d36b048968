"""A broker ACL that lets the hub subscribe but not read: ready, and every press dropped.

Mosquitto with a plain ``acl_file`` grants a SUBSCRIBE for a filter the client may not read
(SUBACK with the granted QoS, MQTT 3.1.1 §3.9.3) and then leaves the messages out at delivery.
The hub cannot see that from the SUBACK, so it says ready. All against real Mosquitto.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path

import aiohttp
import gmqtt
import pytest
from gmqtt.mqtt.constants import MQTTv311

from hub.app import Hub
from hub.clock import ManualClock
from tests.conftest import server_missing
from tests.helpers import COMMUNITY, SOS_BUTTON, Phone, eventually, hub_settings
from tests.support.samples import SAMPLES
from tests.support.servers import DEPLOY_MOSQUITTO, Broker, ServerMissingError, deployed_mosquitto

pytestmark = pytest.mark.needs_server("mosquitto")

PRESS = 1_795_371_180.0
SOS = (SAMPLES / "zigbee2mqtt" / "tuya_ts0215a_sos_emergency.json").read_bytes()
HUB_USER, HUB_PASSWORD = "linli", "hub-test-secret"
#: The community's own Zigbee2MQTT root, and its gateway's user name (deploy/mosquitto/acl).
ROOT = f"zigbee2mqtt-{COMMUNITY}"
GATEWAY_PASSWORD = "gateway-test-secret"
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


async def test_a_hub_denied_its_gateway_root_says_ready_and_never_sees_the_press(
    tmp_path: Path, narrowed: Broker
) -> None:
    """The gap itself: SUBACK granted, ``/readyz`` 200, and the SOS press never reaches the hub."""
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
