"""Packaging: no distribution replaces another's module, the CLI imports no Grafana SDK, the
package ships its licence, type markers and ``python -m linli``."""

from __future__ import annotations

import importlib.metadata as metadata
import subprocess
import sys
import tomllib
import zipfile
from pathlib import Path

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

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
    assert set(project["optional-dependencies"]["dashboards"]) <= set(project["optional-dependencies"]["dev"])
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


def _pins(lock: Path) -> dict[str, str]:
    pins = {}
    for line in lock.read_text(encoding="utf-8").splitlines():
        if "==" in line and not line.startswith((" ", "#")):
            name, version = line.split(" ")[0].split("==")
            pins[canonicalize_name(name)] = version
    return pins


def test_lockfiles_pin_every_declared_dependency_within_its_range() -> None:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"]
    extras = project["optional-dependencies"]
    for lock, declared in (
        ("requirements.lock", project["dependencies"]),
        ("requirements-dev.lock", project["dependencies"] + extras["dashboards"] + extras["dev"]),
    ):
        pins = _pins(ROOT / lock)
        for raw in declared:
            req = Requirement(raw)
            if req.name == "linli":
                continue
            name = canonicalize_name(req.name)
            assert name in pins, f"{lock} lacks {req.name}: run `make lock`"
            assert req.specifier.contains(pins[name], prereleases=True), (
                f"{lock}: {name}=={pins[name]} ∉ {req}"
            )
        assert "grafana-client" not in pins and "urllib3-future" not in pins
    lock_text = (ROOT / "requirements-dev.lock").read_text(encoding="utf-8")
    assert "--hash=sha256:" in lock_text and "file://" not in lock_text
