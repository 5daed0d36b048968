"""Private files: everything the hub writes under its data directory is readable by its owner only.

The store holds elders' names, phones, addresses and medical notes; the secrets and reply-key
files hold credentials. A default umask (``022``) would leave them world-readable, so every
file the hub creates is created with mode ``0600`` and every directory with ``0700`` — at
creation (``os.open`` with the mode), not by a ``chmod`` afterwards that leaves a window.
SQLite creates its ``-wal``/``-shm`` files with the database file's mode, so creating the
database file ``0600`` before SQLite opens it covers those too.

Must not import: any ``hub`` module (the storage, time-series and CLI layers all use it).
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

FILE_MODE = 0o600
DIR_MODE = 0o700


def private_dir(path: Path, *, tighten: bool = False) -> Path:
    """Create ``path`` (and missing parents) as ``0700``.

    An existing directory keeps its mode unless ``tighten`` (the hub's own data directory:
    group and other bits are removed if this process owns it).
    """
    missing: list[Path] = []
    probe = path
    while not probe.exists():
        missing.append(probe)
        if probe.parent == probe:
            break
        probe = probe.parent
    for directory in reversed(missing):
        try:
            directory.mkdir(mode=DIR_MODE)
        except FileExistsError:
            continue
        directory.chmod(DIR_MODE)  # mkdir's mode is filtered by the umask
    if tighten and not missing:
        info = path.stat()
        if info.st_uid == os.getuid() and info.st_mode & 0o077:
            path.chmod(info.st_mode & 0o700)
    return path


def touch_private(path: Path) -> Path:
    """Make sure ``path`` exists; a new file is created ``0600`` (existing files are not changed)."""
    private_dir(path.parent)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT, FILE_MODE)
    os.close(fd)
    return path


def write_private(path: Path, data: bytes) -> None:
    """Replace ``path`` atomically with ``data``, mode ``0600`` (a temporary file, fsync, rename)."""
    private_dir(path.parent)
    # A new file of a random name (O_EXCL, 0600): a predictable name could be a symlink planted
    # beforehand, and the data would go where it points (found in review).
    fd, name = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    tmp = Path(name)
    try:
        with os.fdopen(fd, "wb") as handle:
            os.fchmod(handle.fileno(), FILE_MODE)
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        tmp.replace(path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def is_private(path: Path) -> bool:
    """Whether group and others have no access to ``path``."""
    return (path.stat().st_mode & 0o077) == 0
