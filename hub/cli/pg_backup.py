"""``linli backup`` / ``restore`` with a PostgreSQL store: ``pg_dump`` and ``pg_restore``.

A PostgreSQL store is not a file in the data directory: the backup holds it as one
``pg_dump --format=custom`` file (a consistent snapshot of one transaction, taken while the
hubs keep running — PostgreSQL 15 manual, pg_dump), listed in the manifest with its SHA-256
like every other file. Restore puts it into the database the configuration names with
``pg_restore --no-owner --exit-on-error`` — into an empty database, or over the current one with
``--force`` (``--clean --if-exists``) — and refuses while a hub is connected to it (a hub
writing during a restore would mix two histories).

The password never reaches a command line (``ps`` shows those to every user): the URL is
split into a conninfo string without it and ``PGPASSWORD`` in the child's environment.

The tools are found on ``PATH`` first (Debian's ``/usr/bin/pg_dump`` picks the newest
installed version), then in the newest ``/usr/lib/postgresql/<version>/bin``.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import psycopg
from psycopg.conninfo import conninfo_to_dict, make_conninfo

from hub.errors import HubError
from hub.storage.engine import redact

DUMP_FILE = "linli.dump"
DEBIAN_POSTGRES = Path("/usr/lib/postgresql")
#: What every hub connection calls itself (hub.storage.postgres, hub.cluster.events).
HUB_APPLICATIONS = ("linli-hub", "linli-events-%")
TIMEOUT_S = 3600.0


class PgBackupError(HubError):
    """pg_dump or pg_restore could not do it, or a restore would overwrite a store in use."""


def is_postgres(url: str | None) -> bool:
    return url is not None and url.startswith(("postgresql://", "postgres://"))


def tool(name: str) -> Path:
    found = shutil.which(name)
    if found:
        return Path(found)
    versions = sorted(
        (p for p in DEBIAN_POSTGRES.glob(f"*/bin/{name}") if p.parent.parent.name.isdigit()),
        key=lambda p: int(p.parent.parent.name),
    )
    if versions:
        return versions[-1]
    raise PgBackupError(f"{name} not found (install postgresql-client)")


def split_secret(url: str) -> tuple[str, dict[str, str]]:
    """A conninfo string without the password, and the environment that carries it."""
    params = conninfo_to_dict(url)
    password = params.pop("password", None)
    env = dict(os.environ)
    if password is not None:
        env["PGPASSWORD"] = str(password)
    return make_conninfo("", **params), env


def _run(args: list[str], env: dict[str, str], what: str, url: str) -> None:
    try:
        # A list of arguments, no shell: the tool path is found above, the rest are our own flags.
        done = subprocess.run(  # noqa: S603
            args, env=env, capture_output=True, text=True, timeout=TIMEOUT_S, check=False
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise PgBackupError(f"{what} of {redact(url)} failed: {exc}") from None
    if done.returncode != 0:
        raise PgBackupError(f"{what} of {redact(url)} failed: {done.stderr.strip()[-2000:]}")


def dump(url: str, target: Path) -> None:
    conninfo, env = split_secret(url)
    _run(
        [str(tool("pg_dump")), "--format=custom", f"--file={target}", f"--dbname={conninfo}"],
        env,
        "pg_dump",
        url,
    )


def _facts(url: str) -> tuple[int, bool]:
    """Hub connections to the database, and whether it holds a Linli schema."""
    try:
        with psycopg.connect(
            url, autocommit=True, connect_timeout=5, application_name="linli-restore"
        ) as conn:
            hubs = conn.execute(
                "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database()"
                " AND (application_name = %s OR application_name LIKE %s)",
                HUB_APPLICATIONS,
            ).fetchone()
            schema = conn.execute("SELECT to_regclass('schema_version') IS NOT NULL").fetchone()
    except psycopg.Error as exc:
        raise PgBackupError(f"cannot open {redact(url)}: {exc}".strip()) from None
    return (int(hubs[0]) if hubs else 0), bool(schema and schema[0])


def restore(url: str, source: Path, *, force: bool) -> None:
    hubs, holds_store = _facts(url)
    if hubs:
        raise PgBackupError(f"{hubs} hub connection(s) to {redact(url)}: stop every hub first")
    if holds_store and not force:
        raise PgBackupError(f"{redact(url)} already holds a store; restore with --force to replace it")
    conninfo, env = split_secret(url)
    # One transaction: a restore that fails leaves the database as it was.
    args = [
        str(tool("pg_restore")),
        "--no-owner",
        "--exit-on-error",
        "--single-transaction",
        f"--dbname={conninfo}",
    ]
    if holds_store:
        args += ["--clean", "--if-exists"]
    _run([*args, str(source)], env, "pg_restore", url)
