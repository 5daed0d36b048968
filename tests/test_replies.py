"""Worker replies: one reply-topic definition, so a multi-level ``topic_prefix`` works end to end."""

from __future__ import annotations

from pathlib import Path

import pytest

from hub.app import Hub
from hub.casework.replies import ReplyTopics
from hub.clock import ManualClock
from tests.helpers import (
    COMMUNITY,
    SOS_BUTTON,
    Phone,
    eventually,
    hub_settings,
    issue_reply_key,
    publisher,
    signed_reply,
)
from tests.support.samples import SAMPLES
from tests.support.servers import Broker

PRESS = 1_795_371_180.0  # 2026-11-23 02:13:00 Asia/Shanghai: the night shift
SOS = (SAMPLES / "zigbee2mqtt" / "tuya_ts0215a_sos_emergency.json").read_bytes()


@pytest.mark.parametrize("prefix", ["linli", "site1/linli", "a/b/c"])
def test_reply_topics_build_subscribe_and_parse_alike(prefix: str) -> None:
    topics = ReplyTopics(prefix=prefix)
    topic = topics.topic("110105001001", "w-night")
    assert topics.parse(topic) == ("110105001001", "w-night")
    assert topics.subscription() == f"{prefix}/+/workers/+/replies"


@pytest.mark.parametrize(
    "topic",
    [
        "site1/linli/110105001001/workers/w-night/notifications",
        "site1/linli/110105001001/workers/w-night/replies/extra",
        "site1/linli/workers/w-night/replies",
        "site1/linli//workers/w-night/replies",
        "site1/linli/110105001001/workers//replies",
        "other/linli/110105001001/workers/w-night/replies",
        "site1/linlix/110105001001/workers/w-night/replies",
        "zigbee2mqtt/0x847127fffe0542eb",
    ],
)
def test_other_topics_are_not_replies(topic: str) -> None:
    assert ReplyTopics(prefix="site1/linli").parse(topic) is None


async def test_a_worker_reply_is_applied_under_a_multi_level_prefix(
    tmp_path: Path, mosquitto_broker: Broker
) -> None:
    """The bug: with ``site1/linli`` the hub subscribed to the reply topic but matched one level
    only, so the reply fell into the sensor pipeline and the case was never accepted."""
    prefix = "site1/linli"
    workers = f"{prefix}/{COMMUNITY}/workers"
    settings = hub_settings(
        tmp_path,
        mosquitto_broker,
        mqtt={
            "url": mosquitto_broker.url,
            "client_id": "linli-hub-test",
            "topic_prefix": prefix,
        },
    )
    key = issue_reply_key(settings, "w-night")
    phone = Phone(mosquitto_broker)
    await phone.start(f"{workers}/+/notifications")
    gateway = await publisher(mosquitto_broker)
    async with Hub(settings=settings, clock=ManualClock(start=PRESS)) as hub:
        gateway.publish(f"zigbee2mqtt/{SOS_BUTTON}", SOS, qos=1)
        (note, *_) = await eventually(lambda: phone.on(f"{workers}/w-night/notifications"), what="dispatch")
        assert note["reply_topic"] == f"{workers}/w-night/replies"
        sensor_messages = hub.pipeline.stats.messages
        reply = signed_reply(key, person="w-night", case_id=note["case"]["id"], action="accept", ts=PRESS)
        gateway.publish(note["reply_topic"], reply, qos=1)
        await eventually(
            lambda: hub.casework.load(note["case"]["id"]).state.value == "accepted",  # type: ignore[union-attr]
            what="the case accepted by the reply",
        )
        assert hub.replies.handled == 1
        assert hub.pipeline.stats.messages == sensor_messages, "the reply must not reach the sensor pipeline"
        assert "decoder_error" not in hub.quarantine.counts and "unknown_topic" not in hub.quarantine.counts
    await gateway.disconnect()
    await phone.stop()
