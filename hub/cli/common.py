"""Helpers shared by the commands: logging, running a coroutine, the store a command works on."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import sys
from collections.abc import Callable, Coroutine
from pathlib import Path
from typing import Any

import click

from adapters.errors import LinliError
from hub.config import load_settings
from hub.storage.store import Store

MQTT_HELP = "Broker URL: mqtt://user:pass@host:port, or mqtts://… for TLS."


def configure_logging(verbose: bool) -> None:
    logging.basicConfig(
        level=logging.DEBUG if verbose else logging.INFO,
        format="%(asctime)s %(levelname)-7s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    logging.getLogger("gmqtt").setLevel(logging.WARNING)
    logging.getLogger("aiohttp.access").setLevel(logging.WARNING)


def store_for(config_file: Path | None, data_dir: Path | None) -> Store:
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


def run_until_done(coro: Coroutine[Any, Any, None]) -> None:
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
