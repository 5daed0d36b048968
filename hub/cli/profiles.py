"""``profiles suggest`` and ``profiles test``: device profiles for models Linli does not ship."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click
import orjson
import yaml

from adapters.errors import DecodeError, LinliError
from adapters.events import NoHints
from adapters.profiles import ProfileError, load_profiles
from adapters.suggest import decoded_of, suggest
from hub.config import load_settings


def _read_json(path: Path) -> dict[str, Any]:
    try:
        doc = orjson.loads(path.read_bytes())
    except (OSError, orjson.JSONDecodeError) as exc:
        raise click.ClickException(f"{path}: not a JSON payload: {exc}") from None
    if not isinstance(doc, dict):
        raise click.ClickException(f"{path}: expected a JSON object")
    return doc


@click.group()
def profiles() -> None:
    """Device profiles: propose one from captured payloads, try one on samples."""


@profiles.command("suggest")
@click.argument(
    "samples", nargs=-1, required=True, type=click.Path(exists=True, dir_okay=False, path_type=Path)
)
@click.option("--id", "profile_id", required=True, help="Profile id, e.g. acme-door-x1.")
@click.option("--vendor", required=True)
@click.option("--model", required=True)
@click.option(
    "--out",
    type=click.Path(file_okay=False, path_type=Path),
    help="Write <id>.yaml into this profiles directory instead of printing it.",
)
@click.option(
    "--config",
    "config_file",
    type=click.Path(dir_okay=False, exists=True, path_type=Path),
    help="Write into the first directory of this hub configuration's profile_paths.",
)
def profiles_suggest(
    *,
    samples: tuple[Path, ...],
    profile_id: str,
    vendor: str,
    model: str,
    out: Path | None,
    config_file: Path | None,
) -> None:
    """Propose a profile from payloads of one model (quarantined or generic-read uplinks, or decoded objects).

    The proposal is for review: every guessed polarity is listed as REVIEW at the top.
    """
    try:
        result = suggest([_read_json(p) for p in samples], profile_id=profile_id, vendor=vendor, model=model)
    except ValueError as exc:
        raise click.ClickException(f"cannot propose a valid profile: {exc}") from None
    if out is None and config_file is not None:
        try:
            settings = load_settings(config_file)
        except LinliError as exc:
            raise click.ClickException(str(exc)) from None
        out = next((p for p in settings.profile_paths if p.suffix not in (".yaml", ".yml")), None)
        if out is None:
            raise click.ClickException(f"{config_file}: profile_paths names no directory to write into")
    header = "".join(f"# {note}\n" for note in result.notes)
    text = header + yaml.safe_dump(result.profile, sort_keys=False, allow_unicode=True)
    if out is None:
        click.echo(text, nl=False)
        return
    out.mkdir(parents=True, exist_ok=True)
    target = out / f"{profile_id}.yaml"
    target.write_text(text, encoding="utf-8")
    click.echo(f"wrote {target}; review the REVIEW lines, then `linli profiles test {target} SAMPLE…`")


@profiles.command("test")
@click.argument("profile_file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.argument(
    "samples", nargs=-1, required=True, type=click.Path(exists=True, dir_okay=False, path_type=Path)
)
def profiles_test(profile_file: Path, samples: tuple[Path, ...]) -> None:
    """Show the events PROFILE_FILE produces for each sample payload."""
    try:
        profile = load_profiles([profile_file]).profiles[0]
    except ProfileError as exc:
        raise click.ClickException(str(exc)) from None
    failed = False
    for sample in samples:
        decoded = decoded_of(_read_json(sample))
        try:
            events = profile.apply(
                decoded,
                device_id="sample",
                ts=0.0,
                family="test",
                hints=NoHints(),
                common={},
                topic=str(sample),
            )
        except DecodeError as exc:
            failed = True
            click.echo(f"{sample}: {exc}")
            continue
        if not events:
            click.echo(f"{sample}: no events")
        for event in events:
            attrs = " ".join(f"{k}={v}" for k, v in event.attrs.items())
            click.echo(f"{sample}: {event.kind.value} {event.value!r} {attrs}".rstrip())
    if failed:
        raise SystemExit(1)
