"""The mypyc-compiled hot path, side by side with the pure-Python hub in the same bench run.

Issue 14 named compiling the pure packages with mypyc as one way to the targets. Since the
twenty-sixth pass the compiled build is what ``LINLI_BUILD_MYPYC=1`` makes of ``setup.py``: a wheel
with the modules of ``hub/ingest/hot_path.py`` compiled beside their sources (deploy/Dockerfile ships
it). This builds that wheel from a copy of the checkout, unpacks it into a cache directory keyed
by the sources' hash, and a phase's process starts with that directory first on ``sys.path``
(``make bench`` measures both builds; ``make unit-compiled`` runs the hot path's tests on it).

This module imports nothing of Linli's: a spawned phase process copies the parent's ``sys.path``
and then imports ``hub`` for the first time, so where it finds ``hub`` decides which build runs.
The module list is read from ``hub/ingest/hot_path.py`` as a file, as ``setup.py`` reads it.
"""

from __future__ import annotations

import contextlib
import hashlib
import importlib.metadata
import os
import runpy
import shutil
import subprocess
import sys
import zipfile
from collections.abc import Iterator, Sequence
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
#: Builds are kept here, one directory per sources' hash (next to Node-RED's install).
CACHE = Path(os.environ.get("LINLI_BENCH_CACHE", Path.home() / ".cache" / "linli-bench")) / "mypyc"
#: The top-level packages copied into the build (a package found in the tree wins over the checkout).
PACKAGES = ("hub", "adapters", "rules", "dashboards", "simulators", "linli")
#: What else the wheel's build reads (metadata, readme, licence).
BUILD_FILES = ("pyproject.toml", "setup.py", "README.md", "LICENSE")
#: Hashed sources: a change to any of them (or to the compiler) builds anew.
_HASHED = ("hub", "adapters", "rules")


def hot_path(root: Path = ROOT) -> tuple[str, ...]:
    """``hub/ingest/hot_path.py``'s MODULES, read from the file (no import of ``hub``)."""
    return tuple(runpy.run_path(str(root / "hub" / "ingest" / "hot_path.py"))["MODULES"])


#: The hot path of ``Pipeline.handle``: the modules the compiled build compiles.
MODULES: tuple[str, ...] = hot_path()


class BuildError(RuntimeError):
    """mypyc could not build the tree (its output's tail says why)."""


def _digest(root: Path, files: Sequence[str]) -> str:
    h = hashlib.blake2b(digest_size=10)
    # The interpreter's and the compiler's versions are part of what was built.
    h.update(f"{sys.version}|{importlib.metadata.version('mypy')}".encode())
    for name in BUILD_FILES:
        h.update((root / name).read_bytes())
    h.update("\0".join(files).encode())
    for package in _HASHED:
        for path in sorted((root / package).rglob("*.py")):
            h.update(str(path.relative_to(root)).encode() + b"\0" + path.read_bytes())
    return h.hexdigest()


def build(cache: Path, root: Path = ROOT, files: Sequence[str] | None = None) -> Path:
    """The compiled tree for the checkout's sources: from the cache, or built now (≈ 1–2 min).

    ``files``: a subset of the hot path to compile (default: all of it), for a short test build.
    """
    chosen = tuple(hot_path(root) if files is None else files)
    tree = cache / f"mypyc-{_digest(root, chosen)}"
    if (tree / ".built").exists():
        return tree
    work = cache / f"{tree.name}.partial-{os.getpid()}"
    shutil.rmtree(work, ignore_errors=True)
    source, unpacked = work / "source", work / "tree"
    source.mkdir(parents=True)
    ignore = shutil.ignore_patterns("__pycache__", "*.so")
    for package in PACKAGES:
        shutil.copytree(root / package, source / package, ignore=ignore)
    for name in BUILD_FILES:
        shutil.copy2(root / name, source / name)
    env = {**os.environ, "LINLI_BUILD_MYPYC": "1", "LINLI_BUILD_MYPYC_MODULES": ",".join(chosen)}
    command = [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q"]
    done = subprocess.run(
        [*command, "-w", str(work / "dist"), str(source)],
        cwd=work,
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    wheels = sorted((work / "dist").glob("linli-*.whl"))
    if done.returncode != 0 or not wheels:
        raise BuildError(
            f"the compiled wheel failed ({done.returncode}): {(done.stdout + done.stderr)[-2000:]}"
        )
    with zipfile.ZipFile(wheels[0]) as wheel:
        wheel.extractall(unpacked)
    (unpacked / ".built").write_text("\n".join(chosen) + "\n", encoding="utf-8")
    shutil.rmtree(tree, ignore_errors=True)
    unpacked.rename(tree)
    shutil.rmtree(work, ignore_errors=True)
    return tree


@contextlib.contextmanager
def first_on_path(tree: Path | None) -> Iterator[None]:
    """Processes started inside find ``tree``'s packages first; this process's imports stay as they were.

    Spawned (multiprocessing) processes copy this process's ``sys.path``; other programs
    (`linli run` nodes) read ``PYTHONPATH``: the tree goes first on both, until the block ends.
    (Modules already imported here are not looked up again, and a package's submodules are found
    through its ``__path__``, not ``sys.path``.) Which of Linli's modules a process runs compiled
    is :func:`hub.ingest.hot_path.compiled_loaded`.
    """
    if tree is None:
        yield
        return
    entry = str(tree)
    previous = os.environ.get("PYTHONPATH")
    sys.path.insert(0, entry)
    os.environ["PYTHONPATH"] = os.pathsep.join(p for p in (entry, previous) if p)
    try:
        yield
    finally:
        with contextlib.suppress(ValueError):
            sys.path.remove(entry)
        if previous is None:
            os.environ.pop("PYTHONPATH", None)
        else:
            os.environ["PYTHONPATH"] = previous


def main() -> int:
    """``python -m bench.compiled``: build (or find) the compiled tree, print its path (make unit-compiled)."""
    try:
        print(build(CACHE))
    except BuildError as exc:
        print(exc, file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
