"""Who and what is where: the community model, the registry, the roster and their files.

Owns: :mod:`~hub.community.model` (street → community → grid → building → unit → household
→ resident, devices and places; DB11 grid codes), :mod:`~hub.community.registry` (look-ups
for the hot path: a device's subject, location and people), :mod:`~hub.community.roster`
(staggered shifts, who is on duty), :mod:`~hub.community.files` (YAML/CSV import and
export), :mod:`~hub.community.privacy` (residents' data whole or masked),
:mod:`~hub.community.personal` (residents' personal data held packed, whole on request) and
:mod:`~hub.community.compact` (one copy of repeated strings and fields sets at scale) and
:mod:`~hub.community.trusted` (the store's rows built into models without validating them again).

Must not import: ``hub.storage``, ``hub.ingest``, ``hub.casework``, ``hub.notify``,
``hub.web``, ``hub.app``, ``hub.cli``, ``simulators``, ``dashboards``.
"""
