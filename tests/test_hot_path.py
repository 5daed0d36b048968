"""The compiled build (hub/ingest/hot_path.py, setup.py): which build a test run runs, and the build's guards.

``make unit`` runs the checkout's sources: not one module of the hot path may load compiled there
(a stray extension in the checkout would shadow every edit of its source). ``make unit-compiled``
runs the hot path's tests on the compiled wheel (``LINLI_DEV_EXPECT_COMPILED=1``): every module must
load compiled, or that run would be testing the sources a second time.
"""

from __future__ import annotations

import ast
import dataclasses
import importlib
import os
import subprocess
import sys
from pathlib import Path

import httpx
import pytest

from adapters.events import Event, EventKind
from hub.app import Hub
from hub.clock import ManualClock
from hub.ingest import hot_path
from hub.timeseries.line_protocol import Point
from tests.helpers import TOKEN, hub_settings
from tests.support.servers import Broker

#: 2026-11-23 02:13 Asia/Shanghai: any fixed time; the hub only has to start.
PRESS = 1_795_371_180.0

ROOT = Path(__file__).resolve().parents[1]
EXPECT_COMPILED = os.environ.get("LINLI_DEV_EXPECT_COMPILED") == "1"


def _import_hot_path() -> list[str]:
    names = hot_path.module_names()
    for name in names:
        importlib.import_module(name)
    return names


def test_the_run_uses_the_build_it_means_to() -> None:
    names = _import_hot_path()
    loaded = hot_path.compiled_loaded()
    if EXPECT_COMPILED:
        assert loaded == names
        assert hot_path.describe() == {"build": "compiled", "compiled": len(names), "modules": len(names)}
    else:
        assert loaded == [], "compiled modules imported from the checkout: remove the stray *.so files"
        assert hot_path.describe()["build"] == "pure"


@pytest.mark.parametrize("make", ["event", "point"])
def test_events_and_points_are_frozen_on_either_build(make: str) -> None:
    """Compiled, ``Event`` and ``Point`` fill their slots with the module's own native stores
    (frozen's ``__setattr__`` would refuse an interpreted one): the instance is what the
    arguments say, and refuses assignment from outside on both builds."""
    made: Event | Point
    if make == "event":
        made = Event("d1", EventKind.BATTERY, 12.5, "z2m", 80.0)
        assert (made.device_id, made.kind, made.ts, made.family, made.value, made.attrs) == (
            "d1",
            EventKind.BATTERY,
            12.5,
            "z2m",
            80.0,
            {},
        )
        assert made == Event("d1", EventKind.BATTERY, 12.5, "z2m", 80.0, {})
    else:
        made = Point(measurement="m", tags=(("grid", "g1"),), fields=(("v", 1.0),), ts=3.0)
        assert (made.measurement, made.tags, made.fields, made.ts, made.head) == (
            "m",
            (("grid", "g1"),),
            (("v", 1.0),),
            3.0,
            "",
        )
    with pytest.raises((dataclasses.FrozenInstanceError, AttributeError)):
        made.ts = 99.0  # type: ignore[misc]
    assert made.ts != 99.0


def test_the_hot_path_names_existing_modules_once() -> None:
    assert len(set(hot_path.MODULES)) == len(hot_path.MODULES)
    for path in hot_path.MODULES:
        assert (ROOT / path).is_file(), path
    assert hot_path.module_names(["adapters/_json.py", "rules/triggers/base.py"]) == [
        "adapters._json",
        "rules.triggers.base",
    ]


def test_the_list_is_readable_before_anything_is_built() -> None:
    # setup.py and bench/compiled.py read MODULES with runpy, before Linli can be imported.
    tree = ast.parse((ROOT / "hub" / "ingest" / "hot_path.py").read_text(encoding="utf-8"))
    imported = {
        alias.name.split(".")[0]
        for node in ast.walk(tree)
        if isinstance(node, ast.Import)
        for alias in node.names
    } | {
        node.module.split(".")[0]
        for node in ast.walk(tree)
        if isinstance(node, ast.ImportFrom) and node.module
    }
    assert imported <= {"__future__", "importlib", "sys", "collections"}


def test_a_module_not_imported_counts_as_neither() -> None:
    assert hot_path.compiled_loaded(["hub.no_such_module"]) == []


def _setup(*args: str, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "setup.py", *args],
        cwd=ROOT,
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def test_a_compiled_editable_install_is_refused() -> None:
    # An extension in the checkout is imported before the source beside it: every later edit
    # of that source would silently not run.
    done = _setup("editable_wheel", LINLI_BUILD_MYPYC="1")
    assert done.returncode != 0
    assert "not an editable install" in done.stderr


def test_a_module_outside_the_hot_path_is_refused() -> None:
    done = _setup("--version", LINLI_BUILD_MYPYC="1", LINLI_BUILD_MYPYC_MODULES="hub/app.py")
    assert done.returncode != 0
    assert "outside hub/ingest/hot_path.py" in done.stderr and "hub/app.py" in done.stderr


@pytest.mark.parametrize("value", ["", "0", "no"])
def test_without_the_variable_the_build_is_pure(value: str) -> None:
    done = _setup("--version", LINLI_BUILD_MYPYC=value)
    assert done.returncode == 0, done.stderr
    assert "mypyc" not in done.stdout + done.stderr


async def test_the_running_hub_says_which_build_runs(tmp_path: Path, embedded_broker: Broker) -> None:
    expected = {
        "build": "compiled" if EXPECT_COMPILED else "pure",
        "compiled": len(hot_path.MODULES) if EXPECT_COMPILED else 0,
        "modules": len(hot_path.MODULES),
    }
    settings = hub_settings(tmp_path, embedded_broker)
    async with Hub(settings=settings, clock=ManualClock(start=PRESS)) as hub:
        base = f"http://127.0.0.1:{hub.http_port}"
        async with httpx.AsyncClient(base_url=base) as client:
            stats = await client.get("/api/stats", headers={"Authorization": f"Bearer {TOKEN}"})
    assert stats.status_code == 200, stats.text
    assert stats.json()["hot_path"] == expected
