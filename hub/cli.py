"""``linli``: the command line. The only module that wires the simulators and dashboards into the hub.

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
import time
from collections.abc import Callable, Coroutine
from datetime import datetime
from pathlib import Path
from typing import Any

import aiohttp
import click
import orjson

from adapters.errors import LinliError
from dashboards.push import push as push_dashboards
from hub.api import token_hash
from hub.app import Hub
from hub.clock import iso
from hub.config import load_settings
from hub.demo import Endpoint, run_demo
from hub.mqtt_client import HubMqttClient
from hub.mqtt_url import MqttUrl
from hub.registry_io import CsvKind, dump_csv, dump_yaml, load_yaml, merge_rows, parse_csv
from hub.roster import coverage_gaps
from hub.store import Store
from hub.timeseries import Level
from hub.timeseries import doctor as timeseries_doctor
from rules.evaluator import Evaluator
from rules.loader import BUILTIN_PACKS, load_packs
from rules.state import MemoryState
from rules.testing import BUILTIN_RULE_TESTS, run_rule_tests
from rules.testing import summary as rule_test_summary
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


def _store_for(config_file: Path | None, data_dir: Path | None) -> Store:
    """The store a command works on: from ``--config`` (and LINLI_*), or straight from ``--data-dir``."""
    try:
        if data_dir is None:
            data_dir = load_settings(config_file).data_dir
        return Store(path=Path(data_dir) / "linli.sqlite3")
    except LinliError as exc:
        raise click.ClickException(str(exc)) from None


store_options = [
    click.option(
        "--config",
        "config_file",
        type=click.Path(dir_okay=False, exists=True, path_type=Path),
        help="Hub configuration file (its data_dir is used).",
    ),
    click.option(
        "--data-dir",
        type=click.Path(file_okay=False, path_type=Path),
        help="Data directory of the hub (instead of --config).",
    ),
]


def with_store_options(func: Callable[..., None]) -> Callable[..., None]:
    for option in reversed(store_options):
        func = option(func)
    return func


@main.group()
def community() -> None:
    """Import and export the community registry (YAML documents, CSV device and resident lists)."""


@community.command("import")
@click.argument("file", type=click.Path(dir_okay=False, exists=True, path_type=Path))
@click.option(
    "--kind", type=click.Choice([k.value for k in CsvKind]), help="CSV content (default: from the header)."
)
@with_store_options
def community_import(file: Path, kind: str | None, config_file: Path | None, data_dir: Path | None) -> None:
    """Import FILE (.yaml/.yml or .csv); re-importing updates entries in place by id.

    A running hub picks the change up on its next start.
    """
    store = _store_for(config_file, data_dir)
    try:
        if file.suffix.lower() == ".csv":
            current = {c.code: c for c in store.communities()}
            csv_kind, rows = parse_csv(
                file.read_text(encoding="utf-8"), file=str(file), kind=CsvKind(kind) if kind else None
            )
            merged = merge_rows(current, csv_kind, rows, file=str(file))
            changed = store.save_communities(list(merged.values()), at=time.time())
            click.echo(f"imported {len(rows)} {csv_kind.value} row(s); {changed} community record(s) changed")
        else:
            communities = load_yaml(file)
            changed = store.save_communities(communities, at=time.time())
            click.echo(f"imported {len(communities)} community(ies); {changed} changed")
    except LinliError as exc:
        raise click.ClickException(str(exc)) from None
    finally:
        store.close()


@community.command("export")
@click.option("--format", "fmt", type=click.Choice(["yaml", "csv"]), default="yaml", show_default=True)
@click.option(
    "--kind",
    type=click.Choice([k.value for k in CsvKind]),
    default="devices",
    show_default=True,
    help="For CSV.",
)
@click.option(
    "-o", "--output", type=click.Path(dir_okay=False, path_type=Path), help="File to write (default stdout)."
)
@with_store_options
def community_export(
    fmt: str, kind: str, output: Path | None, config_file: Path | None, data_dir: Path | None
) -> None:
    """Export the registry as YAML (everything) or CSV (devices or residents)."""
    store = _store_for(config_file, data_dir)
    try:
        communities = store.communities()
    finally:
        store.close()
    text = dump_yaml(communities) if fmt == "yaml" else dump_csv(communities, CsvKind(kind))
    if output is None:
        click.echo(text, nl=False)
    else:
        output.write_text(text, encoding="utf-8")


@main.group()
def quarantine() -> None:
    """Messages that could not be decoded, with their reasons."""


@quarantine.command("list")
@click.option("--limit", type=click.IntRange(1, 10_000), default=50, show_default=True)
@click.option("--json", "as_json", is_flag=True, help="One JSON object per line.")
@with_store_options
def quarantine_list(limit: int, as_json: bool, config_file: Path | None, data_dir: Path | None) -> None:
    """List quarantine records, most recent first (topic, reason, count, last seen, excerpt)."""
    store = _store_for(config_file, data_dir)
    try:
        records = store.quarantine(limit=limit)
    finally:
        store.close()
    for r in records:
        excerpt = r.excerpt.decode("utf-8", "replace")
        if as_json:
            click.echo(
                orjson.dumps(
                    {"topic": r.topic, "reason": r.reason, "detail": r.detail, "count": r.count,
                     "first_seen": iso(r.first_seen), "last_seen": iso(r.last_seen), "excerpt": excerpt}
                )
            )  # fmt: skip
        else:
            click.echo(
                f"{iso(r.last_seen)}  {r.count:>6}×  {r.reason:<16} {r.topic}  {r.detail}  | {excerpt[:60]!r}"
            )
    if not records and not as_json:
        click.echo("quarantine is empty / 隔离区为空")


@main.command()
@click.option(
    "--config",
    "config_file",
    type=click.Path(dir_okay=False, exists=True, path_type=Path),
    help="Hub configuration file (LINLI_* environment variables override it).",
)
@click.option("--mqtt", "mqtt_url", metavar="URL", help=MQTT_HELP + " Overrides mqtt.url.")
def doctor(config_file: Path | None, mqtt_url: str | None) -> None:
    """Check the configuration, the MQTT broker and the time-series store; say what is wrong."""
    try:
        settings = load_settings(config_file, overrides={"mqtt": {"url": mqtt_url}} if mqtt_url else None)
    except LinliError as exc:
        raise click.ClickException(str(exc)) from None
    click.echo(
        f"ok    configuration {'from ' + str(config_file) if config_file else '(defaults and LINLI_*)'}"
    )

    async def check() -> bool:
        healthy = True
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
            healthy = False
            click.echo(f"[error] MQTT broker: {exc or 'no answer within 10 s'}")
        for finding in await timeseries_doctor(settings.timeseries, data_dir=Path(settings.data_dir)):
            healthy = healthy and finding.level is not Level.ERROR
            click.echo(str(finding))
        return healthy

    if not asyncio.run(check()):
        raise SystemExit(1)


@main.group()
def dashboards() -> None:
    """Grafana dashboards as code (generated JSON in dashboards/generated)."""


@dashboards.command("push")
@click.option("--url", required=True, help="Grafana base URL, e.g. https://grafana.example:3000")
@click.option(
    "--token", required=True, envvar="GRAFANA_TOKEN", help="Service-account token (or GRAFANA_TOKEN)."
)
def dashboards_push(url: str, token: str) -> None:
    """Upload every dashboard through Grafana's HTTP API; same uid → update (idempotent)."""
    try:
        for item in push_dashboards(url=url, token=token):
            click.echo(f"{item.uid} v{item.version} {item.url}")
    except Exception as exc:  # grafana-client raises its own hierarchy and requests' errors
        raise click.ClickException(f"push to {url} failed: {exc}") from None


