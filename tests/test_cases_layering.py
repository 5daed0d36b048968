"""hub.cases and hub.channels stay pure cores: no imports of the wiring above them."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).parents[1]
FORBIDDEN = ("hub.pipeline", "hub.api", "hub.app", "hub.cli", "hub.demo", "simulators", "dashboards")
EXTRA = {"cases": ("hub.channels", "hub.dispatch", "aiohttp"), "channels": ("hub.dispatch", "hub.store")}


def imported(path: Path) -> set[str]:
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module)
    return found


@pytest.mark.parametrize("package", sorted(EXTRA))
def test_no_upward_imports(package: str) -> None:
    banned = (*FORBIDDEN, *EXTRA[package])
    offenders = {
        str(p.relative_to(ROOT)): sorted(m for m in imported(p) if m.startswith(banned))
        for p in sorted((ROOT / "hub" / package).rglob("*.py"))
    }
    assert {k: v for k, v in offenders.items() if v} == {}


@pytest.mark.parametrize("package", sorted(EXTRA))
def test_package_docstring_says_what_it_owns(package: str) -> None:
    doc = (
        ast.get_docstring(ast.parse((ROOT / "hub" / package / "__init__.py").read_text(encoding="utf-8")))
        or ""
    )
    assert "Owns" in doc and "must not import" in doc.lower()
