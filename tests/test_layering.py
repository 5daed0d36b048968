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


#: hub's own layers, lowest first: a module imports only from layers strictly below its own,
#: so units of one layer never import each other (ingest ↛ casework, community ↛ config …).
#: Mirrors hub/__init__.py: app/demo/cli → web → health → casework, ingest, cluster → notify →
#: storage → cases → community, config → channels, mqtt, timeseries, broker → records → clock,
#: errors, files, steps.
HUB_LAYERS: tuple[tuple[str, ...], ...] = (
    ("hub.clock", "hub.errors", "hub.files", "hub.steps"),
    ("hub.records",),
    ("hub.channels", "hub.mqtt", "hub.timeseries", "hub.broker"),
    ("hub.community", "hub.config"),
    ("hub.cases",),
    ("hub.storage",),
    ("hub.notify",),
    ("hub.casework", "hub.ingest", "hub.cluster"),
    ("hub.health",),
    ("hub.web",),
    ("hub.app",),
    ("hub.demo",),
    ("hub.cli",),
)
LAYER_OF = {unit: depth for depth, units in enumerate(HUB_LAYERS) for unit in units}
#: At most this many loose modules at hub/ top level (``__init__`` included).
MAX_LOOSE_HUB_MODULES = 9


def hub_unit(module: str) -> str:
    """``hub.ingest.pipeline`` → ``hub.ingest``; ``hub.app`` → ``hub.app``."""
    return ".".join(module.split(".")[:2])


def hub_imports_of(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names if alias.name.startswith("hub."))
        elif (
            isinstance(node, ast.ImportFrom)
            and node.module
            and node.level == 0
            and node.module.startswith("hub.")
        ):
            found.add(node.module)
    return found


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


def test_every_hub_unit_has_a_layer() -> None:
    units = {hub_unit(".".join(p.relative_to(ROOT).with_suffix("").parts)) for p in modules("hub")}
    assert units - {"hub.__init__"} == set(LAYER_OF)


@pytest.mark.parametrize("path", modules("hub"), ids=str)
def test_hub_imports_point_down_only(path: Path) -> None:
    unit = hub_unit(".".join(path.relative_to(ROOT).with_suffix("").parts))
    if unit == "hub.__init__":
        return
    upward = sorted(
        module
        for module in hub_imports_of(path)
        if hub_unit(module) != unit and LAYER_OF[hub_unit(module)] >= LAYER_OF[unit]
    )
    assert upward == [], f"{unit} (layer {LAYER_OF[unit]}) imports {upward}"


def test_hub_top_level_stays_small() -> None:
    loose = sorted(p.name for p in (ROOT / "hub").glob("*.py"))
    assert len(loose) <= MAX_LOOSE_HUB_MODULES, loose


@pytest.mark.parametrize("folder", sorted(p.parent for p in (ROOT / "hub").glob("*/__init__.py")), ids=str)
def test_every_hub_folder_says_what_it_owns_and_must_not_import(folder: Path) -> None:
    doc = ast.get_docstring(ast.parse((folder / "__init__.py").read_text(encoding="utf-8"))) or ""
    assert "owns" in doc.lower()
    assert "must not import" in doc.lower()
