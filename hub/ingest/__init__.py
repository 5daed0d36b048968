"""MQTT message → events → rule signals → stored alerts: the hot path, and what it keeps.

Owns: :mod:`~hub.ingest.pipeline` (``Pipeline.handle``, synchronous inside the MQTT
callback), :mod:`~hub.ingest.alerts` (signal → alert + outbox in one transaction),
:mod:`~hub.ingest.device_state` (last known state per device), :mod:`~hub.ingest.quarantine`
(what could not be decoded, with its reason), :mod:`~hub.ingest.strangers` (unregistered
devices: listed up to a cap, grouped per gateway), :mod:`~hub.ingest.rule_runtime` (rule state
persistence, timers, pack reload), :mod:`~hub.ingest.gauges` (dashboard gauges) and
:mod:`~hub.ingest.heap` (the collector's policy, freed heap memory handed back).

A committed alert change leaves through the ``on_alert_change`` callback the app wires to
casework; ingest never calls casework itself.

Must not import: ``hub.casework``, ``hub.web``, ``hub.app``, ``hub.cli``, ``simulators``,
``dashboards``.
"""
