"""The hub's MQTT client (PUBACK only after a message was handled) and MQTT URLs.

Owns: :mod:`~hub.mqtt.client` and :mod:`~hub.mqtt.url`.

Must not import: any stage (``hub.ingest``, ``hub.casework``, ``hub.notify``, ``hub.web``,
``hub.storage``, ``hub.community``), ``hub.app``, ``hub.cli``, ``simulators``, ``dashboards``.
"""
