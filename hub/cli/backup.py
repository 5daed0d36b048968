"""``backup DIR`` and ``restore DIR``: a consistent copy of a hub's data directory, online.

What a hub needs to come back as it was — open cases, their deadlines (escalation timers), rule
timers, alerts, notifications, the registry — is in the embedded store ``<data_dir>/linli.sqlite3``
and, for the rule engine's state (its timers), ``linli-rule-state.sqlite3`` beside it
(:mod:`hub.storage.rule_state_file`). Beside them: the embedded time-series file, the spool of
batches not yet delivered to InfluxDB, and the demo's generated ``secrets.yaml``.

The SQLite files are copied with SQLite's online backup API, never with ``cp``: a running hub
writes in WAL mode, and a file copy taken between a commit and a checkpoint is a store that
lost its last transactions (or is corrupt). The backup API copies a snapshot of one transaction,
so a backup taken while the hub runs is consistent. Every file is listed in ``manifest.json``
with its SHA-256; restore checks them before it touches anything.

This module works at the file level on purpose: it opens the SQLite files itself rather than
importing the store, so a backup does not run migrations or create tables in the source.

With a PostgreSQL store (``store.url``) the store is a ``pg_dump`` file instead
(:mod:`hub.cli.pg_backup`), and the rest of the data directory is copied as above.

Restore refuses to write over a hub that is running (another process has the store open: the
SQLite shared-memory lock is held) and over a data directory that already holds a store, unless
``--force`` (for the latter only).
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import shutil
import sqlite3
from collections.abc import Iterator
from dataclasses import dataclass
from enum import StrEnum
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from urllib.parse import quote

import click

from adapters.errors import LinliError
from hub.casework.evaluations import LINK_KEY_FILE
from hub.cli import pg_backup
from hub.clock import Clock, SystemClock, iso
from hub.community.files import IMPORTED_MARK
from hub.config import load_settings
from hub.errors import HubError
from hub.files import FILE_MODE, private_dir, touch_private
from hub.storage.engine import sqlite_path
from hub.storage.rule_state_file import path_beside

MANIFEST = "manifest.json"
FORMAT = 1
STORE_FILE = "linli.sqlite3"
#: The rule engine's state beside the store (``hub.storage.rule_state_file.path_beside``).
RULE_STATE_FILE = "linli-rule-state.sqlite3"
SECRETS_FILE = "secrets.yaml"
#: Workers' reply keys (hub.casework.reply_keys), at their default place in the data directory.
REPLY_KEYS_FILE = "reply-keys.yaml"
#: Key and secret files copied as they are; the guardians' evaluation-link key among them
#: (links in circulation stop working without it; found in review: it was not backed up).
KEY_FILES = (SECRETS_FILE, REPLY_KEYS_FILE, LINK_KEY_FILE)
TIMESERIES_FILE = "timeseries.sqlite"
SPOOL_DIR = "timeseries-spool"
#: SQLite's unix VFS holds a shared lock on this byte of ``<db>-shm`` while a connection is open
#: (the "dead man switch" of the WAL index); an exclusive lock on it fails while anyone else has it.
_SHM_DMS_BYTE = 128


class BackupError(HubError):
    """A backup or restore cannot be done; ``path`` is the file or directory concerned."""

    def __init__(self, message: str, *, path: Path) -> None:
        super().__init__(f"{path}: {message}")
        self.path = path
        self.message = message


class Kind(StrEnum):
    SQLITE = "sqlite"
    FILE = "file"
    PG_DUMP = "pg_dump"


@dataclass(frozen=True, slots=True, kw_only=True)
class Entry:
    """One file of a backup, relative to the data directory."""

    name: str
    kind: Kind
    sha256: str
    size: int


@dataclass(frozen=True, slots=True, kw_only=True)
class Layout:
    """Where a hub keeps what a backup copies (the time-series paths can be configured)."""

    data_dir: Path
    timeseries: Path
    spool: Path
    #: The PostgreSQL store's URL (``store.url``); ``None``: a SQLite store.
    store_url: str | None = None
    #: The SQLite store when ``store.url`` names one elsewhere (``None``: ``<data_dir>/linli.sqlite3``).
    #: Found in review: backup read, and restore wrote, the data directory's file, which a hub
    #: configured with ``sqlite:///…`` never opens.
    store_file: Path | None = None
    #: Workers' reply keys when ``replies.keys_file`` puts them elsewhere.
    reply_keys_file: Path | None = None

    @classmethod
    def default(cls, data_dir: Path) -> Layout:
        return cls(data_dir=data_dir, timeseries=data_dir / TIMESERIES_FILE, spool=data_dir / SPOOL_DIR)

    @property
    def store(self) -> Path:
        return self.store_file if self.store_file is not None else self.data_dir / STORE_FILE

    @property
    def rule_state(self) -> Path:
        return path_beside(self.store)

    @property
    def reply_keys(self) -> Path:
        return self.reply_keys_file if self.reply_keys_file is not None else self.data_dir / REPLY_KEYS_FILE

    def keys_file(self, name: str) -> Path:
        """Where the key or secrets file backed up as ``name`` lives."""
        return self.reply_keys if name == REPLY_KEYS_FILE else self.data_dir / name


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def in_use(db: Path) -> bool:
    """Whether another process has the SQLite database ``db`` open in WAL mode (a running hub)."""
    shm = db.with_name(db.name + "-shm")
    try:
        fd = os.open(shm, os.O_RDWR)
    except FileNotFoundError:
        return False
    except OSError as exc:
        raise BackupError(f"cannot check whether the store is in use: {exc.strerror}", path=shm) from None
    try:
        fcntl.lockf(fd, fcntl.LOCK_EX | fcntl.LOCK_NB, 1, _SHM_DMS_BYTE)
    except OSError:
        return True
    else:
        fcntl.lockf(fd, fcntl.LOCK_UN, 1, _SHM_DMS_BYTE)
        return False
    finally:
        os.close(fd)


def _snapshot(source: Path, target: Path) -> None:
    """Copy one SQLite database as of one transaction, while others may be writing to it."""
    try:
        src = sqlite3.connect(f"file:{quote(str(source))}?mode=ro", uri=True)
        try:
            dst = sqlite3.connect(target)
            try:
                src.backup(dst)
                check = dst.execute("PRAGMA integrity_check").fetchone()
            finally:
                dst.close()
        finally:
            src.close()
    except sqlite3.Error as exc:
        raise BackupError(f"SQLite backup failed: {exc}", path=source) from None
    if check is None or check[0] != "ok":
        raise BackupError(f"the copy failed its integrity check: {check}", path=target)


def _spool_files(spool: Path) -> Iterator[Path]:
    if spool.is_dir():
        # Half-written batches end in .tmp and are renamed when complete: skip them.
        yield from sorted(p for p in spool.iterdir() if p.is_file() and not p.name.endswith(".tmp"))


def backup(layout: Layout, target: Path, *, clock: Clock) -> list[Entry]:
    """Write a backup of ``layout`` into the empty or new directory ``target``."""
    if layout.store_url is None and not layout.store.is_file():
        raise BackupError(
            f"no store ({STORE_FILE}) here: is this a hub's data directory?", path=layout.data_dir
        )
    if target.exists() and any(target.iterdir()):
        raise BackupError("backup directory is not empty; give a new one", path=target)
    # The copies hold what the data directory holds (elders' data, secrets): owner-only too.
    private_dir(target)
    entries: list[Entry] = []

    def record(name: str, kind: Kind) -> None:
        path = target / name
        entries.append(Entry(name=name, kind=kind, sha256=_sha256(path), size=path.stat().st_size))

    if layout.store_url is not None:
        try:
            pg_backup.dump(layout.store_url, touch_private(target / pg_backup.DUMP_FILE))
        except pg_backup.PgBackupError as exc:
            raise BackupError(str(exc), path=target / pg_backup.DUMP_FILE) from None
        record(pg_backup.DUMP_FILE, Kind.PG_DUMP)
    else:
        _snapshot(layout.store, touch_private(target / STORE_FILE))
        record(STORE_FILE, Kind.SQLITE)
        if layout.rule_state.is_file():
            # A moment after the store's snapshot: rule state is the engine's memory of readings,
            # which a restart takes up from wherever it was (timers are re-armed if missing).
            _snapshot(layout.rule_state, touch_private(target / RULE_STATE_FILE))
            record(RULE_STATE_FILE, Kind.SQLITE)
    if layout.timeseries.is_file():
        _snapshot(layout.timeseries, touch_private(target / TIMESERIES_FILE))
        record(TIMESERIES_FILE, Kind.SQLITE)
    for segment in _spool_files(layout.spool):
        name = f"{SPOOL_DIR}/{segment.name}"
        private_dir(target / SPOOL_DIR)
        try:
            shutil.copy2(segment, target / name)
        except FileNotFoundError:
            continue  # delivered to InfluxDB and removed while we copied: nothing lost
        os.chmod(target / name, FILE_MODE)
        record(name, Kind.FILE)
    for name in KEY_FILES:
        secrets = layout.keys_file(name)
        if secrets.is_file():
            shutil.copy2(secrets, target / name)
            os.chmod(target / name, FILE_MODE)
            record(name, Kind.FILE)
    try:
        linli_version = version("linli")
    except PackageNotFoundError:  # pragma: no cover — running from a checkout without install
        linli_version = "unknown"
    manifest = {
        "format": FORMAT,
        "created_at": iso(clock.now()),
        "linli": linli_version,
        "source": str(layout.data_dir),
        "files": [
            {"name": e.name, "kind": e.kind.value, "sha256": e.sha256, "size": e.size} for e in entries
        ],
    }
    (target / MANIFEST).write_text(json.dumps(manifest, indent=2) + "\n", encoding="utf-8")
    return entries


def read_manifest(source: Path) -> list[Entry]:
    """The entries of a backup, each checked against its SHA-256."""
    try:
        doc = json.loads((source / MANIFEST).read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise BackupError(f"not a Linli backup (no readable {MANIFEST}): {exc}", path=source) from None
    if not isinstance(doc, dict) or doc.get("format") != FORMAT:
        found = doc.get("format") if isinstance(doc, dict) else type(doc).__name__
        raise BackupError(f"backup format {found!r} is not {FORMAT}", path=source)
    try:
        # A damaged manifest is a clear refusal, not a KeyError's traceback (found in review).
        entries = [
            Entry(name=str(f["name"]), kind=Kind(f["kind"]), sha256=str(f["sha256"]), size=int(f["size"]))
            for f in doc["files"]
        ]
    except (KeyError, TypeError, ValueError) as exc:
        raise BackupError(f"{MANIFEST} is damaged: {type(exc).__name__}: {exc}", path=source) from None
    for entry in entries:
        path = source / entry.name
        if Path(entry.name).is_absolute() or ".." in Path(entry.name).parts:
            raise BackupError("manifest names a file outside the backup", path=path)
        if not path.is_file() or _sha256(path) != entry.sha256:
            raise BackupError("missing or damaged (SHA-256 differs from the manifest)", path=path)
    return entries


def restore(source: Path, layout: Layout, *, force: bool = False) -> list[Entry]:
    """Put the backup in ``source`` back into ``layout``'s data directory."""
    entries = read_manifest(source)
    dumped = any(e.kind is Kind.PG_DUMP for e in entries)
    if dumped != (layout.store_url is not None):
        held, configured = ("PostgreSQL", "SQLite") if dumped else ("SQLite", "PostgreSQL")
        raise BackupError(
            f"the backup holds a {held} store, the configuration names a {configured} one", path=source
        )
    if layout.store_url is not None:
        try:
            pg_backup.restore(layout.store_url, source / pg_backup.DUMP_FILE, force=force)
        except pg_backup.PgBackupError as exc:
            raise BackupError(str(exc), path=source / pg_backup.DUMP_FILE) from None
        entries_to_copy = [e for e in entries if e.kind is not Kind.PG_DUMP]
    else:
        if in_use(layout.store):
            raise BackupError("a hub is running on this data directory; stop it first", path=layout.data_dir)
        if layout.store.exists() and not force:
            raise BackupError(
                "data directory already holds a store; restore with --force to replace it",
                path=layout.data_dir,
            )
        entries_to_copy = entries
        if RULE_STATE_FILE not in {e.name for e in entries}:
            # A backup of an older version keeps rule state in the store: a file left here would be
            # taken for the restored store's (and the store's own rows then ignored).
            for suffix in ("", "-wal", "-shm", "-journal"):
                layout.rule_state.with_name(layout.rule_state.name + suffix).unlink(missing_ok=True)
    private_dir(layout.data_dir, tighten=True)
    names = {e.name for e in entries}
    if any(n.startswith(SPOOL_DIR + "/") for n in names) or force:
        # The spool is replaced as a whole: batches not in the backup were not pending then.
        shutil.rmtree(layout.spool, ignore_errors=True)
    for entry in entries_to_copy:
        if entry.name == STORE_FILE:
            target = layout.store
        elif entry.name == TIMESERIES_FILE:
            target = layout.timeseries
        elif entry.name == RULE_STATE_FILE:
            target = layout.rule_state
        elif entry.name.startswith(SPOOL_DIR + "/"):
            target = layout.spool / entry.name.split("/", 1)[1]
        elif entry.name in KEY_FILES:
            target = layout.keys_file(entry.name)
        else:
            target = layout.data_dir / entry.name
        private_dir(target.parent)
        if entry.kind is Kind.SQLITE:
            # A WAL or index left from the replaced database would be replayed over the restored one.
            for suffix in ("-wal", "-shm", "-journal"):
                target.with_name(target.name + suffix).unlink(missing_ok=True)
        partial = target.with_name(target.name + ".restoring")
        shutil.copy2(source / entry.name, partial)
        os.chmod(partial, FILE_MODE)  # every restored file is owner-only, whatever the backup's modes
        partial.replace(target)
    # The mark says which community file the store last imported: it was the replaced store's.
    # Left, the next start skipped the import and ran on the backup's older registry (found in
    # review: SOS buttons registered since were unknown devices). Gone, the file is imported.
    (layout.data_dir / IMPORTED_MARK).unlink(missing_ok=True)
    return entries


