"""Import and export the community registry: YAML documents and flat CSV lists.

Errors name the file, the row (CSV) and the field. Re-importing the same file changes
nothing; importing a changed file updates entries in place by id.
"""

from __future__ import annotations

import csv
import hashlib
import io
import re
from collections.abc import Iterable, Mapping, Sequence
from enum import StrEnum
from pathlib import Path
from typing import Any

import orjson
import yaml
from pydantic import ValidationError

from hub.community.compact import collector_paused
from hub.community.model import Community, CommunityFile, Device, Resident, dump_record, validate_record
from hub.errors import RegistryError
from hub.files import write_private

#: Beside the store: the SHA-256 of the community file the store last imported (read and written
#: by the functions below for hub.app's import and doctor; ``linli restore`` removes it with the
#: store it described).
IMPORTED_MARK = "community-file.sha256"


def file_digest(path: Path) -> str:
    """The SHA-256 of ``path`` as the import mark holds it (``OSError`` if it cannot be read)."""
    return hashlib.sha256(path.read_bytes()).hexdigest()


def imported_digest(data_dir: Path) -> str | None:
    """The digest in ``data_dir``'s import mark, if one is there and readable."""
    try:
        return (data_dir / IMPORTED_MARK).read_text(encoding="ascii").strip()
    except (OSError, UnicodeDecodeError):
        return None


def mark_imported(data_dir: Path, digest: str) -> None:
    """Write ``data_dir``'s import mark (private, replaced whole: :func:`hub.files.write_private`)."""
    write_private(data_dir / IMPORTED_MARK, (digest + "\n").encode("ascii"))


DEVICE_COLUMNS = (
    "community", "id", "kind", "model", "profile", "grid", "location", "place", "household", "resident",
    "heartbeat_s", "installed",
)  # fmt: skip
RESIDENT_COLUMNS = (
    "community", "id", "name", "household", "address", "phone", "age", "living_alone", "disabled",
    "cognitive_impairment", "emergency_contacts", "medical_notes",
)  # fmt: skip
_BOOL = {
    "true": True,
    "yes": True,
    "1": True,
    "是": True,
    "false": False,
    "no": False,
    "0": False,
    "否": False,
    "": False,
}


class CsvKind(StrEnum):
    DEVICES = "devices"
    RESIDENTS = "residents"


def _where(loc: Sequence[int | str], doc: Any) -> str:
    """``communities.0.devices.3.grid`` → ``communities[110105001001].devices[btn-1].grid``."""
    parts: list[str] = []
    node = doc
    for part in loc:
        if isinstance(part, int) and isinstance(node, list) and part < len(node):
            item = node[part]
            key = item.get("id", item.get("code")) if isinstance(item, dict) else None
            parts[-1] += f"[{key if key is not None else part}]"
            node = item
        else:
            parts.append(str(part))
            node = node.get(part) if isinstance(node, dict) else None
    return ".".join(parts)


_SAFE_LOADER: type[yaml.SafeLoader] = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


def _json_body(text: str) -> Any:
    """The document if ``text`` is JSON after its leading comment lines, else ``None``.

    JSON is YAML (a flow mapping with quoted keys), and a generated registry of 100 000
    devices is written as JSON: PyYAML builds a Python node per scalar (≈ 2 min for that
    file on these machines even with libyaml), ``orjson`` reads it in a fraction of a
    second. Anything that is not strict JSON (an unquoted key, a trailing comma) goes to the
    YAML loader, which reads it as before and names the error.
    """
    body = text.lstrip("\ufeff").lstrip()
    while body.startswith("#"):
        body = body.partition("\n")[2].lstrip()
    if not body.startswith("{"):
        return None
    try:
        return orjson.loads(body)
    except orjson.JSONDecodeError:
        return None


def _message(error: Mapping[str, Any]) -> str:
    """A validation error's text for people, the same for records as for models: pydantic says
    "Unexpected keyword argument" for a dataclass's unknown field (``model.RECORD``), "Extra
    inputs are not permitted" for a model's."""
    if error["type"] == "unexpected_keyword_argument":
        return "Extra inputs are not permitted"
    return str(error["msg"]).removeprefix("Value error, ")


