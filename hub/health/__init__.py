"""Whether the hub is alive and ready, and its counters in Prometheus' text format.

Owns: :mod:`~hub.health.readiness` (``/readyz``: every condition an SOS depends on, each
named with what is wrong) and :mod:`~hub.health.metrics` (``/metrics``: read from the
counters the stages already keep, at scrape time — nothing is counted twice on the hot path).

Must not import: ``hub.web``, ``hub.app``, ``hub.cli``, ``simulators``, ``dashboards``. The
app hands in what to look at; the web layer serves the result.
"""
