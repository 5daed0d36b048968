"""Running the hub: ``demo``, ``run``, ``doctor``, ``token``."""

from __future__ import annotations

import asyncio
import logging
import secrets
import signal
import time
from pathlib import Path

import click

from adapters.errors import LinliError
from hub.app import Hub
from hub.cases.calendar import official_coverage
from hub.cases.policies import load_policies
from hub.casework.access import needs_person
from hub.casework.care_plans import load_site_care, site_care_path
from hub.casework.replies import ReplyTopics
from hub.cli.common import MQTT_HELP, one_hub_per_data_dir, run_until_done
from hub.cli.roundtrip import gateway_round_trip, worker_round_trip
from hub.clock import Clock, DemoClock, ManualClock, ScaledClock, SystemClock
from hub.community.files import file_digest, imported_digest, load_yaml
from hub.community.model import Community
from hub.community.registry import Registry
from hub.community.topic_roots import refuse_own_topics
from hub.config import Settings, load_config
from hub.mqtt.client import HubMqttClient
from hub.mqtt.probe import probe_boundary
from hub.mqtt.url import MqttUrl
from hub.notify.routing import worker_topic
from hub.records import Role
from hub.storage.engine import sqlite_path
from hub.storage.store import Store
from hub.timeseries import Finding, Level
from hub.timeseries import doctor as timeseries_doctor
from hub.web.api import token_hash

log = logging.getLogger(__name__)


def calendar_finding(settings: Settings, *, clock: Clock) -> Finding:
    """Whether the working calendar knows this year's and next year's official holidays.

    A warning, not an error: the hub still runs, but every working-time deadline in a year
    without data counts plain weekdays — the operator has to hear it now, not in February.
    """
    try:
        policies = load_policies(settings.policies_file, zone=settings.timezone)
    except LinliError as exc:
        return Finding(level=Level.ERROR, message=f"case policies: {exc}")
    if policies.zone_note is not None:
        return Finding(level=Level.WARN, message=policies.zone_note)
    coverage = official_coverage(policies.calendar, now=clock.now())
    return Finding(level=Level.OK if coverage.ok else Level.WARN, message=coverage.message)


def community_finding(settings: Settings) -> Finding | None:
    """Whether the community file would be imported: a running hub refuses a broken one at its
    next restart and keeps the registry it last imported (docs/operations.md), so check edits here."""
    path = settings.community_file
    if path is None:
        return None
    try:
        communities = load_yaml(path)
        refuse_own_topics(communities, prefix=settings.mqtt.topic_prefix, file=str(path))
    except LinliError as exc:
        return Finding(level=Level.ERROR, message=f"community file: {exc}")
    devices = sum(len(c.devices) for c in communities)
    return Finding(
        level=Level.OK, message=f"community file {path}: {len(communities)} communities, {devices} devices"
    )


def stored_communities(settings: Settings) -> list[Community]:
    """The communities of an existing SQLite store (none, and no new file, where there is none;
    a PostgreSQL store is not opened here: doctor checks the files)."""
    url = settings.store.resolved_url(Path(settings.data_dir))
    path = sqlite_path(url) if url.startswith("sqlite:") else None
    if path is None or not path.exists():
        return []
    store = Store(path=path)
    try:
        return store.communities()
    finally:
        store.close()


def imported_already(settings: Settings) -> bool:
    """Whether the hub's next start skips the community file (its digest is the one last
    imported, ``IMPORTED_MARK``): the store is then the registry as it stands."""
    assert settings.community_file is not None
    try:
        digest = file_digest(settings.community_file)
    except OSError:
        return False
    return imported_digest(Path(settings.data_dir)) == digest


def care_finding(settings: Settings) -> Finding | None:
    """Whether the site's ``care.yaml`` (beside the community file) would be taken: a refused
    one leaves the shipped defaults in force, so check edits here (found in review: doctor did
    not read it)."""
    if site_care_path(settings.community_file) is None:
        return None
    try:
        # What the hub checks them against: the store's communities (residents imported from
        # CSV among them), the community file's over them as its start imports it.
        communities = {c.code: c for c in stored_communities(settings)}
        if settings.community_file is not None and not imported_already(settings):
            communities.update((c.code, c) for c in load_yaml(settings.community_file))
        load_site_care(settings.community_file, Registry(communities=list(communities.values())))
    except LinliError as exc:
        return Finding(level=Level.ERROR, message=f"care plans: {exc}")
    return Finding(level=Level.OK, message=f"care plans {site_care_path(settings.community_file)}")


def start_clock(settings: Settings) -> Clock:
    """The clock the hub will start on (a scenario's manual clock, else the system clock)."""
    if settings.test_clock_start is None:
        return SystemClock()
    return ManualClock(start=settings.test_clock_start)


#: Community and person of the probe's messages: no real case or phone is touched.
PROBE_NAME = "linli-doctor"