def parse_yaml(text: str, *, file: str) -> tuple[Community, ...]:
    try:
        # libyaml's safe loader when present: 4x faster on a large registry (start-up time).
        with collector_paused():
            doc = _json_body(text)
            if doc is None:
                doc = yaml.load(text, Loader=_SAFE_LOADER)  # noqa: S506 - a safe loader
    except yaml.YAMLError as exc:
        raise RegistryError(f"not valid YAML: {exc}", file=file) from None
    try:
        with collector_paused():
            return CommunityFile.model_validate(doc).communities
    except ValidationError as exc:
        error = exc.errors()[0]
        raise RegistryError(_message(error), file=file, field=_where(error["loc"], doc)) from None


def read_text(path: Path) -> str:
    """A registry file's text: a file that is not UTF-8 is a :class:`RegistryError` like any
    other bad file. Found in review: a copy cut inside a Chinese character, or a file saved as
    GBK (Excel's and Windows' default here), escaped as ``UnicodeDecodeError``, so the start
    did not fall back to the last import and every community's SOS handling stopped."""
    try:
        return path.read_text(encoding="utf-8")
    except OSError as exc:
        raise RegistryError(f"cannot read: {exc.strerror}", file=str(path)) from None
    except UnicodeDecodeError as exc:
        raise RegistryError(
            f"not UTF-8 text at byte {exc.start} (cut short, or saved as GBK: save it as UTF-8)",
            file=str(path),
        ) from None


def load_yaml(path: Path) -> tuple[Community, ...]:
    return parse_yaml(read_text(path), file=str(path))


def dump_yaml(communities: Iterable[Community]) -> str:
    doc = CommunityFile(communities=tuple(communities)).model_dump(mode="json", exclude_defaults=True)
    doc["version"] = 1
    return yaml.safe_dump(doc, allow_unicode=True, sort_keys=False)


def _row_value(column: str, raw: str) -> Any:
    value = raw.strip()
    if column in ("living_alone", "disabled", "cognitive_impairment"):
        if value.lower() not in _BOOL:
            raise ValueError(f"{column} must be true/false, got {value!r}")
        return _BOOL[value.lower()]
    if column == "emergency_contacts":
        contacts = []
        for item in filter(None, (v.strip() for v in _split(value, ";"))):
            name, relation, phone, contact_id = [*_split(item, "|"), "", "", ""][:4]
            contact = {"name": _unescape(name), "relation": _unescape(relation), "phone": _unescape(phone)}
            if contact_id:
                contact["id"] = _unescape(contact_id)
            contacts.append(contact)
        return contacts
    return value if value != "" else None


#: A cell starting with one of these is a formula to Excel and WPS (OWASP "CSV injection"): an
#: export opened there could run ``=HYPERLINK(…)`` with an elder's data (found in review).
_FORMULA_START = ("=", "+", "-", "@", "\t", "\r")


def _cell_out(value: str) -> str:
    """A cell as exported: a leading ``'`` keeps a formula-like value text (``+86…`` included),
    and one before a value that starts with ``'`` itself, so the import takes back exactly one."""
    return "'" + value if value.startswith((*_FORMULA_START, "'")) else value


def _cell_in(value: str) -> str:
    """An imported cell: the ``'`` :func:`_cell_out` put before a formula-like value taken off."""
    return value[1:] if value.startswith("'") and value[1:].startswith((*_FORMULA_START, "'")) else value


#: What a backslash escapes in a contacts cell; before anything else it is a backslash (so an
#: export from before the escapes, ``C:\Users\张三``, reads as it did).
_ESCAPED = frozenset("\\|;")
_ESCAPED_CLASS = "[" + re.escape("".join(sorted(_ESCAPED))) + "]"
_TO_ESCAPE = re.compile(f"({_ESCAPED_CLASS})")
_ESCAPE = re.compile(f"\\\\({_ESCAPED_CLASS})")


def _escape(text: str) -> str:
    return _TO_ESCAPE.sub(r"\\\1", text)


def _unescape(text: str) -> str:
    return _ESCAPE.sub(r"\1", text)


def _split(text: str, separator: str) -> list[str]:
    """``text`` split at each ``separator`` not escaped by a backslash (the parts still escaped)."""
    parts: list[str] = []
    start = index = 0
    while index < len(text):
        if text[index] == "\\" and index + 1 < len(text) and text[index + 1] in _ESCAPED:
            index += 2
            continue
        if text[index] == separator:
            parts.append(text[start:index])
            start = index + 1
        index += 1
    parts.append(text[start:])
    return parts


