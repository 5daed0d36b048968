"""``linli simulate device``: one message from one registered device, in its own wire format.

For a field test or a demo against a running hub: the device is looked up in the community
file (its family inferred from its id and model, its topic root from its community's
``sources``), the action encoded as that family's gateway would publish it
(:mod:`simulators.formats`), and published with QoS 1; the command returns once the broker
acknowledged it.
"""

from __future__ import annotations

import asyncio
import secrets
from pathlib import Path

import click

from hub.cli.common import MQTT_HELP, run_until_done
from hub.clock import SystemClock
from hub.errors import MqttError
from hub.mqtt.client import HubMqttClient
from hub.mqtt.url import MqttUrl
from simulators.community import load
from simulators.formats import build, supports
from simulators.types import Act, Reading

#: Field names for the acts (the simulator's own names are accepted too).
ACTIONS: dict[str, tuple[Act, Reading]] = {
    "press_sos": (Act.SOS_PRESS, Reading()),
    "door_open": (Act.DOOR_OPEN, Reading(is_open=True)),
    "door_close": (Act.DOOR_CLOSE, Reading(is_open=False)),
    "occupy": (Act.OCCUPIED, Reading(occupied=True)),
    "vacate": (Act.FREE, Reading(occupied=False)),
    **{act.value: (act, Reading()) for act in Act},
}
PUBACK_TIMEOUT_S = 10.0


def _ignore(topic: str, payload: bytes, qos: int, retain: bool, dup: bool) -> None:
    """This connection only publishes."""


async def _publish(url: MqttUrl, messages: list[tuple[str, bytes, int, bool]]) -> None:
    client = HubMqttClient(
        url=url, client_id=f"linli-field-{secrets.token_hex(4)}", on_message=_ignore, subscriptions=[]
    )
    await client.connect()
    try:
        await asyncio.wait_for(client.connected.wait(), PUBACK_TIMEOUT_S)
        for topic, payload, qos, retain in messages:
            # QoS 1 at least: a field test must know the broker took the message.
            await asyncio.wait_for(
                client.publish(topic, payload, qos=max(qos, 1), retain=retain), PUBACK_TIMEOUT_S
            )
            click.echo(f"published {topic} ({len(payload)} bytes)")
    except TimeoutError:
        raise MqttError(
            f"the broker {url.redacted()} did not acknowledge within {PUBACK_TIMEOUT_S:.0f} s"
        ) from None
    finally:
        await client.disconnect()


@click.command("device")
@click.argument("device_id")
@click.argument("action", type=click.Choice(sorted(ACTIONS)), metavar="ACTION")
@click.option(
    "--community-file",
    type=click.Path(dir_okay=False, exists=True, path_type=Path),
    required=True,
    help="The registry file the device is in.",
)
@click.option("--mqtt", "mqtt_url", metavar="URL", required=True, help=MQTT_HELP)
def simulate_device(*, device_id: str, action: str, community_file: Path, mqtt_url: str) -> None:
    """Publish one ACTION (press_sos, door_open, door_close, occupy, vacate, …) from DEVICE_ID."""
    try:
        community = load(community_file)
    except ValueError as exc:
        raise click.ClickException(str(exc)) from None
    device = community.device(device_id)
    if device is None:
        raise click.ClickException(f"no device {device_id!r} in {community_file}")
    act, reading = ACTIONS[action]
    if not supports(device, act):
        raise click.ClickException(
            f"{device.family.value} device {device.id} ({device.model or device.kind}) cannot {action}"
        )
    messages = [tuple(m) for m in build(device, act, reading, SystemClock().now())]
    run_until_done(_publish(MqttUrl.parse(mqtt_url, key="--mqtt"), messages))  # type: ignore[arg-type]
