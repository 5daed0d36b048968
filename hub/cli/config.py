"""``config show``: the effective configuration, secrets redacted, and where each value came from.

The question an operator asks when the hub does something unexpected is "which value is it
using, and who set it?" — the YAML, a ``LINLI_*`` variable, a ``*_FILE`` secret or the default.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Mapping
from enum import StrEnum
from pathlib import Path
from typing import Any

import click
from pydantic import BaseModel, SecretStr

from adapters.errors import LinliError
from hub.config import LoadedConfig, is_secret_key, load_config
from hub.mqtt.url import MqttUrl

REDACTED = "<redacted>"


class Format(StrEnum):
    TEXT = "text"
    JSON = "json"


def _shown(key: str, value: Any) -> Any:
    """A JSON-friendly value with every secret hidden (a URL keeps all but its password)."""
    if value is None:
        return None
    if key == "mqtt.url" and isinstance(value, str):
        try:
            return MqttUrl.parse(value).redacted()
        except LinliError:
            return REDACTED
    if isinstance(value, SecretStr) or is_secret_key(key):
        return REDACTED
    if isinstance(value, BaseModel):
        return {k: _shown(f"{key}.{k}", v) for k, v in value}
    if isinstance(value, Mapping):
        return {str(k): _shown(f"{key}.{k}", v) for k, v in value.items()}
    if isinstance(value, list | tuple | set | frozenset):
        return [_shown(key, v) for v in value]
    if isinstance(value, Path):
        return str(value)
    if isinstance(value, StrEnum):
        return value.value
    return value


def effective(model: BaseModel, prefix: str = "") -> Iterator[tuple[str, Any]]:
    """(dotted key, shown value) for every setting; nested models and secret maps are walked."""
    for name, value in model:
        key = prefix + name
        if isinstance(value, BaseModel):
            yield from effective(value, key + ".")
        elif isinstance(value, Mapping) and value and is_secret_key(f"{key}.x"):
            for sub, item in value.items():
                yield f"{key}.{sub}", _shown(f"{key}.{sub}", item)
        else:
            yield key, _shown(key, value)


def rows(loaded: LoadedConfig) -> list[dict[str, Any]]:
    out = []
    for key, value in effective(loaded.settings):
        origin = loaded.origin(key)
        out.append({"key": key, "value": value, "source": origin.source.value, "detail": origin.detail})
    return out


@click.group("config")
def config() -> None:
    """The hub's configuration."""


@config.command("show")
@click.option(
    "--config",
    "config_file",
    type=click.Path(dir_okay=False, exists=True, path_type=Path),
    help="YAML configuration file (LINLI_* environment variables override it).",
)
@click.option(
    "--format",
    "fmt",
    type=click.Choice([f.value for f in Format]),
    default=Format.TEXT.value,
    show_default=True,
)
def show(config_file: Path | None, fmt: str) -> None:
    """Print the effective configuration, secrets redacted, with where each value came from."""
    try:
        loaded = load_config(config_file)
    except LinliError as exc:
        raise click.ClickException(str(exc)) from None
    table = rows(loaded)
    if Format(fmt) is Format.JSON:
        doc = {r["key"]: {"value": r["value"], "source": r["source"], "detail": r["detail"]} for r in table}
        click.echo(json.dumps(doc, ensure_ascii=False, indent=2))
        return
    width = max(len(r["key"]) for r in table)
    for r in table:
        origin = loaded.origin(r["key"])
        value = json.dumps(r["value"], ensure_ascii=False)
        click.echo(f"{r['key']:<{width}} = {value}  # {origin}")
    for note in loaded.notes:
        click.echo(f"# note: {note}")
