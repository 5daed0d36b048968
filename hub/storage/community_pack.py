"""A community row's start-up copy: its parsed document in ``marshal`` form, strings shared.

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

from hub.community.compact import share_strings

#: Format 4: object references (a shared string is written once).
MARSHAL_VERSION = 4
#: Below this much JSON a copy saves nothing worth a process (≈ 2 300 devices; 44 MB at 10⁵).
WORTH_BYTES = 1 << 20
_MAGIC = b"LNP1"
_DIGEST = 16
_HEADER = len(_MAGIC) + 3 + 2 * _DIGEST


def _writer() -> bytes:
    return bytes((MARSHAL_VERSION, sys.version_info.major, sys.version_info.minor))


def _digest(data: bytes | memoryview) -> bytes:
    return hashlib.blake2b(data, digest_size=_DIGEST).digest()


def pack(doc: bytes, parsed: dict[str, Any]) -> bytes:
    """The start-up copy of a row whose JSON is ``doc`` and parsed form (strings shared) ``parsed``."""
    body = marshal.dumps(parsed, MARSHAL_VERSION)
    return _MAGIC + _writer() + _digest(doc) + _digest(body) + body


def unpack(doc: bytes, stored: bytes | memoryview | None, *, code: str) -> dict[str, Any] | None:
    """``doc`` parsed, from ``stored`` (the row's copy, as the engine gives it) if that is a
    sound copy of it; ``None``: parse the JSON."""
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
