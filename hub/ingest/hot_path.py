"""The hot path's modules: what a compiled build compiles with mypyc, and what this process runs compiled.

Linli is pure Python and runs as such from any checkout or plain wheel. A wheel built with
``LINLI_BUILD_MYPYC=1`` (``setup.py``; ``make wheel-compiled``; ``deploy/Dockerfile``) also carries
the modules of :data:`MODULES` compiled to C extensions by mypyc, next to their sources. Python's
path finder tries extension suffixes before ``.py`` in each directory, so the compiled module is
the one imported; where none was built for the interpreter (another Python version, no
compiler at build time) the source is, and computes the same: ``make test`` runs the hot
path's tests on both builds (``make unit-compiled``). Measured: the compiled build does the
benchmark's full work at 1.6–1.8× less CPU per message (docs/benchmarks.md, "Twenty-sixth pass").

The list is every module of ``Pipeline.handle``'s path that mypyc compiles as written. The rest
(pydantic models, the loader, casework, storage, the web) is not on the per-message path and
stays pure. A module added here must keep working compiled: no monkeypatching of its classes,
annotations that hold at run time (mypyc checks them where a value enters typed code).

Imports nothing of Linli's and nothing outside the standard library: ``setup.py`` reads
:data:`MODULES` from this file before anything is built.
"""

from __future__ import annotations

import importlib.machinery
import sys
from collections.abc import Sequence

#: Source files (relative to the repository root), compiled together into one extension group.
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
    "hub/timeseries/pending.py",
    "hub/community/registry.py",
    "hub/clock.py",
)


def module_names(files: Sequence[str] = MODULES) -> list[str]:
    """``adapters/_json.py`` → ``adapters._json``."""
    return [path.removesuffix(".py").replace("/", ".") for path in files]


def compiled_loaded(names: Sequence[str] | None = None) -> list[str]:
    """Of ``names`` (default: the hot path), the modules this process has loaded from an extension.

    Only modules already imported are looked at (nothing is imported here): a module not loaded
    yet is neither compiled nor pure in this process.
    """
    suffixes = tuple(importlib.machinery.EXTENSION_SUFFIXES)
    loaded = []
    for name in module_names() if names is None else names:
        module = sys.modules.get(name)
        if module is not None and str(getattr(module, "__file__", "") or "").endswith(suffixes):
            loaded.append(name)
    return loaded


def describe() -> dict[str, int | str]:
    """What ``/api/stats`` and the start-up log say of the build: ``compiled`` of ``modules``."""
    compiled = len(compiled_loaded())
    build = "compiled" if compiled == len(MODULES) else "pure" if compiled == 0 else "mixed"
    return {"build": build, "compiled": compiled, "modules": len(MODULES)}
