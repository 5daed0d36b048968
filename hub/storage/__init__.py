"""Every table of the store's database, its versioned migrations, and the stores over it.

Owns: :mod:`~hub.storage.engine` (the port: SQLite in :mod:`~hub.storage.sqlite`, the
default, or PostgreSQL in :mod:`~hub.storage.postgres`, chosen by ``store.url``),
:mod:`~hub.storage.schema` (the schema, one list of migrations for both engines, upgrade on
start, refusal of a newer database), :mod:`~hub.storage.store` (alerts, the notification outbox, the
registry, quarantine), :mod:`~hub.storage.cases` (case timelines, deadlines, steps sent) and
:mod:`~hub.storage.rule_state` (the rule engine's persisted state), :mod:`~hub.storage.nonces`
(used worker-reply nonces, schema version 3), :mod:`~hub.storage.visits` (care visit tasks,
records, deadlines and steps sent) and :mod:`~hub.storage.links` (guardians' one-time
evaluation links), both schema version 4, :mod:`~hub.storage.leases` (community leases and
the epoch fence) and :mod:`~hub.storage.scope` (a cluster node's share of the rows).

Invariants live in the schema (one active alert per rule and subject; one open case per
alert); composing writes into one transaction is the caller's (``store.transaction()``).

Must not import: any stage — ``hub.ingest``, ``hub.casework``, ``hub.notify``, ``hub.web``,
``hub.app``, ``hub.cli`` — nor ``simulators`` or ``dashboards``.
"""