@main.group()
def roster() -> None:
    """The duty roster (错时轮班)."""


@roster.command("check")
@click.option(
    "--config",
    "config_file",
    type=click.Path(dir_okay=False, exists=True, path_type=Path),
    help="Hub configuration (its community_file and timezone).",
)
@click.option(
    "--community-file",
    type=click.Path(dir_okay=False, exists=True, path_type=Path),
    help="Instead of --config.",
)
@click.option("--days", type=click.IntRange(1, 60), default=7, show_default=True)
def roster_check(config_file: Path | None, community_file: Path | None, days: int) -> None:
    """List every hour of the coming week in which a grid has nobody on duty for SOS."""
    try:
        settings = load_settings(config_file)
        path = community_file or settings.community_file
        if path is None:
            raise click.ClickException("give --community-file or a --config with community_file")
        communities = load_yaml(path)
    except LinliError as exc:
        raise click.ClickException(str(exc)) from None
    zone = settings.zone
    total = 0
    for community in communities:
        gaps = coverage_gaps(
            community.people,
            grids=[g.code for g in community.grids],
            start=datetime.now(zone),
            zone=zone,
            hours=days * 24,
        )
        for gap in gaps:
            click.echo(
                f"{community.code} {gap.grid} {gap.start:%Y-%m-%d %a %H:00} 无人值守 / nobody on duty for SOS"
            )
        total += len(gaps)
    if total:
        click.echo(f"{total} uncovered grid-hour(s) in the next {days} day(s)")
        raise SystemExit(1)
    click.echo(f"ok: every grid is covered for SOS, every hour of the next {days} day(s)")


