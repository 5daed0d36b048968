"""Linli hub: the service and its edges.

Owns: configuration (:mod:`hub.config`), the clock (:mod:`hub.clock`), MQTT ingest
(:mod:`hub.mqtt_client`) and the embedded broker (:mod:`hub.broker`), the community
registry and roster (:mod:`hub.registry`, :mod:`hub.roster`), the store
(:mod:`hub.store`), the message pipeline (:mod:`hub.pipeline`), routing and dispatch of
notifications (:mod:`hub.routing`, :mod:`hub.dispatch`), the HTTP API and live console
(:mod:`hub.api`, ``hub/console``), the demo (:mod:`hub.demo`) and the CLI (:mod:`hub.cli`).

Data flows one way: broker → adapters → rules → alerts → dispatch and sinks.
Must not import: ``simulators`` or ``dashboards`` (except :mod:`hub.cli`, which wires the
demo and ``linli dashboards push``). ``adapters`` and ``rules`` are used, never the other way round.
"""
