"""Linli simulators: a generated community, devices publishing in their real formats, scenarios and load.

Owns: the community generator (:mod:`simulators.community`, writes the registry's import format
so hub and simulator share one truth), per-family wire formats (:mod:`simulators.formats`:
Zigbee2MQTT, The Things Stack v3, ChirpStack v4, Tasmota, Linli native), the behaviour model
(:mod:`simulators.behaviour`) and the runner that publishes it to a broker
(:mod:`simulators.runner`), scenarios with expected results run through the small
:class:`simulators.scenario.HubControl` protocol (:mod:`simulators.scenario`; moved to a running
hub's present by :mod:`simulators.rebase`), and the load
generator (:mod:`simulators.load`). See ``docs/simulators.md``.

Must not import: ``hub`` (the simulator talks to the hub only through MQTT, files and the
``HubControl`` protocol), ``rules``, ``dashboards``. Only the CLI (``hub.cli``) imports this package.
"""