def _contacts_cell(contacts: Iterable[Mapping[str, Any]]) -> str:
    """``name|relation|phone[|id];…``, separators in a value escaped: a guardian's id (their 评价
    link) and a relation such as ``儿子;长子`` survive an export and import (found in review:
    the id was dropped, and the relation split into a second contact)."""
    return ";".join(
        "|".join(
            _escape(str(c.get(key) or ""))
            for key in ("name", "relation", "phone", *(("id",) if c.get("id") else ()))
        )
        for c in contacts
    )


def parse_csv(
    text: str, *, file: str, kind: CsvKind | None = None
) -> tuple[CsvKind, list[tuple[int, str, Device | Resident]]]:
    """Rows as (row number, community code, Device | Resident); row 1 is the header."""
    reader = csv.DictReader(io.StringIO(text.lstrip("\ufeff")))  # Excel writes a BOM
    header = tuple(reader.fieldnames or ())
    if kind is None:
        kind = CsvKind.DEVICES if "kind" in header else CsvKind.RESIDENTS
    expected = DEVICE_COLUMNS if kind is CsvKind.DEVICES else RESIDENT_COLUMNS
    unknown = [c for c in header if c not in expected]
    if unknown:
        raise RegistryError(
            f"unknown column(s) {unknown}; expected {list(expected)}", file=file, field=unknown[0]
        )
    for column in ("community", "id"):
        if column not in header:
            raise RegistryError(f"missing column {column!r}", file=file, field=column)
    model: type[Device] | type[Resident] = Device if kind is CsvKind.DEVICES else Resident
    rows: list[tuple[int, str, Device | Resident]] = []
    for number, raw in enumerate(reader, start=2):
        community = (raw.pop("community") or "").strip()
        if not community:
            raise RegistryError("community is empty", file=file, field=f"row {number}: community")
        values: dict[str, Any] = {}
        for column, cell in raw.items():
            if column is None:
                raise RegistryError("more cells than columns", file=file, field=f"row {number}")
            try:
                value = _row_value(column, _cell_in(cell or ""))
            except ValueError as exc:
                raise RegistryError(str(exc), file=file, field=f"row {number}: {column}") from None
            if value is not None:
                values[column] = value
        try:
            rows.append((number, community, validate_record(model, values)))
        except ValidationError as exc:
            error = exc.errors()[0]
            field = ".".join(map(str, error["loc"]))
            raise RegistryError(_message(error), file=file, field=f"row {number}: {field}") from None
    return kind, rows


def merge_rows(
    communities: Mapping[str, Community],
    kind: CsvKind,
    rows: Sequence[tuple[int, str, Device | Resident]],
    *,
    file: str,
) -> dict[str, Community]:
    """Apply CSV rows to the communities by id (update in place, append new); revalidate each community."""
    result = dict(communities)
    by_community: dict[str, list[tuple[int, Device | Resident]]] = {}
    for number, code, item in rows:
        if code not in result:
            raise RegistryError(
                f"unknown community {code}; import its YAML first",
                file=file,
                field=f"row {number}: community",
            )
        by_community.setdefault(code, []).append((number, item))
    field_name = "devices" if kind is CsvKind.DEVICES else "residents"
    for code, items in by_community.items():
        current: dict[str, Device | Resident] = {x.id: x for x in getattr(result[code], field_name)}
        for _, item in items:
            current[item.id] = item
        doc = result[code].model_dump()
        doc[field_name] = [dump_record(x) for x in current.values()]
        try:
            result[code] = Community.model_validate(doc)
        except ValidationError as exc:
            message = _message(exc.errors()[0])
            row = next((n for n, item in items if item.id in message), items[0][0])
            raise RegistryError(message, file=file, field=f"row {row}") from None
    return result


def dump_csv(communities: Iterable[Community], kind: CsvKind) -> str:
    out = io.StringIO()
    columns = DEVICE_COLUMNS if kind is CsvKind.DEVICES else RESIDENT_COLUMNS
    writer = csv.DictWriter(out, fieldnames=columns, lineterminator="\n")
    writer.writeheader()
    for community in communities:
        items: Sequence[Device | Resident] = (
            community.devices if kind is CsvKind.DEVICES else community.residents
        )
        for item in items:
            row = dump_record(item, mode="json")
            if kind is CsvKind.RESIDENTS:
                row["emergency_contacts"] = _contacts_cell(row["emergency_contacts"])
            writer.writerow(
                {
                    "community": community.code,
                    **{
                        k: "" if v is None else _cell_out(v) if isinstance(v, str) else v
                        for k, v in row.items()
                    },
                }
            )
    return out.getvalue()
