"""Memory at scale: one copy of each repeated string and field set across the registry's models.

Why: the registry keeps every device and resident as a frozen pydantic model. Read back
from the store (``orjson`` → ``model_validate``), each model carried its own copy of
every string (the same 15-digit grid code, model name and household id once per device)
and its own ``__pydantic_fields_set__``: a set of all its field names, 728 bytes for a
device, more than the device's ``__dict__`` (docs/benchmarks.md, "State at scale, fourth
pass"). The values are equal, so sharing them changes nothing a caller can see: the
strings are immutable and pydantic only changes a fields set on a *copy*
(``model_copy``), never on a frozen model.
"""

from __future__ import annotations

import gc
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from pydantic import BaseModel

#: Strings longer than this are kept as parsed: long text (notes, addresses) rarely repeats.
MAX_SHARED_CHARS = 64


def share_strings(doc: Any, memo: dict[str, str]) -> Any:
    """``doc`` (parsed JSON) with each short string replaced by the first equal one seen."""
    if isinstance(doc, str):
        return memo.setdefault(doc, doc) if len(doc) <= MAX_SHARED_CHARS else doc
    if isinstance(doc, dict):
        return {key: share_strings(value, memo) for key, value in doc.items()}
    if isinstance(doc, list):
        return [share_strings(value, memo) for value in doc]
    return doc


def share_field_sets(model: BaseModel, shared: dict[tuple[type, frozenset[str]], set[str]]) -> None:
    """Give ``model`` and the models inside it one fields set per (class, names) instead of one each.

    A plain ``set`` (not a frozenset): ``model_copy(update=…)`` adds to its *copy* of the set.
    """
    fields = model.__pydantic_fields_set__
    key = (type(model), frozenset(fields))
    one = shared.setdefault(key, fields)
    if one is not fields:
        object.__setattr__(model, "__pydantic_fields_set__", one)
    for value in model.__dict__.values():
        if isinstance(value, BaseModel):
            share_field_sets(value, shared)
        elif isinstance(value, tuple):
            for item in value:
                if isinstance(item, BaseModel):
                    share_field_sets(item, shared)


@contextmanager
def collector_paused() -> Iterator[None]:
    """No cyclic collection while a large acyclic tree is built (parsing, validating).

    Each full collection walks everything built so far, so a tree of 10⁶ objects built with
    the collector on costs several times the work of building it (measured: YAML dump and
    load of a 100 000-device registry 2–3× slower). Reference counting still frees garbage.
    """
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            gc.enable()
