"""A community row's start-up copy: its parsed document in ``marshal`` form, strings shared,
its many records as columns.

Why: at 100 000 devices a restart spent 1.3–2 s turning the community row (44 MB of JSON)
into dicts — ``orjson.loads`` 0.4–1.0 s, then 0.9 s making repeated strings one object
(:mod:`hub.community.compact`) — before the registry's models were built
(docs/benchmarks.md, "Eighth pass"). ``marshal`` writes a shared object once and refers to
it after, so the shared document reads back in ≈ 0.45 s, already shared.

The JSON ``doc`` stays the row's truth; ``packed`` is derived from it and only trusted when
it provably is: it names the marshal format and the Python version that wrote it (marshal is
not guaranteed across versions), and carries the digest of the ``doc`` it was made from and
of its own body. Anything else — another version, a ``doc`` edited without it, a damaged
blob, a document for another community — reads the JSON instead, and the copy is made again
(by a child process once the hub is up: :mod:`hub.storage.community_copies`).

The devices, residents (their emergency contacts nested) and households are written as
columns (:mod:`hub.community.columns`), not a dict each: a dict per record, freed once the
records were built, left the restarted hub ≈ 60 MB of pages it could not hand back
(docs/benchmarks.md, "Thirty-fourth pass").

``marshal`` is not meant for untrusted input; the checks are against stale and damaged
copies, and the store is the hub's own private database (an attacker who can write it can
rewrite every device's grid already).

Must not import the store or the registry: bytes in, dicts out.
"""

from __future__ import annotations

import hashlib
import marshal
import sys
from typing import Any

import orjson

from hub.community.columns import is_table, tabulate
from hub.community.compact import share_strings

#: Format 4: object references (a shared string is written once).
MARSHAL_VERSION = 4
#: Below this much JSON a copy saves nothing worth a process (≈ 2 300 devices; 44 MB at 10⁵).
WORTH_BYTES = 1 << 20
#: ``LNP1`` held the parsed document as it was; ``LNP2`` its records as columns. A copy of
#: another format is not sound: the JSON is read and the copy made again.
_MAGIC = b"LNP2"
#: What building a community from a copy that passed its digests may still raise, if the
#: version that wrote it had a bug: the JSON is read instead (``Store._community``).
COPY_ERRORS = (ValueError, TypeError, KeyError, IndexError, AttributeError)
_DIGEST = 16
_HEADER = len(_MAGIC) + 3 + 2 * _DIGEST


def _writer() -> bytes:
    return bytes((MARSHAL_VERSION, sys.version_info.major, sys.version_info.minor))


def _digest(data: bytes | memoryview) -> bytes:
    return hashlib.blake2b(data, digest_size=_DIGEST).digest()


def pack(doc: bytes, parsed: dict[str, Any]) -> bytes:
    """The start-up copy of a row whose JSON is ``doc`` and parsed form (strings shared) ``parsed``."""
    body = marshal.dumps(tabulated(parsed), MARSHAL_VERSION)
    return _MAGIC + _writer() + _digest(doc) + _digest(body) + body


def unpack(doc: bytes, stored: bytes | memoryview | None, *, code: str) -> dict[str, Any] | None:
    """``doc`` parsed and :func:`tabulated`, from ``stored`` (the row's copy, as the engine gives
    it) if that is a sound copy of it; ``None``: parse the JSON."""
    if stored is None:
        return None
    packed = bytes(stored)
    if len(packed) < _HEADER or not packed.startswith(_MAGIC):
        return None
    head = len(_MAGIC)
    if packed[head : head + 3] != _writer():
        return None
    head += 3
    if packed[head : head + _DIGEST] != _digest(doc):
        return None
    head += _DIGEST
    body = memoryview(packed)[head + _DIGEST :]
    if packed[head : head + _DIGEST] != _digest(body):
        return None
    try:
        parsed = marshal.loads(body)  # noqa: S302 - digests checked above; the hub's own database (docstring)
    except (ValueError, EOFError, TypeError):
        return None
    if not isinstance(parsed, dict) or parsed.get("code") != code:
        return None
    return parsed


def parse(doc: bytes, memo: dict[str, str]) -> dict[str, Any]:
    """The JSON way: parse, then share repeated strings (``memo`` across the rows of one read)."""
    return share_strings(orjson.loads(doc), memo)


def tabulated(parsed: Any) -> Any:
    """``parsed`` (a community document) with its devices, residents and households as columns.

    A new document: ``parsed`` and its grids, buildings and units are not changed. Equal
    floats in a column become one object, so marshal writes them once and a restart reads
    them shared (a heartbeat interval repeats 10⁵ times; JSON gave each its own).
    """
    if not isinstance(parsed, dict):
        return parsed  # not a community: unpack refuses it
    doc = dict(parsed)
    memo: dict[tuple[type, object], object] = {}
    if isinstance(doc.get("devices"), list):
        doc["devices"] = _shared(tabulate(doc["devices"]), memo)
    if isinstance(doc.get("residents"), list):
        doc["residents"] = _shared(tabulate(doc["residents"], ("emergency_contacts",)), memo)
    if isinstance(doc.get("grids"), list):
        doc["grids"] = [_grid(grid, memo) if isinstance(grid, dict) else grid for grid in doc["grids"]]
    return doc


def _grid(grid: dict[str, Any], memo: dict[tuple[type, object], object]) -> dict[str, Any]:
    grid = dict(grid)
    buildings = grid.get("buildings")
    if isinstance(buildings, list):
        grid["buildings"] = [
            {**b, "units": [_unit(u, memo) for u in b["units"]]}
            if isinstance(b, dict) and isinstance(b.get("units"), list)
            else b
            for b in buildings
        ]
    return grid


def _unit(unit: Any, memo: dict[tuple[type, object], object]) -> Any:
    if not isinstance(unit, dict) or not isinstance(unit.get("households"), list):
        return unit
    return {**unit, "households": _shared(tabulate(unit["households"]), memo)}


def _shared(table: Any, memo: dict[tuple[type, object], object]) -> Any:
    """Equal floats in ``table``'s columns (nested ones too) made one object.

    Floats only: the strings that repeat are shared already (:func:`parse`), and a memo of
    every id and phone number cost the child ≈ 0.4 s at 10⁵ devices for nothing.
    """
    if is_table(table):
        for column in table[2]:
            if float in set(map(type, column)):
                column[:] = [
                    memo.setdefault((float, value), value) if type(value) is float else value
                    for value in column
                ]
        for inner in table[3].values():
            _shared(inner, memo)
    return table
