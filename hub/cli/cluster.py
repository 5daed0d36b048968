"""``linli cluster status``: the hub nodes sharing a store and which community each one owns.

Reads the leases from the store named by ``--config`` (``store.url``, LINLI_STORE__URL…), judged
by the database's clock: a lease past its expiry is shown as such (its community is up for
takeover), a node whose heartbeat is older than one lease period as silent (the lease loop
counts it out of the fair share then: hub/cluster/runtime.py).
"""

from __future__ import annotations

import json
from pathlib import Path

import click

from hub.cluster.runtime import LIVE_LEASES
from hub.config import load_settings
from hub.errors import LinliError
from hub.storage.leases import ClusterStatus, LeaseStore
from hub.storage.store import Store


def status_doc(status: ClusterStatus, *, lease_s: float) -> dict[str, object]:
    return {
        "now": status.now,
        "lease_s": lease_s,
        "nodes": [
            {
                "node_id": n.node_id,
                "started_at": n.started_at,
                "last_heartbeat": n.heartbeat_at,
                "alive": status.now - n.heartbeat_at <= LIVE_LEASES * lease_s,
            }
            for n in status.nodes
        ],
        "communities": [
            {
                "community": lease.community,
                "owner": lease.owner,
                "epoch": lease.epoch,
                "since": lease.since,
                "expires_at": lease.expires_at,
                "expired": lease.expires_at <= status.now,
            }
            for lease in status.leases
        ],
    }


@click.group()
def cluster() -> None:
    """Several hubs on one PostgreSQL store: nodes and community ownership."""


@cluster.command("status")
@click.option(
    "--config",
    "config_file",
    type=click.Path(dir_okay=False, exists=True, path_type=Path),
    help="Hub configuration file (its store.url is read).",
)
@click.option("--json", "as_json", is_flag=True, help="One JSON document instead of tables.")
def status(config_file: Path | None, as_json: bool) -> None:
    """Nodes (id, last heartbeat) and communities (owner, epoch, since)."""
    try:
        settings = load_settings(config_file)
        store = Store(url=settings.store.resolved_url(Path(settings.data_dir)))
    except LinliError as exc:
        raise click.ClickException(str(exc)) from None
    lease_s = settings.cluster.lease_s
    try:
        current = LeaseStore(store=store, node_id=settings.cluster.node_id or "-", lease_s=lease_s).status()
    finally:
        store.close()
    if as_json:
        click.echo(json.dumps(status_doc(current, lease_s=lease_s), ensure_ascii=False))
        return
    now = current.now
    click.echo(f"{'NODE':<24} {'LAST HEARTBEAT':>15}  STATE")
    for node in current.nodes:
        state = "alive" if now - node.heartbeat_at <= LIVE_LEASES * lease_s else "silent"
        click.echo(f"{node.node_id:<24} {now - node.heartbeat_at:>13.1f} s  {state}")
    click.echo()
    click.echo(f"{'COMMUNITY':<16} {'OWNER':<24} {'EPOCH':>6} {'SINCE':>12}  LEASE")
    for lease in current.leases:
        left = lease.expires_at - now
        state = "expired" if left <= 0 else f"{left:.1f} s left"
        click.echo(
            f"{lease.community:<16} {lease.owner:<24} {lease.epoch:>6} {now - lease.since:>10.1f} s  {state}"
        )