def _layout(config_file: Path | None, data_dir: Path | None) -> Layout:
    try:
        if data_dir is not None:
            return Layout.default(Path(data_dir))
        settings = load_settings(config_file)
    except LinliError as exc:
        raise click.ClickException(str(exc)) from None
    base = Path(settings.data_dir)
    url = settings.store.url
    postgres = pg_backup.is_postgres(url)
    try:
        store_file = sqlite_path(url) if url is not None and not postgres else None
    except LinliError as exc:
        raise click.ClickException(str(exc)) from None
    return Layout(
        data_dir=base,
        timeseries=settings.timeseries.sqlite_file(base),
        spool=settings.timeseries.spool_path(base),
        store_url=url if postgres else None,
        store_file=store_file,
        reply_keys_file=settings.reply_keys_file,
    )


_config_option = click.option(
    "--config",
    "config_file",
    type=click.Path(dir_okay=False, exists=True, path_type=Path),
    help="Hub configuration file (its data_dir and time-series paths are used).",
)
_data_dir_option = click.option(
    "--data-dir",
    type=click.Path(file_okay=False, path_type=Path),
    help="Data directory of the hub (instead of --config).",
)


@click.command("backup")
@click.argument("target", type=click.Path(file_okay=False, path_type=Path))
@_config_option
@_data_dir_option
def backup_command(target: Path, config_file: Path | None, data_dir: Path | None) -> None:
    """Write a consistent copy of the hub's data into TARGET (new or empty); the hub may keep running."""
    layout = _layout(config_file, data_dir)
    try:
        entries = backup(layout, target, clock=SystemClock())
    except (BackupError, OSError) as exc:
        raise click.ClickException(str(exc)) from None
    total = sum(e.size for e in entries)
    click.echo(f"backed up {len(entries)} files ({total} bytes) from {layout.data_dir} to {target}")


@click.command("restore")
@click.argument("source", type=click.Path(file_okay=False, exists=True, path_type=Path))
@_config_option
@_data_dir_option
@click.option("--force", is_flag=True, help="Replace the store of a data directory that already has one.")
def restore_command(source: Path, config_file: Path | None, data_dir: Path | None, force: bool) -> None:
    """Restore the backup in SOURCE into the hub's data directory (the hub must be stopped)."""
    layout = _layout(config_file, data_dir)
    try:
        entries = restore(source, layout, force=force)
    except (BackupError, OSError) as exc:
        raise click.ClickException(str(exc)) from None
    click.echo(f"restored {len(entries)} files from {source} into {layout.data_dir}")
