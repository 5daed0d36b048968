"""The hub's MQTT client (PUBACK only after a message was handled), MQTT URLs, the boundary probe.

Owns: :mod:`~hub.mqtt.client`, :mod:`~hub.mqtt.url` and :mod:`~hub.mqtt.probe` (``linli doctor``'s
boundary probe with a sensor credential).

Must not import: any stage (``hub.ingest``, ``hub.casework``, ``hub.notify``, ``hub.web``,
``hub.storage``, ``hub.community``), ``hub.app``, ``hub.cli``, ``simulators``, ``dashboards``.
"""
