"""kill -9 the hub after the priority lane handled a press whose bulk copy is still queued.

Real processes, real Mosquitto: the press is handled (and acknowledged) on the priority lane
while the bulk lane works through a backlog; the hub dies; on restart the bulk lane's copy of
the press arrives with no memory of its twin. It must change nothing: one alert counted once,
one case, each person told once.

The backlog and the press are queued at the broker while the hub is away, and the hub is
killed during its start, once it has told the worker and its bulk lane has begun on the
backlog: the bulk copy then waits behind all of BACKLOG, whatever the machine's speed.
Published to a running hub instead, the press reached the broker only after the broker's
flow control had let most of the backlog through, and on a loaded CI machine the bulk lane
sometimes handled its copy before the kill (the restarted hub then had nothing to show).
"""

from __future__ import annotations

import asyncio
import signal
from collections import Counter
from pathlib import Path
from typing import Any

import orjson
import yaml

from hub.broker import EmbeddedBroker
from hub.storage.cases import CaseStore
from hub.storage.store import Store
from tests.helpers import COMMUNITY, SOS_BUTTON, Phone, api_stats, eventually, hub_settings, publish_queued
from tests.support.hub_process import spawn_hub, start_hub
from tests.support.samples import SAMPLES
from tests.support.servers import Broker, free_port

SOS = (SAMPLES / "zigbee2mqtt" / "tuya_ts0215a_sos_emergency.json").read_bytes()
#: Door reports queued ahead of the press's bulk copy: the restarted hub works through most
#: of them before that copy comes.
BACKLOG = 30_000


def sent_again(stats: dict[str, Any]) -> int:
    """Copies the restarted hub took on the priority lane: 0, or 1 when the kill came first.

    The hub writes the priority lane's PUBACK right after the handling that sent the first
    notification; a kill in between (seen once in CI, on a loaded machine) leaves the press
    unacknowledged, and the broker sends the priority lane its copy again (DUP) as well.
    """
    handled: int = stats["priority_lane"]["handled"]["priority"]
    return handled


async def test_a_press_handled_on_the_priority_lane_before_a_kill9_counts_once(
    tmp_path: Path, mosquitto_broker: Broker
) -> None:
    """Mosquitto sends the copy again with DUP set if it had written it to the killed hub's
    socket, and without DUP (as never sent) if not; which one depends on socket buffers, and
    both must count once. (Each path alone: tests/test_priority_lane.py.)"""
    after = await run_scenario(tmp_path, mosquitto_broker)
    assert after["priority_lane"]["cold_copies_recognised"] in (0, 1)


async def test_a_queued_copy_without_dup_after_a_kill9_counts_once(tmp_path: Path) -> None:
    """The embedded broker sends a copy never sent before without DUP, as MQTT says
    [MQTT-3.3.1-1]: the lane's cold start has the store check it all the same."""
    broker = EmbeddedBroker(host="127.0.0.1", port=0, users={"linli": "test-secret"})
    await broker.start()
    try:
        after = await run_scenario(tmp_path, Broker("127.0.0.1", broker.port, "linli", "test-secret"))
    finally:
        await broker.stop()
    assert after["priority_lane"]["cold_copies_recognised"] == 1


# The stats are read off the event loop: an embedded broker shares it, and a blocking HTTP
# call to a busy hub would stall the broker for the call's whole duration.


async def lanes_subscribed(port: int) -> bool:
    stats = await asyncio.to_thread(api_stats, port)
    return bool(stats["mqtt_subscribed"] and stats["priority_lane"]["subscribed"])


async def bulk_lane_started(port: int) -> bool:
    """The bulk lane has taken messages of its backlog (the priority lane's press is the first
    message): the kill lands while it works through the rest, the press's copy at its end."""
    stats = await asyncio.to_thread(api_stats, port)
    return bool(stats["pipeline"]["messages"] > 1)


async def run_scenario(tmp_path: Path, broker: Broker) -> dict[str, Any]:
    port = free_port()
    settings = hub_settings(tmp_path, broker)
    config = tmp_path / "linli.yaml"
    config.write_text(
        yaml.safe_dump(
            {
                "data_dir": str(settings.data_dir),
                "community_file": str(settings.community_file),
                "http": {"port": port},
                "mqtt": {"url": broker.url, "client_id": "linli-lane-kill9"},
                "api_tokens": [t.model_dump(mode="json") for t in settings.api_tokens],
            }
        )
    )
    phone = Phone(broker)
    await phone.start(f"linli/{COMMUNITY}/workers/+/notifications", "linli/command-centre/notifications")
    # A first run leaves both lanes' persistent sessions at the broker, then stops.
    hub, port = await start_hub(config, ready_s=60)
    await eventually(lambda: lanes_subscribed(port), within=30, what="both lanes subscribed")
    hub.terminate()
    await hub.wait()
    try:
        doors = [("zigbee2mqtt/door-1", orjson.dumps({"contact": True, "seq": i})) for i in range(BACKLOG)]
        await publish_queued(broker, [*doors, (f"zigbee2mqtt/{SOS_BUTTON}", SOS)])

        # The priority lane connects before the bulk lane: the press is handled at once. The
        # bulk lane's SUBACK comes behind its backlog, so the hub is still starting (the
        # console line not printed yet) when the kill lands.
        hub = await spawn_hub(config)
        await eventually(lambda: phone.messages, within=30, what="the press's first notification")
        await eventually(lambda: bulk_lane_started(port), within=30, what="the bulk lane on its backlog")
        hub.send_signal(signal.SIGKILL)
        await hub.wait()
        told_before = len(phone.messages)

        hub, port = await start_hub(config, ready_s=60)

        async def bulk_copy_seen() -> bool:
            stats = await asyncio.to_thread(api_stats, port)
            return bool(stats["pipeline"]["occurrences_repeated"] >= 1 + sent_again(stats))

        await eventually(
            bulk_copy_seen, within=90, what="the bulk lane's copy of the press after the restart"
        )
        await asyncio.sleep(1.5)  # anything told twice would arrive by now
        after = await asyncio.to_thread(api_stats, port)
    finally:
        if hub.returncode is None:
            hub.terminate()
            await hub.wait()
        await phone.stop()

    # The bulk copy came to the restarted hub (not before the kill) and the store recognised
    # it, as it did the priority lane's copy if the broker sent that again (see sent_again).
    assert sent_again(after) <= 1
    assert after["pipeline"]["occurrences_repeated"] == 1 + sent_again(after)
    store = Store(url=settings.store.resolved_url(Path(settings.data_dir)))
    try:
        (alert,) = store.alerts()
        assert (alert.device_id, alert.count) == (SOS_BUTTON, 1)
        cases = CaseStore(store=store)
        assert len(cases.case_ids()) == 1
    finally:
        store.close()
    # A notification in flight at the kill may be delivered again with its id (at least once,
    # docs/reliability.md); a second handling of the press would make new ids.
    ids = {(topic, body["type"], body["id"]) for topic, body, _ in phone.messages}
    told = Counter((topic, kind) for topic, kind, _ in ids)
    assert told and all(n == 1 for n in told.values()), told
    print(f"told before the kill: {told_before}; in all: {dict(told)}")
    return after
