"""Every table of the one database file, its versioned migrations, and the stores over it.

Owns: :mod:`~hub.storage.schema` (the schema, ``PRAGMA user_version``, upgrade on start,
refusal of a newer file), :mod:`~hub.storage.store` (alerts, the notification outbox, the
registry, quarantine), :mod:`~hub.storage.cases` (case timelines, deadlines, steps sent) and
:mod:`~hub.storage.rule_state` (the rule engine's persisted state) and :mod:`~hub.storage.nonces`
(used worker-reply nonces, schema version 2).

Invariants live in the schema (one active alert per rule and subject; one open case per
alert); composing writes into one transaction is the caller's (``store.transaction()``).

Must not import: any stage — ``hub.ingest``, ``hub.casework``, ``hub.notify``, ``hub.web``,
``hub.app``, ``hub.cli`` — nor ``simulators`` or ``dashboards``.
"""