@click.command()
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
@click.option(
    "--speed",
    type=click.FloatRange(min=1),
    default=1.0,
    show_default=True,
    help="Simulated seconds per real second (60: an hour a minute); the hub's clock follows.",
)
@click.option(
    "--pace",
    type=click.FloatRange(min=1),
    default=60.0,
    show_default=True,
    help="How much faster the simulated community lives (60: a shift's doors, parking and"
    " batteries in minutes). Messages carry the real time: the hub's clock stays honest.",
)
def demo(
    *, data_dir: Path, mqtt_port: int, http_port: int, seed: int, sos_every: float, speed: float, pace: float
) -> None:
    """Run the demo: embedded broker, embedded store, simulated community, console.

    Everything binds to 127.0.0.1. Stop with Ctrl-C or SIGTERM.
    """
    # Here, not at the top: `linli run` imports this module, and the simulators and the demo's
    # embedded broker are ≈ 2.4 MB of a deployed hub's memory that it never uses.
    from hub.demo import Endpoint, run_demo  # noqa: PLC0415
    from simulators.community import generate  # noqa: PLC0415
    from simulators.opening import opening  # noqa: PLC0415
    from simulators.runner import BrokerAddress, CommunitySimulator  # noqa: PLC0415

    data_dir = data_dir.resolve()
    community = generate(seed=seed)
    community_file = data_dir / "community.yaml"
    start = time.time()
    # One simulated clock for the hub and the devices: shifts, durations and SLAs follow it.
    # On real time (speed 1) it is the demo's clock, which a scenario may move forward
    # (`linli simulate scenario --hub`, docs/console.md); the devices' messages follow it.
    demo_clock = DemoClock() if speed == 1 else None
    clock: Clock = demo_clock or ScaledClock(start=start, speed=speed)
    calendar = calendar_finding(Settings(), clock=clock)
    if calendar.level is not Level.OK:
        log.warning("%s", calendar.message)

    async def simulate(endpoint: Endpoint) -> None:
        broker = BrokerAddress(endpoint.host, endpoint.port, endpoint.username, endpoint.password)
        await CommunitySimulator(
            broker=broker,
            devices=community.devices,
            seed=seed,
            sos_every_s=sos_every,
            speed=speed,
            start=start,
            pace=pace,
            opening=opening(community.devices),
            shift=(lambda: demo_clock.offset) if demo_clock is not None else None,
        ).run()

    with one_hub_per_data_dir(data_dir):
        community.write(community_file)  # not under a demo already running there
        run_until_done(
            run_demo(
                data_dir=data_dir,
                community_file=community_file,
                mqtt_port=mqtt_port,
                http_port=http_port,
                simulator=simulate,
                announce=click.echo,
                clock=clock,
            )
        )


@click.command()
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
        loaded = load_config(config_file, overrides=overrides)
    except LinliError as exc:
        raise click.ClickException(str(exc)) from None
    settings = loaded.settings
    for note in loaded.notes:
        log.warning("configuration: %s", note)
    calendar = calendar_finding(settings, clock=start_clock(settings))
    if calendar.level is not Level.OK:
        log.warning("%s", calendar.message)

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

    with one_hub_per_data_dir(Path(settings.data_dir)):
        run_until_done(serve())


@click.command("token")
@click.option("--name", help="A label for the token (logs, console); defaults to the person.")
@click.option(
    "--role",
    type=click.Choice([r.value for r in Role if r is not Role.GUARDIAN]),
    default=Role.COMMAND_CENTRE.value,
    show_default=True,
    help="Role the token grants (see docs/security.md for what each may do).",
)
@click.option(
    "--person",
    help="Roster id the token acts as (required for grid roles and duty officers; the roster"
    " must give that person the same role).",
)
def token(name: str | None, role: str, person: str | None) -> None:
    """Create an API token; prints the token once and the config entry (its SHA-256) to add."""
    chosen = Role(role)
    if person is None and needs_person(chosen):
        raise click.UsageError(
            f"role {role} reaches only a person's grids or community: add --person <roster id>"
        )
    label = name or person
    if not label:
        raise click.UsageError("give --name (or --person)")
    value = secrets.token_urlsafe(32)
    click.echo(f"token (give to the user, shown once): {value}")
    click.echo("add to the config file under api_tokens:")
    bound = f", person: {person}" if person else ""
    click.echo(f"  - {{name: {label}, role: {role}{bound}, sha256: {token_hash(value)}}}")


