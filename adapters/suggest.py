"""Propose a device profile from payloads the hub could not read well (``linli profiles suggest``).

Input: decoded objects of one device model, as found in quarantine records
(``ambiguous_polarity``) or in generic-read events. Output: a profile document (the schema of
``adapters/profiles/*.yaml``) plus notes for the installer; every guess the generic reader
would refuse to make at run time (a ``contact: 1`` polarity) is made here *with a note*, because
a person reviews the file before it is used. Pure: payloads in, a dict out.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import orjson

from adapters.generic import Finding, Meaning, Scalar, examine, walk
from adapters.profiles import ProfileFile

_ACTIONS: dict[Meaning, str] = {m: m.value for m in Meaning}
_ACTIONS[Meaning.SOS] = "press"


@dataclass(frozen=True, slots=True)
class Suggestion:
    """A proposed profile document and what the installer must check."""

    profile: dict[str, Any]
    notes: tuple[str, ...]


def decoded_of(doc: Mapping[str, Any]) -> Mapping[str, Any]:
    """The decoded object inside a TTS uplink, a ChirpStack event (v3 ``objectJSON`` too) or as is."""
    uplink = doc.get("uplink_message")
    if isinstance(uplink, dict) and isinstance(uplink.get("decoded_payload"), dict):
        return uplink["decoded_payload"]  # type: ignore[no-any-return]
    if isinstance(doc.get("object"), dict):
        return doc["object"]  # type: ignore[no-any-return]
    text = doc.get("objectJSON")
    if isinstance(text, str):
        try:
            parsed = orjson.loads(text)
        except orjson.JSONDecodeError:
            return {}
        return parsed if isinstance(parsed, dict) else {}
    return doc


def _type(values: Sequence[object]) -> str:
    if all(isinstance(v, bool) for v in values):
        return "boolean"
    if all(isinstance(v, str) for v in values):
        return "string"
    if all(isinstance(v, int | float) and not isinstance(v, bool) and float(v).is_integer() for v in values):
        return "integer"
    return "number"


def suggest(payloads: Iterable[Mapping[str, Any]], *, profile_id: str, vendor: str, model: str) -> Suggestion:
    """A profile for the fields the payloads share, with value maps from what was observed."""
    seen: dict[str, list[tuple[Scalar, Finding | None]]] = {}
    for doc in payloads:
        for path, name, value in walk(decoded_of(doc)):
            seen.setdefault(path, []).append((value, examine(path, name, value)))
    fields: list[dict[str, Any]] = []
    notes: list[str] = []
    for path, observed in seen.items():
        found = [f for _, f in observed if f is not None]
        values = [v for v, _ in observed]
        if not found:
            shown = ", ".join(sorted({repr(v)[:20] for v in values})[:4])
            notes.append(f"not read: {path} (seen {shown}); add a field if it matters")
            continue
        meaning = found[0].meaning
        kind = _type(values)
        rule: dict[str, Any] = {"field": path, "type": kind, "action": _ACTIONS[meaning]}
        if meaning is Meaning.BATTERY:
            unit = next((f.unit for f in found if f.unit is not None), None)
            if unit is None or kind in ("string", "boolean"):
                notes.append(f"not read: {path} (battery unit unclear from {values[:3]!r})")
                continue
            rule["unit"] = unit.value
        elif meaning in (Meaning.TEMPERATURE, Meaning.HUMIDITY):
            if kind in ("string", "boolean"):
                continue
        elif meaning in (Meaning.PRESS, Meaning.SOS):
            mapping: dict[Any, Any] = {}
            for value, f in observed:
                if f is not None and not f.problem and not isinstance(value, float):
                    mapping[value] = f.press.value if f.press is not None else None
            if not mapping:
                continue
            rule["values"] = mapping
        else:
            mapping = _state_values(path, meaning, observed, notes)
            if not (kind == "boolean" and all(k == v for k, v in mapping.items())):
                rule["values"] = mapping  # (boolean true = the state needs no values)
                rule["unknown"] = "ignore"
        fields.append(rule)
    proposal: dict[str, Any] = {
        "version": 1,
        "id": profile_id,
        "vendor": vendor,
        "model": model,
        "fields": fields,
    }
    if fields:
        ProfileFile.model_validate(proposal)  # what we propose must load
    else:
        notes.append("no field could be proposed: write the profile by hand (docs/adapters.md)")
    return Suggestion(proposal, tuple(dict.fromkeys(notes)))


def _state_values(
    path: str, meaning: Meaning, observed: Sequence[tuple[Scalar, Finding | None]], notes: list[str]
) -> dict[Any, bool]:
    """Raw value → state for a boolean meaning; every guess is noted for review."""
    mapping: dict[Any, bool] = {}
    for value, f in observed:
        if isinstance(value, float) and not value.is_integer():
            continue
        key = int(value) if isinstance(value, float) else value
        if f is not None and f.state is not None:
            mapping[key] = f.state
            continue
        if isinstance(value, str):
            notes.append(f"REVIEW {path}: value {value!r} is unmapped; add it to values")
            continue
        mapping[key] = bool(value)
        notes.append(
            f"REVIEW {path}: guessed {value!r} means {meaning.value}={bool(value)}; check on site"
            " (e.g. open the door and watch the next uplink)"
        )
    return mapping
