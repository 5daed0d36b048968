"""Where a site's care plans come from: the shipped defaults, then ``care.yaml`` next to the community file.

Issue 18: plans are "defaults by care flags, overridable per community/grid/resident". The
shipped ``hub/cases/care.yaml`` holds the defaults; a site puts its own ``care.yaml`` beside its
community file (the registry it describes), and each top-level key it writes replaces the
default's (``overrides`` are the site's alone: the shipped file has none). An override naming a
community, grid or resident the registry does not know is refused with the file and entry: a
typo must not leave an elder on the default plan silently.

Must not import: ``hub.web``, ``hub.ingest``, ``hub.app``, ``hub.cli``.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import yaml

from hub.cases.care import DEFAULT_PATH, CareFile, care_from
from hub.community.registry import Registry
from hub.errors import PolicyError

log = logging.getLogger(__name__)

#: The site file's name, in the community file's directory.
SITE_FILE = "care.yaml"


def _read(path: Path) -> dict[str, Any]:
    try:
        doc = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, yaml.YAMLError) as exc:
        raise PolicyError(f"cannot read care plans {path}: {exc}") from exc
    if doc is None:
        return {}
    if not isinstance(doc, dict):
        raise PolicyError(f"{path}: a care file is a mapping (flags, default, overrides …)")
    return doc


def site_care_path(community_file: Path | None) -> Path | None:
    """The site's care file if there is one next to the community file."""
    if community_file is None:
        return None
    path = community_file.parent / SITE_FILE
    return path if path.is_file() else None


def load_site_care(community_file: Path | None, registry: Registry) -> CareFile:
    """The defaults with the site file's keys over them, its overrides checked against ``registry``."""
    site = site_care_path(community_file)
    if site is None:
        return care_from(_read(DEFAULT_PATH), source=str(DEFAULT_PATH))
    care = care_from({**_read(DEFAULT_PATH), **_read(site)}, source=str(site))
    check_overrides(care, registry, source=str(site))
    log.info("care plans: %s over the defaults (%d overrides)", site, len(care.overrides))
    return care


def site_care_or_defaults(community_file: Path | None, registry: Registry) -> tuple[CareFile, str | None]:
    """:func:`load_site_care`, or the shipped defaults and why the site's file was refused.

    Care visits must not take SOS handling down: a typo in ``care.yaml``, or an override naming
    a resident of a community file that was itself refused at this start (the hub then runs on
    the registry it last imported), stopped every community's start (found in review). The
    hub starts on the defaults and says so (critical log, ``/readyz`` warning).
    """
    try:
        return load_site_care(community_file, registry), None
    except PolicyError as exc:
        refused = f"the care plans were refused ({exc}); the shipped defaults apply until it is fixed"
        log.critical("%s", refused)
        return load_site_care(None, registry), refused


def check_overrides(care: CareFile, registry: Registry, *, source: str) -> None:
    """Refuse an override whose community, grid or resident is not in the registry (or not together)."""
    problems: list[str] = []
    for index, override in enumerate(care.overrides):
        where = f"overrides[{index}]"
        community = next((c for c in registry.communities if c.code == override.community), None)
        if override.community is not None and community is None:
            problems.append(f"{where}: no community {override.community!r}")
        if override.grid is not None:
            found = registry.grid(override.grid)
            if found is None:
                problems.append(f"{where}: no grid {override.grid!r}")
            elif community is not None and found[0].code != community.code:
                problems.append(f"{where}: grid {override.grid!r} is not in community {community.code!r}")
        if override.resident is not None and registry.held_resident(override.resident) is None:
            problems.append(f"{where}: no resident {override.resident!r}")
        if override.community is None and override.grid is None and override.resident is None:
            problems.append(f"{where}: names no community, grid or resident")
    if problems:
        raise PolicyError(f"{source}: " + "; ".join(problems))
