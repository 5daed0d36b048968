"""Helpers shared by the commands: logging, running a coroutine, the store a command works on, and
the lock that keeps one hub per data directory."""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import json
import logging
import os
import sys
from collections.abc import Callable, Coroutine, Iterator
from datetime import UTC, datetime
from enum import StrEnum
from pathlib import Path
from typing import Any, TextIO

import click

from adapters.errors import LinliError
from hub.config import STORE_FILE, load_settings
from hub.files import FILE_MODE, private_dir
from hub.storage.engine import sqlite_path
from hub.storage.store import Store

MQTT_HELP = "Broker URL: mqtt://user:pass@host:port, or mqtts://… for TLS."
#: Held (``flock``) by the hub running on a data directory; it holds that process's pid.
LOCK_FILE = "linli.lock"


@contextlib.contextmanager
def one_hub_per_data_dir(data_dir: Path) -> Iterator[None]:
    """While a hub runs on ``data_dir``, a second one there is refused with a clear error.

    Two hubs on one data directory share its rule-state file, spool and keys, and with one
    ``mqtt.client_id`` each takes the other's MQTT session over in turn (MQTT 3.1.1 §3.1.4: the
    server disconnects the existing client): presses handled twice or by neither. A second
    ``linli run`` started by hand beside the service did exactly that. ``flock`` is released by
    the kernel when the process dies, also on ``kill -9``, so a crash leaves no stale lock.
    """
    private_dir(data_dir)
    fd = os.open(data_dir / LOCK_FILE, os.O_RDWR | os.O_CREAT, FILE_MODE)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 32, 0).decode("ascii", "replace").strip() or "?"
            raise click.ClickException(
                f"another Linli hub (pid {holder}) is running on the data directory {data_dir};"
                " stop it first, or give this one a data directory of its own"
            ) from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode("ascii"), 0)
        yield
    finally:
        os.close(fd)  # releases the lock


class LogFormat(StrEnum):
    """How log lines are written: for a person reading a terminal, or for a log collector."""

    TEXT = "text"
    JSON = "json"


TEXT_FORMAT = "%(asctime)s %(levelname)-7s %(name)s: %(message)s"
#: Attributes every LogRecord has; anything else on a record came from ``extra=`` and is context.
_RECORD_FIELDS = frozenset(vars(logging.makeLogRecord({}))) | {"message", "asctime", "taskName"}


class JsonFormatter(logging.Formatter):
    """One JSON object per line: ``time level logger message`` and the context passed via ``extra=``.

    Context (``case_id``, ``device_id``, ``community``, ``rule_id`` …) becomes top-level keys, so
    Loki/Elasticsearch/``jq`` can filter on a case without parsing the message. ``time`` is the
    record's own creation time (UTC, RFC 3339): a log line says when it was written, which under
    a scenario clock can differ from the hub's simulated time carried in the context.
    """

    def format(self, record: logging.LogRecord) -> str:
        doc: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, UTC)
            .isoformat(timespec="milliseconds")
            .replace("+00:00", "Z"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        for key, value in vars(record).items():
            if key not in _RECORD_FIELDS and not key.startswith("_") and key not in doc:
                doc[key] = value
        if record.exc_info:
            doc["exception"] = self.formatException(record.exc_info)
        if record.stack_info:
            doc["stack"] = record.stack_info
        return json.dumps(doc, ensure_ascii=False, default=str)


def configure_logging(
    verbose: bool, log_format: LogFormat = LogFormat.TEXT, *, stream: TextIO | None = None
) -> None:
    handler = logging.StreamHandler(sys.stderr if stream is None else stream)
    handler.setFormatter(JsonFormatter() if log_format is LogFormat.JSON else logging.Formatter(TEXT_FORMAT))
    # Not force=True: a host that configured logging already (pytest's capture) keeps its handlers.
    logging.basicConfig(level=logging.DEBUG if verbose else logging.INFO, handlers=[handler])
    logging.getLogger("gmqtt").setLevel(logging.WARNING)
    logging.getLogger("aiohttp.access").setLevel(logging.WARNING)


def store_for(config_file: Path | None, data_dir: Path | None, *, create: bool = False) -> Store:
    """The store a command works on: from ``--config`` (and LINLI_*), or straight from ``--data-dir``.

    A SQLite store that is not there is made only for ``create`` (an import): found in review, a
    typo in ``--data-dir`` made a new empty store, and ``quarantine list`` said "empty" where
    the real one was full (``community export``, ``broker config`` alike).
    """
    try:
        if data_dir is None:
            settings = load_settings(config_file)
            url = settings.store.resolved_url(Path(settings.data_dir))
            path = sqlite_path(url) if url.startswith("sqlite:") else None
        else:
            url, path = None, Path(data_dir) / STORE_FILE  # a path, not a URL: "//srv" stays a path
        if path is not None and not create and not path.exists():
            raise click.ClickException(f"no Linli store at {path}: check --data-dir or the config's data_dir")
        return Store(url=url) if url is not None else Store(path=path)
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
