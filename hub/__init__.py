"""Linli hub: the service and its edges, one folder per stage of an SOS press.

Owns the service around the pure packages. Follow one message top to bottom:

* :mod:`hub.mqtt` — the MQTT client (PUBACK after handling) and URLs; :mod:`hub.broker`,
  the embedded broker for the demo and small sites;
* :mod:`hub.ingest` — message → events → rule signals → stored alert + outbox (the hot path),
  device state, quarantine, the rule runtime;
* :mod:`hub.casework` — alerts become cases; the access table; worker replies;
* :mod:`hub.cluster` — several hubs sharing the communities: leases, balancing, one MQTT
  session per owned community, fencing and takeover (active only with ``cluster.node_id``);
* :mod:`hub.notify` — who is told, the ``linli.notification.v1`` bodies, delivery;
* :mod:`hub.health` — readiness, metrics and the hub's own alarms, over the stages above;
* :mod:`hub.web` — HTTP API, JSON views, event stream, console and phone page;
* :mod:`hub.storage` — every table of the one database file, versioned migrations;
* :mod:`hub.community` — the registry, roster and their files;
* :mod:`hub.cases`, :mod:`hub.channels`, :mod:`hub.timeseries` — pure cores and the
  time-series writer; :mod:`hub.cli` — the ``linli`` command.

Top-level modules: :mod:`hub.app` (the composition root), :mod:`hub.demo`,
:mod:`hub.config`, :mod:`hub.records` (what stages pass each other), :mod:`hub.clock`,
:mod:`hub.errors` (the one error tree), :mod:`hub.files` (private files: 0600/0700),
:mod:`hub.steps` (periodic work in steps, so the event loop is never held long).

Imports point down only: app/demo/cli → web → health → casework, ingest, cluster → notify →
storage → cases → community, config → channels, mqtt, timeseries, broker, records → clock, errors,
files, steps
(``tests/test_layering.py`` enforces it). Data flows one way: broker → adapters → rules →
alerts → cases → dispatch and sinks.

Must not import: ``simulators`` or ``dashboards`` (except :mod:`hub.cli`, which wires the
demo and ``linli dashboards push``). ``adapters`` and ``rules`` are used, never the other way round.
"""
