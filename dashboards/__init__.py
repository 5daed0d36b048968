"""Linli dashboards: Grafana dashboards as code for the command centre, plus provisioning files.

Owns: the dashboard definitions, their generated JSON and Grafana file-provisioning YAML.
Must not import: ``hub``, ``adapters``, ``rules``, ``simulators`` — dashboards depend only on
the time-series schema, which is documented, not imported.
"""
