"""Linli simulators: a generated community, devices publishing in their real formats, scenarios and load.

Owns: the community generator (writes the registry's import format, so hub and simulator
share one truth), per-family payload builders (:mod:`simulators.zigbee2mqtt`) and the
behaviour runner that publishes to a broker.

Must not import: ``hub`` (the simulator talks to the hub only through MQTT and files),
``rules``, ``dashboards``. Only the CLI (``hub.cli``) imports this package.
"""
