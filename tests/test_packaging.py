"""Packaging: no distribution replaces another's module, the CLI imports no Grafana SDK, the
package ships its licence, type markers and ``python -m linli``."""

from __future__ import annotations

import importlib.metadata as metadata
import subprocess
import sys
import tomllib
import zipfile
from pathlib import Path

ROOT = Path(__file__).parents[1]
PACKAGES = ("hub", "adapters", "rules", "dashboards", "simulators", "linli")


def test_no_installed_distribution_shadows_another_top_level_module() -> None:
    # urllib3-future (pulled by grafana-client) installs a package named `urllib3`: two
    # distributions then own one import name and whichever was installed last wins silently.
    owners = metadata.packages_distributions()
    shared = {name: sorted(set(dists)) for name, dists in owners.items() if len(set(dists)) > 1}
    assert shared == {}


def test_urllib3_if_present_is_the_real_one() -> None:
    installed = {(d.metadata["Name"] or "").lower() for d in metadata.distributions()}
    assert "urllib3-future" not in installed and "grafana-client" not in installed
    assert metadata.packages_distributions().get("urllib3", ["urllib3"]) == ["urllib3"]


def test_importing_the_cli_loads_no_grafana_sdk() -> None:
    code = (
        "import sys, hub.cli; print(sorted(m for m in sys.modules if m.startswith(('grafana', 'urllib3'))))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=ROOT)
    assert out.stdout.strip() == "[]"


def test_python_dash_m_linli_runs_the_cli() -> None:
    out = subprocess.run(
        [sys.executable, "-m", "linli", "--help"], capture_output=True, text=True, check=True, cwd=ROOT
    )
    assert out.stdout.startswith("Usage: linli ")
    assert "config" in out.stdout and "backup" in out.stdout


def test_project_metadata() -> None:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"]
    assert project["license"] == "Apache-2.0"  # an SPDX expression (PEP 639)
    assert "Apache License" in (ROOT / "LICENSE").read_text(encoding="utf-8")[:200]
    assert not any(dep.startswith("grafana") for dep in project["dependencies"])
    assert any(
        dep.startswith("grafana-foundation-sdk") for dep in project["optional-dependencies"]["dashboards"]
    )
    assert "linli[dashboards]" in project["optional-dependencies"]["dev"]
    assert (ROOT / "CHANGELOG.md").is_file()


def test_every_package_has_a_py_typed_marker() -> None:
    for package in PACKAGES:
        assert (ROOT / package / "py.typed").is_file(), package


def test_the_wheel_ships_licence_markers_and_the_linli_package(tmp_path: Path) -> None:
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "--no-deps",
            "--no-build-isolation",
            "-q",
            "-w",
            str(tmp_path),
            str(ROOT),
        ],
        check=True,
        capture_output=True,
        cwd=tmp_path,
    )
    (wheel,) = tmp_path.glob("linli-*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())
    for package in PACKAGES:
        assert f"{package}/py.typed" in names, package
    assert "linli/__main__.py" in names
    assert any(n.endswith(".dist-info/licenses/LICENSE") for n in names)
    meta = next(n for n in names if n.endswith(".dist-info/METADATA"))
    text = zipfile.ZipFile(wheel).read(meta).decode()
    assert "License-Expression: Apache-2.0" in text
