"""Whether the hub is alive and ready, its counters, and its own alarms to the command centre.

Owns: :mod:`~hub.health.readiness` (the generic probes: each names what is wrong),
:mod:`~hub.health.checks` (``/readyz``: every condition an SOS depends on, composed over the
stages), :mod:`~hub.health.metrics` (Prometheus' text format), :mod:`~hub.health.counters`
(``/metrics``: read from the counters the stages already keep, at scrape time — nothing is
counted twice on the hot path), :mod:`~hub.health.alarms` (``hub.stuck`` / ``hub.recovered``
straight over MQTT, not through the store) and :mod:`~hub.health.sos_trace` (monotonic stamps
of the SOS path — lane receive, alert, case filed, published — for ``bench.latency``).

Sits above the stages it watches (ingest, casework, notify, storage, mqtt) and below the web
layer that serves it. Must not import: ``hub.web``, ``hub.app``, ``hub.cli``, ``simulators``,
``dashboards``. The app builds the parts and hands them in.
"""