@main.group()
def rules() -> None:
    """Rule packs: validate them, run their YAML unit tests, reload a running hub."""


@rules.command("check")
@click.argument("paths", nargs=-1, type=click.Path(exists=True, path_type=Path))
@click.option(
    "--config",
    "config_file",
    type=click.Path(dir_okay=False, exists=True, path_type=Path),
    help="Also check the overrides of this hub configuration (and use its rule_paths).",
)
def rules_check(paths: tuple[Path, ...], config_file: Path | None) -> None:
    """Validate rule packs (default: the shipped packs); errors name file, rule and field."""
    try:
        settings = load_settings(config_file) if config_file else None
        chosen = paths or (settings.rule_paths if settings and settings.rule_paths else (BUILTIN_PACKS,))
        loaded = load_packs(chosen)
        # Building an evaluator validates the overrides against the triggers they change.
        Evaluator(
            rules=loaded,
            state=MemoryState(),
            zone=settings.timezone if settings else "Asia/Shanghai",
            overrides=settings.rule_overrides if settings else None,
        )
    except LinliError as exc:
        raise click.ClickException(str(exc)) from None
    click.echo(f"ok: {len(loaded)} rules in {', '.join(map(str, chosen))}")


@rules.command("test")
@click.argument("paths", nargs=-1, type=click.Path(exists=True, path_type=Path))
def rules_test(paths: tuple[Path, ...]) -> None:
    """Run YAML rule tests (given events at times → expected alerts and clears), like promtool test rules.

    Default: the tests shipped for the shipped packs.
    """
    results = run_rule_tests(paths or (BUILTIN_RULE_TESTS,))
    for result in results:
        if not result.passed:
            click.echo(f"FAIL {result.file} {result.name}\n{result.diff}")
    counts = rule_test_summary(results)
    click.echo(f"{counts['passed']} passed, {counts['failed']} failed")
    if counts["failed"] or not results:
        raise SystemExit(1)


@rules.command("reload")
@click.option(
    "--url", default="http://127.0.0.1:8080", show_default=True, help="The running hub's HTTP address."
)
@click.option(
    "--token", required=True, envvar="LINLI_TOKEN", help="An admin or command-centre token (or LINLI_TOKEN)."
)
def rules_reload(url: str, token: str) -> None:
    """Ask a running hub to reload its rule packs now (state of unchanged rules is kept)."""

    async def ask() -> tuple[int, str]:
        async with (
            aiohttp.ClientSession(headers={"Authorization": f"Bearer {token}"}) as session,
            session.post(f"{url.rstrip('/')}/api/rules/reload") as response,
        ):
            return response.status, await response.text()

    try:
        status, text = asyncio.run(ask())
    except aiohttp.ClientError as exc:
        raise click.ClickException(f"cannot reach {url}: {exc}") from None
    if status != 200:
        raise click.ClickException(f"reload refused ({status}): {text}")
    click.echo(text)


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
