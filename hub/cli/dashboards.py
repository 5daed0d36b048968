"""``dashboards push``: Grafana dashboards as code."""

from __future__ import annotations

import click


@click.group()
def dashboards() -> None:
    """Grafana dashboards as code (generated JSON in dashboards/generated)."""


@dashboards.command("push")
@click.option("--url", required=True, help="Grafana base URL, e.g. https://grafana.example:3000")
@click.option(
    "--token", required=True, envvar="GRAFANA_TOKEN", help="Service-account token (or GRAFANA_TOKEN)."
)
def dashboards_push(url: str, token: str) -> None:
    """Upload every dashboard through Grafana's HTTP API; same uid → update (idempotent)."""
    # Imported here: grafana-client (and niquests) cost ~0.7 s that `linli run` must not pay
    # on every start, least of all on a restart in the middle of an escalation.
    from dashboards.push import push as push_dashboards  # noqa: PLC0415

    try:
        for item in push_dashboards(url=url, token=token):
            click.echo(f"{item.uid} v{item.version} {item.url}")
    except Exception as exc:  # grafana-client raises its own hierarchy and requests' errors
        raise click.ClickException(f"push to {url} failed: {exc}") from None
