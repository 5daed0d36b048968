"""Lists of records as columns: how the registry's start-up copy holds its many records.

Why: a restart read the copy (:mod:`hub.storage.community_pack`) as the parsed JSON, a dict
per device, resident, contact and household (≈ 280 000 at 100 000 devices, ≈ 90 MB of
small blocks), and built the records from those. The strings the records keep (ids,
addresses, phones) were made in between the dicts, so once the dicts were freed their pages
could not go back: the registry's 160 MB of resident memory held ≈ 63 MB of empty pools and
free blocks (``sys._debugmallocstats``; docs/benchmarks.md, "Thirty-fourth pass"). As columns
there is no object per record to free: one list per field, the values the records keep
made one after another, and the lists themselves are large blocks ``malloc_trim`` hands back.

A table is plain data that ``marshal`` writes: ``(TAG, keys, columns, nested)``. ``keys`` are
the records' field names in their order, ``columns`` one list per key (row *i*'s value at
index *i*). ``nested`` holds, for a key whose values were lists of records (a resident's
emergency contacts), the table of all of them in order; that key's column then holds each
row's count. Rows whose keys differ (a hand-edited row, an older version's) stay a list of
dicts: :func:`tabulate` gives those back unchanged, and readers take both.

Must not import the models or the store: dicts and lists in, tuples out.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from itertools import islice
from typing import Any, TypeGuard, cast

#: The first item of a table; versioned with its layout.
TAG = "linli.columns/1"

#: ``(TAG, keys, columns, nested)``.
Table = tuple[str, tuple[str, ...], tuple[list[Any], ...], dict[str, Any]]


def is_table(value: object) -> TypeGuard[Table]:
    return type(value) is tuple and len(value) == 4 and value[0] == TAG


def tabulate(rows: Sequence[Any], nested: Sequence[str] = ()) -> Table | Sequence[Any]:
    """``rows`` (dicts with the same keys in the same order) as a table; anything else unchanged.

    ``nested``: keys whose values are lists of dicts, tabulated together (their own keys the same).
    """
    if not rows or type(rows[0]) is not dict:
        return rows
    keys = tuple(rows[0])
    if any(type(row) is not dict or len(row) != len(keys) or tuple(row) != keys for row in rows):
        return rows
    columns = tuple([row[key] for row in rows] for key in keys)
    inner: dict[str, Any] = {}
    for key in nested:
        if key not in keys:
            continue
        column = columns[keys.index(key)]
        if not all(type(value) is list for value in column):
            return rows
        flat = [item for value in column for item in value]
        if not flat:
            continue  # every list empty: the column stays as it is
        table = tabulate(flat)
        if not is_table(table):
            return rows
        inner[key] = table
        column[:] = [len(value) for value in column]
    return (TAG, keys, columns, inner)


def rows(table: Table) -> Iterator[dict[str, Any]]:
    """The table's rows as the dicts it was made from (nested lists of dicts included)."""
    _, keys, columns, nested = table
    inner = {key: rows(value) for key, value in nested.items()}
    for values in zip(*columns, strict=True):
        row = dict(zip(keys, values, strict=True))
        for key, items in inner.items():
            row[key] = list(islice(items, row[key]))
        yield row


def each_row(value: Sequence[dict[str, Any]] | Table) -> Iterable[dict[str, Any]]:
    """The rows of a table, or of a list of dicts as it is."""
    if is_table(value):
        return rows(value)
    return cast("Sequence[dict[str, Any]]", value)
