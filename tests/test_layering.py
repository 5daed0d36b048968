"""The design card's layering: data flows one way and packages import only downwards."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).parents[1]
PACKAGES = ("hub", "adapters", "rules", "dashboards", "simulators")
FORBIDDEN = {
    "adapters": {"hub", "rules", "simulators", "dashboards"},
    "rules": {"hub", "simulators", "dashboards"},
    "simulators": {"hub", "rules", "dashboards"},
    "dashboards": {"hub", "adapters", "rules", "simulators"},
}


def imports_of(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module.split(".")[0])
    return found


def modules(package: str) -> list[Path]:
    return sorted((ROOT / package).rglob("*.py"))


@pytest.mark.parametrize("package", sorted(FORBIDDEN))
def test_package_imports_nothing_above_it(package: str) -> None:
    offenders = {
        str(p.relative_to(ROOT)): sorted(imports_of(p) & FORBIDDEN[package]) for p in modules(package)
    }
    assert {k: v for k, v in offenders.items() if v} == {}


@pytest.mark.parametrize("package", ["simulators", "dashboards"])
def test_only_the_cli_imports_simulators_and_dashboards(package: str) -> None:
    importers = [
        str(p.relative_to(ROOT))
        for pkg in PACKAGES
        if pkg != package
        for p in modules(pkg)
        if package in imports_of(p)
    ]
    assert importers and all(path.startswith("hub/cli/") for path in importers), importers


@pytest.mark.parametrize("package", PACKAGES)
def test_every_package_says_what_it_owns_and_must_not_import(package: str) -> None:
    doc = ast.get_docstring(ast.parse((ROOT / package / "__init__.py").read_text(encoding="utf-8"))) or ""
    assert "Owns" in doc or "owns" in doc
    assert "must not import" in doc.lower()


@pytest.mark.parametrize("path", [p for pkg in PACKAGES for p in modules(pkg)], ids=str)
def test_future_annotations_everywhere(path: Path) -> None:
    text = path.read_text(encoding="utf-8")
    if imports_of(path):
        assert "from __future__ import annotations" in text
