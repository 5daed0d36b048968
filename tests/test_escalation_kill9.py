"""kill -9 the hub in the middle of an SOS escalation: after restart the next step happens at its
original deadline (± 1 s) — or at once, if the restart itself took longer — and nothing is sent
twice. Real processes, real clock, real Mosquitto.

Starting ``linli`` takes 2 s on an idle machine but 5–7 s on a loaded 2-core one (imports alone
take 4.7 s there), so a step due while the hub was still starting is checked against the moment
the hub was ready, not against a deadline no restarted process could meet."""

from __future__ import annotations

import asyncio
import signal
import time
from collections import Counter
from datetime import datetime
from pathlib import Path

import yaml

from tests.helpers import COMMUNITY, SOS_BUTTON, Phone, eventually, hub_settings, publisher
from tests.support.hub_process import start_hub
from tests.support.samples import SAMPLES
from tests.support.servers import Broker

# The shipped SOS chain waits 60 s and 3 min; the same mechanism with 4 s and 8 s keeps the test short.
POLICIES = {
    "version": 1,
    "sla": [
        {"category": "sos", "basis": "calendar", "stages": {"accept": "1h", "arrive": "1h"}, "case": "4h"}
    ],
    "escalation": [
        {
            "category": "sos",
            "dispatched": [
                {"after": "0s", "kind": "notify", "targets": ["assignee"]},
                {"after": "4s", "targets": ["grid_leader"]},
                {"after": "8s", "targets": ["command_supervisor"]},
            ],
        }
    ],
}


async def test_escalation_resumes_at_its_original_deadline_after_kill9(
    tmp_path: Path, mosquitto_broker: Broker
) -> None:
    settings = hub_settings(tmp_path, mosquitto_broker)
    policies = tmp_path / "policies.yaml"
    policies.write_text(yaml.safe_dump(POLICIES))
    config = tmp_path / "linli.yaml"
    config.write_text(
        yaml.safe_dump(
            {
                "data_dir": str(settings.data_dir),
                "community_file": str(settings.community_file),
                "policies_file": str(policies),
                "http": {"port": 0},
                "mqtt": {"url": mosquitto_broker.url, "client_id": "linli-kill9"},
            }
        )
    )
    arrivals: list[tuple[float, str, dict[str, object]]] = []
    phone = Phone(mosquitto_broker)
    original = phone._on_message

    def stamp(client: object, topic: str, payload: bytes, qos: int, properties: object) -> int:
        result = original(client, topic, payload, qos, properties)
        arrivals.append((time.time(), topic, phone.messages[-1][1]))
        return result

    phone.client.on_message = stamp
    await phone.start(f"linli/{COMMUNITY}/workers/+/notifications", "linli/command-centre/notifications")

    hub, _ = await start_hub(config, ready_s=30)
    gateway = await publisher(mosquitto_broker)
    gateway.publish(
        f"zigbee2mqtt/{SOS_BUTTON}",
        (SAMPLES / "zigbee2mqtt" / "tuya_ts0215a_sos_emergency.json").read_bytes(),
        qos=1,
    )
    await eventually(lambda: arrivals, what="the first notification")
    first = arrivals[0][2]
    dispatched = datetime.fromisoformat(str(first["case"]["filed_at"]).replace("Z", "+00:00")).timestamp()  # type: ignore[index]

    await asyncio.sleep(max(0.0, dispatched + 1.5 - time.time()))
    hub.send_signal(signal.SIGKILL)  # in the middle of the escalation: step 0 sent, 1 and 2 pending
    await hub.wait()
    await asyncio.sleep(1.0)
    hub, _ = await start_hub(config, ready_s=30)
    ready = time.time()
    try:
        await eventually(lambda: len(arrivals) >= 3, within=15, what="steps 1 and 2 after the restart")
        await asyncio.sleep(1.5)  # anything sent twice would arrive by now
    finally:
        hub.terminate()
        await hub.wait()
        await gateway.disconnect()
        await phone.stop()

    by_step = {str(body["step"]): (at, topic) for at, topic, body in arrivals}
    steps = sorted(by_step, key=lambda k: int(k.rsplit("/", 1)[1]))
    assert [k.rsplit("/", 1)[1] for k in steps] == ["0", "1", "2"]
    step1_at, step1_topic = by_step[steps[1]]
    step2_at, step2_topic = by_step[steps[2]]
    assert step1_topic.endswith("/workers/g-leader/notifications")
    assert step2_topic.endswith("/workers/boss/notifications")
    print(
        f"step 1 at +{step1_at - dispatched:.3f} s (due +4), step 2 at +{step2_at - dispatched:.3f} s (due +8)"
    )
    print(f"the restarted hub was ready at +{ready - dispatched:.3f} s")
    for at, due in ((step1_at, dispatched + 4), (step2_at, dispatched + 8)):
        assert at >= due - 0.05, f"sent {due - at:.3f} s early"
        assert at <= max(due, ready) + 1.0, f"{at - max(due, ready):.3f} s late (due +{due - dispatched:.0f})"
    ids = Counter(str(body["id"]) for _, _, body in arrivals)
    assert all(n == 1 for n in ids.values()), f"sent twice: {ids}"
    assert len(arrivals) == 3
