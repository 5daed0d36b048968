"""``linli``: the command line. The only module that wires the simulators into the hub.

Every command that talks to a broker takes ``--mqtt URL`` (``mqtt://user:pass@host:port``,
``mqtts://…`` for TLS).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
import signal
import sys
from collections.abc import Coroutine
from pathlib import Path
from typing import Any

import click

from adapters.errors import LinliError
from hub.api import token_hash
from hub.app import Hub
from hub.config import load_settings
from hub.demo import Endpoint, run_demo
from hub.mqtt_url import MqttUrl
from simulators.community import generate
from simulators.runner import BrokerAddress, CommunitySimulator

MQTT_HELP = "Broker URL: mqtt://user:pass@host:port, or mqtts://… for TLS."


def _logging(verbose: bool) -> None:
    logging.basicConfig(
        level=logging.DEBUG if verbose else logging.INFO,
        format="%(asctime)s %(levelname)-7s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    logging.getLogger("gmqtt").setLevel(logging.WARNING)
    logging.getLogger("aiohttp.access").setLevel(logging.WARNING)


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.option("-v", "--verbose", is_flag=True, help="Debug logging.")
@click.pass_context
def main(ctx: click.Context, verbose: bool) -> None:
    """邻里 Linli — smart-community sensor hub (一键通, doors, parking, grid workers)."""
    _logging(verbose)


@main.command()
@click.option(
    "--data-dir",
    type=click.Path(file_okay=False, path_type=Path),
    default=Path("data/demo"),
    show_default=True,
    help="Where the embedded store, generated community and demo secrets live.",
)
@click.option(
    "--mqtt-port",
    type=click.IntRange(0, 65535),
    default=11883,
    show_default=True,
    help="Embedded broker port on 127.0.0.1 (0 = any free port).",
)
@click.option(
    "--http-port",
    type=click.IntRange(0, 65535),
    default=8080,
    show_default=True,
    help="Console and API port on 127.0.0.1 (0 = any free port).",
)
@click.option("--seed", type=int, default=1, show_default=True, help="Seed of the simulated community.")
@click.option(
    "--sos-every",
    type=float,
    default=45.0,
    show_default=True,
    help="Mean seconds between simulated SOS presses.",
)
def demo(data_dir: Path, mqtt_port: int, http_port: int, seed: int, sos_every: float) -> None:
    """Run the demo: embedded broker, embedded store, simulated community, console.

    Everything binds to 127.0.0.1. Stop with Ctrl-C or SIGTERM.
    """
    data_dir = data_dir.resolve()
    community = generate(seed=seed)
    community_file = data_dir / "community.yaml"
    community.write(community_file)

    async def simulate(endpoint: Endpoint) -> None:
        broker = BrokerAddress(endpoint.host, endpoint.port, endpoint.username, endpoint.password)
        await CommunitySimulator(
            broker=broker, devices=community.devices, seed=seed, sos_every_s=sos_every
        ).run()

    _run(
        run_demo(
            data_dir=data_dir,
            community_file=community_file,
            mqtt_port=mqtt_port,
            http_port=http_port,
            simulator=simulate,
            announce=click.echo,
        )
    )


@main.command()
@click.option(
    "--config",
    "config_file",
    type=click.Path(dir_okay=False, exists=True, path_type=Path),
    required=True,
    help="YAML configuration file (LINLI_* environment variables override it).",
)
@click.option("--mqtt", "mqtt_url", metavar="URL", help=MQTT_HELP + " Overrides mqtt.url.")
def run(config_file: Path, mqtt_url: str | None) -> None:
    """Run the hub against an external broker (e.g. Mosquitto)."""
    # Merged deeply: the other mqtt.* keys from the file and environment stay.
    overrides = {"mqtt": {"url": mqtt_url}} if mqtt_url else None
    try:
        settings = load_settings(config_file, overrides=overrides)
    except LinliError as exc:
        raise click.ClickException(str(exc)) from None

    async def serve() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        async with Hub(settings=settings) as hub:
            click.echo(
                f"Linli hub running; console http://{settings.http.host}:{hub.http_port}/ (Ctrl-C to stop)"
            )
            await stop.wait()
        click.echo("Linli hub stopped cleanly")

    _run(serve())


@main.command("token")
@click.option("--name", required=True, help="Who or what the token is for.")
@click.option("--role", default="command_centre", show_default=True, help="Role the token grants.")
def token(name: str, role: str) -> None:
    """Create an API token; prints the token once and the config entry (its SHA-256) to add."""
    value = secrets.token_urlsafe(32)
    click.echo(f"token (give to the user, shown once): {value}")
    click.echo("add to the config file under api_tokens:")
    click.echo(f"  - {{name: {name}, role: {role}, sha256: {token_hash(value)}}}")


@main.command("check-mqtt-url", hidden=True)
@click.option("--mqtt", "mqtt_url", metavar="URL", required=True, help=MQTT_HELP)
def check_mqtt_url(mqtt_url: str) -> None:
    """Parse an MQTT URL and print it with the password hidden."""
    click.echo(MqttUrl.parse(mqtt_url, key="--mqtt").redacted())


def _run(coro: Coroutine[Any, Any, None]) -> None:
    try:
        asyncio.run(coro)
    except LinliError as exc:
        raise click.ClickException(str(exc)) from None
    except OSError as exc:
        raise click.ClickException(
            f"{exc.strerror or exc} — is the port already in use? Try another --*-port."
        ) from None
    except KeyboardInterrupt:
        with contextlib.suppress(Exception):
            click.echo("interrupted")


if __name__ == "__main__":  # pragma: no cover
    main()
