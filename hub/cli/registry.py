"""The registry and its neighbours: ``community``, ``quarantine``, ``roster``."""

from __future__ import annotations

import time
from datetime import datetime
from pathlib import Path

import click
import orjson

from adapters.errors import LinliError
from hub.cases.policies import load_policies
from hub.cli.common import store_for, with_store_options
from hub.clock import iso
from hub.community.files import CsvKind, dump_csv, dump_yaml, load_yaml, merge_rows, parse_csv, read_text
from hub.community.roster import coverage_gaps
from hub.community.topic_roots import refuse_own_topics
from hub.config import load_settings
from hub.files import write_private


@click.group()
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
    store = store_for(config_file, data_dir, create=True)
    try:
        prefix = load_settings(config_file).mqtt.topic_prefix
        if file.suffix.lower() == ".csv":
            current = {c.code: c for c in store.communities()}
            csv_kind, rows = parse_csv(read_text(file), file=str(file), kind=CsvKind(kind) if kind else None)
            merged = merge_rows(current, csv_kind, rows, file=str(file))
            refuse_own_topics(list(merged.values()), prefix=prefix, file=str(file))
            changed = store.save_communities(list(merged.values()), at=time.time(), source=str(file))
            click.echo(f"imported {len(rows)} {csv_kind.value} row(s); {changed} community record(s) changed")
        else:
            communities = load_yaml(file)
            refuse_own_topics(communities, prefix=prefix, file=str(file))
            changed = store.save_communities(communities, at=time.time(), source=str(file))
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
    store = store_for(config_file, data_dir)
    try:
        communities = store.communities()
    finally:
        store.close()
    text = dump_yaml(communities) if fmt == "yaml" else dump_csv(communities, CsvKind(kind))
    if output is None:
        click.echo(text, nl=False)
    else:
        # Owner-only, like everything else holding residents' data (docs/security.md); found in
        # review written 0644. Replaced by a rename: a symlink at ``output`` is not followed.
        write_private(output, text.encode("utf-8"))


@click.group()
def quarantine() -> None:
    """Messages that could not be decoded, with their reasons."""


@quarantine.command("list")
@click.option("--limit", type=click.IntRange(1, 10_000), default=50, show_default=True)
@click.option("--json", "as_json", is_flag=True, help="One JSON object per line.")
@with_store_options
def quarantine_list(limit: int, as_json: bool, config_file: Path | None, data_dir: Path | None) -> None:
    """List quarantine records, most recent first (topic, reason, count, last seen, excerpt)."""
    store = store_for(config_file, data_dir)
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


@click.group()
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
        # Office-hours shifts (follows: working_days) run on the policies' working days.
        policies = load_policies(settings.policies_file, zone=settings.timezone)
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
            calendar=policies.calendar,
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