@click.command()
@click.option(
    "--config",
    "config_file",
    type=click.Path(dir_okay=False, exists=True, path_type=Path),
    help="Hub configuration file (LINLI_* environment variables override it).",
)
@click.option("--mqtt", "mqtt_url", metavar="URL", help=MQTT_HELP + " Overrides mqtt.url.")
@click.option(
    "--sensor-mqtt",
    "sensor_url",
    metavar="URL",
    envvar="LINLI_DOCTOR_SENSOR_MQTT",
    help="A sensor/gateway credential (mqtt://user:pass@host:port; or LINLI_DOCTOR_SENSOR_MQTT):"
    " prove it can neither publish a worker reply nor read a notification.",
)
@click.option(
    "--gateway-mqtt",
    "gateway_urls",
    metavar="URL",
    multiple=True,
    envvar="LINLI_DOCTOR_GATEWAY_MQTT",
    help="A gateway's credential (mqtt://user:pass@host:port; repeatable; or LINLI_DOCTOR_GATEWAY_MQTT,"
    " space-separated): publish a probe on each gateway topic the hub subscribes to and check that"
    " the hub's credential receives it.",
)
@click.option(
    "--worker-mqtt",
    "worker_urls",
    metavar="URL",
    multiple=True,
    envvar="LINLI_DOCTOR_WORKER_MQTT",
    help="A roster person's credential (mqtt://person-id:pass@host:port; repeatable; or"
    " LINLI_DOCTOR_WORKER_MQTT, space-separated): check that their reply reaches the hub's"
    " credential and that a notification the hub's credential publishes reaches them.",
)
def doctor(
    config_file: Path | None,
    mqtt_url: str | None,
    sensor_url: str | None,
    gateway_urls: tuple[str, ...],
    worker_urls: tuple[str, ...],
) -> None:
    """Check the configuration, the MQTT broker and the time-series store; say what is wrong.

    With --sensor-mqtt it also tries, as that sensor, to write a worker reply and to read a
    notification, and reports FAIL if the broker lets either through (docs/security.md).

    With --gateway-mqtt (and the --sensor-mqtt credential) it publishes a probe on each gateway
    topic the hub subscribes to and reports an error when the hub's credential does not receive
    it: a broker ACL that grants the subscription and drops the messages (docs/operations.md).

    With --worker-mqtt it does the same for a person's two paths: their reply to the hub, and
    the hub's notification to them.
    """
    try:
        loaded = load_config(config_file, overrides={"mqtt": {"url": mqtt_url}} if mqtt_url else None)
    except LinliError as exc:
        raise click.ClickException(str(exc)) from None
    settings = loaded.settings
    click.echo(
        f"ok    configuration {'from ' + str(config_file) if config_file else '(defaults and LINLI_*)'}"
    )
    for note in loaded.notes:
        click.echo(str(Finding(level=Level.WARN, message=f"configuration: {note}")))

    async def check() -> bool:
        healthy = connected = True
        probe = HubMqttClient(
            url=settings.mqtt.parsed_url,
            client_id=f"{settings.mqtt.client_id}-doctor",
            on_message=lambda *args: None,
            subscriptions=[],
        )
        try:
            await asyncio.wait_for(probe.connect(), 10)
            click.echo(f"[ok] MQTT broker {settings.mqtt.parsed_url.redacted()} accepts our credentials")
            await probe.disconnect()
        except (LinliError, TimeoutError) as exc:
            healthy = connected = False
            click.echo(f"[error] MQTT broker: {exc or 'no answer within 10 s'}")
        publishers = [*gateway_urls, *([sensor_url] if sensor_url is not None else [])]
        findings = [
            *(await gateway_round_trip(settings, publishers) if connected else []),
            *(await worker_round_trip(settings, worker_urls) if connected else []),
            *filter(None, [community_finding(settings), care_finding(settings)]),
            calendar_finding(settings, clock=start_clock(settings)),
            *await timeseries_doctor(settings.timeseries, data_dir=Path(settings.data_dir)),
        ]
        if sensor_url is not None:
            healthy = await boundary(settings, sensor_url) and healthy
        for finding in findings:
            healthy = healthy and finding.level is not Level.ERROR
            click.echo(str(finding))
        return healthy

    if not asyncio.run(check()):
        raise SystemExit(1)


async def boundary(settings: Settings, sensor_url: str) -> bool:
    """The MQTT boundary probe (:mod:`hub.mqtt.probe`); prints one line per finding."""
    prefix = settings.mqtt.topic_prefix
    try:
        findings = await probe_boundary(
            hub_url=settings.mqtt.parsed_url,
            sensor_url=MqttUrl.parse(sensor_url, key="--sensor-mqtt"),
            reply_topic=ReplyTopics(prefix=prefix).topic(PROBE_NAME, PROBE_NAME),
            reply_filter=ReplyTopics(prefix=prefix).subscription(),
            notification_topic=worker_topic(prefix, PROBE_NAME, PROBE_NAME),
            read_filter=f"{prefix}/#",
            tls_ca_file=str(settings.mqtt.tls_ca_file) if settings.mqtt.tls_ca_file else None,
        )
    except LinliError as exc:
        click.echo(f"[error] MQTT boundary probe: {exc}")
        return False
    for finding in findings:
        click.echo(str(finding))
    return all(f.ok for f in findings)


@click.command("check-mqtt-url", hidden=True)
@click.option("--mqtt", "mqtt_url", metavar="URL", required=True, help=MQTT_HELP)
def check_mqtt_url(mqtt_url: str) -> None:
    """Parse an MQTT URL and print it with the password hidden."""
    click.echo(MqttUrl.parse(mqtt_url, key="--mqtt").redacted())
