"""Several hubs sharing the communities (issue 13): heartbeat, leases, balancing, sessions.

Owns: :mod:`~hub.cluster.balance` (the fair share and which communities to claim or give up,
pure), :mod:`~hub.cluster.sessions` (one persistent MQTT session per owned community, client id
``linli-c-<community>``), :mod:`~hub.cluster.runtime` (the named lease loop that heartbeats
this node, claims, renews and releases leases, opens and closes the sessions, and fences the
store's writes for a community), :mod:`~hub.cluster.renewer` (heartbeat and renewal on a thread
of its own, so a busy event loop keeps its leases), :mod:`~hub.cluster.events` (alert and case
changes told to the other nodes over PostgreSQL LISTEN/NOTIFY, for their live streams) and
:mod:`~hub.cluster.wiring` (building it from the settings: active only with ``cluster.node_id``
and a PostgreSQL store).

The leases themselves (acquire, renew, release, fence, judged by the database clock) are
:mod:`hub.storage.leases`; messages from a session go through the app's one ingest handler.

Must not import: ``hub.web``, ``hub.casework``, ``hub.ingest`` (the app connects them by
callbacks), ``hub.app``, ``hub.cli``, ``simulators``, ``dashboards``.
"""
