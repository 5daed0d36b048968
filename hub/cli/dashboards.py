"""``dashboards push``: Grafana dashboards as code.

Pushing reads the committed JSON and talks to Grafana with aiohttp, so this command needs
neither the ``linli[dashboards]`` extra (the SDK that *builds* the JSON) nor a Grafana client
library; importing this module imports neither.
"""

from __future__ import annotations

from pathlib import Path

import aiohttp
import click

from adapters.errors import LinliError
from dashboards.push import PushError
from dashboards.push import push as push_dashboards
from hub.config import read_secret_file


@click.group()
def dashboards() -> None:
    """Grafana dashboards as code (generated JSON in dashboards/generated)."""


@dashboards.command("push")
@click.option(
    "--url",
    required=True,
    envvar="LINLI_GRAFANA_URL",
    help="Grafana base URL, e.g. https://grafana.example:3000 (or LINLI_GRAFANA_URL).",
)
@click.option("--token", envvar="LINLI_GRAFANA_TOKEN", help="Service-account token (or LINLI_GRAFANA_TOKEN).")
@click.option(
    "--token-file",
    type=click.Path(dir_okay=False, exists=True, path_type=Path),
    envvar="LINLI_GRAFANA_TOKEN_FILE",
    help="File holding the token, e.g. a Docker/Kubernetes secret (or LINLI_GRAFANA_TOKEN_FILE).",
)
def dashboards_push(url: str, token: str | None, token_file: Path | None) -> None:
    """Upload every dashboard through Grafana's HTTP API; same uid → update (idempotent)."""
    if token_file is not None:
        try:
            token = read_secret_file(token_file, source="--token-file / LINLI_GRAFANA_TOKEN_FILE")
        except LinliError as exc:
            raise click.ClickException(str(exc)) from None
    if not token:
        raise click.UsageError("give --token, --token-file, LINLI_GRAFANA_TOKEN or LINLI_GRAFANA_TOKEN_FILE")
    try:
        for item in push_dashboards(url=url, token=token):
            click.echo(f"{item.uid} v{item.version} {item.url}")
    except (PushError, aiohttp.ClientError, TimeoutError) as exc:
        raise click.ClickException(f"push to {url} failed: {exc}") from None
