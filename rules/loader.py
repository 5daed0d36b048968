"""Load rule packs from YAML files, with errors that name the file, rule and field."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

from rules.errors import RuleError
from rules.model import TRIGGER_TYPES, Pack, Rule

#: The packs shipped with Linli.
BUILTIN_PACKS = Path(__file__).parent / "packs"


def _field_path(loc: Sequence[int | str], error_type: str) -> list[str]:
    """A user's view of a pydantic location: without the discriminated union's tag.

    ``trigger.duration.for`` becomes ``trigger.for``; an unknown ``type`` is reported on
    ``trigger.type``.
    """
    parts = [str(p) for p in loc]
    out: list[str] = []
    for i, part in enumerate(parts):
        if i > 0 and parts[i - 1] == "trigger" and part in TRIGGER_TYPES:
            continue
        out.append(part)
    if error_type in ("union_tag_invalid", "union_tag_not_found"):
        out.append("type")
    return out


def _rule_name(doc: Any, index: int) -> str:
    raw = doc.get("rules") if isinstance(doc, dict) else None
    if isinstance(raw, list) and index < len(raw) and isinstance(raw[index], dict):
        return str(raw[index].get("id", f"#{index}"))
    return f"#{index}"


#: A rule pack is a few kilobytes; the shipped ones are under 20 000 characters.
MAX_PACK_CHARS = 1_000_000


def load_pack(path: Path) -> Pack:
    try:
        # The size before the text: a huge file (or a link to /dev/zero) is not read into memory.
        with path.open("rb") as handle:
            raw = handle.read(MAX_PACK_CHARS * 4 + 1)  # a character is at most 4 bytes of UTF-8
        text = raw.decode("utf-8")
        if len(raw) > MAX_PACK_CHARS * 4 or len(text) > MAX_PACK_CHARS:
            raise RuleError(f"larger than {MAX_PACK_CHARS} characters: not a rule pack", file=str(path))
        doc = yaml.safe_load(text)
    except OSError as exc:
        raise RuleError(f"cannot read: {exc.strerror}", file=str(path)) from None
    except UnicodeDecodeError:
        raise RuleError("not UTF-8 text", file=str(path)) from None
    except yaml.YAMLError as exc:
        raise RuleError(f"not valid YAML: {exc}", file=str(path)) from None
    except RecursionError:
        # Thousands of nested brackets exhaust the parser's stack (found in review: the error
        # escaped the loader, and the reload task died of it).
        raise RuleError("nested too deeply to be a rule pack", file=str(path)) from None
    try:
        return Pack.model_validate(doc)
    except RecursionError:
        raise RuleError("nested too deeply to be a rule pack", file=str(path)) from None
    except ValidationError as exc:
        errors = exc.errors()
        first = errors[0]
        loc = _field_path(first["loc"], first["type"])
        rule = ""
        if len(loc) >= 2 and loc[0] == "rules" and loc[1].isdigit():
            rule = _rule_name(doc, int(loc[1]))
            loc = loc[2:]
        message = first["msg"].removeprefix("Value error, ")
        if len(errors) > 1:
            message += f" (and {len(errors) - 1} more error{'s' if len(errors) > 2 else ''})"
        raise RuleError(message, file=str(path), rule=rule, field=".".join(loc)) from None


def pack_files(paths: Iterable[Path]) -> list[Path]:
    files: list[Path] = []
    for root in paths:
        files.extend(sorted(root.glob("*.yaml")) if root.is_dir() else [root])
    return files


def load_packs(paths: Iterable[Path] = (BUILTIN_PACKS,)) -> list[Rule]:
    """Load every ``*.yaml`` pack in the given files or directories; rule ids must be unique.

    Raises :class:`rules.errors.RuleError` naming the file, rule and field at fault (this
    is what ``linli rules check`` reports).
    """
    rules: list[Rule] = []
    seen: dict[str, str] = {}
    for file in pack_files(paths):
        for rule in load_pack(file).rules:
            if rule.id in seen:
                raise RuleError(f"duplicate rule id (also in {seen[rule.id]})", file=str(file), rule=rule.id)
            seen[rule.id] = str(file)
            rules.append(rule)
    return rules
