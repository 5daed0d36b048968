"""Linli's build: metadata lives in pyproject.toml; this file only adds the optional compiled hot path.

``LINLI_BUILD_MYPYC=1`` compiles the modules of ``hub/ingest/hot_path.py`` with mypyc into the wheel, beside
their sources (``make wheel-compiled``; deploy/Dockerfile). It needs mypy (the dev lockfile
pins it), a C compiler and Python's headers, and is built without build isolation:

    LINLI_BUILD_MYPYC=1 .venv/bin/pip wheel --no-deps --no-build-isolation -w dist .

Without the variable the wheel is pure Python, as before. An editable install is refused with
the variable set: the extensions would sit in the checkout beside sources that go on changing,
and Python imports an extension before the source next to it, so an edit would silently not run.
"""

from __future__ import annotations

import os
import runpy
import sys
from pathlib import Path

from setuptools import setup

ROOT = Path(__file__).resolve().parent


def _ext_modules() -> list[object]:
    if os.environ.get("LINLI_BUILD_MYPYC", "") not in {"1", "true", "yes"}:
        return []
    if "editable_wheel" in sys.argv or "develop" in sys.argv:
        raise SystemExit(
            "LINLI_BUILD_MYPYC=1 builds a wheel (make wheel-compiled), not an editable install: compiled "
            "modules in the checkout would shadow every later edit of their sources"
        )
    from mypyc.build import mypycify  # noqa: PLC0415 (only a compiled build needs mypy)

    modules = list(runpy.run_path(str(ROOT / "hub" / "ingest" / "hot_path.py"))["MODULES"])
    # A few of them only: the build's own test (tests/test_bench_compiled.py) keeps its compile short.
    if only := [m for m in os.environ.get("LINLI_BUILD_MYPYC_MODULES", "").split(",") if m]:
        unknown = sorted(set(only) - set(modules))
        if unknown:
            raise SystemExit(
                f"LINLI_BUILD_MYPYC_MODULES names modules outside hub/ingest/hot_path.py: {unknown}"
            )
        modules = only
    # opt_level 3: mypyc's default, spelled out; the measured figures are for it.
    return list(mypycify(modules, opt_level="3"))


setup(ext_modules=_ext_modules())
