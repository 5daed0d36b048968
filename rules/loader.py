"""Load rule packs from YAML files, with errors that name the file, rule and field."""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

import yaml
from pydantic import ValidationError

from rules.errors import RuleError
from rules.model import Pack, Rule

#: The packs shipped with Linli.
BUILTIN_PACKS = Path(__file__).parent / "packs"


def load_pack(path: Path) -> Pack:
    try:
        doc = yaml.safe_load(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise RuleError(f"cannot read: {exc.strerror}", file=str(path)) from None
    except yaml.YAMLError as exc:
        raise RuleError(f"not valid YAML: {exc}", file=str(path)) from None
    try:
        return Pack.model_validate(doc)
    except ValidationError as exc:
        first = exc.errors()[0]
        loc = [str(part) for part in first["loc"]]
        rule = ""
        if len(loc) >= 2 and loc[0] == "rules" and isinstance(doc, dict):
            index = int(loc[1])
            raw = doc.get("rules") or []
            rule = str(raw[index].get("id", f"#{index}")) if isinstance(raw[index], dict) else f"#{index}"
            loc = loc[2:]
        raise RuleError(first["msg"], file=str(path), rule=rule, field=".".join(loc)) from None


def load_packs(paths: Iterable[Path] = (BUILTIN_PACKS,)) -> list[Rule]:
    """Load every ``*.yaml`` pack in the given files or directories; rule ids must be unique."""
    rules: list[Rule] = []
    seen: dict[str, str] = {}
    for root in paths:
        files = sorted(root.glob("*.yaml")) if root.is_dir() else [root]
        for file in files:
            for rule in load_pack(file).rules:
                if rule.id in seen:
                    raise RuleError(
                        f"duplicate rule id (also in {seen[rule.id]})", file=str(file), rule=rule.id
                    )
                seen[rule.id] = str(file)
                rules.append(rule)
    return rules
