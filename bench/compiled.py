"""The mypyc-compiled hot path, side by side with the pure-Python hub in the same bench run.

Issue 14 named compiling the pure packages with mypyc as one way to the targets; this is how it
was measured (``make bench ARGS=--compiled``, docs/benchmarks.md "mypyc"). The packages are
copied into a cache directory keyed by the sources' hash, mypyc compiles :data:`MODULES` there in
place (the ``.so`` files next to the ``.py`` files, so every module not listed stays pure
Python) and a phase's process starts with that directory first on ``sys.path``. Linli itself
ships pure Python: the gain measured did not stand out of this machine's noise.

This module imports nothing of Linli's: a spawned phase process copies the parent's ``sys.path``
and then imports ``hub`` for the first time, so where it finds ``hub`` decides which build runs.
"""

from __future__ import annotations

import contextlib
import hashlib
import importlib
import importlib.machinery
import importlib.metadata
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator, Sequence
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
#: Builds are kept here, one directory per sources' hash (next to Node-RED's install).
CACHE = Path(os.environ.get("LINLI_BENCH_CACHE", Path.home() / ".cache" / "linli-bench")) / "mypyc"
#: The top-level packages copied into the tree (a package found there wins over the checkout).
PACKAGES = ("hub", "adapters", "rules", "dashboards", "simulators", "linli")
#: Hashed sources: a change to any of them (or to the compiler) builds anew.
_HASHED = ("hub", "adapters", "rules")
#: The hot path of ``Pipeline.handle`` (bench.stages, cProfile): every module of it that mypyc
#: compiles as it is. The rest (pydantic models, the loader, casework, storage) stays pure.
MODULES: tuple[str, ...] = (
    "adapters/_json.py",
    "adapters/_lorawan.py",
    "adapters/chirpstack_v3.py",
    "adapters/chirpstack_v4.py",
    "adapters/events.py",
    "adapters/generic.py",
    "adapters/native.py",
    "adapters/router.py",
    "adapters/tasmota.py",
    "adapters/ttn_v3.py",
    "adapters/zigbee2mqtt.py",
    "rules/evaluator.py",
    "rules/state.py",
    "rules/expr.py",
    "rules/windows.py",
    "rules/subject.py",
    "rules/signals.py",
    "rules/battery.py",
    "rules/triggers/absence.py",
    "rules/triggers/base.py",
    "rules/triggers/count.py",
    "rules/triggers/duration.py",
    "rules/triggers/event.py",
    "rules/triggers/threshold.py",
    "hub/ingest/pipeline.py",
    "hub/ingest/device_state.py",
    "hub/ingest/lanes.py",
    "hub/timeseries/event_series.py",
    "hub/timeseries/schema.py",
    "hub/timeseries/line_protocol.py",
    "hub/community/registry.py",
)


class BuildError(RuntimeError):
    """mypyc could not build the tree (its output's tail says why)."""


def module_names(files: Sequence[str] = MODULES) -> list[str]:
    return [path.removesuffix(".py").replace("/", ".") for path in files]


def _digest(root: Path, files: Sequence[str]) -> str:
    h = hashlib.blake2b(digest_size=10)
    # The interpreter's and the compiler's versions are part of what was built.
    h.update(f"{sys.version}|{importlib.metadata.version('mypy')}".encode())
    h.update((root / "pyproject.toml").read_bytes())
    h.update("\0".join(files).encode())
    for package in _HASHED:
        for path in sorted((root / package).rglob("*.py")):
            h.update(str(path.relative_to(root)).encode() + b"\0" + path.read_bytes())
    return h.hexdigest()


def build(cache: Path, root: Path = ROOT, files: Sequence[str] = MODULES) -> Path:
    """The compiled tree for the checkout's sources: from the cache, or built now (≈ 2 min)."""
    tree = cache / f"mypyc-{_digest(root, files)}"
    if (tree / ".built").exists():
        return tree
    work = cache / f"{tree.name}.partial-{os.getpid()}"
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    ignore = shutil.ignore_patterns("__pycache__", "*.so")
    for package in PACKAGES:
        shutil.copytree(root / package, work / package, ignore=ignore)
    shutil.copy2(root / "pyproject.toml", work / "pyproject.toml")
    done = subprocess.run(
        [sys.executable, "-m", "mypyc", *files],
        cwd=work,
        env={**os.environ, "MYPYC_OPT_LEVEL": "3"},
        capture_output=True,
        text=True,
        check=False,
    )
    if done.returncode != 0:
        raise BuildError(f"mypyc failed ({done.returncode}): {(done.stdout + done.stderr)[-2000:]}")
    shutil.rmtree(work / "build", ignore_errors=True)
    (work / ".built").write_text("\n".join(files) + "\n", encoding="utf-8")
    shutil.rmtree(tree, ignore_errors=True)
    work.rename(tree)
    return tree


@contextlib.contextmanager
def first_on_path(tree: Path | None) -> Iterator[None]:
    """Processes spawned inside find ``tree``'s packages first; this process's imports stay as they were.

    (Modules already imported here are not looked up again, and a package's submodules are found
    through its ``__path__``, not ``sys.path``.)
    """
    if tree is None:
        yield
        return
    entry = str(tree)
    sys.path.insert(0, entry)
    try:
        yield
    finally:
        with contextlib.suppress(ValueError):
            sys.path.remove(entry)


def compiled_loaded(names: list[str]) -> list[str]:
    """Of ``names``, the modules this process loaded from an extension (compiled), not from source."""
    suffixes = tuple(importlib.machinery.EXTENSION_SUFFIXES)
    loaded = []
    for name in names:
        module = importlib.import_module(name)
        if str(getattr(module, "__file__", "")).endswith(suffixes):
            loaded.append(name)
    return loaded
