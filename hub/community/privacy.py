"""Residents' personal data, whole or masked: the one place that decides what a mask shows.

Who gets the whole record is the access table's decision (``personal_data`` in
:mod:`hub.casework.access`); this module only renders the two forms.
"""

from __future__ import annotations

from typing import Any

from hub.community.model import Resident, dump_record


def mask_name(name: str) -> str:
    return name[:1] + "*" * max(1, len(name) - 1) if name else ""


def mask_phone(phone: str) -> str:
    digits = phone.strip()
    return digits[:3] + "****" + digits[-4:] if len(digits) >= 8 else "****" if digits else ""


def resident_json(resident: Resident, *, personal: bool) -> dict[str, Any]:
    """The resident whole, or masked: masked also leaves out the care flags.

    Living alone, 80+, disabled, cognitively impaired — per room, these tell a stranger which
    door hides the most vulnerable person in the building (issue 11): personal data too.
    """
    body: dict[str, Any] = {"id": resident.id, "household": resident.household}
    if personal:
        body |= {
            "living_alone": resident.living_alone,
            "aged_80_plus": resident.age is not None and resident.age >= 80,
            "disabled": resident.disabled,
            "cognitive_impairment": resident.cognitive_impairment,
            "name": resident.name,
            "age": resident.age,
            "address": resident.address,
            "phone": resident.phone,
            "emergency_contacts": [dump_record(c) for c in resident.emergency_contacts],
            "medical_notes": resident.medical_notes,
        }
    else:
        body |= {"name": mask_name(resident.name), "phone": mask_phone(resident.phone)}
    return body
