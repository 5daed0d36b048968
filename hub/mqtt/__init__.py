"""The hub's MQTT client (PUBACK only after a message was handled), MQTT URLs, the boundary probe.

Owns: :mod:`~hub.mqtt.client`, :mod:`~hub.mqtt.url`, :mod:`~hub.mqtt.probe` (``linli doctor``'s
boundary probe with a sensor credential) and :mod:`~hub.mqtt.roundtrip` (its gateway round trip:
does what a gateway publishes reach the hub's credential).

Must not import: any stage (``hub.ingest``, ``hub.casework``, ``hub.notify``, ``hub.web``,
``hub.storage``, ``hub.community``), ``hub.app``, ``hub.cli``, ``simulators``, ``dashboards``.
"""
